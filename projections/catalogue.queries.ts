import { isUuid } from '../domain/identity/validation';
import type { Queryable } from './projection';
import { decodeCursor, encodeCursor, money, pageLimit } from './sales-queries-common';

/** Typed reads of the catalogue read model (projections/catalogue.projection.ts). */

export interface CatalogueItem {
  readonly productId: string;
  readonly sku: string;
  readonly name: string;
  readonly unit: string;
  readonly channel: string;
  /** What a unit costs after the channel's discount. */
  readonly price: number;
  readonly listPrice: number;
  readonly discountPct: number;
  readonly currency: string;
  readonly paymentMethods: readonly string[];
  readonly delivery: { readonly method: string; readonly days: number; readonly estimatedDate: string };
  readonly available: number;
}

export interface CataloguePage {
  readonly items: readonly CatalogueItem[];
  readonly nextAfter: string | null;
}

const ITEM_SQL = `SELECT p.product_id::text AS product_id, p.sku, p.name, p.unit, c.channel, c.price_cents, c.discount_pct, c.currency,
    c.payment_methods, c.delivery_method, c.delivery_days, COALESCE(s.on_hand - s.reserved, 0) AS available
  FROM product_channels c JOIN products p USING (product_id) LEFT JOIN stock s USING (product_id)`;

function toItem(r: Record<string, unknown>, today: Date): CatalogueItem {
  const priceCents = Number(r.price_cents);
  const discountPct = Number(r.discount_pct);
  const days = Number(r.delivery_days);
  return {
    productId: r.product_id as string,
    sku: r.sku as string,
    name: r.name as string,
    unit: r.unit as string,
    channel: r.channel as string,
    price: money(Math.round((priceCents * (100 - discountPct)) / 100)),
    listPrice: money(priceCents),
    discountPct,
    currency: r.currency as string,
    paymentMethods: r.payment_methods as string[],
    delivery: {
      method: r.delivery_method as string,
      days,
      estimatedDate: new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() + days))
        .toISOString()
        .slice(0, 10),
    },
    available: Number(r.available),
  };
}

/** The catalogue of one channel in SKU order; `q` matches name or SKU, case-insensitively. */
export async function listCatalogue(
  db: Queryable,
  o: { channel: string; q?: string; limit?: number; after?: string; today: Date },
): Promise<CataloguePage> {
  const limit = pageLimit(o.limit);
  const after = decodeCursor(o.after, ['text']);
  const pattern = o.q ? `%${o.q.replace(/[\\%_]/g, (m) => `\\${m}`)}%` : null;
  const res = await db.query(
    `${ITEM_SQL} WHERE c.channel = $1 AND ($2::text IS NULL OR p.name ILIKE $2 OR p.sku ILIKE $2) AND ($3::text IS NULL OR p.sku > $3)
     ORDER BY p.sku LIMIT $4`,
    [o.channel, pattern, after?.[0] ?? null, limit + 1],
  );
  const items = res.rows.slice(0, limit).map((r) => toItem(r, o.today));
  return { items, nextAfter: res.rows.length > limit ? encodeCursor([items[items.length - 1]!.sku]) : null };
}

/** One product with every channel it is sold on. */
export async function findProductView(db: Queryable, productId: string, today: Date) {
  if (!isUuid(productId)) return undefined;
  const res = await db.query(`${ITEM_SQL} WHERE p.product_id = $1 ORDER BY c.channel`, [productId]);
  if (res.rows.length === 0) return undefined;
  const items = res.rows.map((r) => toItem(r, today));
  const { sku, name, unit, available } = items[0]!;
  return {
    productId,
    sku,
    name,
    unit,
    available,
    channels: items.map(({ productId: _p, sku: _s, name: _n, unit: _u, available: _a, ...c }) => c),
  };
}

export interface StockView {
  readonly productId: string;
  readonly onHand: number;
  readonly reserved: number;
  readonly available: number;
  readonly shipped: number;
  readonly movements: readonly {
    at: Date;
    kind: string;
    quantity: number;
    orderId: string | null;
    reference: string | null;
    position: number;
  }[];
}

/**
 * Stock figures and the newest movements first. One statement, so the figures and the
 * movements come from one snapshot (two queries could straddle a projection commit).
 */
export async function stockOf(db: Queryable, productId: string, limit = 100): Promise<StockView | undefined> {
  if (!isUuid(productId)) return undefined;
  const s = await db.query(
    `SELECT s.on_hand, s.reserved, s.shipped,
       (SELECT COALESCE(json_agg(json_build_object('at', m.at, 'kind', m.kind, 'quantity', m.quantity, 'orderId', m.order_id::text,
                                                   'reference', m.reference, 'position', m.position) ORDER BY m.position DESC), '[]'::json)
          FROM (SELECT * FROM stock_movements WHERE product_id = s.product_id ORDER BY position DESC LIMIT $2) m) AS movements
     FROM stock s WHERE s.product_id = $1`,
    [productId, pageLimit(limit)],
  );
  const row = s.rows[0];
  if (!row) return undefined;
  const onHand = Number(row.on_hand);
  const reserved = Number(row.reserved);
  const movements = row.movements as {
    at: string;
    kind: string;
    quantity: number | string;
    orderId: string | null;
    reference: string | null;
    position: number | string;
  }[];
  return {
    productId,
    onHand,
    reserved,
    available: onHand - reserved,
    shipped: Number(row.shipped),
    movements: movements.map((r) => ({
      at: new Date(r.at),
      kind: r.kind,
      quantity: Number(r.quantity),
      orderId: r.orderId,
      reference: r.reference,
      position: Number(r.position),
    })),
  };
}
