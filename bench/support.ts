import { readdirSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import '../src/platform/infrastructure'; // int8 as number, exactly as the app parses it
import type { EventToAppend } from '../src/platform/event-store/event-store';
import { migrate } from '../src/platform/migrations';

/**
 * Shared helpers for the benchmarks. Benchmarks print figures measured side
 * by side in the same run and never assert: a ratio below target prints
 * BELOW, and the process still exits 0.
 */

export const RUNS = Number(process.env.BENCH_RUNS ?? 3);

export function benchDatabaseUrl(): string {
  const url = process.env.BENCH_DATABASE_URL;
  if (!url)
    throw new Error('BENCH_DATABASE_URL is not set: run the benchmarks with `bash bench/run.sh <append|projection>`');
  return url;
}

/** A pool on the (fresh) benchmark database, migrated. */
export async function openBenchDatabase(max = 20): Promise<{ url: string; pool: Pool }> {
  const url = benchDatabaseUrl();
  const pool = new Pool({ connectionString: url, max, application_name: 'bench' });
  pool.on('error', (e) => console.error('bench: idle connection failed', e.message));
  await migrate(pool);
  return { url, pool };
}

/** Integer environment override, e.g. BENCH_BATCH_EVENTS=200000. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

/**
 * Flushes dirty pages before a timed run, so no run inherits another's
 * checkpoint (and every run pays the same full-page writes after it).
 * Needs superuser or pg_checkpoint; silently skipped without.
 */
export async function checkpoint(pool: Pool): Promise<void> {
  await pool.query('CHECKPOINT').catch(() => undefined);
}

/** A rate: whole numbers, or one decimal below 100 (a few reads per second). */
const fmtNumber = (n: number) => (n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US'));
export const fmtRate = (perSec: number, unit = 'ev/s') => `${fmtNumber(perSec)} ${unit}`;
export const fmtMs = (ms: number) => `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;

export interface Side {
  readonly label: string;
  /** events/s of each run */
  readonly rates: readonly number[];
}

/** Prints both sides, their ratio (medians), the target and PASS/BELOW. */
export function report(
  title: string,
  ours: Side,
  raw: Side,
  target: number,
  unit = 'ev/s',
): { ratio: number; pass: boolean } {
  const a = median(ours.rates);
  const b = median(raw.rates);
  const ratio = a / b;
  const pass = ratio >= target;
  const runs = (s: Side) => s.rates.map(fmtNumber).join(' / ');
  const w = Math.max(ours.label.length, raw.label.length);
  console.log(`\n${title}`);
  console.log(`  ${ours.label.padEnd(w)}  ${fmtRate(a, unit).padStart(14)}   (runs: ${runs(ours)})`);
  console.log(`  ${raw.label.padEnd(w)}  ${fmtRate(b, unit).padStart(14)}   (runs: ${runs(raw)})`);
  console.log(
    `  ${'ratio'.padEnd(w)}  ${`${ratio.toFixed(2)}×`.padStart(14)}   target ≥ ${target.toFixed(2)}×  ${pass ? 'PASS' : 'BELOW'}`,
  );
  return { ratio, pass };
}

export function info(line: string): void {
  console.log(`  (info) ${line}`);
}

/** A PostgreSQL COPY text-format field. */
export function copyField(v: string): string {
  return /[\\\t\n\r]/.test(v)
    ? v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'))
    : v;
}

/** Streams text-format lines into `COPY ... FROM STDIN` on one connection (its own transaction unless one is open). */
/** The same COPY the platform's projections use (src/platform/processing/copy.ts). */
export { copyLines } from '../src/platform/processing/copy';

const DEVICES = 500;

/** A sensor reading as the platform would record one: ~300 bytes of data + metadata. */
export function readingEvent(i: number): EventToAppend {
  const device = `dev-${String(i % DEVICES).padStart(4, '0')}`;
  return {
    id: randomUUID(),
    type: 'bench.Reading',
    data: {
      device,
      sensor: 'temperature',
      value: Math.round(Math.random() * 4000 - 1000) / 100,
      unit: 'C',
      seq: i,
      at: new Date().toISOString(),
    },
    metadata: { correlationId: randomUUID(), causationId: randomUUID(), actor: `device:${device}` },
  };
}

/** An event as stored: what the raw baselines write, row for row. */
export interface StoredRow {
  position: number;
  streamId: string;
  revision: number;
  event: EventToAppend;
}

export const EVENT_INSERT_COLUMNS =
  'position, event_id, stream_id, stream_revision, type, data, metadata, schema_version';

/** One COPY text line with the columns es_append writes (recorded_at takes its default, as in es_append). */
export function eventCopyLine(r: StoredRow): string {
  const e = r.event;
  return `${r.position}\t${e.id}\t${copyField(r.streamId)}\t${r.revision}\t${copyField(e.type)}\t${copyField(JSON.stringify(e.data))}\t${copyField(JSON.stringify(e.metadata))}\t${e.schemaVersion ?? 1}\n`;
}

/** Runs `fn` once per worker index, concurrently. */
export async function concurrently(workers: number, fn: (w: number) => Promise<void>): Promise<void> {
  await Promise.all(Array.from({ length: workers }, (_, w) => fn(w)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function serverSummary(pool: Pool): Promise<string> {
  const res = await pool.query<{ v: string; sc: string; fs: string; sb: string }>(
    `SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc,
            current_setting('fsync') AS fs, current_setting('shared_buffers') AS sb`,
  );
  const r = res.rows[0]!;
  return `PostgreSQL ${r.v} (synchronous_commit=${r.sc}, fsync=${r.fs}, shared_buffers=${r.sb}), Node ${process.versions.node}, ${cpus().length} CPUs`;
}

/** The box is shared: print the load around the measurements so a reader can judge the noise. */
/**
 * CPU time (ms) used so far by every PostgreSQL process of this machine (Linux /proc; 0 elsewhere):
 * sampled around a phase, the difference is what the database spent on it (run the benchmark on
 * a machine where no other PostgreSQL is busy).
 */
export function postgresCpuMs(): number {
  let ticks = 0;
  try {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        if (!stat.slice(stat.indexOf('(') + 1, close).startsWith('postgres')) continue;
        const f = stat.slice(close + 2).split(' ');
        ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
      } catch {
        // the process ended meanwhile
      }
    }
  } catch {
    return 0;
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

/** This process's CPU time so far (ms). */
export const processCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export function loadLine(when: string): string {
  const [a, b, c] = loadavg();
  return `load average at ${when}: ${a!.toFixed(2)} ${b!.toFixed(2)} ${c!.toFixed(2)}`;
}

/** The same server URL with another database name. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}
