import type { Event } from '../shared/event';

/**
 * Events of a product stream (`product-<id>`) and of the SKU reservation
 * (`sku-<sku>`, appended with the product's first event, so one SKU names one
 * product). Money is in minor units (cents) of the channel's currency, so sums
 * are exact; the HTTP layer speaks decimals.
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

export type ProductRegistered = Event<
  'sales.ProductRegistered',
  {
    readonly productId: string;
    readonly sku: string;
    readonly name: string;
    readonly unit: string;
    readonly channels: readonly ChannelTerms[];
    readonly by: string;
    readonly at: string;
  }
>;
export type ProductRenamed = Event<
  'sales.ProductRenamed',
  { readonly productId: string; readonly name: string; readonly by: string; readonly at: string }
>;
export type ProductChannelAdded = Event<
  'sales.ProductChannelAdded',
  { readonly productId: string; readonly terms: ChannelTerms; readonly by: string; readonly at: string }
>;
export type ProductPriceChanged = Event<
  'sales.ProductPriceChanged',
  {
    readonly productId: string;
    readonly channel: string;
    readonly priceCents: number;
    readonly currency: string;
    readonly by: string;
    readonly at: string;
  }
>;
export type ProductDiscountChanged = Event<
  'sales.ProductDiscountChanged',
  {
    readonly productId: string;
    readonly channel: string;
    readonly discountPct: number;
    readonly by: string;
    readonly at: string;
  }
>;
export type ProductChannelTermsChanged = Event<
  'sales.ProductChannelTermsChanged',
  {
    readonly productId: string;
    readonly channel: string;
    readonly paymentMethods: readonly string[];
    readonly delivery: Delivery;
    readonly by: string;
    readonly at: string;
  }
>;
export type SkuReserved = Event<
  'sales.SkuReserved',
  { readonly sku: string; readonly productId: string; readonly at: string }
>;

export type ProductEvent =
  | ProductRegistered
  | ProductRenamed
  | ProductChannelAdded
  | ProductPriceChanged
  | ProductDiscountChanged
  | ProductChannelTermsChanged;

export const productStreamId = (productId: string): string => `product-${productId}`;
export const skuStreamId = (sku: string): string => `sku-${sku}`;
