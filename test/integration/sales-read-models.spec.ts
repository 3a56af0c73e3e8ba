import type { ChannelTerms, ProductEvent } from '../../domain/sales/product.events';
import type { InventoryEvent } from '../../domain/sales/inventory.events';
import type { OrderEvent, OrderLine } from '../../domain/sales/order.events';
import type { PaymentEvent } from '../../domain/sales/payment.events';
import { catalogueProjection } from '../../projections/catalogue.projection';
import { findProductView, listCatalogue, stockOf } from '../../projections/catalogue.queries';
import { ordersProjection } from '../../projections/orders.projection';
import { findOrderView, listConfirmedOrderIds, listOrders } from '../../projections/orders.queries';
import type { Queryable } from '../../projections/projection';
import { readModel } from '../support/read-model';

/**
 * The catalogue and orders read models, given sales events, then rows and
 * query answers (test/support/read-model.ts). Until now they were covered only
 * through HTTP end to end (test/e2e/sales*.e2e.spec.ts).
 */

/** `db`, with every statement's text kept in `texts`: how many statements a batch took. */
function recording(db: Queryable): { texts: string[]; counting: Queryable } {
  const texts: string[] = [];
  return {
    texts,
    counting: {
      query: (text, values) => {
        texts.push(text);
        return db.query(text, values);
      },
    },
  };
}

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const at = (s: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, s)).toISOString();
const staff = id(99);
const today = new Date('2025-01-01T12:00:00.000Z');

const web: ChannelTerms = {
  channel: 'web',
  priceCents: 1999,
  currency: 'EUR',
  paymentMethods: ['card', 'paypal'],
  discountPct: 10,
  delivery: { method: 'parcel', days: 2 },
};
const shop: ChannelTerms = {
  channel: 'shop',
  priceCents: 2500,
  currency: 'EUR',
  paymentMethods: ['cash'],
  discountPct: 0,
  delivery: { method: 'pickup', days: 0 },
};

/**
 * A Queryable that lets a projection commit (`write`) before every query after the first:
 * what a live runner can do between two statements of a query function. A query function
 * that answers from one snapshot is unaffected; one that reads in two statements returns a
 * row from before the commit with details from after it.
 */
function committingBetweenQueries(db: Queryable, write: string): Queryable {
  let calls = 0;
  return {
    async query(text: string, values?: unknown[]) {
      if (calls++ > 0) await db.query(write);
      return db.query(text, values);
    },
  } as Queryable;
}

