import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agent } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Client, Pool } from 'pg';
import { createApp, type RunningApp } from '../src/app';
import { loadConfig } from '../src/config';
import {
  ConcurrencyError,
  type EventStore,
  type EventToAppend,
  type ExpectedRevision,
} from '../src/platform/event-store/event-store';
import { PostgresEventStore } from '../src/platform/event-store/postgres-event-store';
import { createLogger } from '../src/platform/logger';
import { migrate } from '../src/platform/migrations';
import { SAGA_TRIGGER_TYPES } from '../domain/sales/order-fulfilment.saga';
import { inventoryDecider, type InventoryState } from '../domain/sales/inventory.decider';
import { handleCommand, StateCache } from '../src/platform/commands/command-handling';
import { StreamSnapshots } from '../src/platform/commands/snapshots';
import { inventorySnapshotOptions } from '../src/sales/sales.services';
import { dropRedisKeys, sendJson, target, type Target } from './http-client';
import {
  RUNS,
  benchDatabaseUrl,
  concurrently,
  envInt,
  fmtMs,
  info,
  loadLine,
  median,
  percentile,
  serverSummary,
  sleep,
  withDatabase,
} from './support';

/**
 * Orders from `POST /orders` to `confirmed` on the real application
 * (createApp: NestJS on Fastify, PostgreSQL, Redis/BullMQ, projections and
 * the order-fulfilment saga running) against the raw appends the same orders
 * require, at the same concurrency, in the same run:
 *
 *  saga: CLIENTS closed-loop clients, each places an order (payment method
 *        `card`, one line, quantity 1) and waits until the order reaches a
 *        final state, then places the next. Final states are watched in the
 *        event store (one connection polls for sales.OrderConfirmed /
 *        OrderRejected / OrderCancelled below the read horizon every POLL_MS);
 *        the latency is place (just before the POST) → the OrderConfirmed
 *        event's recorded_at, so the polling interval is not part of it.
 *  raw:  the same orders' events, appended with PostgresEventStore directly
 *        (no HTTP, no saga, no reads), CLIENTS writers, in a second database
 *        on the same server. What one order writes is taken from a real
 *        finished order (every event of its streams, and its reservation on
 *        the shared inventory stream): same types, same JSON (ids replaced),
 *        same streams, same transactions (events sharing a transaction id =
 *        one append, or one appendMulti when it spans streams), same
 *        expected revisions (exact revision, 'no_stream' for a new stream;
 *        the shared inventory streams optimistically, retried on conflict).
 *
 * Each run alternates saga and raw slices (the raw side writes as many
 * orders as the saga side just completed); between slices the saga and the
 * projections are let finish, so neither side runs while the other is timed.
 * Then a paced phase: orders at a fixed arrival rate (a fraction of the
 * measured saga rate), for the place → confirmed latency at a load the
 * system sustains. Figures only; nothing is asserted.
 */

const TARGET = 0.5;
/** p99 place → confirmed at half the saga rate (issue 13). */
const PACED_P99_TARGET_MS = 200;
/** A cold decision on a product with this many orders behind it, against one on a new product (issue 13). */
const COLD_ORDERS = envInt('BENCH_ORDERS_COLD_ORDERS', 100_000);
const COLD_RATIO_TARGET = 1.5;
const CLIENTS = envInt('BENCH_ORDERS_CLIENTS', 16);
const CUSTOMERS = envInt('BENCH_ORDERS_CUSTOMERS', 32);
const PRODUCTS = envInt('BENCH_ORDERS_PRODUCTS', 4);
const SLICES = envInt('BENCH_ORDERS_SLICES', 3);
const SLICE_SECONDS = envInt('BENCH_ORDERS_SLICE_SECONDS', 5);
const WARMUP_SECONDS = envInt('BENCH_ORDERS_WARMUP_SECONDS', 3);
const RAMP = (process.env.BENCH_ORDERS_RAMP ?? '4,16,64')
  .split(',')
  .map(Number)
  .filter((n) => Number.isSafeInteger(n) && n > 0);
const RAMP_SECONDS = envInt('BENCH_ORDERS_RAMP_SECONDS', 3);
const PACED_SECONDS = envInt('BENCH_ORDERS_PACED_SECONDS', 15);
const PACED_PCT = envInt('BENCH_ORDERS_PACED_PCT', 50);
/**
 * The paced phase's first seconds, at the same rate, reported apart and not counted: the step from
 * the closed loop (and this process's own work between the phases: its statistics, a collection)
 * stalls the pacer, which then places a burst of orders at once (seen: 17 in the same millisecond).
 */
const PACED_WARMUP_SECONDS = envInt('BENCH_ORDERS_PACED_WARMUP_SECONDS', 2);
const POLL_MS = envInt('BENCH_ORDERS_POLL_MS', 10);
const STOCK = 1_000_000;
/** Orders of the paced phase in flight (placed, not yet final) at most; beyond, arrivals start late. */
const PACED_MAX_IN_FLIGHT = 512;
const FINAL_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000;
const FINAL_TYPES = ['sales.OrderConfirmed', 'sales.OrderRejected', 'sales.OrderCancelled'];
/** App settings a run may override from the environment (to try another configuration). */
/** Set in main: PostgreSQL's CPU so far (ms), when the server is local. */
let pgCpu: (() => number) | undefined;
const PASSTHROUGH = ['SAGA_CONCURRENCY', 'PG_POOL_SIZE', 'COMMAND_RETRIES', 'PAYMENT_TIMEOUT_MS'] as const;

// ---- HTTP client ----------------------------------------------------------

// ---- watching final states in the event store -----------------------------

interface Final {
  readonly type: string;
  readonly position: number;
  readonly recordedAt: Date;
}

/**
 * One connection polls the events table for final order events every
 * POLL_MS (ORDER BY + LIMIT keep it on the primary key: without them, a
 * table not yet analysed is scanned whole at every poll), gap-safe: the cursor only moves to just below the read horizon
 * (every transaction below it has ended), events at or above it are read
 * again next time and deduplicated by order id.
 */
class FinalWatcher {
  private readonly pending = new Map<string, (f: Final) => void>();
  /** Final events seen before their order was registered (the POST's answer was still on its way). */
  private readonly early = new Map<string, Final>();
  private readonly done = new Set<string>();
  private cursor = 0;
  private running = true;
  private loop: Promise<void> | undefined;
  polls = 0;

  constructor(private readonly client: Client) {}

