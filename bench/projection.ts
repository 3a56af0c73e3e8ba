import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Client, type Pool } from 'pg';
import type { RecordedEvent } from '../src/platform/event-store/event-store';
import { PostgresEventStore } from '../src/platform/event-store/postgres-event-store';
import { Projections } from '../src/platform/processing/projections';
import type { Projection, Queryable } from '../projections/projection';
import {
  RUNS,
  checkpoint,
  concurrently,
  copyField,
  copyLines,
  envInt,
  fmtMs,
  fmtRate,
  info,
  loadLine,
  median,
  openBenchDatabase,
  percentile,
  readingEvent,
  report,
  serverSummary,
  sleep,
  timed,
} from './support';

/**
 * Projection throughput and lag.
 *
 *  1. Rebuild: Projections.rebuild of a benchmark projection that writes
 *     one row per event (one INSERT ... SELECT FROM unnest(...) per batch)
 *     vs a raw pipeline on the same database: SELECT the same events in
 *     batches of the same size (keyset on position) and COPY the same rows
 *     into an identical table. Median of RUNS alternating runs; the two
 *     tables are compared row for row afterwards.
 *  2. Live lag: the engine running (engine.start()), one writer-equivalent
 *     appending single events at half the measured maximum single-writer
 *     append rate for LAG_SECONDS; for every append, the time from the
 *     append's return until engine.waitFor(name, position) resolves.
 *
 * Figures only; nothing is asserted.
 */

const TARGET = 0.5;
/** Issue 13: live lag, append returned → projected, p99 at half the max single-writer rate. */
const LAG_P99_TARGET_MS = 50;
const NAME = 'bench_readings';
const TABLE = 'bench_readings';
const RAW_TABLE = 'bench_readings_raw';
const EVENTS = envInt('BENCH_PROJECTION_EVENTS', 100_000);
const REBUILD_BATCH = envInt('BENCH_REBUILD_BATCH', 5000);
const LIVE_BATCH = envInt('BENCH_LIVE_BATCH', 500);
const LAG_SECONDS = envInt('BENCH_LAG_SECONDS', 20);
const MAX_RATE_SECONDS = 3;
const LANES = 32;

const ddl = (table: string) =>
  `CREATE TABLE ${table} (position bigint PRIMARY KEY, stream_id text NOT NULL, device text NOT NULL, value double precision NOT NULL, recorded_at timestamptz NOT NULL)`;

/** One row per reading, written with one statement per batch. */
const benchProjection: Projection = {
  name: NAME,
  version: 1,
  tables: [TABLE],
  setup: [ddl(TABLE)],
  eventTypes: ['bench.Reading'],
  async apply(events: readonly RecordedEvent[], db: Queryable): Promise<void> {
    if (events.length === 0) return;
    const n = events.length;
    const positions = new Array<number>(n);
    const streams = new Array<string>(n);
    const devices = new Array<string>(n);
    const values = new Array<number>(n);
    const at = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const e = events[i]!;
      positions[i] = e.position;
      streams[i] = e.streamId;
      devices[i] = String(e.data.device);
      values[i] = Number(e.data.value);
      at[i] = e.recordedAt.toISOString();
    }
    await db.query(
      `INSERT INTO ${TABLE} (position, stream_id, device, value, recorded_at)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[])`,
      [positions, streams, devices, values, at],
    );
  },
};

interface RawRow {
  position: number;
  stream_id: string;
  data: Record<string, unknown>;
  recorded_at: Date;
}