describe('catalogue read model', () => {
  const catalogue = readModel(catalogueProjection);

  const product = (n: number, sku: string, name: string, channels: ChannelTerms[] = [web]): ProductEvent => ({
    type: 'sales.ProductRegistered',
    data: { productId: id(n), sku, name, unit: 'piece', channels, by: staff, at: at(n) },
  });

  it('a registration gives the product, a row per channel and empty stock', async () => {
    const s = catalogue.given(product(1, 'SKU-1', 'Lamp', [web, shop]));
    await s.thenRows('products', [
      { product_id: id(1), sku: 'SKU-1', name: 'Lamp', unit: 'piece', registered_at: new Date(at(1)) },
    ]);
    await s.thenRows('product_channels', [
      {
        product_id: id(1),
        channel: 'web',
        price_cents: 1999,
        currency: 'EUR',
        payment_methods: ['card', 'paypal'],
        discount_pct: '10',
        delivery_method: 'parcel',
        delivery_days: 2,
      },
      {
        product_id: id(1),
        channel: 'shop',
        price_cents: 2500,
        currency: 'EUR',
        payment_methods: ['cash'],
        discount_pct: '0',
        delivery_method: 'pickup',
        delivery_days: 0,
      },
    ]);
    await s.thenRows('stock', [{ product_id: id(1), on_hand: 0, reserved: 0, shipped: 0 }]);
    await s.thenRows('stock_movements', []);
  });

  it('renames, price, discount and terms changes land on their channel only; adding a known channel replaces its terms', async () => {
    const s = catalogue.given(
      product(1, 'SKU-1', 'Lamp', [web, shop]),
      { type: 'sales.ProductRenamed', data: { productId: id(1), name: 'Desk lamp', by: staff, at: at(10) } },
      {
        type: 'sales.ProductPriceChanged',
        data: { productId: id(1), channel: 'web', priceCents: 2999, currency: 'USD', by: staff, at: at(11) },
      },
      {
        type: 'sales.ProductDiscountChanged',
        data: { productId: id(1), channel: 'web', discountPct: 25, by: staff, at: at(12) },
      },
      {
        type: 'sales.ProductChannelTermsChanged',
        data: {
          productId: id(1),
          channel: 'shop',
          paymentMethods: ['cash', 'card'],
          delivery: { method: 'courier', days: 1 },
          by: staff,
          at: at(13),
        },
      },
      {
        type: 'sales.ProductChannelAdded',
        data: { productId: id(1), terms: { ...shop, channel: 'b2b', priceCents: 1500 }, by: staff, at: at(14) },
      },
    );
    await s.thenRows('products', [{ name: 'Desk lamp' }], { columns: ['name'] });
    await s.thenRows(
      'product_channels',
      [
        {
          channel: 'web',
          price_cents: 2999,
          currency: 'USD',
          discount_pct: '25',
          payment_methods: ['card', 'paypal'],
          delivery_method: 'parcel',
          delivery_days: 2,
        },
        {
          channel: 'shop',
          price_cents: 2500,
          currency: 'EUR',
          discount_pct: '0',
          payment_methods: ['cash', 'card'],
          delivery_method: 'courier',
          delivery_days: 1,
        },
        {
          channel: 'b2b',
          price_cents: 1500,
          currency: 'EUR',
          discount_pct: '0',
          payment_methods: ['cash'],
          delivery_method: 'pickup',
          delivery_days: 0,
        },
      ],
      {
        columns: [
          'channel',
          'price_cents',
          'currency',
          'discount_pct',
          'payment_methods',
          'delivery_method',
          'delivery_days',
        ],
      },
    );
  });

  it('stock follows receipts, reservations, releases and shipments; each is a movement, a rejected reservation is not', async () => {
    const order = id(500);
    const s = catalogue.given(
      product(1, 'SKU-1', 'Lamp'),
      {
        type: 'sales.StockReceived',
        data: { productId: id(1), quantity: 10, reference: 'PO-1', by: staff, at: at(20) },
      },
      { type: 'sales.StockReserved', data: { productId: id(1), orderId: order, quantity: 3, at: at(21) } },
      {
        type: 'sales.StockReservationRejected',
        data: { productId: id(1), orderId: id(501), requested: 50, available: 7, at: at(22) },
      },
      { type: 'sales.StockReleased', data: { productId: id(1), orderId: order, quantity: 1, at: at(23) } },
      { type: 'sales.StockShipped', data: { productId: id(1), orderId: order, quantity: 2, at: at(24) } },
    );
    const [, received, reserved, , released, shipped] = (await s.recorded()).map((e) => e.position) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    await s.thenRows('stock', [{ product_id: id(1), on_hand: 8, reserved: 0, shipped: 2 }]);
    await s.thenQuery((db) => stockOf(db, id(1)), {
      productId: id(1),
      onHand: 8,
      reserved: 0,
      available: 8,
      shipped: 2,
      movements: [
        { at: new Date(at(24)), kind: 'shipped', quantity: 2, orderId: order, reference: null, position: shipped },
        { at: new Date(at(23)), kind: 'released', quantity: 1, orderId: order, reference: null, position: released },
        { at: new Date(at(21)), kind: 'reserved', quantity: 3, orderId: order, reference: null, position: reserved },
        { at: new Date(at(20)), kind: 'received', quantity: 10, orderId: null, reference: 'PO-1', position: received },
      ],
    });
    await s.thenQuery(async (db) => (await stockOf(db, id(1), 1))?.movements.map((m) => m.kind), ['shipped']);
    await s.thenQuery((db) => stockOf(db, id(2)), undefined);
    await s.thenQuery((db) => stockOf(db, 'nope'), undefined);
  });

  it("a batch's stock movements go in with one statement, the same rows as one per event", async () => {
    const s = catalogue.given(
      product(1, 'SKU-1', 'Lamp'),
      {
        type: 'sales.StockReceived',
        data: { productId: id(1), quantity: 10, reference: 'PO "1", {a}', by: staff, at: at(20) },
      },
      { type: 'sales.StockReserved', data: { productId: id(1), orderId: id(500), quantity: 3, at: at(21) } },
      { type: 'sales.StockShipped', data: { productId: id(1), orderId: id(500), quantity: 3, at: at(22) } },
    );
    const recorded = await s.recorded();
    const { statements, rows } = await s.read(async (db) => {
      const before = await db.query('SELECT * FROM stock_movements ORDER BY position');
      for (const t of ['stock_movements', 'stock', 'product_channels', 'products']) await db.query(`DELETE FROM ${t}`);
      const { texts, counting } = recording(db);
      await catalogueProjection.apply(recorded, counting);
      const after = await db.query('SELECT * FROM stock_movements ORDER BY position');
      expect(after.rows).toEqual(before.rows);
      return { statements: texts.filter((t) => t.includes('stock_movements')).length, rows: after.rowCount };
    });
    expect(rows).toBe(3);
    expect(statements).toBe(1);
  });

  it('reserving more than is on hand breaks the stock CHECK: the event fails rather than showing negative stock', async () => {
    await catalogue
      .given(
        product(1, 'SKU-1', 'Lamp'),
        {
          type: 'sales.StockReceived',
          data: { productId: id(1), quantity: 2, reference: 'PO-1', by: staff, at: at(20) },
        },
        { type: 'sales.StockReserved', data: { productId: id(1), orderId: id(500), quantity: 3, at: at(21) } },
      )
      .thenFails(/violates check constraint/);
  });

  it('listCatalogue: one channel in SKU order, discounted prices, delivery dates, availability, search and pages', async () => {
    const s = catalogue.given(
      product(2, 'SKU-B', 'Blue mug'),
      product(1, 'SKU-A', 'Lamp 50%', [web, shop]),
      product(3, 'SKU-C', 'Chair', [shop]),
      {
        type: 'sales.StockReceived',
        data: { productId: id(1), quantity: 5, reference: 'PO-1', by: staff, at: at(20) },
      },
      { type: 'sales.StockReserved', data: { productId: id(1), orderId: id(500), quantity: 2, at: at(21) } },
    );
    const lamp = {
      productId: id(1),
      sku: 'SKU-A',
      name: 'Lamp 50%',
      unit: 'piece',
      channel: 'web',
      price: 17.99,
      listPrice: 19.99,
      discountPct: 10,
      currency: 'EUR',
      paymentMethods: ['card', 'paypal'],
      delivery: { method: 'parcel', days: 2, estimatedDate: '2025-01-03' },
      available: 3,
    };
    const first = await s.read((db) => listCatalogue(db, { channel: 'web', limit: 1, today }));
    expect(first.items).toEqual([lamp]);
    expect(first.nextAfter).not.toBeNull();
    await s.thenQuery(
      async (db) =>
        (await listCatalogue(db, { channel: 'web', limit: 1, after: first.nextAfter!, today })).items.map((i) => i.sku),
      ['SKU-B'],
    );
    await s.thenQuery(
      async (db) => (await listCatalogue(db, { channel: 'shop', today })).items.map((i) => i.sku),
      ['SKU-A', 'SKU-C'],
    );
    await s.thenQuery(
      async (db) => (await listCatalogue(db, { channel: 'web', q: 'mug', today })).items.map((i) => i.sku),
      ['SKU-B'],
    );
    await s.thenQuery(
      async (db) => (await listCatalogue(db, { channel: 'web', q: 'sku-a', today })).items.map((i) => i.sku),
      ['SKU-A'],
    );
    // A % in the search is matched literally, not as a wildcard.
    await s.thenQuery(
      async (db) => (await listCatalogue(db, { channel: 'web', q: '%', today })).items.map((i) => i.sku),
      ['SKU-A'],
    );
    await expect(s.read((db) => listCatalogue(db, { channel: 'web', after: 'forged', today }))).rejects.toMatchObject({
      code: 'SALES.INVALID_QUERY',
    });
  });

  it('findProductView: the product with each channel it is sold on', async () => {
    const s = catalogue.given(product(1, 'SKU-A', 'Lamp', [web, shop]));
    await s.thenQuery((db) => findProductView(db, id(1), today), {
      productId: id(1),
      sku: 'SKU-A',
      name: 'Lamp',
      unit: 'piece',
      available: 0,
      channels: [
        {
          channel: 'shop',
          price: 25,
          listPrice: 25,
          discountPct: 0,
          currency: 'EUR',
          paymentMethods: ['cash'],
          delivery: { method: 'pickup', days: 0, estimatedDate: '2025-01-01' },
        },
        {
          channel: 'web',
          price: 17.99,
          listPrice: 19.99,
          discountPct: 10,
          currency: 'EUR',
          paymentMethods: ['card', 'paypal'],
          delivery: { method: 'parcel', days: 2, estimatedDate: '2025-01-03' },
        },
      ],
    });
    await s.thenQuery((db) => findProductView(db, id(2), today), undefined);
  });

  it('stockOf answers from one snapshot: a reservation committed meanwhile shows in both the figures and the movements, or in neither', async () => {
    const s = catalogue.given(product(1, 'SKU-1', 'Lamp'), {
      type: 'sales.StockReceived',
      data: { productId: id(1), quantity: 10, reference: 'PO-1', by: staff, at: at(20) },
    });
    const write = `WITH m AS (INSERT INTO stock_movements (position, product_id, kind, quantity, order_id, at)
                     SELECT COALESCE(max(position), 0) + 1, '${id(1)}', 'reserved', 4, '${id(500)}', now() FROM stock_movements RETURNING 1)
                   UPDATE stock SET reserved = reserved + 4 WHERE product_id = '${id(1)}'`;
    const view = await s.read((db) => stockOf(committingBetweenQueries(db, write), id(1)));
    expect(view!.reserved === 0 ? 1 : 2).toBe(view!.movements.length);
  });
});

