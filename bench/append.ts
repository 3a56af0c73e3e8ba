import { Pool, type PoolClient } from 'pg';
import type { EventToAppend } from '../src/platform/event-store/event-store';
import { PostgresEventStore } from '../src/platform/event-store/postgres-event-store';
import {
  EVENT_INSERT_COLUMNS,
  RUNS,
  checkpoint,
  concurrently,
  copyLines,
  envInt,
  eventCopyLine,
  fmtRate,
  info,
  loadLine,
  median,
  openBenchDatabase,
  readingEvent,
  report,
  serverSummary,
  timed,
  type StoredRow,
} from './support';

/**
 * Append throughput of PostgresEventStore against the raw ceiling of the same
 * PostgreSQL, on identical rows in an identical table (events_raw is
 * `LIKE events INCLUDING ALL`: same columns, defaults, primary key and unique
 * indexes), in the same database and the same run:
 *
 *  (a) batched: store.append of 100 events per call, BATCH_WRITERS writers in
 *      flight (group commit joins them), vs `COPY events_raw FROM STDIN` of the
 *      same rows; one writer waiting for each append is printed as (info);
 *  (b) single events: store.append of one event per call with 1 and 16
 *      concurrent writers, vs one-row INSERT per transaction, same concurrency.
 *
 * Each run is cut into SLICES slices and the two sides alternate slice by
 * slice (store first: the raw side writes exactly the rows the store just
 * stored, positions included), so both see the same background load and both
 * tables grow alike. A side's rate is its events over the sum of its slice
 * times; each figure is the median of RUNS runs. Figures only; nothing is asserted.
 */

/** Targets of issue 13: batched ≥ 0.7× one COPY; 16 single-event writers ≥ 1.0× one INSERT per transaction (group commit). */
const TARGET_BATCHED = 0.7;
const TARGET_SINGLE_1 = 0.6;
const TARGET_SINGLE_16 = 1.0;
const BATCH = 100;
const BATCH_EVENTS = envInt('BENCH_BATCH_EVENTS', 100_000);
const BATCH_STREAMS = 100;
const BATCH_WRITERS = envInt('BENCH_BATCH_WRITERS', 8);
const SINGLE_EVENTS_1 = envInt('BENCH_SINGLE_EVENTS_1', 10_000);
const SINGLE_EVENTS_16 = envInt('BENCH_SINGLE_EVENTS_16', 20_000);
const SLICES = envInt('BENCH_SLICES', 10);
const STREAMS_PER_WRITER = 20;

const INSERT_ONE = `INSERT INTO events_raw (${EVENT_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)`;
const COPY_RAW = `COPY events_raw (${EVENT_INSERT_COLUMNS}) FROM STDIN`;
const COPY_RAW_TX = `COPY events_raw_tx (${EVENT_INSERT_COLUMNS}) FROM STDIN`;

interface Ctx {
  pool: Pool;
  rawPool: Pool;
  store: PostgresEventStore;
}

interface Result {
  name: string;
  ratio: number;
  pass: boolean;
  target: number;
}

async function main(): Promise<void> {
  const { url, pool } = await openBenchDatabase(24);
  const rawPool = new Pool({ connectionString: url, max: 24, application_name: 'bench-raw' });
  const store = new PostgresEventStore(pool, { listenConnectionString: url, log: (m, e) => console.error(m, e) });
  const ctx: Ctx = { pool, rawPool, store };
  try {
    await pool.query('CREATE TABLE events_raw (LIKE events INCLUDING ALL)');
    await pool.query('CREATE TABLE events_raw_tx (LIKE events INCLUDING ALL)');
    console.log(`append benchmark — ${await serverSummary(pool)}`);
    console.log(
      `median of ${RUNS} runs; each run alternates store/raw in ${SLICES} slices; CHECKPOINT before every run`,
    );
    console.log(loadLine('start'));

    await warmUp(ctx);
    const results: Result[] = [
      await batched(ctx),
      await single(ctx, 1, SINGLE_EVENTS_1),
      await single(ctx, 16, SINGLE_EVENTS_16),
    ];
    console.log(`\n${loadLine('end')}`);
    console.log('\nsummary');
    for (const r of results)
      console.log(
        `  ${r.name.padEnd(34)} ${`${r.ratio.toFixed(2)}×`.padStart(6)}  (target ≥ ${r.target.toFixed(2)}×) ${r.pass ? 'PASS' : 'BELOW'}`,
      );
  } finally {
    await store.close();
    await rawPool.end();
    await pool.end();
  }
}

