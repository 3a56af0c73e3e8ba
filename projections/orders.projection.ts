import type { RecordedEnvelope } from '../domain/shared/recorded-event';
import type { InventoryEvent } from '../domain/sales/inventory.events';
import type { OrderEvent } from '../domain/sales/order.events';
import type { PaymentEvent } from '../domain/sales/payment.events';
import { handle, handledTypes, type EventHandlers, type Projection } from './projection';

/**
 * The orders read model: one row per order (status, items, totals, expected
 * delivery) and its timeline: every step and every compensation the saga
 * caused, with time and reason, from the order's, its stock's and its
 * payment's events. Timeline rows are keyed by event position.
 */

type Ev = OrderEvent | PaymentEvent | Exclude<InventoryEvent, { type: 'sales.StockReceived' }>;

/**
 * What an event changes in its order's row. A batch folds an order's changes in event order (a
 * later value wins; a reason, once given, stays until another replaces it) and writes each order's
 * row once: new orders in one INSERT, the others in one UPDATE. A saga writes five or six events per
 * order, most of them in the same few transactions, so a batch holds several changes of one row.
 */
interface OrderChange {
  readonly at: string;
  readonly status?: string;
  readonly reason?: string | null;
  readonly paymentStatus?: string;
  readonly cancellationRequested?: true;
  readonly shipmentId?: string;
}

/** A sales_orders row, as a batch holds it before writing it. */
interface OrderRow {
  orderId: string;
  customerId: string;
  channel: string;
  paymentMethod: string;
  status: string;
  items: string;
  currency: string;
  totalCents: number;
  expectedDelivery: string;
  placedAt: string;
  updatedAt: string;
  reason: string | null;
  paymentStatus: string;
  cancellationRequested: boolean;
  shipmentId: string | null;
  shippedAt: string | null;
}

/** The changes of one existing row: undefined (null in SQL) keeps the column as it is. */
interface RowPatch {
  updatedAt: string;
  status?: string;
  reason?: string;
  paymentStatus?: string;
  cancellationRequested?: true;
  shipmentId?: string;
  shippedAt?: string;
}

type TimelineRow = readonly [
  position: number,
  orderId: string,
  at: string,
  step: string,
  compensation: boolean,
  reason: string | null,
  detail: string,
];

/** One event's effect: the order it is about, its timeline row, and a new row or a change of the order's row. */
interface Effect {
  readonly orderId: string;
  readonly step: TimelineRow;
  readonly placed?: OrderRow;
  readonly change?: OrderChange;
}

const INSERT_ORDERS = `INSERT INTO sales_orders (order_id, customer_id, channel, payment_method, status, items, currency,
    total_cents, expected_delivery, placed_at, updated_at, reason, payment_status, cancellation_requested, shipment_id, shipped_at)
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[], $8::bigint[],
    $9::date[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[], $14::boolean[], $15::uuid[], $16::timestamptz[])`;
/** Each order once (the batch's changes folded per order): an UPDATE … FROM with two rows for one order would keep either. */
const UPDATE_ORDERS = `UPDATE sales_orders o SET
    status = coalesce(u.status, o.status),
    reason = coalesce(u.reason, o.reason),
    payment_status = coalesce(u.payment_status, o.payment_status),
    cancellation_requested = o.cancellation_requested OR u.cancellation_requested,
    shipment_id = coalesce(u.shipment_id, o.shipment_id),
    shipped_at = coalesce(u.shipped_at, o.shipped_at),
    updated_at = u.updated_at
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::uuid[], $7::timestamptz[], $8::timestamptz[])
    AS u(order_id, status, reason, payment_status, cancellation_requested, shipment_id, shipped_at, updated_at)
  WHERE o.order_id = u.order_id`;
/** A batch's timeline rows in one statement (an order's saga adds 7 in a few transactions: one statement per batch, not per step). */
const INSERT_TIMELINE = `INSERT INTO sales_order_timeline (position, order_id, at, step, compensation, reason, detail)
  SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::boolean[], $6::text[], $7::jsonb[])`;

const timeline = (
  e: RecordedEnvelope,
  orderId: string,
  at: string,
  name: string,
  detail: Record<string, unknown>,
  compensation = false,
  reason: string | null = null,
): TimelineRow => [e.position, orderId, at, name, compensation, reason, JSON.stringify(detail)];

/** A timeline row only: the event changes nothing in the order's row. */
const step = (...args: Parameters<typeof timeline>): Effect => ({ orderId: args[1], step: timeline(...args) });

