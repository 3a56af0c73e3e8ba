import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SAGA_TRIGGER_TYPES } from '../../domain/sales/order-fulfilment.saga';
import { eventually } from '../support/events';
import { MAIN, killAllApps, login, signUp, spawnApp, type AppProcess } from '../support/processes';
import type { HttpResult } from '../support/app';
import { createTestDatabase, testRedisUrl, type TestDatabase } from '../support/services';

/**
 * Crash safety of the order-fulfilment saga with real processes (issue 4:
 * "SIGKILL the process at each saga step"). The app (dist/src/main.js) is
 * SIGKILLed again and again: the instant the event store shows a chosen step
 * (StockReserved, PaymentRequested, PaymentCaptured, a cancellation, a shipment,
 * a compensation...), at a random moment, or while it starts; each time a new
 * process takes over the same database, Redis and queue prefix. Meanwhile
 * customers place orders (card, card-declined, card-no-response), cancel some,
 * and the sandbox provider delivers late captures, all over HTTP and retried
 * as real clients and webhooks retry (same Idempotency-Key) when a process dies
 * under them.
 *
 * Afterwards every order is final, and the event store, the sandbox provider's
 * books and the read models agree: stock never negative, no second reservation,
 * charge, refund or shipment, every compensation ran, every saga trigger was
 * handled exactly once.
 */

