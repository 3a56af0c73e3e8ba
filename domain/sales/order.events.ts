import type { Event } from '../shared/event';

/** Events of an order stream (`order-<id>`). Money in minor units (cents) of the order's currency. */

export interface OrderLine {
  readonly productId: string;
  readonly sku: string;
  readonly name: string;
  readonly unit: string;
  readonly quantity: number;
  /** The channel's list price and discount when the order was placed, and what one unit costs after it. */
  readonly listPriceCents: number;
  readonly discountPct: number;
  readonly unitPriceCents: number;
  readonly lineTotalCents: number;
  readonly deliveryDays: number;
}

export type OrderPlaced = Event<
  'sales.OrderPlaced',
  {
    readonly orderId: string;
    readonly customerId: string;
    readonly channel: string;
    readonly paymentMethod: string;
    readonly items: readonly OrderLine[];
    readonly currency: string;
    readonly totalCents: number;
    /** YYYY-MM-DD: placement day plus the slowest line's delivery days. */
    readonly expectedDelivery: string;
    readonly at: string;
  }
>;
export type OrderReserved = Event<'sales.OrderReserved', { readonly orderId: string; readonly at: string }>;
export type OrderPaid = Event<
  'sales.OrderPaid',
  { readonly orderId: string; readonly paymentRef: string; readonly at: string }
>;
export type OrderConfirmed = Event<'sales.OrderConfirmed', { readonly orderId: string; readonly at: string }>;
export type OrderRejected = Event<
  'sales.OrderRejected',
  { readonly orderId: string; readonly reason: string; readonly detail: Record<string, unknown>; readonly at: string }
>;
export type OrderCancellationRequested = Event<
  'sales.OrderCancellationRequested',
  { readonly orderId: string; readonly by: string; readonly reason: string; readonly at: string }
>;
export type OrderCancelled = Event<
  'sales.OrderCancelled',
  { readonly orderId: string; readonly reason: string; readonly detail: Record<string, unknown>; readonly at: string }
>;
export type ShipmentDispatched = Event<
  'sales.ShipmentDispatched',
  { readonly orderId: string; readonly shipmentId: string; readonly at: string }
>;

export type OrderEvent =
  | OrderPlaced
  | OrderReserved
  | OrderPaid
  | OrderConfirmed
  | OrderRejected
  | OrderCancellationRequested
  | OrderCancelled
  | ShipmentDispatched;

export const orderStreamId = (orderId: string): string => `order-${orderId}`;
