import type { Event } from '../shared/event';

/** Events of a product's inventory stream (`inventory-<productId>`): receipts, reservations and what became of them. */

export type StockReceived = Event<
  'sales.StockReceived',
  {
    readonly productId: string;
    readonly quantity: number;
    readonly reference: string;
    readonly by: string;
    readonly at: string;
  }
>;
export type StockReserved = Event<
  'sales.StockReserved',
  { readonly productId: string; readonly orderId: string; readonly quantity: number; readonly at: string }
>;
/** A reservation that would have made available stock negative: an outcome, not an error. */
export type StockReservationRejected = Event<
  'sales.StockReservationRejected',
  {
    readonly productId: string;
    readonly orderId: string;
    readonly requested: number;
    readonly available: number;
    readonly at: string;
  }
>;
export type StockReleased = Event<
  'sales.StockReleased',
  { readonly productId: string; readonly orderId: string; readonly quantity: number; readonly at: string }
>;
export type StockShipped = Event<
  'sales.StockShipped',
  { readonly productId: string; readonly orderId: string; readonly quantity: number; readonly at: string }
>;

export type InventoryEvent = StockReceived | StockReserved | StockReservationRejected | StockReleased | StockShipped;

export const inventoryStreamId = (productId: string): string => `inventory-${productId}`;
