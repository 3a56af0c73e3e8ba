import { isUuid } from '../domain/identity/validation';
import type { OrderLine } from '../domain/sales/order.events';
import type { Queryable } from './projection';
import { decodeCursor, encodeCursor, invalidQuery, money, pageLimit } from './sales-queries-common';

/** Typed reads of the orders read model (projections/orders.projection.ts). */

export const ORDER_STATUSES = ['placed', 'reserved', 'paid', 'confirmed', 'shipped', 'rejected', 'cancelled'] as const;
export type OrderStatusView = (typeof ORDER_STATUSES)[number];

const ORDER_COLUMNS = `order_id::text AS order_id, customer_id::text AS customer_id, channel, payment_method, status, items, currency,
  total_cents, to_char(expected_delivery, 'YYYY-MM-DD') AS expected_delivery, placed_at, updated_at, reason, payment_status,
  cancellation_requested, shipment_id::text AS shipment_id, shipped_at`;

function toSummary(r: Record<string, unknown>) {
  const items = r.items as OrderLine[];
  return {
    orderId: r.order_id as string,
    customerId: r.customer_id as string,
    channel: r.channel as string,
    paymentMethod: r.payment_method as string,
    status: r.status as OrderStatusView,
    items: items.map((l) => ({
      productId: l.productId,
      sku: l.sku,
      name: l.name,
      unit: l.unit,
      quantity: l.quantity,
      listPrice: money(l.listPriceCents),
      discountPct: l.discountPct,
      unitPrice: money(l.unitPriceCents),
      lineTotal: money(l.lineTotalCents),
    })),
    totals: {
      currency: r.currency as string,
      total: money(r.total_cents as string),
      quantity: items.reduce((n, l) => n + l.quantity, 0),
    },
    expectedDelivery: r.expected_delivery as string,
    payment: r.payment_status as string,
    cancellationRequested: r.cancellation_requested as boolean,
    reason: r.reason as string | null,
    shipmentId: r.shipment_id as string | null,
    placedAt: r.placed_at as Date,
    updatedAt: r.updated_at as Date,
    shippedAt: r.shipped_at as Date | null,
  };
}

export type OrderSummary = ReturnType<typeof toSummary>;

/**
 * One order with its timeline (every step and compensation, in the order they happened).
 * One statement, so the row and its timeline come from one snapshot: two queries could see
 * the row before a projection commit and the timeline after it (a refund on the timeline
 * while the payment still read "captured").
 */
export async function findOrderView(db: Queryable, orderId: string) {
  if (!isUuid(orderId)) return undefined;
  const o = await db.query(
    `SELECT ${ORDER_COLUMNS},
       (SELECT COALESCE(json_agg(json_build_object('at', t.at, 'step', t.step, 'compensation', t.compensation, 'reason', t.reason,
                                                   'detail', t.detail, 'position', t.position) ORDER BY t.position), '[]'::json)
          FROM sales_order_timeline t WHERE t.order_id = o.order_id) AS timeline
     FROM sales_orders o WHERE o.order_id = $1`,
    [orderId],
  );
  const row = o.rows[0];
  if (!row) return undefined;
  const timeline = row.timeline as {
    at: string;
    step: string;
    compensation: boolean;
    reason: string | null;
    detail: unknown;
    position: number | string;
  }[];
  return {
    ...toSummary(row),
    timeline: timeline.map((r) => ({
      at: new Date(r.at),
      step: r.step,
      compensation: r.compensation,
      reason: r.reason,
      detail: r.detail,
      position: Number(r.position),
    })),
  };
}

/** Order history, newest first: one customer's, or everyone's when `customerId` is null (admin). */
export async function listOrders(
  db: Queryable,
  o: { customerId: string | null; status?: string; limit?: number; after?: string },
) {
  const limit = pageLimit(o.limit);
  if (o.status !== undefined && !(ORDER_STATUSES as readonly string[]).includes(o.status)) {
    throw invalidQuery('status', `must be one of ${ORDER_STATUSES.join(', ')}`);
  }
  const after = decodeCursor(o.after, ['timestamp', 'uuid']);
  const res = await db.query(
    `SELECT ${ORDER_COLUMNS} FROM sales_orders
     WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::text IS NULL OR status = $2)
       AND ($3::timestamptz IS NULL OR (placed_at, order_id) < ($3::timestamptz, $4::uuid))
     ORDER BY placed_at DESC, order_id DESC LIMIT $5`,
    [o.customerId, o.status ?? null, after?.[0] ?? null, after?.[1] ?? null, limit + 1],
  );
  const items = res.rows.slice(0, limit).map(toSummary);
  const last = items[items.length - 1];
  return {
    items,
    nextAfter: res.rows.length > limit && last ? encodeCursor([last.placedAt.toISOString(), last.orderId]) : null,
  };
}

/** Orders the shipping batch should dispatch, oldest first. */
export async function listConfirmedOrderIds(db: Queryable, limit: number): Promise<string[]> {
  const res = await db.query(
    `SELECT order_id::text AS id FROM sales_orders WHERE status = 'confirmed' AND NOT cancellation_requested ORDER BY placed_at LIMIT $1`,
    [limit],
  );
  return res.rows.map((r) => r.id as string);
}