  start(from: number): void {
    this.cursor = from;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const res = await this.client.query<{
        horizon: string;
        position: string | null;
        type: string;
        order_id: string;
        recorded_at: Date;
      }>(
        `WITH h AS MATERIALIZED (SELECT es_horizon() AS horizon)
         SELECT h.horizon, e.position, e.type, e.data->>'orderId' AS order_id, e.recorded_at
           FROM h LEFT JOIN LATERAL (
             SELECT position, type, data, recorded_at FROM events WHERE position > $1 AND type = ANY($2) ORDER BY position LIMIT 10000) e ON true`,
        [this.cursor, FINAL_TYPES],
      );
      this.polls++;
      for (const r of res.rows) {
        if (r.position === null || this.done.has(r.order_id)) continue;
        const f: Final = { type: r.type, position: Number(r.position), recordedAt: r.recorded_at };
        this.done.add(r.order_id);
        const resolve = this.pending.get(r.order_id);
        if (resolve) {
          this.pending.delete(r.order_id);
          resolve(f);
        } else {
          this.early.set(r.order_id, f);
        }
      }
      const horizon = Number(res.rows[0]?.horizon ?? 0);
      if (horizon - 1 > this.cursor) this.cursor = horizon - 1;
      await sleep(POLL_MS);
    }
  }

  wait(orderId: string): Promise<Final> {
    const seen = this.early.get(orderId);
    if (seen) {
      this.early.delete(orderId);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(orderId);
        reject(new Error(`order ${orderId} reached no final state in ${FINAL_TIMEOUT_MS / 1000} s`));
      }, FINAL_TIMEOUT_MS);
      this.pending.set(orderId, (f) => {
        clearTimeout(timer);
        resolve(f);
      });
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

// ---- the saga side: orders over HTTP ----------------------------------------

interface Shop {
  readonly app: Target;
  readonly watcher: FinalWatcher;
  readonly customers: readonly { authorization: string }[];
  readonly products: readonly string[];
  seq: number;
}

interface Placed {
  /** place → OrderConfirmed recorded_at (ms) */
  latency: number;
  /** the POST's own round trip (ms) */
  postMs: number;
  final: Final;
}

/** Places the next order (customer and product in turn) and waits for its final state. */
async function placeAndWait(shop: Shop): Promise<Placed> {
  const i = shop.seq++;
  const customer = shop.customers[i % shop.customers.length]!;
  const productId = shop.products[i % shop.products.length]!;
  const placedAt = Date.now();
  const s = performance.now();
  const r = await sendJson(
    shop.app,
    'POST',
    '/orders',
    { channel: 'web', paymentMethod: 'card', items: [{ productId, quantity: 1 }] },
    customer,
  );
  const postMs = performance.now() - s;
  if (r.status !== 202) throw new Error(`POST /orders answered ${r.status}: ${JSON.stringify(r.json)?.slice(0, 300)}`);
  const final = await shop.watcher.wait(String(r.json.orderId));
  return { latency: final.recordedAt.getTime() - placedAt, postMs, final };
}

interface SagaSample {
  orders: number;
  notConfirmed: number;
  ms: number;
  latencies: number[];
  postMs: number[];
  lastPosition: number;
  cpuUs: number;
  /** PostgreSQL's CPU during the slice (ms), 0 when unknown */
  pgMs: number;
}

/** CLIENTS closed-loop clients for `ms`; each order is counted when final (the slice ends with the last one). */
async function sagaSlice(shop: Shop, ms: number, clients = CLIENTS): Promise<SagaSample> {
  const out: SagaSample = {
    orders: 0,
    notConfirmed: 0,
    ms: 0,
    latencies: [],
    postMs: [],
    lastPosition: 0,
    cpuUs: 0,
    pgMs: 0,
  };
  const pg0 = pgCpu?.() ?? 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let last = t0;
  await concurrently(clients, async () => {
    while (performance.now() - t0 < ms) {
      const p = await placeAndWait(shop);
      last = performance.now();
      out.orders++;
      out.postMs.push(p.postMs);
      out.lastPosition = Math.max(out.lastPosition, p.final.position);
      if (p.final.type === 'sales.OrderConfirmed') out.latencies.push(p.latency);
      else out.notConfirmed++;
    }
  });
  out.ms = last - t0;
  const cpu = process.cpuUsage(cpu0);
  out.cpuUs = cpu.user + cpu.system;
  out.pgMs = (pgCpu?.() ?? 0) - pg0;
  return out;
}

// ---- the raw side: the same events, appended directly -------------------------

interface TemplateEvent {
  readonly streamId: string;
  readonly revision: number;
  readonly type: string;
  /** JSON of data and metadata, with the template's order and product ids to replace */
  readonly data: string;
  readonly metadata: string;
}

/** One transaction of the template order: one append, or one appendMulti over several streams. */
interface TemplateTx {
  readonly writes: { streamId: string; shared: boolean; firstRevision: number; events: TemplateEvent[] }[];
}

interface Template {
  readonly orderId: string;
  readonly productId: string;
  readonly txs: TemplateTx[];
  readonly events: number;
  readonly bytes: number;
  readonly sagaSteps: number;
  readonly describe: string;
}

/** `order-saga-<id>` → `order-saga`, `inventory-<productId>` → `inventory`. */
const kindOf = (streamId: string, orderId: string, productId: string) =>
  streamId.replace(`-${orderId}`, '').replace(`-${productId}`, '');

/** Everything one finished order wrote: its own streams, and its events on the shared ones (they all carry data.orderId). */
async function readTemplate(pool: Pool, orderId: string): Promise<Template> {
  const res = await pool.query<{
    position: string;
    stream_id: string;
    stream_revision: string;
    type: string;
    data: Record<string, unknown>;
    metadata: Record<string, unknown>;
  }>(
    `SELECT position, stream_id, stream_revision, type, data, metadata FROM events
      WHERE data->>'orderId' = $1 OR stream_id LIKE '%' || $1 ORDER BY position`,
    [orderId],
  );
  const placed = res.rows.find((r) => r.type === 'sales.OrderPlaced');
  const items = (placed?.data.items ?? []) as { productId: string }[];
  if (!placed || items.length !== 1) throw new Error(`order ${orderId}: no one-line OrderPlaced event`);
  const productId = items[0]!.productId;
  const txs: TemplateTx[] = [];
  let lastTx = -1;
  let bytes = 0;
  for (const r of res.rows) {
    const tx = Math.floor(Number(r.position) / 65536);
    if (tx !== lastTx) txs.push({ writes: [] });
    lastTx = tx;
    const writes = txs[txs.length - 1]!.writes;
    let w = writes.find((x) => x.streamId === r.stream_id);
    if (!w) {
      w = {
        streamId: r.stream_id,
        shared: !r.stream_id.includes(orderId),
        firstRevision: Number(r.stream_revision),
        events: [],
      };
      writes.push(w);
    }
    const e = {
      streamId: r.stream_id,
      revision: Number(r.stream_revision),
      type: r.type,
      data: JSON.stringify(r.data),
      metadata: JSON.stringify(r.metadata),
    };
    bytes += e.data.length + e.metadata.length;
    w.events.push(e);
  }
  const short = (t: string) => t.replace(/^sales\./, '');
  const describe = txs
    .map((t) =>
      t.writes
        .map((w) => `${kindOf(w.streamId, orderId, productId)}:[${w.events.map((e) => short(e.type)).join('+')}]`)
        .join(' & '),
    )
    .join(' → ');
  return {
    orderId,
    productId,
    txs,
    events: res.rows.length,
    bytes,
    describe,
    sagaSteps: res.rows.filter((r) => r.type === 'sales.SagaStepRecorded').length,
  };
}

