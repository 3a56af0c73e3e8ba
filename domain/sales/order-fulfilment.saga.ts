import type { Event } from '../shared/event';
import type { InventoryEvent } from './inventory.events';
import type { OrderEvent } from './order.events';
import type { PaymentEvent } from './payment.events';

/**
 * The order-fulfilment saga: a process manager that turns what happened to an
 * order, its stock and its payment into the next commands, and compensates
 * (releases stock, cancels, refunds) when the order cannot complete.
 *
 * Pure: `react(state, trigger)` answers the commands to send and the state
 * after. The runner (src/sales/saga-runner.ts) sends the commands first, with
 * ids derived from the trigger, then records the step on the saga's own
 * stream (`order-saga-<orderId>`); a crash in between resends the same
 * commands, which the deciders answer with nothing new. A trigger already
 * recorded is skipped, so duplicates and replays reserve, charge and refund
 * nothing twice.
 */

/** What the saga listens to: the order's, its stock's and its payment's events. */
type SalesEvent = InventoryEvent | OrderEvent | PaymentEvent;

export const SAGA_TRIGGER_TYPES = [
  'sales.OrderPlaced',
  'sales.StockReserved',
  'sales.StockReservationRejected',
  'sales.StockReleased',
  'sales.StockShipped',
  'sales.PaymentCaptured',
  'sales.PaymentDeclined',
  'sales.PaymentDeadlineExpired',
  'sales.PaymentRefunded',
  'sales.OrderCancellationRequested',
  'sales.ShipmentDispatched',
] as const satisfies readonly SalesEvent['type'][];

export type SagaTriggerType = (typeof SAGA_TRIGGER_TYPES)[number];
export type SagaTriggerEvent = Extract<SalesEvent, { type: SagaTriggerType }>;

/** The event the saga reacts to, with where and when it was recorded. */
export type SagaTrigger = SagaTriggerEvent & {
  readonly id: string;
  readonly streamId: string;
  readonly position: number;
  readonly at: string;
};

export type SagaCommand =
  | { readonly kind: 'ReserveStock'; readonly productId: string; readonly quantity: number }
  | { readonly kind: 'ReleaseStock'; readonly productId: string }
  | { readonly kind: 'ShipStock'; readonly productId: string }
  | { readonly kind: 'MarkOrderReserved' }
  | { readonly kind: 'ScheduleDeadline'; readonly dueAt: string }
  | { readonly kind: 'CancelDeadline' }
  | {
      readonly kind: 'RequestPayment';
      readonly amountCents: number;
      readonly currency: string;
      readonly method: string;
    }
  | { readonly kind: 'ConfirmOrder'; readonly paymentRef: string }
  | { readonly kind: 'RejectOrder'; readonly reason: string; readonly detail: Record<string, unknown> }
  | { readonly kind: 'CancelOrder'; readonly reason: string; readonly detail: Record<string, unknown> }
  | { readonly kind: 'RefundPayment'; readonly reason: string };

export type SagaStatus = 'none' | 'reserving' | 'awaiting_payment' | 'confirmed' | 'shipped' | 'rejected' | 'cancelled';
export type LineState = 'pending' | 'reserved' | 'rejected' | 'released' | 'shipped';
export type SagaPayment = 'none' | 'requested' | 'captured' | 'declined' | 'expired' | 'refunded';

export interface SagaLine {
  readonly sku: string;
  readonly quantity: number;
  readonly state: LineState;
}

export interface SagaState {
  readonly orderId: string;
  readonly status: SagaStatus;
  readonly customerId: string;
  readonly paymentMethod: string;
  readonly amountCents: number;
  readonly currency: string;
  readonly lines: Readonly<Record<string, SagaLine>>;
  readonly payment: SagaPayment;
  /** When the payment deadline fires, while one is pending. */
  readonly deadlineDueAt: string | null;
  readonly refundRequested: boolean;
  /** Why the order was rejected or cancelled. */
  readonly reason: string | null;
}

export const initialSagaState: SagaState = {
  orderId: '',
  status: 'none',
  customerId: '',
  paymentMethod: '',
  amountCents: 0,
  currency: '',
  lines: {},
  payment: 'none',
  deadlineDueAt: null,
  refundRequested: false,
  reason: null,
};