const PAYMENT_TIMEOUT_MS = 1500;
const SHIPPING_INTERVAL_MS = 1000;
/** Stock of the products; the last two run out during the run, so reservations are rejected and lines released. */
const STOCK = [160, 120, 25, 4];
const PRODUCT_WEIGHTS = [0.35, 0.3, 0.2, 0.15];
/** Each round places this mix (shuffled). */
const ROUND_METHODS = ['card', 'card', 'card', 'card-declined', 'card-no-response', 'card-no-response'];
const PASSWORD = 'a perfectly long passphrase 9';
const SEED = Number(process.env.SALES_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const TRIGGERS: ReadonlySet<string> = new Set(SAGA_TRIGGER_TYPES);

type KillPoint =
  { readonly kind: 'after'; readonly type: string } | { readonly kind: 'random' } | { readonly kind: 'startup' };
const after = (type: string): KillPoint => ({ kind: 'after', type });
/** One process per entry, killed there. */
const KILL_PLAN: readonly KillPoint[] = [
  after('sales.StockReserved'),
  after('sales.PaymentRequested'),
  after('sales.PaymentCaptured'),
  after('sales.OrderCancellationRequested'),
  after('sales.ShipmentDispatched'),
  after('sales.OrderConfirmed'),
  after('sales.StockReleased'),
  after('sales.PaymentDeclined'),
  after('sales.PaymentDeadlineExpired'),
  after('sales.PaymentRefunded'),
  after('sales.StockReservationRejected'),
  after('sales.StockShipped'),
  after('sales.SagaStepRecorded'),
  { kind: 'random' },
  { kind: 'startup' },
  after('sales.StockReserved'),
  after('sales.PaymentRequested'),
  after('sales.PaymentCaptured'),
  after('sales.OrderCancellationRequested'),
  after('sales.ShipmentDispatched'),
  { kind: 'random' },
  { kind: 'startup' },
];

/** Seeded, so a failing run's choices can be replayed (SALES_CRASH_SEED); the kill timing is not. */
function prng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(SEED);
const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
const shuffle = <T>(list: readonly T[]): T[] =>
  list
    .map((x) => [rand(), x] as const)
    .sort((a, b) => a[0] - b[0])
    .map(([, x]) => x);
/** Sleeps, but no longer than the process lives. */
const pause = (ms: number, app?: AppProcess) =>
  Promise.race([new Promise((r) => setTimeout(r, ms)), ...(app ? [app.exited] : [])]);

// ---- the invariants, over what the event store and the sandbox provider recorded ----------

interface StoredEvent {
  readonly position: number;
  readonly id: string;
  readonly streamId: string;
  readonly type: string;
  readonly data: Record<string, any>;
}
interface SandboxPayment {
  readonly orderId: string;
  readonly status: string;
  readonly amountCents: number;
  readonly providerRef: string;
}
interface SandboxRefund {
  readonly orderId: string;
  readonly paymentRef: string;
  readonly amountCents: number;
}

interface LineFacts {
  reserved: number[];
  rejected: number;
  released: number[];
  shipped: number[];
}
interface OrderFacts {
  readonly orderId: string;
  placed?: { totalCents: number; paymentMethod: string; items: { productId: string; quantity: number }[] };
  status: string;
  readonly count: Map<string, number>;
  /** Every event of the order, its stock and its payment, in order (for failure messages). */
  readonly types: string[];
  requested?: { amountCents: number; method: string };
  capture?: { providerRef: string; late: boolean };
  refund?: { amountCents: number };
  expired: boolean;
  readonly lines: Map<string, LineFacts>;
  /** Ids of the saga triggers of this order, and how many saga steps recorded each. */
  readonly triggers: string[];
  readonly steps: Map<string, number>;
}
interface StockFold {
  onHand: number;
  reserved: number;
  shipped: number;
}

const FINAL = ['shipped', 'rejected', 'cancelled'];
const AT_MOST_ONCE = [
  'sales.OrderPlaced',
  'sales.OrderReserved',
  'sales.OrderPaid',
  'sales.OrderConfirmed',
  'sales.OrderRejected',
  'sales.OrderCancellationRequested',
  'sales.OrderCancelled',
  'sales.ShipmentDispatched',
  'sales.PaymentRequested',
  'sales.PaymentCaptured',
  'sales.PaymentDeclined',
  'sales.PaymentDeadlineExpired',
  'sales.PaymentRefunded',
];

/**
 * Folds every sales event (global order) and answers each broken invariant as a sentence.
 * Run after the system settled: every order must be shipped, rejected or cancelled.
 */
function checkStore(
  events: readonly StoredEvent[],
  payments: readonly SandboxPayment[],
  refunds: readonly SandboxRefund[],
) {
  const v: string[] = [];
  const orders = new Map<string, OrderFacts>();
  const stock = new Map<string, StockFold>();
  const order = (orderId: string): OrderFacts => {
    let o = orders.get(orderId);
    if (!o)
      orders.set(
        orderId,
        (o = {
          orderId,
          status: 'none',
          count: new Map(),
          types: [],
          expired: false,
          lines: new Map(),
          triggers: [],
          steps: new Map(),
        }),
      );
    return o;
  };
  const stockOf = (productId: string): StockFold => {
    let s = stock.get(productId);
    if (!s) stock.set(productId, (s = { onHand: 0, reserved: 0, shipped: 0 }));
    return s;
  };
  const line = (o: OrderFacts, productId: string): LineFacts => {
    let l = o.lines.get(productId);
    if (!l) o.lines.set(productId, (l = { reserved: [], rejected: 0, released: [], shipped: [] }));
    return l;
  };

  for (const e of events) {
    const d = e.data;
    if (e.type === 'sales.StockReceived') {
      stockOf(d.productId as string).onHand += d.quantity as number;
      continue;
    }
    if (e.type === 'sales.SagaStepRecorded') {
      const o = order(d.orderId as string);
      const trigger = (d.trigger as { id: string }).id;
      o.steps.set(trigger, (o.steps.get(trigger) ?? 0) + 1);
      continue;
    }
    if (typeof d.orderId !== 'string') continue;
    const o = order(d.orderId);
    o.count.set(e.type, (o.count.get(e.type) ?? 0) + 1);
    o.types.push(e.type.replace('sales.', ''));
    if (TRIGGERS.has(e.type)) o.triggers.push(e.id);
    switch (e.type) {
      case 'sales.OrderPlaced':
        o.placed = {
          totalCents: d.totalCents as number,
          paymentMethod: d.paymentMethod as string,
          items: d.items as { productId: string; quantity: number }[],
        };
        o.status = 'placed';
        break;
      case 'sales.OrderReserved':
        o.status = 'reserved';
        break;
      case 'sales.OrderConfirmed':
        o.status = 'confirmed';
        break;
      case 'sales.OrderRejected':
        o.status = 'rejected';
        break;
      case 'sales.OrderCancelled':
        o.status = 'cancelled';
        break;
      case 'sales.ShipmentDispatched':
        o.status = 'shipped';
        break;
      case 'sales.PaymentRequested':
        o.requested = { amountCents: d.amountCents as number, method: d.method as string };
        break;
      case 'sales.PaymentDeadlineExpired':
        o.expired = true;
        break;
      case 'sales.PaymentCaptured':
        if (o.capture) break;
        o.capture = { providerRef: d.providerRef as string, late: d.late as boolean };
        if (o.capture.late !== o.expired)
          v.push(
            `order ${o.orderId}: capture marked late=${o.capture.late} but the deadline ${o.expired ? 'had' : 'had not'} expired`,
          );
        break;
      case 'sales.PaymentRefunded':
        if (!o.capture) v.push(`order ${o.orderId}: refunded at ${e.position} without a capture before it`);
        o.refund = { amountCents: d.amountCents as number };
        break;
      case 'sales.StockReserved':
      case 'sales.StockReleased':
      case 'sales.StockShipped':
      case 'sales.StockReservationRejected': {
        const productId = d.productId as string;
        const l = line(o, productId);
        const s = stockOf(productId);
        const q = d.quantity as number;
        if (e.type === 'sales.StockReserved') {
          l.reserved.push(q);
          s.reserved += q;
        }
        if (e.type === 'sales.StockReleased') {
          l.released.push(q);
          s.reserved -= q;
        }
        if (e.type === 'sales.StockShipped') {
          l.shipped.push(q);
          s.reserved -= q;
          s.onHand -= q;
          s.shipped += q;
        }
        if (e.type === 'sales.StockReservationRejected') l.rejected++;
        if (s.reserved < 0 || s.onHand - s.reserved < 0) {
          v.push(
            `product ${productId}: after position ${e.position} (${e.type} of order ${o.orderId}) on hand ${s.onHand}, reserved ${s.reserved}, available ${s.onHand - s.reserved}`,
          );
        }
        break;
      }
      default:
        break;
    }
  }

  const paymentRows = new Map<string, SandboxPayment[]>();
  for (const p of payments) paymentRows.set(p.orderId, [...(paymentRows.get(p.orderId) ?? []), p]);
  const refundRows = new Map<string, SandboxRefund[]>();
  for (const r of refunds) refundRows.set(r.orderId, [...(refundRows.get(r.orderId) ?? []), r]);
  for (const id of new Set([...paymentRows.keys(), ...refundRows.keys()])) {
    if (!orders.get(id)?.placed) v.push(`sandbox books name order ${id}, which was never placed`);
  }

  for (const o of orders.values()) {
    const n = (type: string) => o.count.get(type) ?? 0;
    const id = `order ${o.orderId}`;
    if (!o.placed) {
      v.push(`${id}: events without OrderPlaced`);
      continue;
    }
    for (const type of AT_MOST_ONCE) if (n(type) > 1) v.push(`${id}: ${type} ${n(type)} times`);
    const terminal = n('sales.OrderRejected') + n('sales.OrderCancelled') + n('sales.ShipmentDispatched');
    if (terminal !== 1) v.push(`${id}: ${terminal} terminal events (rejected/cancelled/shipped), status ${o.status}`);
    if (!FINAL.includes(o.status)) v.push(`${id}: not final: ${o.status}`);

    // Stock, line by line.
    const items = new Map(o.placed.items.map((i) => [i.productId, i.quantity]));
    for (const [productId, l] of o.lines) {
      const at = `${id}, product ${productId}`;
      if (!items.has(productId)) v.push(`${at}: stock events for a product the order does not list`);
      if (l.reserved.length > 1) v.push(`${at}: reserved ${l.reserved.length} times`);
      if (l.rejected > 1) v.push(`${at}: reservation rejected ${l.rejected} times`);
      if (l.reserved.length && l.rejected) v.push(`${at}: both reserved and rejected`);
      if (l.released.length > 1) v.push(`${at}: released ${l.released.length} times`);
      if (l.shipped.length > 1) v.push(`${at}: shipped ${l.shipped.length} times`);
      if (l.released.length && l.shipped.length) v.push(`${at}: both released and shipped`);
      if ((l.released.length || l.shipped.length) && !l.reserved.length)
        v.push(`${at}: released or shipped without a reservation`);
      for (const q of [...l.reserved, ...l.released, ...l.shipped])
        if (q !== items.get(productId)) v.push(`${at}: moved ${q} units, the line has ${items.get(productId)}`);
      if ((o.status === 'rejected' || o.status === 'cancelled') && l.reserved.length && !l.released.length)
        v.push(`${at}: ${o.status} but its reservation was never released`);
    }

    // Payment and the provider's books.
    const charges = paymentRows.get(o.orderId) ?? [];
    const refundBooks = refundRows.get(o.orderId) ?? [];
    if (o.requested) {
      if (o.requested.amountCents !== o.placed.totalCents)
        v.push(`${id}: payment of ${o.requested.amountCents} requested for a total of ${o.placed.totalCents}`);
      if (o.requested.method !== o.placed.paymentMethod)
        v.push(`${id}: payment requested with ${o.requested.method}, ordered with ${o.placed.paymentMethod}`);
      if (charges.length !== 1) v.push(`${id}: ${charges.length} charges in the sandbox books`);
    } else if (charges.length) v.push(`${id}: charged in the sandbox without a PaymentRequested`);
    const charge = charges[0];
    if (charge) {
      if (charge.amountCents !== o.placed.totalCents)
        v.push(`${id}: charged ${charge.amountCents} for a total of ${o.placed.totalCents}`);
      if ((charge.status === 'captured') !== Boolean(o.capture))
        v.push(`${id}: the sandbox says ${charge.status}, the store ${o.capture ? 'has' : 'has no'} PaymentCaptured`);
      if (n('sales.PaymentDeclined') && charge.status !== 'declined')
        v.push(`${id}: PaymentDeclined, but the sandbox says ${charge.status}`);
      // A decline the saga gets to only after the deadline fired (a crash in between) changes nothing: the order timed out.
      if (charge.status === 'declined' && !n('sales.PaymentDeclined') && !o.expired)
        v.push(`${id}: declined by the sandbox, neither PaymentDeclined nor PaymentDeadlineExpired stored`);
      if (o.capture && o.capture.providerRef !== charge.providerRef)
        v.push(`${id}: captured ${o.capture.providerRef}, the sandbox charged ${charge.providerRef}`);
    }
    if (n('sales.PaymentCaptured') && n('sales.PaymentDeclined')) v.push(`${id}: both captured and declined`);

    if (o.status === 'shipped') {
      if (!n('sales.OrderConfirmed')) v.push(`${id}: shipped without OrderConfirmed`);
      if (!o.capture) v.push(`${id}: shipped without a captured payment`);
      if (n('sales.PaymentRefunded') || refundBooks.length) v.push(`${id}: shipped and refunded`);
      if (n('sales.OrderCancellationRequested')) v.push(`${id}: shipped although its cancellation was requested`);
      for (const [productId, quantity] of items) {
        const l = o.lines.get(productId);
        if (l?.shipped.length !== 1 || l.shipped[0] !== quantity)
          v.push(`${id}: shipped but product ${productId} shows ${l?.shipped.length ?? 0} StockShipped of ${quantity}`);
      }
    }
    if (o.status === 'rejected') {
      if (![...o.lines.values()].some((l) => l.rejected)) v.push(`${id}: rejected without a rejected reservation`);
      if (o.requested) v.push(`${id}: rejected after its payment was requested`);
    }
    if (o.status === 'rejected' || o.status === 'cancelled') {
      if (o.capture) {
        if (n('sales.PaymentRefunded') !== 1)
          v.push(`${id}: ${o.status} with a capture, ${n('sales.PaymentRefunded')} PaymentRefunded`);
        if (o.refund && o.refund.amountCents !== o.requested?.amountCents)
          v.push(`${id}: refunded ${o.refund.amountCents} of ${o.requested?.amountCents}`);
        if (refundBooks.length !== 1)
          v.push(`${id}: ${o.status} with a capture, ${refundBooks.length} refunds in the sandbox books`);
        for (const r of refundBooks) {
          if (r.paymentRef !== o.capture.providerRef || r.amountCents !== o.placed.totalCents)
            v.push(`${id}: sandbox refund ${JSON.stringify(r)} does not match the capture`);
        }
      } else if (n('sales.PaymentRefunded') || refundBooks.length) v.push(`${id}: refunded without a capture`);
    }
    if (n('sales.OrderCancellationRequested') && o.status !== 'cancelled' && o.status !== 'rejected')
      v.push(`${id}: cancellation requested, yet ${o.status}`);

    // The saga handled every trigger of the order exactly once.
    const triggers = new Set(o.triggers);
    for (const t of o.triggers)
      if (o.steps.get(t) !== 1) v.push(`${id}: trigger ${t} has ${o.steps.get(t) ?? 0} saga steps`);
    for (const t of o.steps.keys())
      if (!triggers.has(t)) v.push(`${id}: a saga step for ${t}, which is not one of its triggers`);
  }
  for (const [productId, s] of stock)
    if (s.reserved !== 0) v.push(`product ${productId}: ${s.reserved} still reserved after every order settled`);
  return { violations: v, orders, stock };
}

// ---- the run ------------------------------------------------------------------------------

interface Customer {
  readonly userId: string;
  readonly authorization: string;
}
interface OrderRequest {
  readonly key: string;
  readonly customer: Customer;
  readonly body: { channel: string; paymentMethod: string; items: { productId: string; quantity: number }[] };
  readonly round: number;
  orderId?: string;
}
interface Pending {
  readonly order: OrderRequest;
  done: boolean;
  attempts: number;
}
interface Kill {
  readonly round: number;
  readonly point: string;
  /** The target event showed up (else killed after the wait ran out). */
  readonly hit: boolean;
  readonly msAfterSpawn: number;
  readonly eventsInRound: number;
  /** Saga triggers past the saga's checkpoint right after the kill: work in flight. */
  readonly backlog: number;
  readonly signal: NodeJS.Signals | null;
}

let db: TestDatabase;
const dataDir = mkdtempSync(join(tmpdir(), 'sales-crash-'));
const admin = { email: `admin-${randomUUID().slice(0, 8)}@example.test`, password: 'correct horse battery staple 42' };

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx tsc -p tsconfig.json)`);
  db = await createTestDatabase('salescrash');
});

afterAll(async () => {
  await killAllApps();
  await db?.drop();
});

async function appendedSince(position: number, type?: string): Promise<number> {
  const r = await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM events WHERE position > $1 AND ($2::text IS NULL OR type = $2)',
    [position, type ?? null],
  );
  return r.rows[0]!.n;
}
async function head(): Promise<number> {
  return (await db.pool.query<{ p: number | null }>('SELECT max(position) AS p FROM events')).rows[0]!.p ?? 0;
}
async function sagaBacklog(): Promise<number> {
  const r = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM events
      WHERE type = ANY($1) AND position > COALESCE((SELECT position FROM processor_checkpoints WHERE name = 'order-fulfilment'), 0)`,
    [[...TRIGGERS]],
  );
  return r.rows[0]!.n;
}

