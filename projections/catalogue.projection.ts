import type { RecordedEnvelope } from '../domain/shared/recorded-event';
import type { ChannelTerms, ProductEvent } from '../domain/sales/product.events';
import type { InventoryEvent } from '../domain/sales/inventory.events';
import { sqlProjection, type EventHandlers, type SqlStatement } from './projection';

/**
 * The catalogue read model: products, how each channel sells them, and stock
 * with its movement history (received, reserved, released, shipped). Stock
 * numbers are maintained by the events alone, so a rebuild gives the same
 * figures; the engine applies each event once (checkpoint in the same
 * transaction), which is what makes the increments safe.
 */

type Ev = ProductEvent | InventoryEvent;

const channelUpsert = (productId: string, t: ChannelTerms): SqlStatement => ({
  text: `INSERT INTO product_channels (product_id, channel, price_cents, currency, payment_methods, discount_pct, delivery_method, delivery_days)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (product_id, channel) DO UPDATE SET price_cents = EXCLUDED.price_cents, currency = EXCLUDED.currency,
           payment_methods = EXCLUDED.payment_methods, discount_pct = EXCLUDED.discount_pct,
           delivery_method = EXCLUDED.delivery_method, delivery_days = EXCLUDED.delivery_days`,
  values: [
    productId,
    t.channel,
    t.priceCents,
    t.currency,
    t.paymentMethods,
    t.discountPct,
    t.delivery.method,
    t.delivery.days,
  ],
});

const MOVEMENT_ROW =
  'INSERT INTO stock_movements (position, product_id, kind, quantity, order_id, reference, at) VALUES ($1, $2, $3, $4, $5, $6, $7)';
/** A batch's movements in one statement (every order's reservation adds one: one statement per batch). */
const MOVEMENT_ROWS = `INSERT INTO stock_movements (position, product_id, kind, quantity, order_id, reference, at)
  SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::uuid[], $6::text[], $7::timestamptz[])`;

const movement = (
  e: RecordedEnvelope,
  kind: string,
  productId: string,
  quantity: number,
  orderId: string | null,
  reference: string | null,
  at: string,
): SqlStatement => ({
  text: MOVEMENT_ROW,
  values: [e.position, productId, kind, quantity, orderId, reference, at],
});

/** The row exists from ProductRegistered on; an UPDATE (not an upsert) so the CHECK sees only the real totals. */
const stock = (productId: string, onHand: number, reserved: number, shipped: number): SqlStatement => ({
  text: 'UPDATE stock SET on_hand = on_hand + $2, reserved = reserved + $3, shipped = shipped + $4 WHERE product_id = $1',
  values: [productId, onHand, reserved, shipped],
});

const handlers: EventHandlers<Ev> = {
  'sales.ProductRegistered': (e) => {
    const { data: d } = e;
    return [
      {
        text: 'INSERT INTO products (product_id, sku, name, unit, registered_at) VALUES ($1, $2, $3, $4, $5)',
        values: [d.productId, d.sku, d.name, d.unit, d.at],
      },
      ...d.channels.map((c) => channelUpsert(d.productId, c)),
      {
        text: 'INSERT INTO stock (product_id, on_hand, reserved, shipped) VALUES ($1, 0, 0, 0)',
        values: [d.productId],
      },
    ];
  },
  'sales.ProductRenamed': (e) => {
    const { data: d } = e;
    return { text: 'UPDATE products SET name = $2 WHERE product_id = $1', values: [d.productId, d.name] };
  },
  'sales.ProductChannelAdded': (e) => {
    const { data: d } = e;
    return channelUpsert(d.productId, d.terms);
  },
  'sales.ProductPriceChanged': (e) => {
    const { data: d } = e;
    return {
      text: 'UPDATE product_channels SET price_cents = $3, currency = $4 WHERE product_id = $1 AND channel = $2',
      values: [d.productId, d.channel, d.priceCents, d.currency],
    };
  },
  'sales.ProductDiscountChanged': (e) => {
    const { data: d } = e;
    return {
      text: 'UPDATE product_channels SET discount_pct = $3 WHERE product_id = $1 AND channel = $2',
      values: [d.productId, d.channel, d.discountPct],
    };
  },
  'sales.ProductChannelTermsChanged': (e) => {
    const { data: d } = e;
    return {
      text: 'UPDATE product_channels SET payment_methods = $3, delivery_method = $4, delivery_days = $5 WHERE product_id = $1 AND channel = $2',
      values: [d.productId, d.channel, d.paymentMethods, d.delivery.method, d.delivery.days],
    };
  },
  'sales.StockReceived': (e) => {
    const { data: d } = e;
    return [
      stock(d.productId, d.quantity, 0, 0),
      movement(e, 'received', d.productId, d.quantity, null, d.reference, d.at),
    ];
  },
  'sales.StockReserved': (e) => {
    const { data: d } = e;
    return [
      stock(d.productId, 0, d.quantity, 0),
      movement(e, 'reserved', d.productId, d.quantity, d.orderId, null, d.at),
    ];
  },
  // Not a movement: nothing changed hands. The order's timeline shows it.
  'sales.StockReservationRejected': () => [],
  'sales.StockReleased': (e) => {
    const { data: d } = e;
    return [
      stock(d.productId, 0, -d.quantity, 0),
      movement(e, 'released', d.productId, d.quantity, d.orderId, null, d.at),
    ];
  },
  'sales.StockShipped': (e) => {
    const { data: d } = e;
    return [
      stock(d.productId, -d.quantity, -d.quantity, d.quantity),
      movement(e, 'shipped', d.productId, d.quantity, d.orderId, null, d.at),
    ];
  },
};

export const catalogueProjection = sqlProjection({
  name: 'sales-catalogue',
  version: 1,
  tables: ['products', 'product_channels', 'stock', 'stock_movements'],
  setup: [
    `CREATE TABLE products (
       product_id uuid PRIMARY KEY,
       sku text NOT NULL UNIQUE,
       name text NOT NULL,
       unit text NOT NULL,
       registered_at timestamptz NOT NULL
     )`,
    `CREATE TABLE product_channels (
       product_id uuid NOT NULL,
       channel text NOT NULL,
       price_cents bigint NOT NULL,
       currency text NOT NULL,
       payment_methods text[] NOT NULL,
       discount_pct numeric NOT NULL,
       delivery_method text NOT NULL,
       delivery_days integer NOT NULL,
       PRIMARY KEY (product_id, channel)
     )`,
    // The catalogue of a channel in SKU order (keyset pagination).
    'CREATE INDEX product_channels_channel_idx ON product_channels (channel, product_id)',
    `CREATE TABLE stock (
       product_id uuid PRIMARY KEY,
       on_hand bigint NOT NULL,
       reserved bigint NOT NULL,
       shipped bigint NOT NULL,
       CHECK (reserved >= 0 AND on_hand >= reserved)
     )`,
    `CREATE TABLE stock_movements (
       position bigint PRIMARY KEY,
       product_id uuid NOT NULL,
       kind text NOT NULL CHECK (kind IN ('received', 'reserved', 'released', 'shipped')),
       quantity bigint NOT NULL,
       order_id uuid,
       reference text,
       at timestamptz NOT NULL
     )`,
    'CREATE INDEX stock_movements_product_idx ON stock_movements (product_id, position DESC)',
  ],
  handlers,
  gather: [{ text: MOVEMENT_ROW, many: MOVEMENT_ROWS }],
});
