import { given } from '../shared/given-when-then';
import type { PaymentEvent } from './payment.events';
import { paymentDecider } from './payment.decider';

const orderId = '77777777-7777-4777-8777-777777777777';
const now = new Date('2026-11-23T10:00:00.000Z');
const at = now.toISOString();
const requested: PaymentEvent = {
  type: 'sales.PaymentRequested',
  data: { orderId, amountCents: 500, currency: 'EUR', method: 'card', idempotencyKey: 'k', at },
};
const expired: PaymentEvent = { type: 'sales.PaymentDeadlineExpired', data: { orderId, dueAt: at, at } };
const capture = { type: 'RecordCapture' as const, data: { orderId, providerRef: 'ch1', now } };
const refund = { type: 'RecordRefund' as const, data: { orderId, providerRef: 're1', reason: 'late', now } };

describe('payment decider', () => {
  it('is requested once', () => {
    const request = {
      type: 'RequestPayment' as const,
      data: { orderId, amountCents: 500, currency: 'EUR', method: 'card', idempotencyKey: 'k', now },
    };
    given(paymentDecider, []).when(request).then([requested]);
    given(paymentDecider, [requested]).when(request).thenNothing();
  });

  it('a capture before the deadline; the deadline afterwards changes nothing', () => {
    given(paymentDecider, [requested])
      .when(capture)
      .then([{ type: 'sales.PaymentCaptured', data: { orderId, providerRef: 'ch1', late: false, at } }]);
    given(paymentDecider, [
      requested,
      { type: 'sales.PaymentCaptured', data: { orderId, providerRef: 'ch1', late: false, at } },
    ])
      .when({ type: 'ExpirePaymentDeadline', data: { orderId, dueAt: at, now } })
      .thenNothing();
  });

  it('a capture after the deadline is still recorded (the money moved), marked late', () => {
    given(paymentDecider, [requested, expired])
      .when(capture)
      .then([{ type: 'sales.PaymentCaptured', data: { orderId, providerRef: 'ch1', late: true, at } }]);
  });

  it('a capture delivered twice is recorded once; a refund happens at most once, and only of a capture', () => {
    const captured: PaymentEvent = {
      type: 'sales.PaymentCaptured',
      data: { orderId, providerRef: 'ch1', late: true, at },
    };
    given(paymentDecider, [requested, expired, captured]).when(capture).thenNothing();
    given(paymentDecider, [requested, expired, captured])
      .when(refund)
      .then([
        { type: 'sales.PaymentRefunded', data: { orderId, providerRef: 're1', amountCents: 500, reason: 'late', at } },
      ]);
    given(paymentDecider, [
      requested,
      expired,
      captured,
      { type: 'sales.PaymentRefunded', data: { orderId, providerRef: 're1', amountCents: 500, reason: 'late', at } },
    ])
      .when(refund)
      .thenNothing();
    given(paymentDecider, [requested]).when(refund).thenNothing();
  });

  it('a decline after the deadline changes nothing', () => {
    given(paymentDecider, [requested, expired])
      .when({ type: 'RecordDecline', data: { orderId, reason: 'no', now } })
      .thenNothing();
  });
});