describe('orders read model', () => {
  const orders = readModel(ordersProjection);
  type Ev = OrderEvent | PaymentEvent | InventoryEvent;

  const line: OrderLine = {
    productId: id(1),
    sku: 'SKU-A',
    name: 'Lamp',
    unit: 'piece',
    quantity: 2,
    listPriceCents: 1999,
    discountPct: 10,
    unitPriceCents: 1799,
    lineTotalCents: 3598,
    deliveryDays: 2,
  };
  const placed = (order: number, customer: number, s: number): Exclude<Ev, { type: 'sales.StockReceived' }> => ({
    type: 'sales.OrderPlaced',
    data: {
      orderId: id(order),
      customerId: id(customer),
      channel: 'web',
      paymentMethod: 'card',
      items: [line],
      currency: 'EUR',
      totalCents: 3598,
      expectedDelivery: '2025-01-03',
      at: at(s),
    },
  });

  it('the happy path: placed, reserved, paid, confirmed, shipped; the timeline has every step in order', async () => {
    const o = id(500);
    const s = orders.given(
      placed(500, 7, 1),
      { type: 'sales.StockReserved', data: { productId: id(1), orderId: o, quantity: 2, at: at(2) } },
      { type: 'sales.OrderReserved', data: { orderId: o, at: at(3) } },
      {
        type: 'sales.PaymentRequested',
        data: { orderId: o, amountCents: 3598, currency: 'EUR', method: 'card', idempotencyKey: 'k', at: at(4) },
      },
      { type: 'sales.PaymentCaptured', data: { orderId: o, providerRef: 'psp-1', late: false, at: at(5) } },
      { type: 'sales.OrderPaid', data: { orderId: o, paymentRef: 'psp-1', at: at(6) } },
      { type: 'sales.OrderConfirmed', data: { orderId: o, at: at(7) } },
      { type: 'sales.StockShipped', data: { productId: id(1), orderId: o, quantity: 2, at: at(8) } },
      { type: 'sales.ShipmentDispatched', data: { orderId: o, shipmentId: id(900), at: at(9) } },
    );
    const positions = (await s.recorded()).map((e) => e.position);
    const step = (i: number, name: string, detail: Record<string, unknown>) => ({
      at: new Date(at(i + 1)),
      step: name,
      compensation: false,
      reason: null,
      detail,
      position: positions[i]!,
    });
    await s.thenQuery((db) => findOrderView(db, o), {
      orderId: o,
      customerId: id(7),
      channel: 'web',
      paymentMethod: 'card',
      status: 'shipped',
      items: [
        {
          productId: id(1),
          sku: 'SKU-A',
          name: 'Lamp',
          unit: 'piece',
          quantity: 2,
          listPrice: 19.99,
          discountPct: 10,
          unitPrice: 17.99,
          lineTotal: 35.98,
        },
      ],
      totals: { currency: 'EUR', total: 35.98, quantity: 2 },
      expectedDelivery: '2025-01-03',
      payment: 'captured',
      cancellationRequested: false,
      reason: null,
      shipmentId: id(900),
      placedAt: new Date(at(1)),
      updatedAt: new Date(at(9)),
      shippedAt: new Date(at(9)),
      timeline: [
        step(0, 'placed', { lines: 1, totalCents: 3598, currency: 'EUR' }),
        step(1, 'stock-reserved', { productId: id(1), quantity: 2 }),
        step(2, 'reserved', {}),
        step(3, 'payment-requested', { amountCents: 3598, currency: 'EUR', method: 'card' }),
        step(4, 'payment-captured', { providerRef: 'psp-1', late: false }),
        step(5, 'paid', { paymentRef: 'psp-1' }),
        step(6, 'confirmed', {}),
        step(7, 'stock-shipped', { productId: id(1), quantity: 2 }),
        step(8, 'shipped', { shipmentId: id(900) }),
      ],
    });
    await s.thenQuery((db) => findOrderView(db, id(501)), undefined);
  });

  it("a batch's timeline rows go in with one statement, the same rows as one per step", async () => {
    const o = id(510);
    const s = orders.given(
      placed(510, 7, 1),
      { type: 'sales.StockReserved', data: { productId: id(1), orderId: o, quantity: 2, at: at(2) } },
      { type: 'sales.OrderReserved', data: { orderId: o, at: at(3) } },
      {
        type: 'sales.OrderRejected',
        data: { orderId: o, reason: 'it\'s "quoted", {braced}', detail: { a: '\\' }, at: at(4) },
      },
    );
    const recorded = await s.recorded();
    const { timelineStatements, rows } = await s.read(async (db) => {
      const before = await db.query('SELECT * FROM sales_order_timeline ORDER BY position');
      await db.query('DELETE FROM sales_order_timeline');
      await db.query('DELETE FROM sales_orders');
      const { texts, counting } = recording(db);
      await ordersProjection.apply(recorded, counting);
      const after = await db.query('SELECT * FROM sales_order_timeline ORDER BY position');
      expect(after.rows).toEqual(before.rows);
      return {
        timelineStatements: texts.filter((t) => t.includes('sales_order_timeline')).length,
        rows: after.rowCount,
      };
    });
    expect(rows).toBe(4);
    expect(timelineStatements).toBe(1);
  });

  it("a batch writes each order's row once: new orders in one INSERT, the others' changes folded into one UPDATE; the same rows as one event at a time", async () => {
    const a = id(520);
    const b = id(521);
    const c = id(522);
    const payment = (o: string, s: number): PaymentEvent => ({
      type: 'sales.PaymentRequested',
      data: { orderId: o, amountCents: 3598, currency: 'EUR', method: 'card', idempotencyKey: `k-${o}`, at: at(s) },
    });
    const s = orders.given(
      // First batch: three orders placed; a's first changes are folded into its new row.
      placed(520, 7, 1),
      placed(521, 8, 2),
      placed(522, 9, 3),
      { type: 'sales.OrderReserved', data: { orderId: a, at: at(4) } },
      payment(a, 5),
      // Second batch: changes only, several per order, in an order the fold must keep.
      { type: 'sales.PaymentCaptured', data: { orderId: a, providerRef: 'psp-a', late: false, at: at(6) } },
      { type: 'sales.OrderReserved', data: { orderId: b, at: at(7) } },
      { type: 'sales.OrderPaid', data: { orderId: a, paymentRef: 'psp-a', at: at(8) } },
      { type: 'sales.OrderRejected', data: { orderId: c, reason: 'out of stock', detail: {}, at: at(9) } },
      { type: 'sales.OrderConfirmed', data: { orderId: a, at: at(10) } },
      {
        type: 'sales.OrderCancellationRequested',
        data: { orderId: b, by: id(8), reason: 'changed my mind', at: at(11) },
      },
      { type: 'sales.OrderCancelled', data: { orderId: b, reason: 'asked by the customer', detail: {}, at: at(12) } },
      { type: 'sales.ShipmentDispatched', data: { orderId: a, shipmentId: id(901), at: at(13) } },
      { type: 'sales.PaymentCaptured', data: { orderId: c, providerRef: 'psp-c', late: true, at: at(14) } },
    );
    const recorded = await s.recorded();
    const rowsOf = (db: Queryable) => db.query('SELECT * FROM sales_orders ORDER BY order_id').then((r) => r.rows);
    const { statements, rows } = await s.read(async (db) => {
      const before = await rowsOf(db);
      await db.query('DELETE FROM sales_order_timeline');
      await db.query('DELETE FROM sales_orders');
      const { texts, counting } = recording(db);
      await ordersProjection.apply(recorded.slice(0, 5), counting);
      await ordersProjection.apply(recorded.slice(5), counting);
      const after = await rowsOf(db);
      expect(after).toEqual(before);
      return { statements: texts.filter((t) => /\bsales_orders\b/.test(t)).length, rows: after };
    });
    // Two batches: one INSERT (the first), one UPDATE (the second).
    expect(statements).toBe(2);
    const row = (o: string) => rows.find((r) => r.order_id === o)!;
    expect(row(a)).toMatchObject({
      status: 'shipped',
      payment_status: 'captured',
      shipment_id: id(901),
      shipped_at: new Date(at(13)),
      updated_at: new Date(at(13)),
      reason: null,
      cancellation_requested: false,
    });
    expect(row(b)).toMatchObject({
      status: 'cancelled',
      payment_status: 'none',
      cancellation_requested: true,
      reason: 'asked by the customer',
      updated_at: new Date(at(12)),
      shipment_id: null,
    });
    // A later change without a reason keeps the one given before.
    expect(row(c)).toMatchObject({
      status: 'rejected',
      payment_status: 'captured',
      reason: 'out of stock',
      updated_at: new Date(at(14)),
    });
  });

  it('a rejection records the reason; releases and refunds are compensations on the timeline', async () => {
    const o = id(500);
    const s = orders.given(
      placed(500, 7, 1),
      { type: 'sales.StockReserved', data: { productId: id(1), orderId: o, quantity: 2, at: at(2) } },
      {
        type: 'sales.StockReservationRejected',
        data: { productId: id(2), orderId: o, requested: 4, available: 1, at: at(3) },
      },
      { type: 'sales.StockReleased', data: { productId: id(1), orderId: o, quantity: 2, at: at(4) } },
      {
        type: 'sales.OrderRejected',
        data: { orderId: o, reason: 'out of stock', detail: { productId: id(2) }, at: at(5) },
      },
    );
    await s.thenRows(
      'sales_orders',
      [{ status: 'rejected', reason: 'out of stock', payment_status: 'none', updated_at: new Date(at(5)) }],
      { columns: ['status', 'reason', 'payment_status', 'updated_at'] },
    );
    await s.thenQuery(
      async (db) => (await findOrderView(db, o))?.timeline.map((t) => [t.step, t.compensation, t.reason]),
      [
        ['placed', false, null],
        ['stock-reserved', false, null],
        ['stock-rejected', false, '4 asked, 1 available'],
        ['stock-released', true, null],
        ['rejected', false, 'out of stock'],
      ],
    );
  });

  it('payments: declined, timed out and refunded set the payment status and explain themselves', async () => {
    const s = orders.given(
      placed(500, 7, 1),
      { type: 'sales.PaymentDeclined', data: { orderId: id(500), reason: 'insufficient funds', at: at(2) } },
      placed(501, 7, 3),
      { type: 'sales.PaymentDeadlineExpired', data: { orderId: id(501), dueAt: at(4), at: at(5) } },
      placed(502, 7, 6),
      { type: 'sales.PaymentCaptured', data: { orderId: id(502), providerRef: 'psp-2', late: true, at: at(7) } },
      {
        type: 'sales.OrderCancelled',
        data: { orderId: id(502), reason: 'paid too late', detail: { late: true }, at: at(8) },
      },
      {
        type: 'sales.PaymentRefunded',
        data: { orderId: id(502), providerRef: 'psp-2', amountCents: 3598, reason: 'paid too late', at: at(9) },
      },
    );
    await s.thenRows(
      'sales_orders',
      [
        { order_id: id(500), status: 'placed', payment_status: 'declined', reason: null },
        { order_id: id(501), status: 'placed', payment_status: 'timed-out', reason: null },
        { order_id: id(502), status: 'cancelled', payment_status: 'refunded', reason: 'paid too late' },
      ],
      { columns: ['order_id', 'status', 'payment_status', 'reason'] },
    );
    await s.thenRows(
      'sales_order_timeline',
      [
        { order_id: id(500), step: 'payment-declined', compensation: false, reason: 'insufficient funds', detail: {} },
        {
          order_id: id(501),
          step: 'payment-timed-out',
          compensation: false,
          reason: `no payment answer by ${at(4)}`,
          detail: { dueAt: at(4) },
        },
        {
          order_id: id(502),
          step: 'payment-captured',
          compensation: false,
          reason: null,
          detail: { providerRef: 'psp-2', late: true },
        },
        { order_id: id(502), step: 'cancelled', compensation: true, reason: 'paid too late', detail: { late: true } },
        {
          order_id: id(502),
          step: 'payment-refunded',
          compensation: true,
          reason: 'paid too late',
          detail: { providerRef: 'psp-2', amountCents: 3598 },
        },
        ...[500, 501, 502].map((n) => ({
          order_id: id(n),
          step: 'placed',
          compensation: false,
          reason: null,
          detail: { lines: 1, totalCents: 3598, currency: 'EUR' },
        })),
      ],
      { columns: ['order_id', 'step', 'compensation', 'reason', 'detail'] },
    );
  });

  it('a cancellation request keeps a confirmed order out of the shipping batch', async () => {
    const s = orders.given(
      placed(500, 7, 1),
      { type: 'sales.OrderConfirmed', data: { orderId: id(500), at: at(2) } },
      placed(501, 7, 3),
      { type: 'sales.OrderConfirmed', data: { orderId: id(501), at: at(4) } },
      {
        type: 'sales.OrderCancellationRequested',
        data: { orderId: id(500), by: id(7), reason: 'changed my mind', at: at(5) },
      },
      placed(502, 7, 6),
    );
    await s.thenQuery((db) => listConfirmedOrderIds(db, 10), [id(501)]);
    await s.thenQuery(
      async (db) => {
        const v = await findOrderView(db, id(500));
        return { status: v?.status, cancellationRequested: v?.cancellationRequested, last: v?.timeline.at(-1)?.reason };
      },
      { status: 'confirmed', cancellationRequested: true, last: 'changed my mind' },
    );
  });

  it('listOrders: a customer’s or everyone’s history, newest first, by status, a page at a time', async () => {
    const s = orders.given(
      placed(500, 7, 1),
      placed(501, 8, 2),
      placed(502, 7, 3),
      { type: 'sales.OrderConfirmed', data: { orderId: id(502), at: at(4) } },
      placed(503, 7, 5),
    );
    const ids = (p: { items: readonly { orderId: string }[] }) => p.items.map((o) => o.orderId);
    await s.thenQuery(async (db) => ids(await listOrders(db, { customerId: id(7) })), [id(503), id(502), id(500)]);
    await s.thenQuery(
      async (db) => ids(await listOrders(db, { customerId: null })),
      [id(503), id(502), id(501), id(500)],
    );
    await s.thenQuery(async (db) => ids(await listOrders(db, { customerId: null, status: 'confirmed' })), [id(502)]);
    const first = await s.read((db) => listOrders(db, { customerId: id(7), limit: 2 }));
    expect(ids(first)).toEqual([id(503), id(502)]);
    await s.thenQuery(
      async (db) => {
        const next = await listOrders(db, { customerId: id(7), limit: 2, after: first.nextAfter! });
        return { ids: ids(next), nextAfter: next.nextAfter };
      },
      { ids: [id(500)], nextAfter: null },
    );
    await expect(s.read((db) => listOrders(db, { customerId: null, status: 'lost' }))).rejects.toMatchObject({
      code: 'SALES.INVALID_QUERY',
    });
    await expect(s.read((db) => listOrders(db, { customerId: null, limit: 500 }))).rejects.toMatchObject({
      code: 'SALES.INVALID_QUERY',
    });
  });

  it('findOrderView answers from one snapshot: a refund committed meanwhile shows in both the payment and the timeline, or in neither', async () => {
    const o = id(500);
    const s = orders.given(placed(500, 7, 1), {
      type: 'sales.PaymentCaptured',
      data: { orderId: o, providerRef: 'psp-1', late: true, at: at(2) },
    });
    const write = `WITH t AS (INSERT INTO sales_order_timeline (position, order_id, at, step, compensation, reason, detail)
                     SELECT max(position) + 1, '${o}', now(), 'payment-refunded', true, 'late capture', '{}' FROM sales_order_timeline RETURNING 1)
                   UPDATE sales_orders SET payment_status = 'refunded' WHERE order_id = '${o}'`;
    const view = await s.read((db) => findOrderView(committingBetweenQueries(db, write), o));
    expect({
      payment: view!.payment,
      refundOnTimeline: view!.timeline.some((t) => t.step === 'payment-refunded'),
    }).toEqual(
      view!.payment === 'refunded'
        ? { payment: 'refunded', refundOnTimeline: true }
        : { payment: 'captured', refundOnTimeline: false },
    );
  });
});
