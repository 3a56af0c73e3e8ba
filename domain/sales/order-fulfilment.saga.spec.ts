import type { OrderLine } from './order.events';
import {
  emptyHistory,
  evolveSaga,
  react,
  type SagaCommand,
  type SagaHistory,
  type SagaTrigger,
} from './order-fulfilment.saga';

/**
 * Given/when/then for the saga: given the triggers it already handled, when
 * this event arrives, then it sends exactly these commands. Every path,
 * including each compensation.
 */
const orderId = '88888888-8888-4888-8888-888888888888';
const [p1, p2] = ['aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'];
const options = { paymentTimeoutMs: 30_000 };
const at = '2026-11-23T10:00:00.000Z';
let seq = 0;
const t = (type: SagaTrigger['type'], data: Record<string, unknown>): SagaTrigger =>
  ({
    id: `e${++seq}`,
    type,
    data: { orderId, at, ...data },
    streamId: 's',
    position: seq,
    at,
  }) as unknown as SagaTrigger;

const line = (productId: string, sku: string, quantity: number): OrderLine => ({
  productId,
  sku,
  name: sku,
  unit: 'piece',
  quantity,
  listPriceCents: 100,
  discountPct: 0,
  unitPriceCents: 100,
  lineTotalCents: 100 * quantity,
  deliveryDays: 1,
});
const placed = () =>
  t('sales.OrderPlaced', {
    customerId: 'c',
    channel: 'web',
    paymentMethod: 'card',
    items: [line(p1, 'A', 2), line(p2, 'B', 1)],
    currency: 'EUR',
    totalCents: 300,
    expectedDelivery: '2026-11-24',
  });
const reserved = (productId: string, quantity: number) => t('sales.StockReserved', { productId, quantity });
const rejected = (productId: string, requested: number, available: number) =>
  t('sales.StockReservationRejected', { productId, requested, available });
const captured = (ref = 'ch1') => t('sales.PaymentCaptured', { providerRef: ref, late: false });

/** Folds the triggers through react, as the runner records them. */
function given(triggers: SagaTrigger[]): SagaHistory {
  return triggers.reduce((h, trigger) => {
    const { state, commands } = react(h, trigger, options);
    return evolveSaga(h, {
      type: 'sales.SagaStepRecorded',
      data: {
        orderId,
        trigger: { id: trigger.id, type: trigger.type, streamId: 's', position: trigger.position, at },
        commands,
        state,
      },
    });
  }, emptyHistory);
}
const when = (history: SagaHistory, trigger: SagaTrigger): SagaCommand[] => react(history, trigger, options).commands;