/** Fills every pooled connection's plan cache (es_append is PL/pgSQL) and warms the JIT before anything is timed. */
async function warmUp({ store, rawPool }: Ctx): Promise<void> {
  await concurrently(16, async (w) => {
    let rev = -1;
    for (let i = 0; i < 20; i++) {
      const e = readingEvent(i);
      const res = await store.append(`warm-${w}`, [e], rev === -1 ? 'no_stream' : rev);
      rev = res.nextRevision;
      await rawPool.query(
        INSERT_ONE,
        insertValues({ position: res.position, streamId: `warm-${w}`, revision: rev, event: e }),
      );
    }
  });
  const c = await rawPool.connect();
  try {
    for (let b = 0; b < 10; b++) {
      const events = Array.from({ length: BATCH }, (_, i) => readingEvent(i));
      const res = await store.append(`warm-b${b}`, events, 'no_stream');
      const rows = events.map((event, i) => ({
        position: res.position - BATCH + 1 + i,
        streamId: `warm-b${b}`,
        revision: i,
        event,
      }));
      await copyLines(c, COPY_RAW, rows.map(eventCopyLine));
      await copyLines(c, COPY_RAW_TX, rows.map(eventCopyLine));
    }
  } finally {
    c.release();
  }
}

async function batched({ pool, rawPool, store }: Ctx): Promise<Result> {
  // Slice j appends the j-th batch of every stream; BATCH_STREAMS streams, perStream batches each.
  const perStream = Math.max(1, Math.round(BATCH_EVENTS / BATCH / BATCH_STREAMS));
  const total = perStream * BATCH_STREAMS * BATCH;
  const storeRates: number[] = [];
  const copyRates: number[] = [];
  const copyTxRates: number[] = [];
  const store1Rates: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    let storeMs = 0;
    let copyMs = 0;
    let copyTxMs = 0;
    let store1Ms = 0;
    await checkpoint(pool);
    const c: PoolClient = await rawPool.connect();
    try {
      for (let j = 0; j < perStream; j++) {
        const appends: EventToAppend[][] = Array.from({ length: BATCH_STREAMS }, (_, k) =>
          Array.from({ length: BATCH }, (_, i) => readingEvent((j * BATCH_STREAMS + k) * BATCH + i)),
        );
        const batches: StoredRow[][] = [];
        // BATCH_WRITERS writers in flight (requests of an app): group commit writes what arrives together.
        const s = await timed(() =>
          concurrently(BATCH_WRITERS, async (w) => {
            for (let k = w; k < BATCH_STREAMS; k += BATCH_WRITERS) {
              const streamId = `b${run}-${k}`;
              const events = appends[k]!;
              const res = await store.append(streamId, events, j === 0 ? 'no_stream' : j * BATCH - 1);
              const first = res.position - events.length + 1;
              batches.push(
                events.map((event, i) => ({ position: first + i, streamId, revision: j * BATCH + i, event })),
              );
            }
          }),
        );
        storeMs += s.ms;

        // The same rows, one COPY statement for the whole slice.
        const r = await timed(() => copyLines(c, COPY_RAW, batches.flat().map(eventCopyLine)));
        if (r.value !== BATCH_STREAMS * BATCH)
          throw new Error(`COPY stored ${r.value} rows, expected ${BATCH_STREAMS * BATCH}`);
        copyMs += r.ms;

        // Diagnostic: the same rows again, one COPY (one transaction) per 100-event batch, in sequence.
        const t = await timed(async () => {
          for (const b of batches) await copyLines(c, COPY_RAW_TX, b.map(eventCopyLine));
        });
        copyTxMs += t.ms;

        // Diagnostic: the same amount of appends again (fresh events, own streams), one writer waiting for each.
        const more = Array.from({ length: BATCH_STREAMS }, (_, k) =>
          Array.from({ length: BATCH }, (_, i) => readingEvent(k * BATCH + i)),
        );
        const w1 = await timed(async () => {
          for (let k = 0; k < BATCH_STREAMS; k++)
            await store.append(`b1w${run}-${k}`, more[k]!, j === 0 ? 'no_stream' : j * BATCH - 1);
        });
        store1Ms += w1.ms;
      }
    } finally {
      c.release();
    }
    storeRates.push(total / (storeMs / 1000));
    copyRates.push(total / (copyMs / 1000));
    copyTxRates.push(total / (copyTxMs / 1000));
    store1Rates.push(total / (store1Ms / 1000));
  }
  const r = report(
    `(a) batched appends: ${total.toLocaleString('en-US')} events, ${BATCH} per append, ${BATCH_WRITERS} writers in flight, ${BATCH_STREAMS} streams`,
    { label: `store.append (${BATCH} events)`, rates: storeRates },
    { label: `COPY FROM STDIN (${(total / perStream).toLocaleString('en-US')} rows/COPY)`, rates: copyRates },
    TARGET_BATCHED,
  );
  const runs = (xs: number[]) => xs.map((x) => Math.round(x).toLocaleString('en-US')).join(' / ');
  info(
    `store.append of ${BATCH} events, 1 writer waiting for each: ${fmtRate(median(store1Rates))} (runs: ${runs(store1Rates)})` +
      ` → ${(median(store1Rates) / median(copyRates)).toFixed(2)}× of the COPY; a lone writer pays one commit per append,` +
      ` whose ceiling is the next line`,
  );
  info(
    `same rows, one COPY + commit per ${BATCH}-event batch: ${fmtRate(median(copyTxRates))}` +
      ` (runs: ${runs(copyTxRates)}) → ${(median(copyTxRates) / median(copyRates)).toFixed(2)}× of the COPY;` +
      ` the lone writer is ${(median(store1Rates) / median(copyTxRates)).toFixed(2)}× of it`,
  );
  return { name: `(a) batched, ${BATCH} events/append`, ...r, target: TARGET_BATCHED };
}

