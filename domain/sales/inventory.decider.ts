import { Map as PersistentMap } from 'immutable';
import type { Decider } from '../shared/event';
import type { InventoryEvent } from './inventory.events';
import { unreachable } from '../shared/unreachable';

/**
 * The stock of one product (stream `inventory-<productId>`). Reservations are
 * keyed by order, so a command repeated for the same order changes nothing:
 * the saga may resend after a crash without reserving twice (see
 * InventoryState for how closed reservations are recognised). A reservation
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

/**
 * Only what a decision needs: the counts and the reservations still open
 * (reserved, not yet released or shipped), so the state of a product with a
 * hundred thousand orders behind it is as small as a new one's.
 *
 * The open reservations are a persistent map (immutable's Map, a hash array
 * mapped trie): an event makes a new state sharing all but a few nodes with
 * the one before, so evolving costs the same with 20,000 reservations open
 * (orders confirmed, not shipped yet) as with ten. (A plain object copied per
 * event made that 10 ms of the event loop per reservation, and a cold fold of
 * those 20,000 took 107 s.) In JSON (snapshots) it is a plain object, orderId
 * → quantity: `inventoryStateFromJson` reads it back.
 *
 * An order answered already (reserved, rejected, released, shipped) is
 * recognised without keeping it: its answer has an identity (`identify`), the
 * store derives the event id from it, and a second answer for the same order
 * is stored once, i.e. not at all. So a resend after a rejection still
 * changes nothing, whatever stock arrived since.
 */
export interface InventoryState {
  readonly onHand: number;
  readonly reserved: number;
  readonly shipped: number;
  /** Quantity reserved per order, for the reservations still open. */
  readonly open: PersistentMap<string, number>;
}

export const initialInventoryState: InventoryState = { onHand: 0, reserved: 0, shipped: 0, open: PersistentMap() };

export const available = (s: InventoryState): number => s.onHand - s.reserved;

/**
 * Events between two snapshots of this state at least: one per ten open reservations, so the
 * snapshot's cost (its JSON grows with them: 820 KB at 20,000) stays a few microseconds per event.
 */
export const inventorySnapshotSpacing = (s: InventoryState): number => Math.ceil(s.open.size / 10);

/** A state as JSON.stringify wrote it (a snapshot): the open reservations are a plain object there. */
export function inventoryStateFromJson(json: unknown): InventoryState {
  const s = json as { onHand: number; reserved: number; shipped: number; open: Record<string, number> };
  return { onHand: s.onHand, reserved: s.reserved, shipped: s.shipped, open: PersistentMap(Object.entries(s.open)) };
}

export function evolveInventory(state: InventoryState, event: InventoryEvent): InventoryState {
  switch (event.type) {
    case 'sales.StockReceived':
      return { ...state, onHand: state.onHand + event.data.quantity };
    case 'sales.StockReserved':
      return {
        ...state,
        reserved: state.reserved + event.data.quantity,
        open: state.open.set(event.data.orderId, event.data.quantity),
      };
    case 'sales.StockReservationRejected':
      return state;
    case 'sales.StockReleased':
      return {
        ...state,
        reserved: state.reserved - event.data.quantity,
        open: state.open.delete(event.data.orderId),
      };
    case 'sales.StockShipped':
      return {
        ...state,
        reserved: state.reserved - event.data.quantity,
        onHand: state.onHand - event.data.quantity,
        shipped: state.shipped + event.data.quantity,
        open: state.open.delete(event.data.orderId),
      };
    default:
      return unreachable(event, 'event');
  }
}

/** One answer per order and product: a reservation or its rejection. The store keeps the first only. */
export function identifyInventoryEvent(event: InventoryEvent): string | undefined {
  switch (event.type) {
    case 'sales.StockReserved':
    case 'sales.StockReservationRejected':
      return `reservation-answer:${event.data.orderId}`;
    case 'sales.StockReceived':
    case 'sales.StockReleased':
    case 'sales.StockShipped':
      return undefined;
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
      if (state.open.has(orderId)) return []; // reserved already; a closed answer is caught by its identity
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
      const quantity = state.open.get(orderId);
      if (quantity === undefined) return [];
      return [{ type: 'sales.StockReleased', data: { productId, orderId, quantity, at: now.toISOString() } }];
    }
    case 'ShipStock': {
      const { productId, orderId, now } = command.data;
      const quantity = state.open.get(orderId);
      if (quantity === undefined) return [];
      return [{ type: 'sales.StockShipped', data: { productId, orderId, quantity, at: now.toISOString() } }];
    }
    default:
      return unreachable(command, 'command');
  }
}

export const inventoryDecider: Decider<InventoryCommand, InventoryEvent, InventoryState> = {
  initialState: initialInventoryState,
  evolve: evolveInventory,
  decide: decideInventory,
  identify: identifyInventoryEvent,
};
