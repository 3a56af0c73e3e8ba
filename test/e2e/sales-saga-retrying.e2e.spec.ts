import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { customer, orderIn, placeOrder, product } from '../support/sales';

/**
 * While one order's saga is being retried (its refund fails at the sandbox provider, which is in
 * an outage for that order only), every other order keeps flowing: the runner holds back that
 * order alone, not the orders behind it (issue 13). SAGA_MAX_ATTEMPTS is high, so the order is
 * still being retried, not parked, while the others complete; once the outage ends, its next
 * attempt completes it with no operator. (Parking after the last attempt, and the operator's retry
 * and skip: sales-parked-sagas.e2e.spec.ts.)
 */
let app: TestApp;
let admin: { authorization: string };

beforeAll(async () => {
  // 100 attempts: about 50, 100, ... 800 ms, then 1 s each (POISON_BACKOFF), over 90 s in all.
  app = await startTestApp({ env: { SAGA_MAX_ATTEMPTS: '100', SHIPPING_INTERVAL_MS: '3600000' } });
  admin = await app.adminAuth();
});
afterAll(async () => {
  await app.stop();
});

const sagaFailures = async () =>
  Number(/^saga_failures_total (\d+)/m.exec((await app.http('GET', '/metrics')).body as string)?.[1] ?? 0);

it('the other orders complete while one order’s failing step is retried; that order completes once the outage ends', async () => {
  const c = await customer(app);
  const p = await product(app, 20);
  const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 1 }]);
  await orderIn(app, c, orderId, ['confirmed']);
  const failuresBefore = await sagaFailures();
  const on = await app.http('PUT', `/admin/sandbox/payments/${orderId}/outage`, undefined, admin);
  expect(on).toMatchObject({ status: 200, body: { outage: true } });
  expect((await app.http('POST', `/orders/${orderId}/cancel`, { reason: 'changed my mind' }, c)).status).toBe(202);
  await eventually(async () => (await sagaFailures()) >= failuresBefore + 2, 'the refund failed twice: being retried');

  // Placed after the failing trigger, they pass it.
  const others = await Promise.all([1, 2, 3].map(() => placeOrder(app, c, [{ productId: p, quantity: 1 }])));
  for (const o of others) await orderIn(app, c, o.orderId, ['confirmed']);

  // ...while that order is still being retried: neither parked nor done.
  const saga = await app.http('GET', `/admin/sagas/${orderId}`, undefined, admin);
  expect(saga.status).toBe(200);
  expect(saga.body).toMatchObject({ parked: null, state: { status: 'confirmed', payment: 'captured' } });
  expect(await sagaFailures()).toBeGreaterThanOrEqual(failuresBefore + 2);

  expect((await app.http('DELETE', `/admin/sandbox/payments/${orderId}/outage`, undefined, admin)).status).toBe(200);
  const done = await orderIn(app, c, orderId, ['cancelled'], 'payment-refunded');
  expect(done.status).toBe('cancelled');
  const books = await app.http('GET', `/admin/sandbox/payments/${orderId}`, undefined, admin);
  expect(books.body.refunds).toHaveLength(1);
  const after = await app.http('GET', `/admin/sagas/${orderId}`, undefined, admin);
  expect(after.body).toMatchObject({ parked: null, operatorLog: [] });
});
