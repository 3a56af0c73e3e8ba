import type { RecordedEnvelope } from '../domain/shared/recorded-event';
import type { InventoryEvent } from '../domain/sales/inventory.events';
import type { OrderEvent } from '../domain/sales/order.events';
import type { PaymentEvent } from '../domain/sales/payment.events';
import { sqlProjection, type EventHandlers, type SqlStatement } from './projection';

/**
 * The orders read model: one row per order (status, items, totals, expected
 * delivery) and its timeline: every step and every compensation the saga
 * caused, with time and reason, from the order's, its stock's and its
 * payment's events. Timeline rows are keyed by event position.
 */

type Ev = OrderEvent | PaymentEvent | Exclude<InventoryEvent, { type: 'sales.StockReceived' }>;

const TIMELINE_ROW =
  'INSERT INTO sales_order_timeline (position, order_id, at, step, compensation, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)';
/** A batch's timeline rows in one statement (an order's saga adds 7 in a few transactions: one statement per batch, not per step). */
const TIMELINE_ROWS = `INSERT INTO sales_order_timeline (position, order_id, at, step, compensation, reason, detail)
  SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::boolean[], $6::text[], $7::jsonb[])`;

const step = (
  e: RecordedEnvelope,
  orderId: string,
  at: string,
  name: string,
  detail: Record<string, unknown>,
  compensation = false,
  reason: string | null = null,
): SqlStatement => ({
  text: TIMELINE_ROW,
  values: [e.position, orderId, at, name, compensation, reason, JSON.stringify(detail)],
});

const status = (orderId: string, to: string, at: string, reason: string | null = null): SqlStatement => ({
  text: 'UPDATE sales_orders SET status = $2, updated_at = $3, reason = COALESCE($4, reason) WHERE order_id = $1',
  values: [orderId, to, at, reason],
});

const payment = (orderId: string, to: string, at: string): SqlStatement => ({
  text: 'UPDATE sales_orders SET payment_status = $2, updated_at = $3 WHERE order_id = $1',
  values: [orderId, to, at],
});

