import type { Event } from '../shared/event';

/** Events of an order's payment stream (`payment-<orderId>`). Money in minor units (cents). */

export type PaymentRequested = Event<
  'sales.PaymentRequested',
  {
    readonly orderId: string;
    readonly amountCents: number;
    readonly currency: string;
    readonly method: string;
    readonly idempotencyKey: string;
    readonly at: string;
  }
>;
export type PaymentCaptured = Event<
  'sales.PaymentCaptured',
  { readonly orderId: string; readonly providerRef: string; readonly late: boolean; readonly at: string }
>;
export type PaymentDeclined = Event<
  'sales.PaymentDeclined',
  { readonly orderId: string; readonly reason: string; readonly at: string }
>;
export type PaymentDeadlineExpired = Event<
  'sales.PaymentDeadlineExpired',
  { readonly orderId: string; readonly dueAt: string; readonly at: string }
>;
export type PaymentRefunded = Event<
  'sales.PaymentRefunded',
  {
    readonly orderId: string;
    readonly providerRef: string;
    readonly amountCents: number;
    readonly reason: string;
    readonly at: string;
  }
>;

export type PaymentEvent =
  PaymentRequested | PaymentCaptured | PaymentDeclined | PaymentDeadlineExpired | PaymentRefunded;

export const paymentStreamId = (orderId: string): string => `payment-${orderId}`;
