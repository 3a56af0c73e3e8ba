import { randomUUID } from 'node:crypto';
import { SAGA_TRIGGER_TYPES } from '../../domain/sales/order-fulfilment.saga';
import { SalesRuntime } from '../../src/sales/sales.runtime';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { customer, orderIn, placeOrder, product, stockReaches, webChannel, CONFIRMED_TIMELINE } from '../support/sales';

/** The sales HTTP contract and the saga's paths (issue 4), as a client sees them, against real PostgreSQL and Redis. */
let app: TestApp;
let admin: { authorization: string };

beforeAll(async () => {
  // A short payment deadline for the timeout path; shipping only when a test asks for a batch.
  app = await startTestApp({ env: { PAYMENT_TIMEOUT_MS: '1500', SHIPPING_INTERVAL_MS: '3600000' } });
  admin = await app.adminAuth();
});
afterAll(async () => {
  await app.stop();
});

describe('catalogue', () => {
  it('registers a product (201 {productId, position}); a duplicate sku, in any case, is 409', async () => {
    const sku = `KB-${randomUUID().slice(0, 8)}`;
    const body = { sku, name: 'Keyboard', unit: 'piece', channels: [webChannel({ price: 49.9, discountPct: 10 })] };
    const r = await app.http('POST', '/products', body, admin);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ productId: expect.any(String), position: expect.any(Number) });
    const again = await app.http('POST', '/products', { ...body, sku: sku.toLowerCase() }, admin);
    expect(again).toMatchObject({ status: 409, body: { code: 'SALES.SKU_TAKEN', errors: [{ field: 'sku' }] } });
  });

  it.each([
    ['sku', { sku: '', name: 'X', unit: 'piece', channels: [webChannel()] }],
    ['channels', { sku: 'OK-1', name: 'X', unit: 'piece', channels: [] }],
    ['channels.0.price', { sku: 'OK-2', name: 'X', unit: 'piece', channels: [webChannel({ price: -1 })] }],
    ['channels.0.price', { sku: 'OK-3', name: 'X', unit: 'piece', channels: [webChannel({ price: 1.234 })] }],
    ['channels.0.currency', { sku: 'OK-4', name: 'X', unit: 'piece', channels: [webChannel({ currency: 'euro' })] }],
    ['channels.0.discountPct', { sku: 'OK-5', name: 'X', unit: 'piece', channels: [webChannel({ discountPct: 120 })] }],
    ['channels.1.channel', { sku: 'OK-6', name: 'X', unit: 'piece', channels: [webChannel(), webChannel()] }],
  ])('invalid %s is 400 naming the field, and nothing is stored', async (field, body) => {
    const r = await app.http('POST', '/products', body, admin);
    expect(r.status).toBe(400);
    expect(r.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });

  it('only admins register products or receive stock', async () => {
    const c = await customer(app);
    expect(
      (await app.http('POST', '/products', { sku: 'NOPE', name: 'X', unit: 'piece', channels: [webChannel()] }, c))
        .status,
    ).toBe(403);
    const id = await product(app, 0);
    expect((await app.http('POST', `/products/${id}/stock-receipts`, { quantity: 1, reference: 'x' }, c)).status).toBe(
      403,
    );
    expect((await app.http('GET', `/products/${id}/stock`, undefined, c)).status).toBe(403);
  });

  it('the channel catalogue shows the price after discount, payment methods, delivery and available stock; PATCH changes it by events', async () => {
    const channel = `shop-${randomUUID().slice(0, 6)}`;
    const id = await product(app, 7, [
      webChannel({
        channel,
        price: 20,
        discountPct: 25,
        paymentMethods: ['card', 'invoice'],
        delivery: { method: 'courier', days: 2 },
      }),
    ]);
    const list = await app.http('GET', `/products?channel=${channel}`, undefined, await customer(app));
    expect(list.status).toBe(200);
    expect(list.body.items).toEqual([
      expect.objectContaining({
        productId: id,
        price: 15,
        listPrice: 20,
        discountPct: 25,
        currency: 'EUR',
        paymentMethods: ['card', 'invoice'],
        unit: 'piece',
        delivery: expect.objectContaining({
          method: 'courier',
          days: 2,
          estimatedDate: expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/),
        }),
        available: 7,
      }),
    ]);
    const patch = await app.http(
      'PATCH',
      `/products/${id}`,
      { name: 'Renamed', channels: [{ channel, price: 30, discountPct: 50 }] },
      admin,
    );
    expect(patch.status).toBe(200);
    const after = await app.http(
      'GET',
      `/products?channel=${channel}&minPosition=${patch.body.position}`,
      undefined,
      admin,
    );
    expect(after.body.items[0]).toMatchObject({ name: 'Renamed', price: 15, listPrice: 30, discountPct: 50 });
    const types = (await app.platform.store.readStream(`product-${id}`)).map((e) => e.type);
    expect(types).toEqual([
      'sales.ProductRegistered',
      'sales.ProductRenamed',
      'sales.ProductPriceChanged',
      'sales.ProductDiscountChanged',
    ]);
    const q = await app.http('GET', `/products?channel=${channel}&q=renam`, undefined, admin);
    expect(q.body.items).toHaveLength(1);
    expect((await app.http('GET', '/products', undefined, admin)).body.errors[0].field).toBe('channel');
  });
});