describe('order-fulfilment saga', () => {
  it('an order placed: reserve stock for each line', () => {
    expect(when(given([]), placed())).toEqual([
      { kind: 'ReserveStock', productId: p1, quantity: 2 },
      { kind: 'ReserveStock', productId: p2, quantity: 1 },
    ]);
  });

  it('all lines reserved: mark the order reserved, request payment, then set the payment deadline', () => {
    const h = given([placed(), reserved(p1, 2)]);
    expect(when(h, reserved(p2, 1))).toEqual([
      { kind: 'MarkOrderReserved' },
      { kind: 'RequestPayment', amountCents: 300, currency: 'EUR', method: 'card' },
      { kind: 'ScheduleDeadline', dueAt: '2026-11-23T10:00:30.000Z' },
    ]);
  });

  it('one line reserved: wait for the others', () => {
    expect(when(given([placed()]), reserved(p1, 2))).toEqual([]);
  });

  it('a line short: release the lines already reserved and reject with which product, how many asked and available', () => {
    const h = given([placed(), reserved(p1, 2)]);
    expect(when(h, rejected(p2, 1, 0))).toEqual([
      { kind: 'ReleaseStock', productId: p1 },
      {
        kind: 'RejectOrder',
        reason: 'not enough stock of B: 1 asked, 0 available',
        detail: { productId: p2, sku: 'B', requested: 1, available: 0 },
      },
    ]);
  });

  it('a line reserved after the order was rejected is released', () => {
    const h = given([placed(), rejected(p1, 2, 1)]);
    expect(h.state.status).toBe('rejected');
    expect(when(h, reserved(p2, 1))).toEqual([{ kind: 'ReleaseStock', productId: p2 }]);
  });

  it('payment captured: cancel the deadline, confirm', () => {
    const h = given([placed(), reserved(p1, 2), reserved(p2, 1)]);
    expect(when(h, captured('ch9'))).toEqual([{ kind: 'CancelDeadline' }, { kind: 'ConfirmOrder', paymentRef: 'ch9' }]);
  });

  it('payment declined: release everything, cancel with the reason', () => {
    const h = given([placed(), reserved(p1, 2), reserved(p2, 1)]);
    expect(when(h, t('sales.PaymentDeclined', { reason: 'insufficient funds' }))).toEqual([
      { kind: 'CancelDeadline' },
      { kind: 'ReleaseStock', productId: p1 },
      { kind: 'ReleaseStock', productId: p2 },
      { kind: 'CancelOrder', reason: 'payment declined: insufficient funds', detail: { payment: 'declined' } },
    ]);
  });

  it('deadline first: release and cancel; a late capture is refunded exactly once', () => {
    const h = given([placed(), reserved(p1, 2), reserved(p2, 1)]);
    const deadline = t('sales.PaymentDeadlineExpired', { dueAt: '2026-11-23T10:00:30.000Z' });
    expect(when(h, deadline)).toEqual([
      { kind: 'ReleaseStock', productId: p1 },
      { kind: 'ReleaseStock', productId: p2 },
      {
        kind: 'CancelOrder',
        reason: 'payment not confirmed by 2026-11-23T10:00:30.000Z',
        detail: { payment: 'timed out', dueAt: '2026-11-23T10:00:30.000Z' },
      },
    ]);
    const released = given([
      placed(),
      reserved(p1, 2),
      reserved(p2, 1),
      deadline,
      t('sales.StockReleased', { productId: p1, quantity: 2 }),
      t('sales.StockReleased', { productId: p2, quantity: 1 }),
    ]);
    const late = captured();
    expect(when(released, late)).toEqual([
      {
        kind: 'RefundPayment',
        reason: 'captured after the order was cancelled: payment not confirmed by 2026-11-23T10:00:30.000Z',
      },
    ]);
    const afterRefund = given([placed(), reserved(p1, 2), reserved(p2, 1), deadline, late]);
    expect(when(afterRefund, captured())).toEqual([]); // the webhook again, as a new event: nothing more
    expect(when(afterRefund, t('sales.PaymentDeclined', { reason: 'x' }))).toEqual([]);
  });

  it('the same trigger twice (a replay or a duplicate delivery) sends nothing the second time', () => {
    const first = placed();
    expect(when(given([first]), first)).toEqual([]);
    const r = reserved(p1, 2);
    expect(when(given([first, r]), r)).toEqual([]);
  });

  it('customer cancels a confirmed order: release, refund, cancel', () => {
    const h = given([placed(), reserved(p1, 2), reserved(p2, 1), captured()]);
    expect(when(h, t('sales.OrderCancellationRequested', { by: 'user:c', reason: 'changed my mind' }))).toEqual([
      { kind: 'ReleaseStock', productId: p1 },
      { kind: 'ReleaseStock', productId: p2 },
      { kind: 'RefundPayment', reason: 'changed my mind' },
      { kind: 'CancelOrder', reason: 'changed my mind', detail: { by: 'user:c' } },
    ]);
  });

  it('customer cancels while reserving: release what is reserved; a line reserved later is released too; a later capture is refunded', () => {
    const cancel = t('sales.OrderCancellationRequested', { by: 'user:c', reason: 'r' });
    const h = given([placed(), reserved(p1, 2)]);
    expect(when(h, cancel)).toEqual([
      { kind: 'ReleaseStock', productId: p1 },
      { kind: 'CancelOrder', reason: 'r', detail: { by: 'user:c' } },
    ]);
    const after = given([placed(), reserved(p1, 2), cancel]);
    expect(when(after, reserved(p2, 1))).toEqual([{ kind: 'ReleaseStock', productId: p2 }]);
  });

  it('customer cancels while awaiting payment: the deadline is cancelled too; the capture that follows is refunded', () => {
    const cancel = t('sales.OrderCancellationRequested', { by: 'user:c', reason: 'r' });
    const h = given([placed(), reserved(p1, 2), reserved(p2, 1)]);
    expect(when(h, cancel)[0]).toEqual({ kind: 'CancelDeadline' });
    expect(when(given([placed(), reserved(p1, 2), reserved(p2, 1), cancel]), captured())).toEqual([
      { kind: 'RefundPayment', reason: 'captured after the order was cancelled: r' },
    ]);
  });

  it('shipment dispatched: move every reserved line to shipped; a cancellation afterwards does nothing', () => {
    const ship = t('sales.ShipmentDispatched', { shipmentId: 's1' });
    const h = given([placed(), reserved(p1, 2), reserved(p2, 1), captured()]);
    expect(when(h, ship)).toEqual([
      { kind: 'ShipStock', productId: p1 },
      { kind: 'ShipStock', productId: p2 },
    ]);
    expect(
      when(
        given([placed(), reserved(p1, 2), reserved(p2, 1), captured(), ship]),
        t('sales.OrderCancellationRequested', { by: 'user:c', reason: 'r' }),
      ),
    ).toEqual([]);
  });

  it('events of an order the saga never saw placed change nothing', () => {
    expect(when(given([]), reserved(p1, 1))).toEqual([]);
    expect(when(given([]), captured())).toEqual([]);
  });
});
