import { startTestApp, type TestApp } from '../support/app';
import { customer, orderIn, placeOrder, product, stockOf, stockReaches, type OrderBody } from '../support/sales';

/**
 * Oversell (issue 4): stock 5, 50 concurrent single-unit orders from 50 users.
 * Exactly 5 confirmed, 45 rejected with the reason, stock never negative, and
 * a rebuild of the read models gives the same numbers.
 */
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp({ env: { SHIPPING_INTERVAL_MS: '3600000' } });
});
afterAll(async () => {
  await app.stop();
});

it('50 concurrent orders for 5 units: 5 confirmed, 45 rejected with the reason; available 0; a rebuild agrees', async () => {
  const p = await product(app, 5);
  const customers = await Promise.all(Array.from({ length: 50 }, () => customer(app)));
  const placed = await Promise.all(customers.map((c) => placeOrder(app, c, [{ productId: p, quantity: 1 }])));
  const orders: OrderBody[] = [];
  for (const [i, o] of placed.entries()) orders.push(await orderIn(app, customers[i]!, o.orderId));

  const confirmed = orders.filter((o) => o.status === 'confirmed');
  const rejected = orders.filter((o) => o.status === 'rejected');
  expect(confirmed).toHaveLength(5);
  expect(rejected).toHaveLength(45);
  for (const o of rejected) {
    expect(o.reason).toMatch(/^not enough stock of SKU-[\w-]+: 1 asked, 0 available$/);
    expect(o.timeline.find((t) => t.step === 'rejected')?.detail).toEqual({
      productId: p,
      sku: expect.any(String),
      requested: 1,
      available: 0,
    });
    expect(o.payment).toBe('none'); // never charged
  }
  await stockReaches(app, p, { onHand: 5, reserved: 5, available: 0, shipped: 0 });

  // Never negative: fold the inventory stream event by event.
  const inventory = await app.platform.store.readStream(`inventory-${p}`);
  let available = 0;
  for (const e of inventory) {
    if (e.type === 'sales.StockReceived') available += Number(e.data.quantity);
    if (e.type === 'sales.StockReserved') available -= Number(e.data.quantity);
    if (e.type === 'sales.StockReleased') available += Number(e.data.quantity);
    expect(available).toBeGreaterThanOrEqual(0);
  }
  expect(inventory.filter((e) => e.type === 'sales.StockReserved')).toHaveLength(5);
  expect(inventory.filter((e) => e.type === 'sales.StockReservationRejected')).toHaveLength(45);

  // The read models rebuilt from the events give the same numbers.
  const before = await stockOf(app, p);
  const summary = async () =>
    (
      await app.db.pool.query<{ status: string; n: number }>(
        `SELECT status, count(*)::int AS n FROM sales_orders GROUP BY status ORDER BY status`,
      )
    ).rows;
  const ordersBefore = await summary();
  await app.platform.projections.rebuild('sales-catalogue', 'test:oversell');
  await app.platform.projections.rebuild('sales-orders', 'test:oversell');
  expect(await stockOf(app, p)).toEqual(before);
  expect(await summary()).toEqual(ordersBefore);
  expect(ordersBefore).toEqual(
    expect.arrayContaining([
      { status: 'confirmed', n: 5 },
      { status: 'rejected', n: 45 },
    ]),
  );
});