describe('orders and the saga', () => {
  it('happy path: 202 {orderId, position}, then reserved → paid → confirmed with totals, expected delivery and a timeline', async () => {
    const c = await customer(app);
    const p = await product(app, 10, [webChannel({ price: 12.5, discountPct: 20 })]);
    const placed = await placeOrder(app, c, [{ productId: p, quantity: 3 }]);
    expect(placed).toMatchObject({ orderId: expect.any(String), position: expect.any(Number) });
    const order = await orderIn(app, c, placed.orderId);
    expect(order).toMatchObject({
      status: 'confirmed',
      payment: 'captured',
      items: [{ productId: p, quantity: 3, unitPrice: 10, listPrice: 12.5, discountPct: 20, lineTotal: 30 }],
      totals: { currency: 'EUR', total: 30, quantity: 3 },
      expectedDelivery: expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/),
    });
    expect(order.timeline.map((t: { step: string }) => t.step)).toEqual([...CONFIRMED_TIMELINE]);
    await stockReaches(app, p, { onHand: 10, reserved: 3, available: 7, shipped: 0 });
  });

  it('an order only its owner (or an admin) sees; others get 404', async () => {
    const [a, b] = [await customer(app), await customer(app)];
    const p = await product(app, 5);
    const { orderId } = await placeOrder(app, a, [{ productId: p, quantity: 1 }]);
    await orderIn(app, a, orderId);
    expect((await app.http('GET', `/orders/${orderId}`, undefined, b)).status).toBe(404);
    expect((await app.http('POST', `/orders/${orderId}/cancel`, {}, b)).status).toBe(404);
    expect((await app.http('GET', `/orders/${orderId}`, undefined, admin)).status).toBe(200);
    const mine = await app.http('GET', '/orders', undefined, a);
    expect(mine.body.items.map((o: { orderId: string }) => o.orderId)).toEqual([orderId]);
    expect((await app.http('GET', '/orders', undefined, b)).body.items).toEqual([]);
    const all = await app.http('GET', '/orders?status=confirmed&limit=200', undefined, admin);
    expect(all.body.items.map((o: { orderId: string }) => o.orderId)).toContain(orderId);
    expect((await app.http('GET', '/orders?status=lost', undefined, a)).body.errors[0].field).toBe('status');
    const forged = Buffer.from(JSON.stringify(['x', 'y'])).toString('base64url');
    expect(await app.http('GET', `/orders?after=${forged}`, undefined, a)).toMatchObject({
      status: 400,
      body: { errors: [{ field: 'after' }] },
    });
  });

  it.each([
    ['items', { channel: 'web', paymentMethod: 'card', items: [] }],
    ['items.0.quantity', { channel: 'web', paymentMethod: 'card', items: [{ productId: randomUUID(), quantity: 0 }] }],
    ['items.0.productId', { channel: 'web', paymentMethod: 'card', items: [{ productId: 'nope', quantity: 1 }] }],
    ['channel', { channel: 'Web Shop', paymentMethod: 'card', items: [{ productId: randomUUID(), quantity: 1 }] }],
  ])('invalid %s is 400 naming the field', async (field, body) => {
    const r = await app.http('POST', '/orders', body, await customer(app));
    expect(r.status).toBe(400);
    expect(r.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });

  it('an unknown product is 404, a payment method the channel does not take is 400, and neither stores an order', async () => {
    const c = await customer(app);
    const unknown = await app.http(
      'POST',
      '/orders',
      { channel: 'web', paymentMethod: 'card', items: [{ productId: randomUUID(), quantity: 1 }] },
      c,
    );
    expect(unknown).toMatchObject({
      status: 404,
      body: { code: 'SALES.PRODUCT_NOT_FOUND', errors: [{ field: 'items.0.productId' }] },
    });
    const p = await product(app, 5);
    const method = await app.http(
      'POST',
      '/orders',
      { channel: 'web', paymentMethod: 'bitcoin', items: [{ productId: p, quantity: 1 }] },
      c,
    );
    expect(method).toMatchObject({ status: 400, body: { errors: [{ field: 'paymentMethod' }] } });
    expect((await app.http('GET', '/orders', undefined, c)).body.items).toEqual([]);
  });

  it('a two-line order whose second line is short is rejected with the reason, and the first line is released', async () => {
    const c = await customer(app);
    const [p1, p2] = [await product(app, 10), await product(app, 1)];
    const { orderId } = await placeOrder(app, c, [
      { productId: p1, quantity: 4 },
      { productId: p2, quantity: 3 },
    ]);
    const order = await orderIn(app, c, orderId, ['rejected'], 'stock-released');
    expect(order.reason).toMatch(/not enough stock of SKU-.*: 3 asked, 1 available/);
    const rejected = order.timeline.find((t: { step: string }) => t.step === 'rejected');
    expect(rejected?.detail).toMatchObject({ productId: p2, requested: 3, available: 1 });
    expect(order.timeline.find((t: { step: string }) => t.step === 'stock-released')).toMatchObject({
      compensation: true,
      detail: { productId: p1, quantity: 4 },
    });
    await stockReaches(app, p1, { onHand: 10, reserved: 0, available: 10 });
    await stockReaches(app, p2, { onHand: 1, reserved: 0, available: 1 });
  });

  it('a declined payment releases the stock and cancels the order with the reason', async () => {
    const c = await customer(app);
    const p = await product(app, 3);
    const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 2 }], 'card-declined');
    const order = await orderIn(app, c, orderId, ['cancelled'], 'stock-released');
    expect(order.reason).toMatch(/payment declined/);
    expect(order.payment).toBe('declined');
    await stockReaches(app, p, { reserved: 0, available: 3 });
  });

  it('a payment that never answers is cancelled at the deadline; a late capture is refunded exactly once', async () => {
    const c = await customer(app);
    const p = await product(app, 3);
    const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 1 }], 'card-no-response');
    const order = await orderIn(app, c, orderId, ['cancelled'], 'stock-released');
    expect(order.reason).toMatch(/payment not confirmed by/);
    expect(order.timeline.map((t: { step: string }) => t.step)).toContain('payment-timed-out');
    // The provider answers late, and its webhook is delivered twice.
    expect((await app.http('POST', `/admin/sandbox/payments/${orderId}/capture`, undefined, admin)).status).toBe(200);
    expect((await app.http('POST', `/admin/sandbox/payments/${orderId}/capture`, undefined, admin)).status).toBe(200);
    const refunded = await orderIn(app, c, orderId, ['cancelled'], 'payment-refunded');
    expect(refunded.payment).toBe('refunded');
    // The saga records its step after the refund it sent, so the order's timeline can show the refund first.
    let saga: { status: number; body: any } | undefined;
    await eventually(async () => {
      saga = await app.http('GET', `/admin/sagas/${orderId}`, undefined, admin);
      return saga.body?.state?.payment === 'refunded';
    }, `saga of ${orderId} records the refund`);
    expect(saga!.body.state).toMatchObject({ status: 'cancelled', payment: 'refunded', refundRequested: true });
    const books = await app.http('GET', `/admin/sandbox/payments/${orderId}`, undefined, admin);
    expect(books.body.refunds).toHaveLength(1);
    const payment = await app.platform.store.readStream(`payment-${orderId}`);
    expect(payment.map((e) => e.type)).toEqual([
      'sales.PaymentRequested',
      'sales.PaymentDeadlineExpired',
      'sales.PaymentCaptured',
      'sales.PaymentRefunded',
    ]);
    expect(payment[2]!.data.late).toBe(true);
    await stockReaches(app, p, { reserved: 0, available: 3 });
  });

  it('the customer cancels a confirmed order: refund, release, cancelled; cancelling again is 409', async () => {
    const c = await customer(app);
    const p = await product(app, 4);
    const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 2 }]);
    await orderIn(app, c, orderId, ['confirmed']);
    const cancel = await app.http('POST', `/orders/${orderId}/cancel`, { reason: 'changed my mind' }, c);
    expect(cancel).toMatchObject({ status: 202, body: { orderId } });
    const order = await orderIn(app, c, orderId, ['cancelled'], 'payment-refunded');
    expect(order.reason).toBe('changed my mind');
    await stockReaches(app, p, { onHand: 4, reserved: 0, available: 4 });
    expect(await app.http('POST', `/orders/${orderId}/cancel`, {}, c)).toMatchObject({
      status: 409,
      body: { code: 'SALES.ORDER_CLOSED' },
    });
    const books = await app.http('GET', `/admin/sandbox/payments/${orderId}`, undefined, admin);
    expect(books.body.refunds).toHaveLength(1);
  });

  it('the shipping batch ships confirmed orders once (stock moves from reserved to shipped); a shipped order cannot be cancelled', async () => {
    const c = await customer(app);
    const p = await product(app, 6);
    const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 2 }]);
    await orderIn(app, c, orderId, ['confirmed']);
    const [a, b] = await Promise.all([
      app.http('POST', '/admin/shipping/run', undefined, admin),
      app.http('POST', '/admin/shipping/run', undefined, admin),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const order = await orderIn(app, c, orderId, ['shipped'], 'stock-shipped');
    expect(order.shipmentId).toEqual(expect.any(String));
    expect(
      (await app.platform.store.readStream(`order-${orderId}`)).filter((e) => e.type === 'sales.ShipmentDispatched'),
    ).toHaveLength(1);
    await stockReaches(app, p, { onHand: 4, reserved: 0, available: 4, shipped: 2 });
    expect(await app.http('POST', `/orders/${orderId}/cancel`, {}, c)).toMatchObject({
      status: 409,
      body: { code: 'SALES.ORDER_SHIPPED' },
    });
  });

  it('GET /admin/sagas/:orderId shows the state, the pending deadline and every processed event with what it sent', async () => {
    const c = await customer(app);
    const p = await product(app, 2);
    const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 1 }], 'card-no-response');
    let saga: any;
    await eventually(async () => {
      saga = (await app.http('GET', `/admin/sagas/${orderId}`, undefined, admin)).body;
      return saga.state?.status === 'awaiting_payment';
    }, 'saga awaiting payment');
    expect(saga.pendingDeadline).toMatchObject({ dueAt: expect.any(String), job: { state: 'delayed' } });
    expect(saga.processedEvents.map((e: { type: string }) => e.type)).toEqual([
      'sales.OrderPlaced',
      'sales.StockReserved',
    ]);
    expect(saga.processedEvents[1].commands.map((k: { kind: string }) => k.kind)).toEqual([
      'MarkOrderReserved',
      'RequestPayment',
      'ScheduleDeadline',
    ]);
    expect((await app.http('GET', `/admin/sagas/${orderId}`, undefined, c)).status).toBe(403);
  });

  it('PlaceOrder and CancelOrder also go through POST /commands/:name', async () => {
    const c = await customer(app);
    const p = await product(app, 2);
    const r = await app.http(
      'POST',
      '/commands/PlaceOrder',
      { channel: 'web', paymentMethod: 'card', items: [{ productId: p, quantity: 1 }] },
      c,
    );
    expect(r.status).toBeLessThan(300);
    await orderIn(app, c, r.body.orderId, ['confirmed']);
    const bad = await app.http('POST', '/commands/ReceiveStock', { productId: p, quantity: 5, reference: 'x' }, c);
    expect(bad.status).toBe(403);
  });

  it('an Idempotency-Key makes a retried order one order', async () => {
    const c = await customer(app);
    const p = await product(app, 5);
    const key = { ...c, 'idempotency-key': `order-${randomUUID()}` };
    const body = { channel: 'web', paymentMethod: 'card', items: [{ productId: p, quantity: 1 }] };
    const [a, b] = [await app.http('POST', '/orders', body, key), await app.http('POST', '/orders', body, key)];
    expect(a.body.orderId).toBe(b.body.orderId);
    expect(b.body.duplicate).toBe(true);
    await orderIn(app, c, a.body.orderId, ['confirmed']);
    await stockReaches(app, p, { reserved: 1, available: 4 });
  });
});