async function single({ pool, rawPool, store }: Ctx, writers: number, events: number): Promise<Result> {
  const perWriter = Math.floor(events / writers);
  const perSlice = Math.max(1, Math.floor(perWriter / SLICES));
  const slices = Math.ceil(perWriter / perSlice);
  const total = perWriter * writers;
  const storeRates: number[] = [];
  const rawRates: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    const revs = Array.from({ length: writers }, () => new Array<number>(STREAMS_PER_WRITER).fill(-1));
    let storeMs = 0;
    let rawMs = 0;
    await checkpoint(pool);
    for (let sl = 0; sl < slices; sl++) {
      const from = sl * perSlice;
      const to = Math.min(perWriter, from + perSlice);
      const evs = Array.from({ length: writers }, (_, w) =>
        Array.from({ length: to - from }, (_, i) => readingEvent(w * perWriter + from + i)),
      );
      const rows: StoredRow[][] = Array.from({ length: writers }, () => []);
      const s = await timed(() =>
        concurrently(writers, async (w) => {
          for (let i = from; i < to; i++) {
            const k = i % STREAMS_PER_WRITER;
            const streamId = `s${writers}-${run}-w${w}-${k}`;
            const event = evs[w]![i - from]!;
            const rev = revs[w]![k]!;
            const res = await store.append(streamId, [event], rev === -1 ? 'no_stream' : rev);
            revs[w]![k] = res.nextRevision;
            rows[w]!.push({ position: res.position, streamId, revision: res.nextRevision, event });
          }
        }),
      );
      storeMs += s.ms;
      const r = await timed(() =>
        concurrently(writers, async (w) => {
          for (const row of rows[w]!) await rawPool.query(INSERT_ONE, insertValues(row));
        }),
      );
      rawMs += r.ms;
    }
    storeRates.push(total / (storeMs / 1000));
    rawRates.push(total / (rawMs / 1000));
  }
  const plural = writers > 1 ? 's' : '';
  const target = writers > 1 ? TARGET_SINGLE_16 : TARGET_SINGLE_1;
  const r = report(
    `(b) single-event appends: ${total.toLocaleString('en-US')} events, ${writers} concurrent writer${plural}, ${STREAMS_PER_WRITER} streams each`,
    { label: 'store.append (1 event)', rates: storeRates },
    { label: 'INSERT 1 row per transaction', rates: rawRates },
    target,
  );
  return { name: `(b) single events, ${writers} writer${plural}`, ...r, target };
}

function insertValues(r: StoredRow): unknown[] {
  const e = r.event;
  return [
    r.position,
    e.id,
    r.streamId,
    r.revision,
    e.type,
    JSON.stringify(e.data),
    JSON.stringify(e.metadata),
    e.schemaVersion ?? 1,
  ];
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