describe('sales saga crash safety (real processes, SIGKILL at each saga step)', () => {
  it(`survives ${KILL_PLAN.length} SIGKILLs: every order ends final, consistent with stock, payments and refunds`, async () => {
    const started = Date.now();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl(),
      DATA_DIR: dataDir,
      QUEUE_PREFIX: `crash-${db.name}`,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
      LOG_LEVEL: 'warn',
      MQTT_PORT: '0',
      PAYMENT_TIMEOUT_MS: String(PAYMENT_TIMEOUT_MS),
      SHIPPING_INTERVAL_MS: String(SHIPPING_INTERVAL_MS),
    };
    let spawned = 0;
    const start = () => spawnApp(`sales-app-${spawned++}`, env);

    // Set-up with the first process: customers, products, stock.
    let spawnedAt = Date.now();
    let app = await start();
    await app.ready();
    const adminAuth = await login(app, admin.email, admin.password);
    const customers: Customer[] = [];
    for (let i = 0; i < 4; i++)
      customers.push(await signUp(app, `crash-${i}-${randomUUID().slice(0, 8)}@example.test`, PASSWORD));
    const products: string[] = [];
    for (const quantity of STOCK) {
      const sku = `CRASH-${randomUUID().slice(0, 8)}`;
      const channels = [
        {
          channel: 'web',
          price: 10 + products.length,
          currency: 'EUR',
          paymentMethods: ['card', 'card-declined', 'card-no-response'],
          delivery: { method: 'parcel', days: 2 },
        },
      ];
      const r = await app.http('POST', '/products', { sku, name: `Crash ${sku}`, unit: 'piece', channels }, adminAuth);
      expect(r.status).toBe(201);
      products.push(r.body.productId as string);
      expect(
        (
          await app.http(
            'POST',
            `/products/${r.body.productId as string}/stock-receipts`,
            { quantity, reference: 'initial' },
            adminAuth,
          )
        ).status,
      ).toBe(201);
    }

    // What clients asked for, and what still waits for an answer (a process died under it).
    const orders: OrderRequest[] = [];
    const cancels: Pending[] = [];
    const captures: Pending[] = [];
    const serverErrors: string[] = [];
    const unexpected: string[] = [];
    /** undefined: no answer (the process died, or was not listening): the client retries later. */
    const call = async (
      a: AppProcess,
      method: string,
      path: string,
      body?: unknown,
      headers?: Record<string, string>,
    ): Promise<HttpResult | undefined> => {
      if (!a.alive()) return undefined;
      try {
        const r = await a.http(method, path, body, headers);
        if (r.status >= 500) {
          serverErrors.push(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
          return undefined;
        }
        return r;
      } catch {
        return undefined;
      }
    };
    const submitOrder = async (a: AppProcess, o: OrderRequest) => {
      if (o.orderId) return;
      const r = await call(a, 'POST', '/orders', o.body, {
        authorization: o.customer.authorization,
        'idempotency-key': o.key,
      });
      if (!r) return;
      if (r.status === 202) o.orderId = r.body.orderId as string;
      else unexpected.push(`POST /orders: ${r.status} ${JSON.stringify(r.body)}`);
    };
    const submitCancel = async (a: AppProcess, c: Pending) => {
      if (c.done) return;
      const r = await call(
        a,
        'POST',
        `/orders/${c.order.orderId!}/cancel`,
        { reason: 'changed my mind (crash test)' },
        { authorization: c.order.customer.authorization },
      );
      if (!r) return;
      c.attempts++;
      // 409: already closed or shipped.
      if (r.status === 202 || r.status === 409) c.done = true;
      else unexpected.push(`cancel ${c.order.orderId!}: ${r.status} ${JSON.stringify(r.body)}`);
    };
    /** A late webhook: retried until the provider's answer is taken (200), or there is nothing to capture (404). */
    const submitCapture = async (a: AppProcess, c: Pending, lastChance: boolean) => {
      if (c.done) return;
      const r = await call(a, 'POST', `/admin/sandbox/payments/${c.order.orderId!}/capture`, undefined, adminAuth);
      if (!r) return;
      c.attempts++;
      // 404 before the saga charged: try again in a later round.
      if (r.status === 200 || (r.status === 404 && (lastChance || c.attempts >= 4))) c.done = true;
      else if (r.status !== 404) unexpected.push(`capture ${c.order.orderId!}: ${r.status} ${JSON.stringify(r.body)}`);
    };
    const flush = async (a: AppProcess, lastChance: boolean) => {
      await Promise.all(orders.map((o) => submitOrder(a, o)));
      await Promise.all([
        ...cancels.map((c) => submitCancel(a, c)),
        ...captures.map((c) => submitCapture(a, c, lastChance)),
      ]);
    };
    const newOrder = (round: number, paymentMethod: string): OrderRequest => {
      const first = pickProduct();
      const items = [{ productId: first, quantity: 1 + Math.floor(rand() * 3) }];
      if (rand() < 0.4) {
        const second = pickProduct();
        if (second !== first) items.push({ productId: second, quantity: 1 + Math.floor(rand() * 3) });
      }
      return {
        key: `crash-order-${randomUUID()}`,
        customer: pick(customers),
        body: { channel: 'web', paymentMethod, items },
        round,
      };
    };
    const pickProduct = () => {
      let x = rand();
      for (const [i, w] of PRODUCT_WEIGHTS.entries()) {
        if ((x -= w) < 0) return products[i]!;
      }
      return products[0]!;
    };

    /** One round's clients: retries, cancellations and late captures of older orders, new orders (some cancelled or captured at once). */
    const work = async (a: AppProcess, round: number) => {
      await flush(a, false);
      const older = orders.filter((o) => o.orderId && o.round < round);
      const olderCancels = shuffle(older)
        .slice(0, 2)
        .map((order) => ({ order, done: false, attempts: 0 }));
      const olderCaptures = shuffle(
        older.filter((o) => o.body.paymentMethod === 'card-no-response' && !captures.some((c) => c.order === o)),
      )
        .slice(0, 2)
        .map((order) => ({ order, done: false, attempts: 0 }));
      cancels.push(...olderCancels);
      captures.push(...olderCaptures);
      await Promise.all([
        ...olderCancels.map((c) => submitCancel(a, c)),
        ...olderCaptures.map((c) => submitCapture(a, c, false)),
      ]);
      const fresh = shuffle(ROUND_METHODS).map((m) => newOrder(round, m));
      // One order a round wants the scarce product: once it is gone, a reservation is rejected and other lines released.
      const scarce = products[products.length - 1]!;
      if (!fresh[0]!.body.items.some((i) => i.productId === scarce))
        fresh[0]!.body.items.push({ productId: scarce, quantity: 2 });
      orders.push(...fresh);
      await Promise.all(
        fresh.map(async (o, i) => {
          await submitOrder(a, o);
          if (!o.orderId || !a.alive()) return;
          // At least one cancellation a round, racing the saga (reserving, awaiting payment, confirmed).
          if (i === 1 || rand() < 0.15) {
            const c = { order: o, done: false, attempts: 0 };
            cancels.push(c);
            await pause(rand() * 600, a);
            await submitCancel(a, c);
          } else if (o.body.paymentMethod === 'card-no-response' && rand() < 0.5) {
            // Before the deadline (confirmed), or racing it.
            const c = { order: o, done: false, attempts: 0 };
            captures.push(c);
            await pause(200 + rand() * 1400, a);
            await submitCapture(a, c, false);
          }
        }),
      );
    };

    // The kill rounds.
    const kills: Kill[] = [];
    let roundStart = await head();
    for (const [round, point] of KILL_PLAN.entries()) {
      if (round > 0) {
        roundStart = await head();
        app = await start();
        spawnedAt = Date.now();
      }
      let hit = true;
      let clients: Promise<void> = Promise.resolve();
      if (point.kind === 'startup') {
        await pause(rand() * 1500, app);
      } else {
        await app.ready();
        clients = work(app, round);
        if (point.kind === 'random') await pause(200 + rand() * 2500, app);
        else {
          const until = Date.now() + 6000;
          for (;;) {
            if ((await appendedSince(roundStart, point.type)) > 0) break;
            if (Date.now() > until || !app.alive()) {
              hit = false;
              break;
            }
            await pause(5);
          }
        }
      }
      const alive = app.alive();
      await app.kill();
      const { signal } = await app.exited;
      if (!alive) throw new Error(`${app.name} exited before it was killed (${signal}); its output:\n${app.tail()}`);
      const msAfterSpawn = Date.now() - spawnedAt;
      kills.push({
        round,
        point: point.kind === 'after' ? point.type : point.kind,
        hit,
        msAfterSpawn,
        eventsInRound: await appendedSince(roundStart),
        backlog: await sagaBacklog(),
        signal,
      });
      await clients;
    }

    // A last process: the clients' retries go through, more late captures come in, and everything settles.
    app = await start();
    await app.ready();
    await eventually(
      async () => {
        await flush(app, true);
        return orders.every((o) => o.orderId) && [...cancels, ...captures].every((c) => c.done);
      },
      'every client request answered by the last process',
      60_000,
    );
    const lateCaptures = shuffle(
      orders.filter((o) => o.body.paymentMethod === 'card-no-response' && !captures.some((c) => c.order === o)),
    )
      .slice(0, 6)
      .map((order) => ({ order, done: false, attempts: 0 }));
    captures.push(...lateCaptures);
    await eventually(
      async () => {
        await Promise.all(lateCaptures.map((c) => submitCapture(app, c, true)));
        return lateCaptures.every((c) => c.done);
      },
      'late captures delivered',
      30_000,
    );

    // Settled: every order shipped, rejected or cancelled, the saga past every trigger, nothing appended for a while.
    const settled = async () => {
      const r = await db.pool.query<{ placed: number; closed: number; backlog: number; head: number }>(
        `
        SELECT (SELECT count(*)::int FROM events WHERE type = 'sales.OrderPlaced') AS placed,
               (SELECT count(DISTINCT stream_id)::int FROM events WHERE type IN ('sales.OrderRejected', 'sales.OrderCancelled', 'sales.ShipmentDispatched')) AS closed,
               (SELECT count(*)::int FROM events WHERE type = ANY($1)
                  AND position > COALESCE((SELECT position FROM processor_checkpoints WHERE name = 'order-fulfilment'), 0)) AS backlog,
               (SELECT max(position) FROM events) AS head`,
        [[...TRIGGERS]],
      );
      return r.rows[0]!;
    };
    let last = await settled();
    try {
      await eventually(
        async () => {
          await pause(300);
          const now = await settled();
          const quiet = now.placed === now.closed && now.backlog === 0 && now.head === last.head;
          last = now;
          return quiet;
        },
        'every order closed and the saga idle',
        90_000,
      );
    } catch (e) {
      const open = await db.pool.query(`
        SELECT o.stream_id, array_agg(x.type ORDER BY x.position) AS types FROM events o JOIN events x ON x.data->>'orderId' = o.data->>'orderId'
         WHERE o.type = 'sales.OrderPlaced' AND NOT EXISTS (SELECT 1 FROM events t WHERE t.stream_id = o.stream_id
           AND t.type IN ('sales.OrderRejected', 'sales.OrderCancelled', 'sales.ShipmentDispatched'))
         GROUP BY o.stream_id LIMIT 10`);
      const sagas = await Promise.all(
        open.rows.slice(0, 5).map(async (r: { stream_id: string }) => {
          const saga = await app
            .http('GET', `/admin/sagas/${r.stream_id.slice('order-'.length)}`, undefined, adminAuth)
            .catch(() => undefined);
          const body = saga?.body as { state?: Record<string, unknown>; deadlineJob?: unknown } | undefined;
          return {
            order: r.stream_id,
            saga: body?.state && {
              status: body.state.status,
              payment: body.state.payment,
              method: body.state.paymentMethod,
              deadlineDueAt: body.state.deadlineDueAt,
            },
            deadlineJob: body?.deadlineJob,
          };
        }),
      );
      throw new Error(
        `${(e as Error).message}; last ${JSON.stringify(last)}; open orders: ${JSON.stringify(open.rows)}; their sagas: ${JSON.stringify(sagas)}\n${app.tail()}`,
      );
    }

    // The invariants, from the event store and the sandbox provider's books.
    const events = (
      await db.pool.query<StoredEvent>(
        `SELECT position, event_id::text AS id, stream_id AS "streamId", type, data FROM events WHERE type LIKE 'sales.%' ORDER BY position`,
      )
    ).rows;
    const payments = (
      await db.pool.query<SandboxPayment>(
        'SELECT order_id::text AS "orderId", status, amount_cents::int AS "amountCents", provider_ref AS "providerRef" FROM sandbox_payments',
      )
    ).rows;
    const refunds = (
      await db.pool.query<SandboxRefund>(
        'SELECT order_id::text AS "orderId", payment_ref AS "paymentRef", amount_cents::int AS "amountCents" FROM sandbox_refunds',
      )
    ).rows;
    const facts = checkStore(events, payments, refunds);
    if (facts.violations.length) {
      const named = [...facts.orders.values()].filter((o) => facts.violations.some((x) => x.includes(o.orderId)));
      process.stdout.write(
        `orders with violations:\n${named.map((o) => `  ${o.orderId} ${o.placed?.paymentMethod ?? '?'}: ${o.types.join(' ')}`).join('\n')}\n`,
      );
    }
    expect(facts.violations).toEqual([]);
    expect(serverErrors).toEqual([]);
    expect(unexpected).toEqual([]);

    // Every order a client placed exists once (the Idempotency-Key held across the crashes), and no other.
    const placedIds = [...facts.orders.values()]
      .filter((o) => o.placed)
      .map((o) => o.orderId)
      .sort();
    expect(placedIds).toEqual(orders.map((o) => o.orderId!).sort());

    // The checks have teeth: a second reservation or a second refund, slipped into a copy of the events, is caught.
    const lastPosition = events[events.length - 1]!.position;
    const copy = (type: string, i: number) => ({
      ...events.find((e) => e.type === type)!,
      id: randomUUID(),
      position: lastPosition + i,
    });
    expect(checkStore([...events, copy('sales.StockReserved', 1)], payments, refunds).violations.join('\n')).toMatch(
      /reserved 2 times/,
    );
    const byStatus = (s: string) => [...facts.orders.values()].filter((o) => o.status === s).length;
    const refunded = [...facts.orders.values()].filter((o) => o.refund).length;
    if (refunded)
      expect(
        checkStore([...events, copy('sales.PaymentRefunded', 1)], payments, refunds).violations.join('\n'),
      ).toMatch(/PaymentRefunded 2 times/);

    // The read models, once they caught up, say the same: each order's status, and each product's stock.
    const readOrders = async () => {
      const seen = new Map<string, string>();
      let afterCursor: string | null = null;
      do {
        const r = await app.http(
          'GET',
          `/orders?limit=200${afterCursor ? `&after=${encodeURIComponent(afterCursor)}` : ''}`,
          undefined,
          adminAuth,
        );
        for (const o of r.body.items as { orderId: string; status: string }[]) seen.set(o.orderId, o.status);
        afterCursor = r.body.nextAfter as string | null;
      } while (afterCursor);
      return seen;
    };
    const expectedOrders = new Map(
      [...facts.orders.values()].filter((o) => o.placed).map((o) => [o.orderId, o.status]),
    );
    let readModel = new Map<string, string>();
    await eventually(
      async () => {
        readModel = await readOrders();
        return [...expectedOrders].every(([id, s]) => readModel.get(id) === s);
      },
      'the orders read model to agree with the event store',
      30_000,
    ).catch(() => undefined);
    expect(Object.fromEntries(readModel)).toEqual(Object.fromEntries(expectedOrders));
    for (const productId of products) {
      const fold = facts.stock.get(productId)!;
      const expected = {
        onHand: fold.onHand,
        reserved: fold.reserved,
        available: fold.onHand - fold.reserved,
        shipped: fold.shipped,
      };
      let seen: Record<string, unknown> = {};
      await eventually(
        async () => {
          const r = await app.http('GET', `/products/${productId}/stock`, undefined, adminAuth);
          seen = {
            onHand: r.body.onHand,
            reserved: r.body.reserved,
            available: r.body.available,
            shipped: r.body.shipped,
          };
          return JSON.stringify(seen) === JSON.stringify(expected);
        },
        `stock of ${productId}`,
        30_000,
      ).catch(() => undefined);
      expect(seen).toEqual(expected);
    }

    // The kills landed where intended: on a live process, mostly right after the chosen step, with saga work in flight.
    const afterKills = kills.filter((k) => k.point.startsWith('sales.'));
    expect(kills.every((k) => k.signal === 'SIGKILL')).toBe(true);
    expect(afterKills.filter((k) => k.hit).length).toBeGreaterThanOrEqual(Math.ceil(afterKills.length * 0.7));
    expect(kills.filter((k) => k.backlog > 0).length).toBeGreaterThanOrEqual(Math.ceil(kills.length / 2));
    expect(byStatus('shipped')).toBeGreaterThan(0);
    expect(byStatus('rejected')).toBeGreaterThan(0);
    expect(byStatus('cancelled')).toBeGreaterThan(0);

    const late = [...facts.orders.values()].filter((o) => o.capture?.late).length;
    process.stdout.write(
      `sales crash test (seed ${SEED}): ${kills.length} kills in ${Math.round((Date.now() - started) / 1000)} s\n` +
        kills
          .map(
            (k) =>
              `  ${String(k.round).padStart(2)} ${k.point.padEnd(36)} ${k.point.startsWith('sales.') ? (k.hit ? 'hit ' : 'MISS') : '    '} ${String(k.msAfterSpawn).padStart(5)} ms after spawn, ` +
              `${k.eventsInRound} events in round, ${k.backlog} triggers in flight`,
          )
          .join('\n') +
        `\n  orders: ${expectedOrders.size} (${byStatus('shipped')} shipped, ${byStatus('rejected')} rejected, ${byStatus('cancelled')} cancelled); ` +
        `${refunded} refunded (${late} late captures); ${events.length} sales events\n`,
    );
  }, 240_000);
});