describe('observability', () => {
  it('/metrics counts saga steps by trigger and commands by kind, and shows this instance runs the saga', async () => {
    const text = (await app.http('GET', '/metrics')).body as string;
    expect(text).toMatch(/saga_steps_total\{trigger="sales.OrderPlaced"\} [1-9]/);
    expect(text).toMatch(/saga_commands_total\{kind="ReleaseStock"\} [1-9]/);
    expect(text).toMatch(/saga_runner_active 1/);
  });
});

describe('replay', () => {
  it('the saga replayed from the very first event sends nothing twice: no second reservation, payment, refund or shipment', async () => {
    const runtime = app.app.get(SalesRuntime);
    const q = async (sql: string) => (await app.db.pool.query<{ n: string }>(sql)).rows[0]!.n;
    const lastTrigger = async () =>
      Number(
        await q(
          `SELECT COALESCE(max(position), 0) AS n FROM events WHERE type = ANY('{${SAGA_TRIGGER_TYPES.join(',')}}')`,
        ),
      );
    // Everything the tests above started has settled: every order final, the saga past the last trigger.
    await eventually(
      async () =>
        Number(await q("SELECT count(*) AS n FROM sales_orders WHERE status IN ('placed', 'reserved', 'paid')")) ===
          0 && runtime.saga.position >= (await lastTrigger()),
      'sagas settled',
    );
    const before = await q('SELECT count(*) AS n FROM events');
    const target = await lastTrigger();
    await runtime.saga.stop();
    await app.db.pool.query("UPDATE processor_checkpoints SET position = 0 WHERE name = 'order-fulfilment'");
    runtime.saga.start();
    await eventually(() => runtime.saga.position >= target, 'saga replayed to the last trigger');
    expect(await q('SELECT count(*) AS n FROM events')).toBe(before);
  });
});
