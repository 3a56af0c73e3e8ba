import type { Decider } from '../shared/event';
import type { PaymentEvent } from './payment.events';
import { unreachable } from '../shared/unreachable';

/**
 * The payment of one order (stream `payment-<orderId>`), as this platform
 * knows it: requested once, then captured, declined or timed out; a capture
 * that arrives after the deadline is still recorded (the money moved) so the
 * saga can refund it; a refund happens at most once.
 */

export type RequestPayment = {
  readonly type: 'RequestPayment';
  readonly data: {
    readonly orderId: string;
    readonly amountCents: number;
    readonly currency: string;
    readonly method: string;
    readonly idempotencyKey: string;
    readonly now: Date;
  };
};
export type RecordCapture = {
  readonly type: 'RecordCapture';
  readonly data: { readonly orderId: string; readonly providerRef: string; readonly now: Date };
};
export type RecordDecline = {
  readonly type: 'RecordDecline';
  readonly data: { readonly orderId: string; readonly reason: string; readonly now: Date };
};
export type ExpirePaymentDeadline = {
  readonly type: 'ExpirePaymentDeadline';
  readonly data: { readonly orderId: string; readonly dueAt: string; readonly now: Date };
};
export type RecordRefund = {
  readonly type: 'RecordRefund';
  readonly data: {
    readonly orderId: string;
    readonly providerRef: string;
    readonly reason: string;
    readonly now: Date;
  };
};
export type PaymentCommand = RequestPayment | RecordCapture | RecordDecline | ExpirePaymentDeadline | RecordRefund;

export type PaymentStatus = 'none' | 'requested' | 'captured' | 'declined' | 'expired' | 'refunded';

export interface PaymentState {
  readonly status: PaymentStatus;
  readonly amountCents: number;
  readonly currency: string;
  readonly method: string;
  readonly idempotencyKey: string;
  readonly providerRef: string;
  /** True once the deadline passed before an answer, even if a capture came later. */
  readonly expired: boolean;
}

export const initialPaymentState: PaymentState = {
  status: 'none',
  amountCents: 0,
  currency: '',
  method: '',
  idempotencyKey: '',
  providerRef: '',
  expired: false,
};

export function evolvePayment(state: PaymentState, event: PaymentEvent): PaymentState {
  switch (event.type) {
    case 'sales.PaymentRequested': {
      const { amountCents, currency, method, idempotencyKey } = event.data;
      return { ...state, status: 'requested', amountCents, currency, method, idempotencyKey };
    }
    case 'sales.PaymentCaptured':
      return { ...state, status: 'captured', providerRef: event.data.providerRef };
    case 'sales.PaymentDeclined':
      return { ...state, status: 'declined' };
    case 'sales.PaymentDeadlineExpired':
      return { ...state, status: 'expired', expired: true };
    case 'sales.PaymentRefunded':
      return { ...state, status: 'refunded' };
    default:
      return unreachable(event, 'event');
  }
}

export function decidePayment(command: PaymentCommand, state: PaymentState): PaymentEvent[] {
  switch (command.type) {
    case 'RequestPayment': {
      if (state.status !== 'none') return [];
      const { orderId, amountCents, currency, method, idempotencyKey, now } = command.data;
      return [
        {
          type: 'sales.PaymentRequested',
          data: { orderId, amountCents, currency, method, idempotencyKey, at: now.toISOString() },
        },
      ];
    }
    case 'RecordCapture': {
      if (state.status !== 'requested' && state.status !== 'expired') return [];
      const { orderId, providerRef, now } = command.data;
      return [
        { type: 'sales.PaymentCaptured', data: { orderId, providerRef, late: state.expired, at: now.toISOString() } },
      ];
    }
    case 'RecordDecline': {
      if (state.status !== 'requested') return [];
      const { orderId, reason, now } = command.data;
      return [{ type: 'sales.PaymentDeclined', data: { orderId, reason, at: now.toISOString() } }];
    }
    case 'ExpirePaymentDeadline': {
      if (state.status !== 'requested') return [];
      const { orderId, dueAt, now } = command.data;
      return [{ type: 'sales.PaymentDeadlineExpired', data: { orderId, dueAt, at: now.toISOString() } }];
    }
    case 'RecordRefund': {
      if (state.status !== 'captured') return [];
      const { orderId, providerRef, reason, now } = command.data;
      return [
        {
          type: 'sales.PaymentRefunded',
          data: { orderId, providerRef, amountCents: state.amountCents, reason, at: now.toISOString() },
        },
      ];
    }
    default:
      return unreachable(command, 'command');
  }
}

export const paymentDecider: Decider<PaymentCommand, PaymentEvent, PaymentState> = {
  initialState: initialPaymentState,
  evolve: evolvePayment,
  decide: decidePayment,
};