const handlers: EventHandlers<Ev, Effect> = {
  'sales.OrderPlaced': (e) => {
    const { data: d } = e;
    return {
      orderId: d.orderId,
      placed: {
        orderId: d.orderId,
        customerId: d.customerId,
        channel: d.channel,
        paymentMethod: d.paymentMethod,
        status: 'placed',
        items: JSON.stringify(d.items),
        currency: d.currency,
        totalCents: d.totalCents,
        expectedDelivery: d.expectedDelivery,
        placedAt: d.at,
        updatedAt: d.at,
        reason: null,
        paymentStatus: 'none',
        cancellationRequested: false,
        shipmentId: null,
        shippedAt: null,
      },
      step: timeline(e, d.orderId, d.at, 'placed', {
        lines: d.items.length,
        totalCents: d.totalCents,
        currency: d.currency,
      }),
    };
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
    return { ...step(e, d.orderId, d.at, 'reserved', {}), change: { at: d.at, status: 'reserved' } };
  },
  'sales.PaymentRequested': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'payment-requested', {
        amountCents: d.amountCents,
        currency: d.currency,
        method: d.method,
      }),
      change: { at: d.at, paymentStatus: 'requested' },
    };
  },
  'sales.PaymentCaptured': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'payment-captured', { providerRef: d.providerRef, late: d.late }),
      change: { at: d.at, paymentStatus: 'captured' },
    };
  },
  'sales.PaymentDeclined': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'payment-declined', {}, false, d.reason),
      change: { at: d.at, paymentStatus: 'declined' },
    };
  },
  'sales.PaymentDeadlineExpired': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'payment-timed-out', { dueAt: d.dueAt }, false, `no payment answer by ${d.dueAt}`),
      change: { at: d.at, paymentStatus: 'timed-out' },
    };
  },
  'sales.PaymentRefunded': (e) => {
    const { data: d } = e;
    return {
      ...step(
        e,
        d.orderId,
        d.at,
        'payment-refunded',
        { providerRef: d.providerRef, amountCents: d.amountCents },
        true,
        d.reason,
      ),
      change: { at: d.at, paymentStatus: 'refunded' },
    };
  },
  'sales.OrderPaid': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'paid', { paymentRef: d.paymentRef }),
      change: { at: d.at, status: 'paid' },
    };
  },
  'sales.OrderConfirmed': (e) => {
    const { data: d } = e;
    return { ...step(e, d.orderId, d.at, 'confirmed', {}), change: { at: d.at, status: 'confirmed' } };
  },
  'sales.OrderRejected': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'rejected', d.detail, false, d.reason),
      change: { at: d.at, status: 'rejected', reason: d.reason },
    };
  },
  'sales.OrderCancellationRequested': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'cancellation-requested', { by: d.by }, false, d.reason),
      change: { at: d.at, cancellationRequested: true },
    };
  },
  'sales.OrderCancelled': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'cancelled', d.detail, true, d.reason),
      change: { at: d.at, status: 'cancelled', reason: d.reason },
    };
  },
  'sales.ShipmentDispatched': (e) => {
    const { data: d } = e;
    return {
      ...step(e, d.orderId, d.at, 'shipped', { shipmentId: d.shipmentId }),
      change: { at: d.at, status: 'shipped', shipmentId: d.shipmentId },
    };
  },
};

/** Folds a change into a row or a patch (the same fields; a patch leaves out what it keeps). */
function fold(row: OrderRow | RowPatch, c: OrderChange): void {
  row.updatedAt = c.at;
  if (c.status !== undefined) row.status = c.status;
  if (c.reason != null) row.reason = c.reason;
  if (c.paymentStatus !== undefined) row.paymentStatus = c.paymentStatus;
  if (c.cancellationRequested) row.cancellationRequested = true;
  if (c.shipmentId !== undefined) {
    row.shipmentId = c.shipmentId;
    row.shippedAt = c.at;
  }
}

/** Arrays of the rows' fields, one per unnest parameter, in `keys`' order. */
function columns<T>(rows: readonly T[], keys: readonly (keyof T)[]): unknown[][] {
  return keys.map((k) => rows.map((r) => r[k] ?? null));
}

export const ordersProjection: Projection<Ev> = {
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
  eventTypes: handledTypes(handlers),
  async apply(events, db) {
    const placed = new Map<string, OrderRow>();
    const patches = new Map<string, RowPatch>();
    const steps: TimelineRow[] = [];
    for (const e of events) {
      const effect = handle(handlers, e);
      if (!effect) continue;
      steps.push(effect.step);
      if (effect.placed) placed.set(effect.orderId, effect.placed);
      if (effect.change) {
        const row = placed.get(effect.orderId) ?? patches.get(effect.orderId);
        if (row) fold(row, effect.change);
        else {
          const patch: RowPatch = { updatedAt: effect.change.at };
          fold(patch, effect.change);
          patches.set(effect.orderId, patch);
        }
      }
    }
    // New rows first: a change of an order placed in this batch is folded into its row already.
    if (placed.size)
      await db.query(
        INSERT_ORDERS,
        columns(
          [...placed.values()],
          [
            'orderId',
            'customerId',
            'channel',
            'paymentMethod',
            'status',
            'items',
            'currency',
            'totalCents',
            'expectedDelivery',
            'placedAt',
            'updatedAt',
            'reason',
            'paymentStatus',
            'cancellationRequested',
            'shipmentId',
            'shippedAt',
          ],
        ),
      );
    if (patches.size) {
      const ids = [...patches.keys()];
      const rows = [...patches.values()].map((p) => ({
        ...p,
        cancellationRequested: p.cancellationRequested ?? false,
      }));
      await db.query(UPDATE_ORDERS, [
        ids,
        ...columns(rows, [
          'status',
          'reason',
          'paymentStatus',
          'cancellationRequested',
          'shipmentId',
          'shippedAt',
          'updatedAt',
        ]),
      ]);
    }
    if (steps.length) await db.query(INSERT_TIMELINE, columns(steps, [0, 1, 2, 3, 4, 5, 6]));
  },
};