/** The raw ceiling: keyset-paged SELECT of the columns needed, COPY of the same rows. */
async function rawPipeline(pool: Pool): Promise<number> {
  await pool.query(`DROP TABLE IF EXISTS ${RAW_TABLE}`);
  await pool.query(ddl(RAW_TABLE));
  const c = await pool.connect();
  let cursor = 0;
  let rows = 0;
  try {
    for (;;) {
      const res = await c.query<RawRow>(
        `SELECT position, stream_id, data, recorded_at FROM events WHERE position > $1 AND type = ANY($2) ORDER BY position LIMIT $3`,
        [cursor, benchProjection.eventTypes, REBUILD_BATCH],
      );
      if (res.rows.length === 0) break;
      rows += await copyLines(
        c,
        `COPY ${RAW_TABLE} (position, stream_id, device, value, recorded_at) FROM STDIN`,
        res.rows.map(
          (r) =>
            `${r.position}\t${copyField(r.stream_id)}\t${copyField(String(r.data.device))}\t${Number(r.data.value)}\t${r.recorded_at.toISOString()}\n`,
        ),
      );
      cursor = res.rows.at(-1)!.position;
      if (res.rows.length < REBUILD_BATCH) break;
    }
  } finally {
    c.release();
  }
  return rows;
}

async function main(): Promise<void> {
  const { url, pool } = await openBenchDatabase(24);
  const store = new PostgresEventStore(pool, { listenConnectionString: url, log: (m, e) => console.error(m, e) });
  const engine = new Projections(pool, store, [benchProjection], {
    connectionString: url,
    batchSize: LIVE_BATCH,
    rebuildBatchSize: REBUILD_BATCH,
    maxAttempts: 3,
    log: (level, msg, extra) => {
      if (level !== 'info') console.error(`engine ${level}: ${msg}`, extra ?? '');
    },
  });
  try {
    console.log(`projection benchmark — ${await serverSummary(pool)}`);
    console.log(loadLine('start'));

    // Events to project: readings from 500 devices, appended 100 per append by 4 writers.
    const fill = await timed(() =>
      concurrently(4, async (w) => {
        for (let b = w; b * 100 < EVENTS; b += 4) {
          const n = Math.min(100, EVENTS - b * 100);
          await store.append(
            `dev-${b % 500}-${Math.floor(b / 500)}`,
            Array.from({ length: n }, (_, i) => readingEvent(b * 100 + i)),
            'no_stream',
          );
        }
      }),
    );
    console.log(
      `filled ${EVENTS.toLocaleString('en-US')} events in ${(fill.ms / 1000).toFixed(1)} s (${fmtRate(EVENTS / (fill.ms / 1000))}, 4 writers × 100 events/append)`,
    );
    await pool.query('VACUUM ANALYZE events');
    await engine.register();

    // 1. Rebuild vs raw pipeline, alternating.
    const rebuildRates: number[] = [];
    const rawRates: number[] = [];
    for (let run = 1; run <= RUNS; run++) {
      await checkpoint(pool);
      const r = await timed(() => engine.rebuild(NAME, 'bench'));
      if (r.value.events !== EVENTS)
        console.log(`  warning: rebuild applied ${r.value.events} events, expected ${EVENTS}`);
      rebuildRates.push(r.value.events / (r.ms / 1000));
      await checkpoint(pool);
      const raw = await timed(() => rawPipeline(pool));
      rawRates.push(raw.value / (raw.ms / 1000));
    }
    report(
      `rebuild: ${EVENTS.toLocaleString('en-US')} events, one row each, batches of ${REBUILD_BATCH}`,
      { label: 'Projections.rebuild', rates: rebuildRates },
      { label: 'raw SELECT batches + COPY', rates: rawRates },
      TARGET,
    );
    const diff = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ((TABLE ${TABLE} EXCEPT ALL TABLE ${RAW_TABLE}) UNION ALL (TABLE ${RAW_TABLE} EXCEPT ALL TABLE ${TABLE})) d`,
    );
    info(`rows differing between the projection's table and the raw table: ${diff.rows[0]?.n ?? '?'}`);

    // 2. Live lag at half the maximum single-writer append rate.
    const maxRates: number[] = [];
    for (let i = 0; i < RUNS; i++) maxRates.push(await singleWriterRate(store, i));
    const maxRate = median(maxRates);
    const rate = maxRate / 2;
    engine.start();
    const head = await store.headPosition();
    if (!(await engine.waitFor(NAME, head, 60_000)))
      console.log('  warning: the live runner did not catch up within 60 s');
    console.log(
      `\nlive lag: single-event appends paced at ${fmtRate(rate)} = half the max single-writer rate ${fmtRate(maxRate)}` +
        ` (runs ${maxRates.map((x) => Math.round(x)).join(' / ')}), ${LAG_SECONDS} s per phase, engine batch size ${LIVE_BATCH}`,
    );
    const sampler = await CheckpointSampler.start(url);
    try {
      printLag(
        'A. checkpoint sampled (1 poller)',
        await pacedAppends(store, pool, rate, LAG_SECONDS * 1000, (pos) => sampler.seen(pos)),
      );
    } finally {
      await sampler.stop();
    }
    printLag(
      'B. engine.waitFor per append',
      await pacedAppends(store, pool, rate, LAG_SECONDS * 1000, (pos) => engine.waitFor(NAME, pos, 10_000)),
    );
    await engine.stop();
    console.log(`\n${loadLine('end')}`);
  } finally {
    await engine.stop();
    await store.close();
    await pool.end();
  }
}