interface RawWrite {
  streamId: string;
  shared: boolean;
  expected: ExpectedRevision;
  events: EventToAppend[];
}

/** The template's transactions for a new order id on `productId`: fresh event ids, same JSON otherwise. */
function rawOrder(t: Template, productId: string): RawWrite[][] {
  const orderId = randomUUID();
  const sub = (s: string) => s.replaceAll(t.orderId, orderId).replaceAll(t.productId, productId);
  return t.txs.map((tx) =>
    tx.writes.map((w) => ({
      streamId: sub(w.streamId),
      shared: w.shared,
      expected: w.firstRevision === 0 ? 'no_stream' : w.firstRevision - 1,
      events: w.events.map((e) => ({
        id: randomUUID(),
        type: e.type,
        data: JSON.parse(sub(e.data)),
        metadata: JSON.parse(sub(e.metadata)),
      })),
    })),
  );
}

interface Raw {
  readonly store: PostgresEventStore;
  /** Last known revision of each shared (inventory) stream. */
  readonly revisions: Map<string, number>;
  conflicts: number;
}

/** One transaction; a shared stream is appended at its last known revision, and again after a conflict, like the saga's commands. */
async function rawTx(raw: Raw, writes: RawWrite[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const expected = writes.map((w) => (w.shared ? (raw.revisions.get(w.streamId) ?? 'no_stream') : w.expected));
    try {
      const results =
        writes.length === 1
          ? [await raw.store.append(writes[0]!.streamId, writes[0]!.events, expected[0]!)]
          : await raw.store.appendMulti(
              writes.map((w, i) => ({ streamId: w.streamId, events: w.events, expected: expected[i]! })),
            );
      writes.forEach((w, i) => {
        if (w.shared)
          raw.revisions.set(w.streamId, Math.max(raw.revisions.get(w.streamId) ?? -1, results[i]!.nextRevision));
      });
      return;
    } catch (e) {
      if (!(e instanceof ConcurrencyError) || attempt >= 100) throw e;
      raw.conflicts++;
      if (typeof e.actual === 'number')
        raw.revisions.set(e.streamId, Math.max(raw.revisions.get(e.streamId) ?? -1, e.actual));
    }
  }
}

/** `orders` prepared orders (events built before the clock starts), CLIENTS writers, each order's transactions in sequence. */
async function rawSlice(raw: Raw, orders: RawWrite[][][]): Promise<{ ms: number; cpuUs: number; pgMs: number }> {
  let next = 0;
  const pg0 = pgCpu?.() ?? 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await concurrently(CLIENTS, async () => {
    for (let i = next++; i < orders.length; i = next++) {
      for (const tx of orders[i]!) await rawTx(raw, tx);
    }
  });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { ms, cpuUs: cpu.user + cpu.system, pgMs: (pgCpu?.() ?? 0) - pg0 };
}

// ---- the paced phase ---------------------------------------------------------

interface PacedResult {
  rate: number;
  placed: number;
  confirmedInWindow: number;
  latencies: number[];
  /** Orders due in the warm-up: latencies (confirmed), and how many were placed late. */
  warmup: { latencies: number[]; late: number; placed: number };
  late: number;
  maxInFlight: number;
  notConfirmed: number;
  drainMs: number;
}

/**
 * Order i is due at i/rate (open loop), whether or not earlier ones are final; PACED_MAX_IN_FLIGHT bounds the backlog.
 * The first `warmupMs` run at the same rate without a break; their orders are reported apart (`warmup`).
 */
async function paced(shop: Shop, rate: number, ms: number, warmupMs: number): Promise<PacedResult> {
  const out: PacedResult = {
    rate,
    placed: 0,
    confirmedInWindow: 0,
    latencies: [],
    warmup: { latencies: [], late: 0, placed: 0 },
    late: 0,
    maxInFlight: 0,
    notConfirmed: 0,
    drainMs: 0,
  };
  const all: Promise<void>[] = [];
  let inFlight = 0;
  const start = performance.now();
  const t0 = start + warmupMs;
  for (let i = 0; ; i++) {
    const due = start + (i * 1000) / rate;
    if (due - t0 >= ms) break;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    while (inFlight >= PACED_MAX_IN_FLIGHT) await sleep(1);
    const warm = due < t0;
    const late = performance.now() - due > 10;
    inFlight++;
    if (warm) {
      out.warmup.placed++;
      if (late) out.warmup.late++;
    } else {
      if (late) out.late++;
      out.maxInFlight = Math.max(out.maxInFlight, inFlight);
      out.placed++;
    }
    all.push(
      placeAndWait(shop).then((p) => {
        inFlight--;
        const confirmed = p.final.type === 'sales.OrderConfirmed';
        if (warm) {
          if (confirmed) out.warmup.latencies.push(p.latency);
          return;
        }
        if (performance.now() - t0 <= ms) out.confirmedInWindow++;
        if (confirmed) out.latencies.push(p.latency);
        else out.notConfirmed++;
      }),
    );
  }
  const end = performance.now();
  await Promise.all(all);
  out.drainMs = performance.now() - end;
  return out;
}

// ---- counting what the app asks of its event store ----------------------------------

interface Count {
  calls: number;
  rows: number;
  conflicts: number;
  ms: number;
}

/**
 * Wraps the app's store methods (this instance only, in this process) to count calls, rows read
 * and concurrency conflicts per kind of stream: where the saga side's reads and retries go.
 */
interface SagaReads {
  reads: number;
  blocked: number;
  /** triggers per non-empty read */
  sizes: number[];
  /** ms from the end of a saga read that delivered triggers to the start of the next read: handling the batch, checkpoint included */
  handling: number[];
  /** ms from a trigger's recorded_at to the end of the read that delivered it to the saga */
  lags: number[];
}

