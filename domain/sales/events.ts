import type { Event } from '../shared/event';

/**
 * Events of the sales context. Money is in minor units (cents) of the
 * channel's currency, so sums are exact; the HTTP layer speaks decimals.
 */

export interface Delivery {
  readonly method: string;
  readonly days: number;
}

/** How one sales channel sells a product. */
export interface ChannelTerms {
  readonly channel: string;
  readonly priceCents: number;
  readonly currency: string;
  readonly paymentMethods: readonly string[];
  /** 0..100; the price a customer pays is priceCents × (100 − discountPct) / 100, rounded. */
  readonly discountPct: number;
  readonly delivery: Delivery;
}

// ---- product (`product-<id>`, the SKU reserved on `sku-<sku>`) -------------

export type ProductRegistered = Event<'sales.ProductRegistered', {
  readonly productId: string;
  readonly sku: string;
  readonly name: string;
  readonly unit: string;
  readonly channels: readonly ChannelTerms[];
  readonly by: string;
  readonly at: string;
}>;
export type ProductRenamed = Event<'sales.ProductRenamed', { readonly productId: string; readonly name: string; readonly by: string; readonly at: string }>;
export type ProductChannelAdded = Event<'sales.ProductChannelAdded', { readonly productId: string; readonly terms: ChannelTerms; readonly by: string; readonly at: string }>;
export type ProductPriceChanged = Event<'sales.ProductPriceChanged', {
  readonly productId: string; readonly channel: string; readonly priceCents: number; readonly currency: string; readonly by: string; readonly at: string;
}>;
export type ProductDiscountChanged = Event<'sales.ProductDiscountChanged', {
  readonly productId: string; readonly channel: string; readonly discountPct: number; readonly by: string; readonly at: string;
}>;
export type ProductChannelTermsChanged = Event<'sales.ProductChannelTermsChanged', {
  readonly productId: string; readonly channel: string; readonly paymentMethods: readonly string[]; readonly delivery: Delivery; readonly by: string; readonly at: string;
}>;
export type SkuReserved = Event<'sales.SkuReserved', { readonly sku: string; readonly productId: string; readonly at: string }>;

export type ProductEvent = ProductRegistered | ProductRenamed | ProductChannelAdded | ProductPriceChanged | ProductDiscountChanged | ProductChannelTermsChanged;

// ---- inventory (`inventory-<productId>`) ------------------------------------

export type StockReceived = Event<'sales.StockReceived', { readonly productId: string; readonly quantity: number; readonly reference: string; readonly by: string; readonly at: string }>;
export type StockReserved = Event<'sales.StockReserved', { readonly productId: string; readonly orderId: string; readonly quantity: number; readonly at: string }>;
/** A reservation that would have made available stock negative: an outcome, not an error. */
export type StockReservationRejected = Event<'sales.StockReservationRejected', {
  readonly productId: string; readonly orderId: string; readonly requested: number; readonly available: number; readonly at: string;
}>;
export type StockReleased = Event<'sales.StockReleased', { readonly productId: string; readonly orderId: string; readonly quantity: number; readonly at: string }>;
export type StockShipped = Event<'sales.StockShipped', { readonly productId: string; readonly orderId: string; readonly quantity: number; readonly at: string }>;

export type InventoryEvent = StockReceived | StockReserved | StockReservationRejected | StockReleased | StockShipped;

// ---- order (`order-<id>`) ---------------------------------------------------

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

export type OrderPlaced = Event<'sales.OrderPlaced', {
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
}>;
export type OrderReserved = Event<'sales.OrderReserved', { readonly orderId: string; readonly at: string }>;
export type OrderPaid = Event<'sales.OrderPaid', { readonly orderId: string; readonly paymentRef: string; readonly at: string }>;
export type OrderConfirmed = Event<'sales.OrderConfirmed', { readonly orderId: string; readonly at: string }>;
export type OrderRejected = Event<'sales.OrderRejected', { readonly orderId: string; readonly reason: string; readonly detail: Record<string, unknown>; readonly at: string }>;
export type OrderCancellationRequested = Event<'sales.OrderCancellationRequested', { readonly orderId: string; readonly by: string; readonly reason: string; readonly at: string }>;
export type OrderCancelled = Event<'sales.OrderCancelled', { readonly orderId: string; readonly reason: string; readonly detail: Record<string, unknown>; readonly at: string }>;
export type ShipmentDispatched = Event<'sales.ShipmentDispatched', { readonly orderId: string; readonly shipmentId: string; readonly at: string }>;

export type OrderEvent = OrderPlaced | OrderReserved | OrderPaid | OrderConfirmed | OrderRejected | OrderCancellationRequested | OrderCancelled | ShipmentDispatched;

// ---- payment (`payment-<orderId>`) ------------------------------------------

export type PaymentRequested = Event<'sales.PaymentRequested', {
  readonly orderId: string; readonly amountCents: number; readonly currency: string; readonly method: string; readonly idempotencyKey: string; readonly at: string;
}>;
export type PaymentCaptured = Event<'sales.PaymentCaptured', { readonly orderId: string; readonly providerRef: string; readonly late: boolean; readonly at: string }>;
export type PaymentDeclined = Event<'sales.PaymentDeclined', { readonly orderId: string; readonly reason: string; readonly at: string }>;
export type PaymentDeadlineExpired = Event<'sales.PaymentDeadlineExpired', { readonly orderId: string; readonly dueAt: string; readonly at: string }>;
export type PaymentRefunded = Event<'sales.PaymentRefunded', { readonly orderId: string; readonly providerRef: string; readonly amountCents: number; readonly reason: string; readonly at: string }>;

export type PaymentEvent = PaymentRequested | PaymentCaptured | PaymentDeclined | PaymentDeadlineExpired | PaymentRefunded;

export type SalesEvent = ProductEvent | SkuReserved | InventoryEvent | OrderEvent | PaymentEvent;
