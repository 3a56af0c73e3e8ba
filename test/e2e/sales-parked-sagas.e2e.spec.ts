import { SalesRuntime } from '../../src/sales/sales.runtime';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { customer, orderIn, placeOrder, product } from '../support/sales';

/**
 * One order whose saga keeps failing is parked alone (issue 13): the sandbox
 * provider is switched into an outage for that order only, its refund fails
 * SAGA_MAX_ATTEMPTS times, its saga is parked with the error, and every other
 * order keeps flowing; an operator retries (after the outage) or skips, and
 * both are recorded.
 */
let app: TestApp;
let admin: { authorization: string };

beforeAll(async () => {
  app = await startTestApp({ env: { SAGA_MAX_ATTEMPTS: '2', SHIPPING_INTERVAL_MS: '3600000' } });
  admin = await app.adminAuth();
});
afterAll(async () => {
  await app.stop();
});

type Parked = { status: string; eventType: string; error: string; attempts: number; heldEvents: number } | null;
type LogEntry = { action: string; actor: string; eventId: string | null };

async function sagaOf(orderId: string) {
  const r = await app.http('GET', `/admin/sagas/${orderId}`, undefined, admin);
  expect(r.status).toBe(200);
  return r.body as { parked: Parked; operatorLog: LogEntry[]; state: { status: string; payment: string } };
}

async function parkedOn(orderId: string, attemptsLogged = 1) {
  let last: unknown;
  await eventually(
    async () => {
      const s = await sagaOf(orderId);
      last = s;
      return (
        s.parked?.status === 'parked' && s.operatorLog.filter((l) => l.action === 'parked').length >= attemptsLogged
      );
    },
    `saga of ${orderId} parked (last: ${JSON.stringify(last)})`,
  );
  return sagaOf(orderId);
}

/** A confirmed order whose cancellation (a refund at the provider) fails while the outage is on. */
async function confirmedThenCancelledDuringOutage(c: { authorization: string }, p: string) {
  const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 1 }]);
  await orderIn(app, c, orderId, ['confirmed']);
  const on = await app.http('PUT', `/admin/sandbox/payments/${orderId}/outage`, undefined, admin);
  expect(on).toMatchObject({ status: 200, body: { outage: true, wasOn: false } });
  expect((await app.http('POST', `/orders/${orderId}/cancel`, { reason: 'changed my mind' }, c)).status).toBe(202);
  return orderId;
}

