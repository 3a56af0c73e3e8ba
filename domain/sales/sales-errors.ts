/**
 * Stable error codes of the sales context. Clients match on these strings,
 * so they never change meaning once shipped.
 */
export const SalesErrorCode = {
  INVALID_PRODUCT: 'SALES.INVALID_PRODUCT',
  PRODUCT_EXISTS: 'SALES.PRODUCT_EXISTS',
  SKU_TAKEN: 'SALES.SKU_TAKEN',
  PRODUCT_NOT_FOUND: 'SALES.PRODUCT_NOT_FOUND',
  INVALID_STOCK_RECEIPT: 'SALES.INVALID_STOCK_RECEIPT',
  INVALID_ORDER: 'SALES.INVALID_ORDER',
  ORDER_EXISTS: 'SALES.ORDER_EXISTS',
  ORDER_NOT_FOUND: 'SALES.ORDER_NOT_FOUND',
  /** Cancelling an order that has already shipped. */
  ORDER_SHIPPED: 'SALES.ORDER_SHIPPED',
  /** Cancelling an order that was already rejected or cancelled. */
  ORDER_CLOSED: 'SALES.ORDER_CLOSED',
  INVALID_QUERY: 'SALES.INVALID_QUERY',
  SAGA_NOT_FOUND: 'SALES.SAGA_NOT_FOUND',
  /** Retrying or skipping the saga of an order that is not parked. */
  SAGA_NOT_PARKED: 'SALES.SAGA_NOT_PARKED',
  PAYMENT_NOT_FOUND: 'SALES.PAYMENT_NOT_FOUND',
} as const;

export type SalesErrorCode = (typeof SalesErrorCode)[keyof typeof SalesErrorCode];