/** Sequential single-event appends for MAX_RATE_SECONDS: events/s. */
async function singleWriterRate(store: PostgresEventStore, run: number): Promise<number> {
  const revs = new Array<number>(20).fill(-1);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < MAX_RATE_SECONDS * 1000) {
    const k = n % revs.length;
    const res = await store.append(`max-${run}-${k}`, [readingEvent(n)], revs[k] === -1 ? 'no_stream' : revs[k]!);
    revs[k] = res.nextRevision;
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

interface LagResult {
  appended: number;
  ms: number;
  lags: number[];
  endToEnd: number[];
  appendMs: number[];
  timeouts: number;
  late: number;
  runnerCommits: number;
  loopDelayP99: number;
}

function printLag(title: string, lag: LagResult): void {
  const p = (xs: number[], q: number) => fmtMs(percentile(xs, q));
  console.log(
    `  ${title}: ${lag.appended.toLocaleString('en-US')} events appended (${fmtRate(lag.appended / (lag.ms / 1000))}), ` +
      `${lag.runnerCommits.toLocaleString('en-US')} runner commits (${(lag.appended / Math.max(1, lag.runnerCommits)).toFixed(1)} events each), ` +
      `${lag.timeouts} timeouts`,
  );
  console.log(
    `    lag, append returned → projected   p50 ${p(lag.lags, 50)}   p99 ${p(lag.lags, 99)}   (p90 ${p(lag.lags, 90)}, max ${fmtMs(Math.max(...lag.lags))})` +
      `   target p99 ≤ ${LAG_P99_TARGET_MS} ms ${percentile(lag.lags, 99) <= LAG_P99_TARGET_MS ? 'PASS' : 'BELOW'}`,
  );
  console.log(`    append call → projected            p50 ${p(lag.endToEnd, 50)}   p99 ${p(lag.endToEnd, 99)}`);
  console.log(`    append call alone                  p50 ${p(lag.appendMs, 50)}   p99 ${p(lag.appendMs, 99)}`);
  console.log(
    `    bench process: ${lag.late} appends started > 10 ms late, event-loop delay p99 ${fmtMs(lag.loopDelayP99)}`,
  );
}

/** One connection polling the checkpoint about every millisecond: when each position became visible, without waitFor's per-caller queries. */
class CheckpointSampler {
  private waiting: { position: number; resolve: (ok: boolean) => void }[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  private constructor(private readonly client: Client) {
    this.loop = this.run();
  }

  static async start(url: string): Promise<CheckpointSampler> {
    const client = new Client({ connectionString: url, application_name: 'bench-sampler' });
    await client.connect();
    return new CheckpointSampler(client);
  }

  seen(position: number): Promise<boolean> {
    return new Promise((resolve) => this.waiting.push({ position, resolve }));
  }

  private async run(): Promise<void> {
    while (this.running) {
      const res = await this.client.query<{ position: number }>(
        'SELECT position FROM processor_checkpoints WHERE name = $1',
        [NAME],
      );
      const at = res.rows[0]?.position ?? 0;
      if (this.waiting.some((w) => w.position <= at)) {
        const still: typeof this.waiting = [];
        for (const w of this.waiting) {
          if (w.position <= at) w.resolve(true);
          else still.push(w);
        }
        this.waiting = still;
      }
      await sleep(1); // ~1 ms resolution; back-to-back polling would compete with the runner for the CPU
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    for (const w of this.waiting) w.resolve(false);
    await this.client.end();
  }
}

async function runnerCommits(pool: Pool): Promise<number> {
  const res = await pool.query<{ n: number }>(
    "SELECT n_tup_upd AS n FROM pg_stat_user_tables WHERE relname = 'processor_checkpoints'",
  );
  return res.rows[0]?.n ?? 0;
}

/**
 * Open-loop pacing: append i is due at start + i/rate and starts then on a
 * free lane (each lane owns its streams, so appends never conflict), whether
 * or not earlier appends have returned. `projected` resolves once the
 * projection has applied the given position.
 */
async function pacedAppends(
  store: PostgresEventStore,
  pool: Pool,
  rate: number,
  durationMs: number,
  projected: (position: number) => Promise<boolean>,
): Promise<LagResult> {
  const interval = 1000 / rate;
  const lanes = Array.from({ length: LANES }, () => ({ busy: false, revs: new Array<number>(10).fill(-1), n: 0 }));
  const out: LagResult = {
    appended: 0,
    ms: 0,
    lags: [],
    endToEnd: [],
    appendMs: [],
    timeouts: 0,
    late: 0,
    runnerCommits: 0,
    loopDelayP99: 0,
  };
  const pending = new Set<Promise<void>>();
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  const commitsBefore = await runnerCommits(pool);
  const phase = ++phases;
  loopDelay.enable();
  const start = performance.now();
  let i = 0;
  const one = async (lane: (typeof lanes)[number], l: number, seq: number) => {
    const k = lane.n++ % lane.revs.length;
    const t0 = performance.now();
    const rev = lane.revs[k]!;
    const res = await store.append(`live${phase}-${l}-${k}`, [readingEvent(seq)], rev === -1 ? 'no_stream' : rev);
    const t1 = performance.now();
    lane.revs[k] = res.nextRevision;
    lane.busy = false;
    const ok = await projected(res.position);
    const t2 = performance.now();
    out.appended++;
    out.appendMs.push(t1 - t0);
    if (!ok) out.timeouts++;
    else {
      out.lags.push(t2 - t1);
      out.endToEnd.push(t2 - t0);
    }
  };
  while (performance.now() - start < durationMs) {
    const due = Math.floor((performance.now() - start) / interval) + 1;
    while (i < due) {
      const l = lanes.findIndex((x) => !x.busy);
      if (l < 0) break;
      const lane = lanes[l]!;
      lane.busy = true;
      if (performance.now() - (start + i * interval) > 10) out.late++;
      const p = one(lane, l, i).catch((e: unknown) => {
        console.error('paced append failed', e);
      });
      pending.add(p);
      void p.finally(() => pending.delete(p));
      i++;
    }
    await sleep(Math.max(0, start + i * interval - performance.now()));
  }
  out.ms = performance.now() - start;
  await Promise.all([...pending]);
  loopDelay.disable();
  out.loopDelayP99 = loopDelay.percentile(99) / 1e6;
  // pg_stat counters are flushed at transaction end, with a short delay.
  await sleep(1200);
  out.runnerCommits = (await runnerCommits(pool)) - commitsBefore;
  return out;
}

let phases = 0;

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