describe('a saga that keeps failing is parked alone', () => {
  it('parks the one order with its error, the others keep flowing; retry after the outage completes it, recorded', async () => {
    const c = await customer(app);
    const p = await product(app, 20);
    const orderId = await confirmedThenCancelledDuringOutage(c, p);
    const parked = await parkedOn(orderId);
    expect(parked.parked).toMatchObject({
      status: 'parked',
      eventType: 'sales.OrderCancellationRequested',
      attempts: 2,
      error: expect.stringContaining('outage switched on'),
    });
    // The failing trigger and the later ones of the same order (the stock released before the refund failed) wait.
    expect(parked.parked!.heldEvents).toBeGreaterThanOrEqual(1);
    expect(parked.state).toMatchObject({ status: 'confirmed', payment: 'captured' });
    expect(parked.operatorLog[0]).toMatchObject({ action: 'parked', actor: 'system:processor-runtime' });

    // Every other order flows, and the checkpoint moves past the parked trigger.
    const runtime = app.app.get(SalesRuntime);
    const cancellation = (await app.platform.store.readStream(`order-${orderId}`)).find(
      (e) => e.type === 'sales.OrderCancellationRequested',
    )!;
    const others = await Promise.all([1, 2, 3].map(() => placeOrder(app, c, [{ productId: p, quantity: 1 }])));
    for (const o of others) await orderIn(app, c, o.orderId, ['confirmed']);
    await eventually(() => runtime.saga.position >= cancellation.position, 'checkpoint past the parked trigger');

    expect((await app.http('GET', '/metrics')).body as string).toMatch(/saga_parked_orders [1-9]/);

    // Listed, admin only, paginated.
    const list = await app.http('GET', '/admin/sagas?state=parked&limit=200', undefined, admin);
    expect(list.status).toBe(200);
    expect((list.body.items as { key: string }[]).map((i) => i.key)).toContain(orderId);
    expect((await app.http('GET', '/admin/sagas?state=parked', undefined, c)).status).toBe(403);
    expect((await app.http('POST', `/admin/sagas/${orderId}/retry`, undefined, c)).status).toBe(403);
    expect((await app.http('PUT', `/admin/sandbox/payments/${orderId}/outage`, undefined, c)).status).toBe(403);
    const bad = await app.http('GET', '/admin/sagas?state=stuck&limit=0', undefined, admin);
    expect(bad.status).toBe(400);
    expect((bad.body.errors as { field: string }[]).map((e) => e.field).sort()).toEqual(['limit', 'state']);

    // A retry while the provider is still down parks it again; after the outage, a retry completes the order.
    const retry = await app.http('POST', `/admin/sagas/${orderId}/retry`, undefined, admin);
    expect(retry).toMatchObject({ status: 200, body: { orderId, action: 'retry', parked: { status: 'resuming' } } });
    const again = await parkedOn(orderId, 2);
    expect(again.operatorLog.map((l) => l.action)).toEqual(['parked', 'retry', 'parked']);
    expect((await app.http('DELETE', `/admin/sandbox/payments/${orderId}/outage`, undefined, admin)).body).toEqual({
      orderId,
      outage: false,
      wasOn: true,
    });
    expect((await app.http('POST', `/admin/sagas/${orderId}/retry`, undefined, admin)).status).toBe(200);
    const done = await orderIn(app, c, orderId, ['cancelled'], 'payment-refunded');
    expect(done.status).toBe('cancelled');
    await eventually(async () => (await sagaOf(orderId)).parked === null, 'saga unparked');
    const after = await sagaOf(orderId);
    expect(after.operatorLog.map((l) => l.action)).toEqual(['retry', 'parked', 'retry', 'parked']);
    expect(after.operatorLog.every((l) => l.eventId === cancellation.id)).toBe(true);
    const books = await app.http('GET', `/admin/sandbox/payments/${orderId}`, undefined, admin);
    expect(books.body.refunds).toHaveLength(1);
    // Not parked any more: nothing to retry or skip.
    expect(await app.http('POST', `/admin/sagas/${orderId}/retry`, undefined, admin)).toMatchObject({
      status: 409,
      body: { code: 'SALES.SAGA_NOT_PARKED' },
    });
  });

  it('skip drops the parked trigger (no refund, the order stays confirmed) and the saga runs on, recorded', async () => {
    const c = await customer(app);
    const p = await product(app, 5);
    const orderId = await confirmedThenCancelledDuringOutage(c, p);
    await parkedOn(orderId);
    const skip = await app.http('POST', `/admin/sagas/${orderId}/skip`, undefined, admin);
    expect(skip).toMatchObject({ status: 200, body: { orderId, action: 'skip' } });
    await eventually(async () => (await sagaOf(orderId)).parked === null, 'saga unparked after the skip');
    const s = await sagaOf(orderId);
    expect(s.operatorLog.map((l) => l.action)).toEqual(['skip', 'parked']);
    expect(s.operatorLog[0]!.actor).toMatch(/^user:/);
    expect(s.state).toMatchObject({ status: 'confirmed', payment: 'captured' });
    const books = await app.http('GET', `/admin/sandbox/payments/${orderId}`, undefined, admin);
    expect(books.body.refunds).toHaveLength(0);
    expect((await app.http('POST', `/admin/sagas/${orderId}/skip`, undefined, admin)).status).toBe(409);
    // A saga nobody ever ran is 404; a malformed id is 400.
    expect((await app.http('GET', `/admin/sagas/00000000-0000-4000-8000-000000000000`, undefined, admin)).status).toBe(
      404,
    );
    expect((await app.http('POST', '/admin/sagas/not-a-uuid/skip', undefined, admin)).status).toBe(400);
  });
});