function instrument(store: EventStore): {
  counts: Map<string, Count>;
  saga: SagaReads;
  sagaSteps: () => number;
} {
  const counts = new Map<string, Count>();
  const saga: SagaReads = { reads: 0, blocked: 0, sizes: [], handling: [], lags: [] };
  let sagaSteps = 0;
  let lastSagaReadEnd = 0;
  let lastSagaReadSize = 0;
  const kind = (streamId: string) =>
    streamId.replace(/-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, '');
  const bump = (key: string, ms: number, rows = 0, conflict = false) => {
    const c = counts.get(key) ?? { calls: 0, rows: 0, conflicts: 0, ms: 0 };
    c.calls++;
    c.rows += rows;
    c.ms += ms;
    if (conflict) c.conflicts++;
    counts.set(key, c);
  };
  const s = store as unknown as Record<string, (...args: any[]) => Promise<any>>;
  const wrap = (method: string, key: (args: any[]) => string, rows: (r: any, args: any[]) => number) => {
    const original = s[method]!.bind(store);
    s[method] = async (...args: any[]) => {
      const t0 = performance.now();
      try {
        const r: unknown = await original(...args);
        const k = key(args);
        bump(`${method} ${k}`, performance.now() - t0, rows(r, args));
        if (method === 'append' && k === 'order-saga') sagaSteps++;
        return r;
      } catch (e) {
        bump(`${method} ${key(args)}`, performance.now() - t0, 0, e instanceof ConcurrencyError);
        throw e;
      }
    };
  };
  // For appends, "rows" are the events written.
  wrap(
    'append',
    (a) => kind(String(a[0])),
    (_r, a) => (a[1] as unknown[]).length,
  );
  wrap(
    'appendMulti',
    (a) => (a[0] as { streamId: string }[]).map((w) => kind(w.streamId)).join('+'),
    (_r, a) => (a[0] as { events: unknown[] }[]).reduce((n, w) => n + w.events.length, 0),
  );
  wrap(
    'readStream',
    (a) => kind(String(a[0])),
    (r: unknown[]) => r.length,
  );
  wrap(
    'findAppend',
    (a) => kind(String(a[0])),
    () => 0,
  );
  wrap(
    'readBatch',
    () => '(subscriptions)',
    (r: { events: unknown[] }) => r.events.length,
  );
  // The saga runner's own reads (it subscribes with SAGA_TRIGGER_TYPES itself): how its triggers reach it.
  const counted = s.readBatch!;
  s.readBatch = async (...args: any[]) => {
    if (args[2] !== SAGA_TRIGGER_TYPES) return counted(...args) as Promise<unknown>;
    const start = Date.now();
    if (lastSagaReadEnd && lastSagaReadSize > 0) saga.handling.push(start - lastSagaReadEnd);
    const r = (await counted(...args)) as { events: { recordedAt: Date }[]; blocked: boolean };
    const end = Date.now();
    lastSagaReadEnd = end;
    lastSagaReadSize = r.events.length;
    saga.reads++;
    if (r.blocked) saga.blocked++;
    if (r.events.length) saga.sizes.push(r.events.length);
    for (const e of r.events) saga.lags.push(end - e.recordedAt.getTime());
    return r;
  };
  return { counts, saga, sagaSteps: () => sagaSteps };
}

// ---- setup and helpers ----------------------------------------------------------

async function signUpCustomers(t: Target, tag: string): Promise<{ authorization: string }[]> {
  const out: { authorization: string }[] = [];
  let next = 0;
  await concurrently(4, async () => {
    for (let i = next++; i < CUSTOMERS; i = next++) {
      const email = `buyer-${i}-${tag}@example.test`;
      const password = `Qz7-${randomBytes(12).toString('base64url')}-kv`;
      const s = await sendJson(t, 'POST', '/auth/signup', { email, password, name: 'Bench Buyer' });
      if (s.status !== 201) throw new Error(`signup of ${email} failed: ${s.status} ${JSON.stringify(s.json)}`);
      const l = await sendJson(t, 'POST', '/auth/login', { email, password });
      if (l.status !== 200) throw new Error(`login of ${email} failed: ${l.status} ${JSON.stringify(l.json)}`);
      out.push({ authorization: `Bearer ${l.json.accessToken}` });
    }
  });
  return out;
}

async function registerProducts(t: Target, admin: { authorization: string }, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < PRODUCTS; i++) {
    const sku = `BENCH-${tag}-${i}`;
    const r = await sendJson(
      t,
      'POST',
      '/products',
      {
        sku,
        name: `Bench widget ${i}`,
        unit: 'piece',
        channels: [
          {
            channel: 'web',
            price: 10 + i,
            currency: 'EUR',
            paymentMethods: ['card'],
            delivery: { method: 'parcel', days: 3 },
          },
        ],
      },
      admin,
    );
    if (r.status !== 201) throw new Error(`register product failed: ${r.status} ${JSON.stringify(r.json)}`);
    const id = String(r.json.productId);
    const s = await sendJson(
      t,
      'POST',
      `/products/${id}/stock-receipts`,
      { quantity: STOCK, reference: 'bench' },
      admin,
    );
    if (s.status !== 201) throw new Error(`stock receipt failed: ${s.status} ${JSON.stringify(s.json)}`);
    ids.push(id);
  }
  return ids;
}

/** pg_stat_database counters of one database (flushed by other backends within about a second). */
async function dbStats(pool: Pool, db: string): Promise<Record<string, number>> {
  const r = await pool.query<Record<string, string>>(
    `SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, blks_hit + blks_read AS blks
       FROM pg_stat_database WHERE datname = $1`,
    [db],
  );
  return Object.fromEntries(Object.entries(r.rows[0] ?? {}).map(([k, v]) => [k, Number(v)]));
}

/** Per-table scan counters of the database `pool` is on. */
async function tableStats(pool: Pool): Promise<Map<string, Record<string, number>>> {
  const r = await pool.query<Record<string, string>>(
    `SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, coalesce(idx_tup_fetch, 0) AS idx_tup_fetch,
            n_tup_ins + n_tup_upd + n_tup_del AS writes FROM pg_stat_user_tables`,
  );
  return new Map(
    r.rows.map((row) => [
      row.relname!,
      Object.fromEntries(
        Object.entries(row)
          .filter(([k]) => k !== 'relname')
          .map(([k, v]) => [k, Number(v)]),
      ),
    ]),
  );
}

/**
 * CPU time (ms) of the local PostgreSQL server: its postmaster with the children it has reaped, plus every
 * live child. undefined when the server is not on this machine (DATABASE_URL elsewhere) or /proc is unreadable.
 */
function pgCpuReader(backendPid: number): (() => number) | undefined {
  const tck = 100; // USER_HZ on Linux
  const stat = (pid: number | string) => {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      // after "pid (comm) ": state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based from state
      return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
    } catch {
      return undefined;
    }
  };
  const backend = stat(backendPid);
  if (!backend) return undefined;
  const postmaster = backend.ppid;
  const pm = stat(postmaster);
  if (!pm) return undefined;
  return () => {
    let ticks = 0;
    const root = stat(postmaster);
    if (root) ticks += root.own + root.children;
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const st = stat(d);
      if (st?.ppid === postmaster) ticks += st.own;
    }
    return (ticks * 1000) / tck;
  };
}

const diff = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.keys(b).map((k) => [k, b[k]! - (a[k] ?? 0)]));

async function countEvents(pool: Pool): Promise<number> {
  return Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]!.n);
}

/** Until no event has been appended for `ms`. */
async function quiet(pool: Pool, ms: number): Promise<void> {
  for (let n = await countEvents(pool), i = 0; i < 600; i++) {
    await sleep(ms);
    const m = await countEvents(pool);
    if (m === n) return;
    n = m;
  }
}