const handlers: EventHandlers<Ev> = {
  'sales.OrderPlaced': (e) => {
    const { data: d } = e;
    return [
      {
        text: `INSERT INTO sales_orders (order_id, customer_id, channel, payment_method, status, items, currency, total_cents, expected_delivery, placed_at, updated_at, payment_status)
               VALUES ($1, $2, $3, $4, 'placed', $5, $6, $7, $8, $9, $9, 'none')`,
        values: [
          d.orderId,
          d.customerId,
          d.channel,
          d.paymentMethod,
          JSON.stringify(d.items),
          d.currency,
          d.totalCents,
          d.expectedDelivery,
          d.at,
        ],
      },
      step(e, d.orderId, d.at, 'placed', { lines: d.items.length, totalCents: d.totalCents, currency: d.currency }),
    ];
  },
  'sales.StockReserved': (e) => {
    const { data: d } = e;
    return step(e, d.orderId, d.at, 'stock-reserved', { productId: d.productId, quantity: d.quantity });
  },
  'sales.StockReservationRejected': (e) => {
    const { data: d } = e;
    return step(
      e,
      d.orderId,
      d.at,
      'stock-rejected',
      { productId: d.productId, requested: d.requested, available: d.available },
      false,
      `${d.requested} asked, ${d.available} available`,
    );
  },
  'sales.StockReleased': (e) => {
    const { data: d } = e;
    return step(e, d.orderId, d.at, 'stock-released', { productId: d.productId, quantity: d.quantity }, true);
  },
  'sales.StockShipped': (e) => {
    const { data: d } = e;
    return step(e, d.orderId, d.at, 'stock-shipped', { productId: d.productId, quantity: d.quantity });
  },
  'sales.OrderReserved': (e) => {
    const { data: d } = e;
    return [status(d.orderId, 'reserved', d.at), step(e, d.orderId, d.at, 'reserved', {})];
  },
  'sales.PaymentRequested': (e) => {
    const { data: d } = e;
    return [
      payment(d.orderId, 'requested', d.at),
      step(e, d.orderId, d.at, 'payment-requested', {
        amountCents: d.amountCents,
        currency: d.currency,
        method: d.method,
      }),
    ];
  },
  'sales.PaymentCaptured': (e) => {
    const { data: d } = e;
    return [
      payment(d.orderId, 'captured', d.at),
      step(e, d.orderId, d.at, 'payment-captured', { providerRef: d.providerRef, late: d.late }),
    ];
  },
  'sales.PaymentDeclined': (e) => {
    const { data: d } = e;
    return [payment(d.orderId, 'declined', d.at), step(e, d.orderId, d.at, 'payment-declined', {}, false, d.reason)];
  },
  'sales.PaymentDeadlineExpired': (e) => {
    const { data: d } = e;
    return [
      payment(d.orderId, 'timed-out', d.at),
      step(e, d.orderId, d.at, 'payment-timed-out', { dueAt: d.dueAt }, false, `no payment answer by ${d.dueAt}`),
    ];
  },
  'sales.PaymentRefunded': (e) => {
    const { data: d } = e;
    return [
      payment(d.orderId, 'refunded', d.at),
      step(
        e,
        d.orderId,
        d.at,
        'payment-refunded',
        { providerRef: d.providerRef, amountCents: d.amountCents },
        true,
        d.reason,
      ),
    ];
  },
  'sales.OrderPaid': (e) => {
    const { data: d } = e;
    return [status(d.orderId, 'paid', d.at), step(e, d.orderId, d.at, 'paid', { paymentRef: d.paymentRef })];
  },
  'sales.OrderConfirmed': (e) => {
    const { data: d } = e;
    return [status(d.orderId, 'confirmed', d.at), step(e, d.orderId, d.at, 'confirmed', {})];
  },
  'sales.OrderRejected': (e) => {
    const { data: d } = e;
    return [
      status(d.orderId, 'rejected', d.at, d.reason),
      step(e, d.orderId, d.at, 'rejected', d.detail, false, d.reason),
    ];
  },
  'sales.OrderCancellationRequested': (e) => {
    const { data: d } = e;
    return [
      {
        text: 'UPDATE sales_orders SET cancellation_requested = true, updated_at = $2 WHERE order_id = $1',
        values: [d.orderId, d.at],
      },
      step(e, d.orderId, d.at, 'cancellation-requested', { by: d.by }, false, d.reason),
    ];
  },
  'sales.OrderCancelled': (e) => {
    const { data: d } = e;
    return [
      status(d.orderId, 'cancelled', d.at, d.reason),
      step(e, d.orderId, d.at, 'cancelled', d.detail, true, d.reason),
    ];
  },
  'sales.ShipmentDispatched': (e) => {
    const { data: d } = e;
    return [
      {
        text: `UPDATE sales_orders SET status = 'shipped', shipment_id = $2, shipped_at = $3, updated_at = $3 WHERE order_id = $1`,
        values: [d.orderId, d.shipmentId, d.at],
      },
      step(e, d.orderId, d.at, 'shipped', { shipmentId: d.shipmentId }),
    ];
  },
};

export const ordersProjection = sqlProjection({
  name: 'sales-orders',
  version: 1,
  tables: ['sales_orders', 'sales_order_timeline'],
  setup: [
    `CREATE TABLE sales_orders (
       order_id uuid PRIMARY KEY,
       customer_id uuid NOT NULL,
       channel text NOT NULL,
       payment_method text NOT NULL,
       status text NOT NULL CHECK (status IN ('placed', 'reserved', 'paid', 'confirmed', 'shipped', 'rejected', 'cancelled')),
       items jsonb NOT NULL,
       currency text NOT NULL,
       total_cents bigint NOT NULL,
       expected_delivery date NOT NULL,
       placed_at timestamptz NOT NULL,
       updated_at timestamptz NOT NULL,
       reason text,
       payment_status text NOT NULL,
       cancellation_requested boolean NOT NULL DEFAULT false,
       shipment_id uuid,
       shipped_at timestamptz
     )`,
    // A customer's history, newest first; everyone's by status (admin, and the shipping batch's "confirmed").
    'CREATE INDEX sales_orders_customer_idx ON sales_orders (customer_id, placed_at DESC, order_id DESC)',
    'CREATE INDEX sales_orders_status_idx ON sales_orders (status, placed_at DESC, order_id DESC)',
    'CREATE INDEX sales_orders_placed_idx ON sales_orders (placed_at DESC, order_id DESC)',
    `CREATE TABLE sales_order_timeline (
       position bigint PRIMARY KEY,
       order_id uuid NOT NULL,
       at timestamptz NOT NULL,
       step text NOT NULL,
       compensation boolean NOT NULL,
       reason text,
       detail jsonb NOT NULL
     )`,
    'CREATE INDEX sales_order_timeline_order_idx ON sales_order_timeline (order_id, position)',
  ],
  handlers,
  gather: [{ text: TIMELINE_ROW, many: TIMELINE_ROWS }],
});
