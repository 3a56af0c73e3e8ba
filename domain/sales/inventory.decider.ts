import type { Decider } from '../shared/event';
import type { InventoryEvent } from './inventory.events';
import { unreachable } from '../shared/unreachable';

/**
 * The stock of one product (stream `inventory-<productId>`). Reservations are
 * keyed by order, so a command repeated for the same order changes nothing:
 * the saga may resend after a crash without reserving twice. A reservation
 * that would make available stock negative is recorded as rejected, with the
 * numbers the customer needs to hear.
 *
 *   onHand    = received − shipped
 *   available = onHand − reserved
 */

export type ReceiveStock = {
  readonly type: 'ReceiveStock';
  readonly data: {
    readonly productId: string;
    readonly quantity: number;
    readonly reference: string;
    readonly by: string;
    readonly now: Date;
  };
};
export type ReserveStock = {
  readonly type: 'ReserveStock';
  readonly data: {
    readonly productId: string;
    readonly orderId: string;
    readonly quantity: number;
    readonly now: Date;
  };
};
export type ReleaseStock = {
  readonly type: 'ReleaseStock';
  readonly data: { readonly productId: string; readonly orderId: string; readonly now: Date };
};
export type ShipStock = {
  readonly type: 'ShipStock';
  readonly data: { readonly productId: string; readonly orderId: string; readonly now: Date };
};
export type InventoryCommand = ReceiveStock | ReserveStock | ReleaseStock | ShipStock;

export type ReservationStatus = 'reserved' | 'rejected' | 'released' | 'shipped';

export interface InventoryState {
  readonly onHand: number;
  readonly reserved: number;
  readonly shipped: number;
  readonly reservations: Readonly<Record<string, { readonly quantity: number; readonly status: ReservationStatus }>>;
}

export const initialInventoryState: InventoryState = { onHand: 0, reserved: 0, shipped: 0, reservations: {} };

export const available = (s: InventoryState): number => s.onHand - s.reserved;

export function evolveInventory(state: InventoryState, event: InventoryEvent): InventoryState {
  const set = (orderId: string, quantity: number, status: ReservationStatus) => ({
    ...state.reservations,
    [orderId]: { quantity, status },
  });
  switch (event.type) {
    case 'sales.StockReceived':
      return { ...state, onHand: state.onHand + event.data.quantity };
    case 'sales.StockReserved':
      return {
        ...state,
        reserved: state.reserved + event.data.quantity,
        reservations: set(event.data.orderId, event.data.quantity, 'reserved'),
      };
    case 'sales.StockReservationRejected':
      return { ...state, reservations: set(event.data.orderId, event.data.requested, 'rejected') };
    case 'sales.StockReleased':
      return {
        ...state,
        reserved: state.reserved - event.data.quantity,
        reservations: set(event.data.orderId, event.data.quantity, 'released'),
      };
    case 'sales.StockShipped':
      return {
        ...state,
        reserved: state.reserved - event.data.quantity,
        onHand: state.onHand - event.data.quantity,
        shipped: state.shipped + event.data.quantity,
        reservations: set(event.data.orderId, event.data.quantity, 'shipped'),
      };
    default:
      return unreachable(event, 'event');
  }
}

export function decideInventory(command: InventoryCommand, state: InventoryState): InventoryEvent[] {
  switch (command.type) {
    case 'ReceiveStock': {
      const { productId, quantity, reference, by, now } = command.data;
      return [{ type: 'sales.StockReceived', data: { productId, quantity, reference, by, at: now.toISOString() } }];
    }
    case 'ReserveStock': {
      const { productId, orderId, quantity, now } = command.data;
      if (state.reservations[orderId]) return []; // this order was answered already
      const free = available(state);
      if (quantity > free) {
        return [
          {
            type: 'sales.StockReservationRejected',
            data: { productId, orderId, requested: quantity, available: free, at: now.toISOString() },
          },
        ];
      }
      return [{ type: 'sales.StockReserved', data: { productId, orderId, quantity, at: now.toISOString() } }];
    }
    case 'ReleaseStock': {
      const { productId, orderId, now } = command.data;
      const r = state.reservations[orderId];
      if (r?.status !== 'reserved') return [];
      return [
        { type: 'sales.StockReleased', data: { productId, orderId, quantity: r.quantity, at: now.toISOString() } },
      ];
    }
    case 'ShipStock': {
      const { productId, orderId, now } = command.data;
      const r = state.reservations[orderId];
      if (r?.status !== 'reserved') return [];
      return [
        { type: 'sales.StockShipped', data: { productId, orderId, quantity: r.quantity, at: now.toISOString() } },
      ];
    }
    default:
      return unreachable(command, 'command');
  }
}

export const inventoryDecider: Decider<InventoryCommand, InventoryEvent, InventoryState> = {
  initialState: initialInventoryState,
  evolve: evolveInventory,
  decide: decideInventory,
};