/**
 * Until `steps` saga steps are recorded in all (they land after the confirmations) and the
 * projections have caught up: nothing of the saga side runs on into the next slice.
 */
async function settle(
  running: RunningApp,
  sagaSteps: () => number,
  steps: number,
  lastPosition: number,
): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (sagaSteps() < steps) {
    if (Date.now() > deadline) throw new Error(`the saga recorded ${sagaSteps()} steps within 60 s, not ${steps}`);
    await sleep(10);
  }
  const names = [
    ...new Set(
      (
        await running.platform.pool.query<{ name: string }>(
          "SELECT name FROM processor_checkpoints WHERE kind = 'projection'",
        )
      ).rows.map((r) => r.name),
    ),
  ];
  const head = Math.max(lastPosition, await running.platform.store.headPosition());
  await Promise.all(names.map((n) => running.platform.projections.waitFor(n, head, 10_000).catch(() => false)));
}

const fmtOrders = (perSec: number) => `${perSec.toFixed(perSec < 100 ? 1 : 0)} orders/s`;
const runsOf = (xs: readonly number[], digits = 1) => xs.map((x) => x.toFixed(digits)).join(' / ');

// ---- main ------------------------------------------------------------------------

async function main(): Promise<void> {
  const databaseUrl = benchDatabaseUrl();
  const redisUrl = process.env.BENCH_REDIS_URL;
  if (!redisUrl) throw new Error('BENCH_REDIS_URL is not set: run the benchmarks with `bash bench/run.sh orders`');
  const sagaDb = new URL(databaseUrl).pathname.slice(1);
  const rawDb = `${sagaDb.slice(0, 59)}_raw`;
  const tag = `${Date.now().toString(36)}${process.pid}`;
  const prefix = `bench-orders-${tag}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-orders-'));
  const passed = Object.fromEntries(PASSTHROUGH.flatMap((k) => (process.env[k] ? [[k, process.env[k]]] : [])));
  const adminPassword = `Adm1n-${randomBytes(12).toString('base64url')}`;
  const config = loadConfig({
    ...passed,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'silent',
    ADMIN_EMAIL: `admin-${tag}@example.test`,
    ADMIN_PASSWORD: adminPassword,
    ACCESS_TOKEN_TTL_S: '3600',
    // Every bench buyer signs up from 127.0.0.1.
    SIGNUP_MAX_PER_ADDRESS: '1000000000',
    ARGON2_SIGNUP_MAX_QUEUE: '10000',
    // Orders stay confirmed: the shipping batch would add its own writes in the middle of a slice.
    SHIPPING_INTERVAL_MS: '3600000',
  });

  let running: RunningApp | undefined;
  let agent: Agent | undefined;
  let watcherClient: Client | undefined;
  let watcher: FinalWatcher | undefined;
  let statsPool: Pool | undefined;
  let rawPool: Pool | undefined;
  let rawStore: PostgresEventStore | undefined;
  let rawCreated = false;
  const admin = new Client({ connectionString: withDatabase(databaseUrl, 'postgres') });
  try {
    running = await createApp(config, createLogger('silent'), {});
    const pool = running.platform.pool;
    const { counts: storeCounts, saga: sagaReads, sagaSteps } = instrument(running.platform.store);
    console.log(`orders benchmark — ${await serverSummary(pool)}`);
    console.log(
      `app: SAGA_CONCURRENCY=${config.SAGA_CONCURRENCY}, PG_POOL_SIZE=${config.PG_POOL_SIZE}, projections and saga running in-process, ` +
        `load generator in-process (node:http keep-alive); ${CLIENTS} clients, ${CUSTOMERS} customers, ${PRODUCTS} products, ` +
        `${RUNS} runs × ${SLICES} slices of ${SLICE_SECONDS} s per side`,
    );
    console.log(loadLine('start'));

    // The raw side's database, on the same server.
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${rawDb} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${rawDb}`);
    rawCreated = true;
    const rawUrl = withDatabase(databaseUrl, rawDb);
    rawPool = new Pool({ connectionString: rawUrl, max: CLIENTS + 4, application_name: 'bench-raw' });
    rawPool.on('error', (e) => console.error('bench: idle raw connection failed', e.message));
    await migrate(rawPool);
    rawStore = new PostgresEventStore(rawPool, { listenConnectionString: rawUrl, log: (m, e) => console.error(m, e) });
    const raw: Raw = { store: rawStore, revisions: new Map(), conflicts: 0 };
    statsPool = new Pool({ connectionString: databaseUrl, max: 2, application_name: 'bench-stats' });

    const app = target(running.url, CLIENTS + 64, REQUEST_TIMEOUT_MS);
    agent = app.agent;
    const setup = performance.now();
    const adminLogin = await sendJson(app, 'POST', '/auth/login', {
      email: config.ADMIN_EMAIL,
      password: adminPassword,
    });
    if (adminLogin.status !== 200)
      throw new Error(`admin login failed: ${adminLogin.status} ${JSON.stringify(adminLogin.json)}`);
    const adminAuth = { authorization: `Bearer ${adminLogin.json.accessToken}` };
    const products = await registerProducts(app, adminAuth, tag);
    const customers = await signUpCustomers(app, tag);
    console.log(
      `${PRODUCTS} products with ${STOCK.toLocaleString('en-US')} units each, ${CUSTOMERS} customers signed up and logged in over HTTP ` +
        `in ${((performance.now() - setup) / 1000).toFixed(1)} s`,
    );

    // The inventory streams of the raw side start as the real ones did: with their stock receipt.
    for (const p of products) {
      const first = (await running.platform.store.readStream(`inventory-${p}`, 0, 1))[0]!;
      await rawStore.append(
        first.streamId,
        [{ id: randomUUID(), type: first.type, data: first.data, metadata: first.metadata }],
        'no_stream',
      );
      raw.revisions.set(first.streamId, 0);
    }

    watcherClient = new Client({ connectionString: databaseUrl, application_name: 'bench-watch' });
    await watcherClient.connect();
    pgCpu = pgCpuReader((await watcherClient.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    watcher = new FinalWatcher(watcherClient);
    watcher.start(0);
    const shop: Shop = { app, watcher, customers, products, seq: 0 };

    // Warm-up (JIT, pooled connections, plan caches), and one real order to copy for the raw side.
    const warm = await sagaSlice(shop, WARMUP_SECONDS * 1000);
    // The last saga steps land after the confirmations: copy an order once nothing is written any more.
    await quiet(pool, 300);
    const sample = await pool.query<{ order_id: string }>(
      `SELECT data->>'orderId' AS order_id FROM events WHERE type = 'sales.OrderConfirmed' ORDER BY position DESC LIMIT 1`,
    );
    if (!sample.rows[0]) throw new Error('no order was confirmed during the warm-up');
    const template = await readTemplate(pool, sample.rows[0].order_id);
    await settle(running, sagaSteps, 0, warm.lastPosition);
    let placed = warm.orders;
    // Statistics as a long-running database has them: on a table never analysed, the subscriptions'
    // `SELECT 1 FROM events WHERE position >= $1 LIMIT 1` is planned as a sequential scan and reads the whole table.
    await pool.query('ANALYZE');
    console.log(
      `warm-up: ${warm.orders} orders in ${(warm.ms / 1000).toFixed(1)} s (${warm.notConfirmed} not confirmed), then ANALYZE of both databases`,
    );
    console.log(
      `one order writes ${template.events} events (${template.bytes.toLocaleString('en-US')} bytes of JSON) in ${template.txs.length} transactions ` +
        `(read from order ${template.orderId}):\n  ${template.describe}`,
    );
    const warmRaw = Array.from({ length: Math.min(200, warm.orders) }, (_, i) =>
      rawOrder(template, products[i % PRODUCTS]!),
    );
    await rawSlice(raw, warmRaw);
    await rawPool.query('ANALYZE');

    // ---- a short ramp: the saga side alone at a few concurrencies (closed loop).
    const ramp: string[] = [];
    for (const c of RAMP) {
      const r = await sagaSlice(shop, RAMP_SECONDS * 1000, c);
      placed += r.orders;
      await settle(running, sagaSteps, placed * template.sagaSteps, r.lastPosition);
      ramp.push(`${c} → ${fmtOrders(r.orders / (r.ms / 1000))} (p50 ${fmtMs(percentile(r.latencies, 50))})`);
    }
    console.log(
      `ramp, saga side alone, ${RAMP_SECONDS} s each, clients → orders/s to final state (place → confirmed p50):\n  ${ramp.join(', ')}`,
    );

    // ---- closed loop: saga and raw slices alternating.
    const sagaRates: number[] = [];
    const rawRates: number[] = [];
    const p50s: number[] = [];
    const p99s: number[] = [];
    const postP50: number[] = [];
    const sliceRates: string[] = [];
    let sagaOrders = 0;
    let rawOrders = 0;
    let notConfirmed = 0;
    let sagaCpu = 0;
    let rawCpu = 0;
    let sagaPg = 0;
    let rawPg = 0;
    let sagaWall = 0;
    let rawWall = 0;
    const conflicts0 = raw.conflicts;
    const events0 = await countEvents(pool);
    const rawEvents0 = await countEvents(rawPool);
    const sagaStats0 = await dbStats(statsPool, sagaDb);
    const rawStats0 = await dbStats(statsPool, rawDb);
    const tables0 = await tableStats(statsPool);
    const measured0 = Date.now();
    storeCounts.clear();
    Object.assign(sagaReads, { reads: 0, blocked: 0, sizes: [], handling: [], lags: [] });
    for (let run = 1; run <= RUNS; run++) {
      let sMs = 0;
      let sN = 0;
      let rMs = 0;
      let rN = 0;
      const lat: number[] = [];
      const post: number[] = [];
      for (let sl = 0; sl < SLICES; sl++) {
        const s = await sagaSlice(shop, SLICE_SECONDS * 1000);
        placed += s.orders;
        await settle(running, sagaSteps, placed * template.sagaSteps, s.lastPosition);
        sMs += s.ms;
        sN += s.orders;
        lat.push(...s.latencies);
        post.push(...s.postMs);
        notConfirmed += s.notConfirmed;
        sagaCpu += s.cpuUs;
        sagaPg += s.pgMs;
        sagaWall += s.ms;
        sliceRates.push((s.orders / (s.ms / 1000)).toFixed(1));
        const orders = Array.from({ length: s.orders }, (_, i) => rawOrder(template, products[i % PRODUCTS]!));
        const r = await rawSlice(raw, orders);
        rMs += r.ms;
        rN += orders.length;
        rawCpu += r.cpuUs;
        rawPg += r.pgMs;
        rawWall += r.ms;
      }
      sagaRates.push(sN / (sMs / 1000));
      rawRates.push(rN / (rMs / 1000));
      p50s.push(percentile(lat, 50));
      p99s.push(percentile(lat, 99));
      postP50.push(percentile(post, 50));
      sagaOrders += sN;
      rawOrders += rN;
    }
    // Idle backends flush their statistics within PGSTAT_IDLE_INTERVAL (10 s).
    await sleep(11_000);
    const sagaStats = diff(sagaStats0, await dbStats(statsPool, sagaDb));
    const tables = [...(await tableStats(statsPool)).entries()]
      .map(([name, t]) => ({ name, d: diff(tables0.get(name) ?? {}, t) }))
      .sort((a, b) => b.d.seq_tup_read! + b.d.idx_tup_fetch! - (a.d.seq_tup_read! + a.d.idx_tup_fetch!))
      .slice(0, 6);
    const rawStats = diff(rawStats0, await dbStats(statsPool, rawDb));
    const sagaEventsPerOrder = ((await countEvents(pool)) - events0) / sagaOrders;
    const rawEventsPerOrder = ((await countEvents(rawPool)) - rawEvents0) / rawOrders;

    const sRate = median(sagaRates);
    const rRate = median(rawRates);
    const ratio = sRate / rRate;
    const w = 40;
    console.log(
      `\n1. orders to confirmed at ${CLIENTS} concurrent clients (closed loop: each places an order and waits until it is final), ` +
        `${RUNS} runs × ${SLICES} slices × ${SLICE_SECONDS} s, sides alternating`,
    );
    console.log(
      `  ${'saga: POST /orders → confirmed'.padEnd(w)}  ${fmtOrders(sRate).padStart(16)}   (runs: ${runsOf(sagaRates)})   ` +
        `p50 ${fmtMs(median(p50s))}  p99 ${fmtMs(median(p99s))}${notConfirmed ? `   ${notConfirmed} NOT CONFIRMED` : ''}`,
    );
    console.log(
      `  ${`raw: the same ${template.txs.length} appends per order`.padEnd(w)}  ${fmtOrders(rRate).padStart(16)}   (runs: ${runsOf(rawRates)})`,
    );
    console.log(
      `  ${'ratio'.padEnd(w)}  ${`${ratio.toFixed(2)}×`.padStart(16)}   target ≥ ${TARGET.toFixed(2)}×  ${ratio >= TARGET ? 'PASS' : 'BELOW'}`,
    );
    info(
      `place → confirmed p50 runs: ${runsOf(p50s)} ms, p99 runs: ${runsOf(p99s)} ms; POST /orders (202) p50 ${fmtMs(median(postP50))}`,
    );
    info(`saga rate per slice, in order (orders/s): ${sliceRates.join(' ')}`);
    info(
      `events per order: saga side ${sagaEventsPerOrder.toFixed(2)}, raw side ${rawEventsPerOrder.toFixed(2)} (template ${template.events}); ` +
        `raw-side inventory conflicts retried: ${raw.conflicts - conflicts0}`,
    );
    info(
      `events/s: saga ${Math.round(sRate * template.events).toLocaleString('en-US')}, raw ${Math.round(rRate * template.events).toLocaleString('en-US')}`,
    );
    const per = (s: Record<string, number>, n: number, k: string) => (s[k]! / n).toFixed(1);
    info(
      `per order, from pg_stat_database — saga db: ${per(sagaStats, sagaOrders, 'xact_commit')} transactions (a statement outside BEGIN is one), ${per(sagaStats, sagaOrders, 'tup_returned')} tuples returned, ` +
        `${per(sagaStats, sagaOrders, 'tup_fetched')} fetched, ${per(sagaStats, sagaOrders, 'blks')} buffer accesses; raw db: ${per(rawStats, rawOrders, 'xact_commit')} commits, ` +
        `${per(rawStats, rawOrders, 'tup_returned')} returned, ${per(rawStats, rawOrders, 'tup_fetched')} fetched, ${per(rawStats, rawOrders, 'blks')} buffer accesses`,
    );
    info(
      `saga db, per order and table (rows read by sequential scans / scans, rows fetched by index scans / scans, rows written): ${tables
        .map(
          ({ name, d }) =>
            `${name} ${(d.seq_tup_read! / sagaOrders).toFixed(0)}/${(d.seq_scan! / sagaOrders).toFixed(1)} seq, ` +
            `${(d.idx_tup_fetch! / sagaOrders).toFixed(0)}/${(d.idx_scan! / sagaOrders).toFixed(1)} idx, ${(d.writes! / sagaOrders).toFixed(1)} w`,
        )
        .join('; ')}`,
    );
    const cores = (ms: number, wall: number) => `${(ms / wall).toFixed(2)} cores`;
    info(
      `CPU per order — bench process (app, saga, load generator; all threads): saga ${(sagaCpu / sagaOrders / 1000).toFixed(2)} ms, raw ${(rawCpu / rawOrders / 1000).toFixed(2)} ms` +
        (pgCpu
          ? `; PostgreSQL (all its processes): saga ${(sagaPg / sagaOrders).toFixed(2)} ms, raw ${(rawPg / rawOrders).toFixed(2)} ms`
          : '; PostgreSQL: not local, not measured'),
    );
    info(
      `CPU busy while timed — saga slices: bench process ${cores(sagaCpu / 1000, sagaWall)}${pgCpu ? ` + PostgreSQL ${cores(sagaPg, sagaWall)}` : ''}; ` +
        `raw slices: ${cores(rawCpu / 1000, rawWall)}${pgCpu ? ` + ${cores(rawPg, rawWall)}` : ''} (of ${cpus().length}, shared with whatever else runs); ` +
        `watcher polls: ${watcher.polls.toLocaleString('en-US')} in ${((Date.now() - measured0) / 1000).toFixed(0)} s`,
    );

    // Where an order's time goes on the saga side: gaps between its events (recorded_at), over the measured orders.
    const stages = await pool.query<{ stage: string; n: string; p50: number; p99: number }>(
      `WITH e AS (
         SELECT coalesce(data->>'orderId', data->'trigger'->>'orderId') AS order_id, type, recorded_at, position,
                CASE WHEN type = 'sales.SagaStepRecorded' THEN 'saga step (' || replace(data->'trigger'->>'type', 'sales.', '') || ')' ELSE replace(type, 'sales.', '') END AS label
           FROM events WHERE recorded_at >= to_timestamp($1 / 1000.0) AND type LIKE 'sales.%' AND type <> 'sales.OrderPaid'),
       g AS (SELECT label, lag(label) OVER w AS prev, row_number() OVER w AS k,
                    extract(epoch FROM recorded_at - lag(recorded_at) OVER w) * 1000 AS ms
               FROM e WHERE order_id IS NOT NULL WINDOW w AS (PARTITION BY order_id ORDER BY position))
       SELECT prev || ' → ' || label AS stage, count(*) AS n,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
         FROM g WHERE prev IS NOT NULL GROUP BY 1 HAVING count(*) > 10 ORDER BY avg(k)`,
      [measured0],
    );
    info("saga side, time between an order's consecutive events (recorded_at, transaction start), measured slices:");
    for (const s of stages.rows)
      console.log(
        `           ${s.stage.padEnd(62)} p50 ${fmtMs(Number(s.p50)).padStart(9)}  p99 ${fmtMs(Number(s.p99)).padStart(9)}  (n ${s.n})`,
      );
    info(
      `the app's event-store calls per order during the measured saga slices (calls, rows read, conflicts, ms spent awaiting, all callers):`,
    );
    for (const [k, c] of [...storeCounts.entries()].sort((a, b) => b[1].calls - a[1].calls)) {
      console.log(
        `           ${k.padEnd(40)} ${(c.calls / sagaOrders).toFixed(2).padStart(7)} calls  ${(c.rows / sagaOrders).toFixed(1).padStart(8)} rows  ` +
          `${(c.conflicts / sagaOrders).toFixed(2).padStart(6)} conflicts  ${fmtMs(c.ms / sagaOrders).padStart(9)}`,
      );
    }
    const sr = { ...sagaReads };
    info(
      `the saga runner's reads, measured slices: ${sr.reads.toLocaleString('en-US')} reads (${sr.sizes.length.toLocaleString('en-US')} with triggers), ${(sr.reads ? (100 * sr.blocked) / sr.reads : 0).toFixed(0)} % of them ` +
        `'blocked' (committed events waiting behind an older open transaction); triggers per non-empty read p50 ${percentile(sr.sizes, 50)} max ${Math.max(0, ...sr.sizes)}; ` +
        `from a non-empty read's end to the next read (handling that batch, checkpoint included) p50 ${fmtMs(percentile(sr.handling, 50))} p99 ${fmtMs(percentile(sr.handling, 99))}; ` +
        `trigger recorded_at → delivered to the saga p50 ${fmtMs(percentile(sr.lags, 50))} p99 ${fmtMs(percentile(sr.lags, 99))}`,
    );
    const inv = `inventory-${products[0]}`;
    const invRead = performance.now();
    const invEvents = await running.platform.store.readStream(inv);
    info(
      `the inventory stream of one product now holds ${invEvents.length.toLocaleString('en-US')} events (reading it whole here: ${fmtMs(performance.now() - invRead)}); ` +
        'how much of it each reservation reads: the "readStream inventory" rows above',
    );

    // ---- 2. paced: a steady arrival rate the system sustains.
    const rate = Math.max(1, Math.round((sRate * PACED_PCT) / 100));
    const pr = await paced(shop, rate, PACED_SECONDS * 1000, PACED_WARMUP_SECONDS * 1000);
    console.log(
      `\n2. orders paced at ${rate}/s (${PACED_PCT} % of 1's saga rate; open loop), ${PACED_SECONDS} s after ${PACED_WARMUP_SECONDS} s at the same rate`,
    );
    console.log(
      `  ${'place → confirmed'.padEnd(w)}  p50 ${fmtMs(percentile(pr.latencies, 50)).padStart(9)}   p99 ${fmtMs(percentile(pr.latencies, 99)).padStart(9)}   ` +
        `max ${fmtMs(Math.max(...pr.latencies))}${pr.notConfirmed ? `   ${pr.notConfirmed} NOT CONFIRMED` : ''}`,
    );
    const p99 = percentile(pr.latencies, 99);
    console.log(
      `  ${'p99 target'.padEnd(w)}  ≤ ${PACED_P99_TARGET_MS} ms  ${p99 <= PACED_P99_TARGET_MS ? 'PASS' : 'ABOVE'}`,
    );
    info(
      `${pr.placed} orders placed, ${pr.confirmedInWindow} final within the window (${fmtOrders(pr.confirmedInWindow / PACED_SECONDS)}), ` +
        `the rest within ${fmtMs(pr.drainMs)} after it; up to ${pr.maxInFlight} in flight; ${pr.late} placed > 10 ms late`,
    );
    if (pr.warmup.placed)
      info(
        `the first ${PACED_WARMUP_SECONDS} s (not counted above): ${pr.warmup.placed} orders, ${pr.warmup.late} placed > 10 ms late, ` +
          `place → confirmed p50 ${fmtMs(percentile(pr.warmup.latencies, 50))} p99 ${fmtMs(percentile(pr.warmup.latencies, 99))} ` +
          `max ${fmtMs(Math.max(0, ...pr.warmup.latencies))}`,
      );

    // ---- 3. a cold decision on a product with COLD_ORDERS orders behind it (raw database, no app traffic).
    await coldDecisions(rawPool, rawStore, w);
    console.log(`\n${loadLine('end')}`);
  } finally {
    await watcher?.stop().catch(() => undefined);
    await watcherClient?.end().catch(() => undefined);
    await running?.close();
    agent?.destroy();
    await rawStore?.close();
    await rawPool?.end();
    await statsPool?.end();
    if (rawCreated) {
      if (process.env.BENCH_KEEP_DB === '1') console.error(`[bench] kept database ${rawDb}`);
      else
        await admin
          .query(`DROP DATABASE IF EXISTS ${rawDb} WITH (FORCE)`)
          .catch((e: unknown) => console.error(`could not drop ${rawDb}:`, e));
    }
    await admin.end().catch(() => undefined);
    await dropRedisKeys(redisUrl, prefix).catch((e: unknown) =>
      console.error("could not drop the benchmark's Redis keys:", e),
    );
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * A reservation decided with no cache (a restarted process, a product not
 * touched lately), on a product whose inventory stream holds COLD_ORDERS
 * orders (each reserved and shipped: 2 events), against the same on a new
 * product: the state keeps open reservations only and the stream is
 * snapshotted, so the two should cost about the same. The first decision on
 * the long stream has no snapshot yet (built here without the app) and folds
 * it all: shown too.
 */
async function coldDecisions(pool: Pool, store: PostgresEventStore, w: number): Promise<void> {
  const snapshots = () => new StreamSnapshots(pool, inventorySnapshotOptions(200));
  const at = new Date().toISOString();
  const meta = { correlationId: 'bench', causationId: 'bench', actor: 'system:bench' };
  const newProduct = async (orders: number): Promise<string> => {
    const productId = randomUUID();
    const streamId = `inventory-${productId}`;
    await store.append(
      streamId,
      [
        {
          id: randomUUID(),
          type: 'sales.StockReceived',
          data: { productId, quantity: 10_000_000, reference: 'bench', by: 'bench', at },
          metadata: meta,
        },
      ],
      'no_stream',
    );
    const chunk = 2500;
    for (let o = 0; o < orders; o += chunk) {
      const events: EventToAppend[] = [];
      for (let i = o; i < Math.min(orders, o + chunk); i++) {
        const orderId = randomUUID();
        const data = { productId, orderId, quantity: 1, at };
        events.push({ id: randomUUID(), type: 'sales.StockReserved', data, metadata: meta });
        events.push({ id: randomUUID(), type: 'sales.StockShipped', data, metadata: meta });
      }
      await store.append(streamId, events, 2 * o);
    }
    return productId;
  };
  const decide = async (productId: string, s: StreamSnapshots<InventoryState>) => {
    const t = performance.now();
    const r = await handleCommand({
      store,
      decider: inventoryDecider,
      streamId: `inventory-${productId}`,
      command: { type: 'ReserveStock', data: { productId, orderId: randomUUID(), quantity: 1, now: new Date() } },
      ctx: { ...meta, idempotencyKey: randomUUID(), now: new Date() },
      retries: 5,
      cache: new StateCache<InventoryState>(),
      snapshots: s,
      lookupKey: false,
    });
    if (r.events[0]?.type !== 'sales.StockReserved') throw new Error('cold decision: not reserved');
    return performance.now() - t;
  };
  const built = performance.now();
  const big = await newProduct(COLD_ORDERS);
  const buildMs = performance.now() - built;
  const first = await decide(big, snapshots());
  const N = 30;
  const fresh: number[] = [];
  const long: number[] = [];
  for (let i = 0; i < N; i++) {
    // Alternating, each with a new cache and a new snapshot reader (nothing of the previous decision kept in memory).
    fresh.push(await decide(await newProduct(0), snapshots()));
    long.push(await decide(big, snapshots()));
  }
  const ratio = median(long) / median(fresh);
  console.log(
    `\n3. a cold reservation (no cache: a restarted process) on a product with ${COLD_ORDERS.toLocaleString('en-US')} orders behind it ` +
      `(${(2 * COLD_ORDERS + 1).toLocaleString('en-US')} inventory events) vs on a new product, median of ${N} each`,
  );
  console.log(
    `  ${'new product'.padEnd(w)}  ${fmtMs(median(fresh)).padStart(9)}   p90 ${fmtMs(percentile(fresh, 90))}`,
  );
  console.log(
    `  ${`${COLD_ORDERS.toLocaleString('en-US')} orders, from its snapshot`.padEnd(w)}  ${fmtMs(median(long)).padStart(9)}   p90 ${fmtMs(percentile(long, 90))}`,
  );
  console.log(
    `  ${'ratio'.padEnd(w)}  ${`${ratio.toFixed(2)}×`.padStart(9)}   target ≤ ${COLD_RATIO_TARGET.toFixed(1)}× (about the same)  ${ratio <= COLD_RATIO_TARGET ? 'PASS' : 'ABOVE'}`,
  );
  info(
    `the first cold decision on the long stream, before any snapshot existed, folded all of it: ${fmtMs(first)} ` +
      `(events appended in ${(buildMs / 1000).toFixed(1)} s; the state holds open reservations only, so that fold is linear)`,
  );
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