export interface SagaOptions {
  /** How long a payment may stay unanswered before the order is cancelled. */
  readonly paymentTimeoutMs: number;
}

/** One recorded step: the trigger, what the saga sent, and its state after. */
export type SagaStepRecorded = Event<
  'sales.SagaStepRecorded',
  {
    readonly orderId: string;
    readonly trigger: {
      readonly id: string;
      readonly type: SagaTriggerType;
      readonly streamId: string;
      readonly position: number;
      readonly at: string;
    };
    readonly commands: readonly SagaCommand[];
    readonly state: SagaState;
  }
>;

export interface SagaHistory {
  readonly state: SagaState;
  /** Ids of the triggers already handled. */
  readonly processed: ReadonlySet<string>;
}

export const emptyHistory: SagaHistory = { state: initialSagaState, processed: new Set() };

/** The saga's own stream: the steps it took for one order. */
export const sagaStreamId = (orderId: string): string => `order-saga-${orderId}`;

/** Folds the saga's stream. The state is recorded whole at each step, so replaying needs no configuration. */
export function evolveSaga(history: SagaHistory, step: SagaStepRecorded): SagaHistory {
  return { state: step.data.state, processed: new Set([...history.processed, step.data.trigger.id]) };
}

/** The saga's reaction to one event: the commands to send and the state after. Nothing for a trigger already handled. */
export function react(
  history: SagaHistory,
  t: SagaTrigger,
  options: SagaOptions,
): { state: SagaState; commands: SagaCommand[] } {
  const s = history.state;
  if (history.processed.has(t.id)) return { state: s, commands: [] };
  const same = { state: s, commands: [] as SagaCommand[] };
  // Nothing to act on before the order itself was seen.
  if (s.status === 'none' && t.type !== 'sales.OrderPlaced') return same;
  const open = s.status === 'reserving' || s.status === 'awaiting_payment' || s.status === 'confirmed';
  const reservedLines = (lines: SagaState['lines']) =>
    Object.entries(lines)
      .filter(([, l]) => l.state === 'reserved')
      .map(([productId]) => productId);
  const releaseAll = (lines: SagaState['lines']): SagaCommand[] =>
    reservedLines(lines).map((productId) => ({ kind: 'ReleaseStock', productId }));
  const line = (productId: string, to: LineState, from: readonly LineState[]) => {
    const l = s.lines[productId];
    return l && from.includes(l.state) ? { ...s.lines, [productId]: { ...l, state: to } } : undefined;
  };

  switch (t.type) {
    case 'sales.OrderPlaced': {
      if (s.status !== 'none') return same;
      const d = t.data;
      const lines = Object.fromEntries(
        d.items.map((i) => [i.productId, { sku: i.sku, quantity: i.quantity, state: 'pending' as LineState }]),
      );
      return {
        state: {
          ...s,
          orderId: d.orderId,
          status: 'reserving',
          customerId: d.customerId,
          paymentMethod: d.paymentMethod,
          amountCents: d.totalCents,
          currency: d.currency,
          lines,
        },
        commands: d.items.map((i) => ({ kind: 'ReserveStock', productId: i.productId, quantity: i.quantity })),
      };
    }
    case 'sales.StockReserved': {
      const lines = line(t.data.productId, 'reserved', ['pending']);
      if (!lines) return same;
      // Reserved after the order was already given up: give it back.
      if (!open) return { state: { ...s, lines }, commands: [{ kind: 'ReleaseStock', productId: t.data.productId }] };
      if (s.status !== 'reserving' || Object.values(lines).some((l) => l.state !== 'reserved'))
        return { state: { ...s, lines }, commands: [] };
      const dueAt = new Date(Date.parse(t.at) + options.paymentTimeoutMs).toISOString();
      return {
        state: { ...s, lines, status: 'awaiting_payment', payment: 'requested', deadlineDueAt: dueAt },
        // Payment requested before the deadline is set: a deadline that fires must find a payment to expire
        // (set first, a crash in between could let it fire on nothing and be spent).
        commands: [
          { kind: 'MarkOrderReserved' },
          { kind: 'RequestPayment', amountCents: s.amountCents, currency: s.currency, method: s.paymentMethod },
          { kind: 'ScheduleDeadline', dueAt },
        ],
      };
    }
    case 'sales.StockReservationRejected': {
      const lines = line(t.data.productId, 'rejected', ['pending']);
      if (!lines) return same;
      if (s.status !== 'reserving') return { state: { ...s, lines }, commands: [] };
      const { productId, requested, available } = t.data;
      const sku = s.lines[productId]!.sku;
      const reason = `not enough stock of ${sku}: ${requested} asked, ${available} available`;
      return {
        state: { ...s, lines, status: 'rejected', reason },
        commands: [
          ...releaseAll(lines),
          { kind: 'RejectOrder', reason, detail: { productId, sku, requested, available } },
        ],
      };
    }
    case 'sales.StockReleased': {
      const lines = line(t.data.productId, 'released', ['reserved']);
      return lines ? { state: { ...s, lines }, commands: [] } : same;
    }
    case 'sales.StockShipped': {
      const lines = line(t.data.productId, 'shipped', ['reserved']);
      return lines ? { state: { ...s, lines }, commands: [] } : same;
    }
    case 'sales.PaymentCaptured': {
      if (s.payment === 'captured' || s.payment === 'refunded') return same;
      if (s.status === 'awaiting_payment') {
        return {
          state: { ...s, payment: 'captured', status: 'confirmed', deadlineDueAt: null },
          commands: [{ kind: 'CancelDeadline' }, { kind: 'ConfirmOrder', paymentRef: t.data.providerRef }],
        };
      }
      // The money came in after the order was given up (deadline, cancellation): send it back, once.
      if (s.refundRequested) return { state: { ...s, payment: 'captured' }, commands: [] };
      return {
        state: { ...s, payment: 'captured', refundRequested: true },
        commands: [
          { kind: 'RefundPayment', reason: `captured after the order was ${s.status}: ${s.reason ?? ''}`.trim() },
        ],
      };
    }
    case 'sales.PaymentDeclined': {
      if (s.status !== 'awaiting_payment') return { state: { ...s, payment: 'declined' }, commands: [] };
      const reason = `payment declined: ${t.data.reason}`;
      return {
        state: { ...s, payment: 'declined', status: 'cancelled', reason, deadlineDueAt: null },
        commands: [
          { kind: 'CancelDeadline' },
          ...releaseAll(s.lines),
          { kind: 'CancelOrder', reason, detail: { payment: 'declined' } },
        ],
      };
    }
    case 'sales.PaymentDeadlineExpired': {
      if (s.status !== 'awaiting_payment') return same;
      const reason = `payment not confirmed by ${t.data.dueAt}`;
      return {
        state: { ...s, payment: 'expired', status: 'cancelled', reason, deadlineDueAt: null },
        commands: [
          ...releaseAll(s.lines),
          { kind: 'CancelOrder', reason, detail: { payment: 'timed out', dueAt: t.data.dueAt } },
        ],
      };
    }
    case 'sales.PaymentRefunded':
      return { state: { ...s, payment: 'refunded' }, commands: [] };
    case 'sales.OrderCancellationRequested': {
      if (!open) return same;
      const reason = t.data.reason;
      const refund = s.payment === 'captured' && !s.refundRequested;
      return {
        state: { ...s, status: 'cancelled', reason, deadlineDueAt: null, refundRequested: s.refundRequested || refund },
        commands: [
          ...(s.deadlineDueAt ? [{ kind: 'CancelDeadline' } as const] : []),
          ...releaseAll(s.lines),
          ...(refund ? [{ kind: 'RefundPayment', reason } as const] : []),
          { kind: 'CancelOrder', reason, detail: { by: t.data.by } },
        ],
      };
    }
    case 'sales.ShipmentDispatched': {
      if (s.status !== 'confirmed') return same;
      return {
        state: { ...s, status: 'shipped' },
        commands: reservedLines(s.lines).map((productId) => ({ kind: 'ShipStock', productId })),
      };
    }
    default: {
      const never: never = t;
      throw new Error(`unhandled trigger ${JSON.stringify(never)}`);
    }
  }
}

/** The order a trigger belongs to: every trigger type carries it. */
export const orderIdOf = (t: { readonly data: Record<string, unknown> }): string | undefined =>
  typeof t.data.orderId === 'string' ? t.data.orderId : undefined;
