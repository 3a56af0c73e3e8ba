import { Client, type Pool, type PoolClient, type QueryResult } from 'pg';
import type { Projection } from '../../../projections/projection';
import { DomainError, notFound } from '../../../domain/shared/errors';
import type { RecordedEvent } from '../event-store/event-store';
import { ADVISORY_LOCKS } from '../locks';
import type { PostgresEventStore, ReadBatch } from '../event-store/postgres-event-store';
import { CheckpointNotifier } from './checkpoint-notifier';
import {
  LIVE_SCHEMA, logOperatorAction, quoteIdent, readCheckpoint, registerProjection, shadowSchema,
  type CheckpointRow, type ProjectionStatus,
} from './projection-store';

/**
 * Runs projections: one active runner per projection across all processes
 * (a PostgreSQL advisory lock held on a dedicated connection; a standby takes
 * over when the holder's connection dies), checkpoints committed in the same
 * transaction as the read-model rows, poison events parked for an operator,
 * and rebuilds into a shadow schema swapped in when caught up.
 */

const RUNNER_LOCK = ADVISORY_LOCKS.projectionRunner;
const REBUILD_LOCK = ADVISORY_LOCKS.projectionRebuild;
/** How often a parked runner looks whether an operator (in another process) resolved it. */
const PARKED_POLL_MS = 500;

export interface EngineOptions {
  readonly connectionString: string;
  readonly batchSize: number;
  readonly maxAttempts: number;
  /** How often a standby tries to take over a projection. */
  readonly standbyRetryMs?: number;
  readonly rebuildBatchSize?: number;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

export interface ProjectionInfo {
  name: string;
  version: number;
  definedVersion: number;
  checkpoint: number;
  status: ProjectionStatus | 'stale';
  /** Events of the types it handles that it has not applied yet (null when not counted, e.g. for /health). */
  lagEvents: number | null;
  /** Age of the oldest event it has not applied yet (0 when caught up). */
  lagSeconds: number;
  /** True when this process holds the projection's runner lock. */
  activeHere: boolean;
  parked: null | { position: number; eventId: string | null; eventType: string | null; error: string | null; attempts: number | null };
  updatedAt: Date;
}

export interface RebuildProgress {
  processed: number;
  total: number;
}

/** Thrown inside a batch when the checkpoint moved under us (a rebuild swapped, or another runner). */
class Resync extends Error {}
/** Thrown when the runner parked its projection. */
class Parked extends Error {}

export class ProjectionEngine {
  private readonly byName = new Map<string, Projection>();
  private readonly runners = new Map<string, ProjectionRunner>();
  /** Wakes waitFor callers on commits here (directly) and in other processes (NOTIFY). */
  private readonly checkpoints: CheckpointNotifier;

  constructor(
    private readonly pool: Pool,
    private readonly store: PostgresEventStore,
    projections: readonly Projection[],
    private readonly options: EngineOptions,
  ) {
    for (const p of projections) {
      if (!/^[a-z][a-z0-9_-]{0,50}$/.test(p.name)) throw new Error(`invalid projection name ${p.name}`);
      this.byName.set(p.name, p);
    }
    this.checkpoints = new CheckpointNotifier(pool, { connectionString: options.connectionString, log: (msg, err) => options.log('warn', msg, { err: errorText(err) }) });
  }

  get projections(): Projection[] {
    return [...this.byName.values()];
  }

  get(name: string): Projection {
    const p = this.byName.get(name);
    if (!p) throw notFound('PLATFORM.PROJECTION_NOT_FOUND', `no projection named ${name}`);
    return p;
  }

  /** Creates missing read-model tables and checkpoints. Returns projections whose stored version is older than their code. */
  async register(): Promise<string[]> {
    const stale: string[] = [];
    for (const p of this.byName.values()) {
      const row = await registerProjection(this.pool, p);
      if (row.version !== p.version) stale.push(p.name);
    }
    return stale;
  }

  /** Starts a runner (or standby) for every projection. */
  start(): void {
    for (const p of this.byName.values()) {
      if (this.runners.has(p.name)) continue;
      const runner = new ProjectionRunner(p, this.pool, this.store, this.options, (pos) => this.checkpoints.announce(p.name, pos));
      this.runners.set(p.name, runner);
      runner.start();
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.runners.values()].map((r) => r.stop()));
    this.runners.clear();
    await this.checkpoints.close();
  }

  /** `countLag: false` skips counting unapplied events (a scan of the backlog): /health polls often and needs only the age. */
  async status(options: { countLag?: boolean } = {}): Promise<ProjectionInfo[]> {
    const out: ProjectionInfo[] = [];
    for (const p of this.byName.values()) out.push(await this.info(p, options));
    return out;
  }

  async info(p: Projection, { countLag = true }: { countLag?: boolean } = {}): Promise<ProjectionInfo> {
    const row = await readCheckpoint(this.pool, p.name);
    if (!row) throw notFound('PLATFORM.PROJECTION_NOT_FOUND', `projection ${p.name} is not registered`);
    // The oldest unapplied event is the first one after the checkpoint: one index step, whatever the backlog.
    const oldest = await this.pool.query<{ recorded_at: Date }>(
      'SELECT recorded_at FROM events WHERE position > $1 AND type = ANY($2) ORDER BY position LIMIT 1', [row.position, p.eventTypes]);
    const counted = countLag
      ? await this.pool.query<{ events: number }>(
        'SELECT count(*)::int AS events FROM (SELECT 1 FROM events WHERE position > $1 AND type = ANY($2) LIMIT 1000000) x', [row.position, p.eventTypes])
      : undefined;
    const l = { events: counted ? (counted.rows[0]?.events ?? 0) : null, oldest: oldest.rows[0]?.recorded_at };
    return {
      name: p.name,
      version: row.version,
      definedVersion: p.version,
      checkpoint: row.position,
      status: row.status === 'running' && row.version !== p.version ? 'stale' : row.status,
      lagEvents: l.events,
      lagSeconds: l.oldest ? Math.max(0, (Date.now() - l.oldest.getTime()) / 1000) : 0,
      activeHere: this.runners.get(p.name)?.active ?? false,
      parked: row.status === 'parked'
        ? { position: row.parked_position ?? 0, eventId: row.parked_event_id, eventType: row.parked_event_type, error: row.parked_error, attempts: row.parked_attempts }
        : null,
      updatedAt: row.updated_at,
    };
  }

  /**
   * Read-your-writes and live streams: resolves true once the projection's checkpoint
   * has reached `position`, false if `timeoutMs` passes (or `signal` aborts) first.
   * Woken by the process's one CheckpointNotifier, not a poll per caller.
   */
  async waitFor(name: string, position: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    this.get(name);
    return this.checkpoints.wait(name, position, timeoutMs, signal);
  }

  /** Callers waiting in waitFor in this process. */
  get waiting(): number {
    return this.checkpoints.waiting;
  }

  /** Operator: apply the parked event again. */
  async retry(name: string, actor: string): Promise<CheckpointRow> {
    return this.resolveParked(name, actor, 'retry');
  }

  /** Operator: move the checkpoint past the parked event, without applying it. Recorded. */
  async skip(name: string, actor: string): Promise<CheckpointRow> {
    return this.resolveParked(name, actor, 'skip');
  }

  private async resolveParked(name: string, actor: string, action: 'retry' | 'skip'): Promise<CheckpointRow> {
    this.get(name);
    const updated = await inTransaction(this.pool, async (c) => {
      const row = await readCheckpoint(c, name, true);
      if (row?.status !== 'parked') {
        throw new DomainError('conflict', 'PLATFORM.PROJECTION_NOT_PARKED', `projection ${name} is not parked`);
      }
      await c.query(
        `UPDATE projection_checkpoints SET status = 'running', position = $2, parked_position = NULL, parked_event_id = NULL,
           parked_event_type = NULL, parked_error = NULL, parked_attempts = NULL, updated_at = now() WHERE name = $1`,
        [name, action === 'skip' ? row.parked_position : row.position]);
      await logOperatorAction(c, { projection: name, action, position: row.parked_position, eventId: row.parked_event_id, error: row.parked_error, actor });
      const after = await readCheckpoint(c, name);
      if (!after) throw new Error('checkpoint vanished');
      return after;
    });
    // Only once committed: a runner woken earlier would still read 'parked' and sleep on.
    this.runners.get(name)?.wake();
    return updated;
  }

  async operatorLog(name: string, limit = 100): Promise<Record<string, unknown>[]> {
    const res = await this.pool.query(
      'SELECT id, action, position, event_id AS "eventId", error, actor, at FROM projection_operator_log WHERE projection = $1 ORDER BY id DESC LIMIT $2',
      [name, limit]);
    return res.rows as Record<string, unknown>[];
  }

  /**
   * Rebuilds a projection from position 0 into a shadow schema while the live
   * tables keep serving, then swaps them in one transaction once caught up.
   */
  async rebuild(name: string, actor: string, onProgress: (p: RebuildProgress) => void | Promise<void> = () => undefined): Promise<{ position: number; events: number }> {
    const p = this.get(name);
    await registerProjection(this.pool, p);
    const lock = new Client({ connectionString: this.options.connectionString, application_name: `projection-rebuild:${name}` });
    // Without a listener, losing this idle connection would be an uncaught 'error' event and crash the process.
    lock.on('error', (e) => this.options.log('warn', `projection ${name}: rebuild lock connection lost`, { err: errorText(e) }));
    try {
      await lock.connect();
      const got = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [REBUILD_LOCK, name]);
      if (!got.rows[0]?.ok) throw new DomainError('conflict', 'PLATFORM.REBUILD_RUNNING', `a rebuild of ${name} is already running`);
      const lockPid = (await lock.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      // Fencing: if the lock connection died, another rebuild may have started into the same
      // shadow schema; every write into it (and the swap) first checks the lock is still ours.
      const stillOurs = async (c: PoolClient) => {
        const held = await c.query(
          `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND classid = $2 AND objid = hashtext($3)::oid
              AND objsubid = 2 AND granted`, [lockPid, REBUILD_LOCK, name]);
        if (held.rowCount === 0) throw new Error(`rebuild of ${name}: lost the rebuild lock, giving up`);
      };
      const shadow = quoteIdent(shadowSchema(name));
      await inTransaction(this.pool, async (c) => {
        await stillOurs(c);
        await c.query(`DROP SCHEMA IF EXISTS ${shadow} CASCADE`);
        await c.query(`CREATE SCHEMA ${shadow}`);
        // New objects go to the shadow schema (the first one); functions and types in public still resolve, as they do live.
        await c.query(`SET LOCAL search_path TO ${shadow}, ${LIVE_SCHEMA}`);
        for (const ddl of p.setup) await c.query(ddl);
      });
      const totalRes = await this.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE type = ANY($1)', [p.eventTypes]);
      const total = totalRes.rows[0]?.n ?? 0;
      const batchSize = this.options.rebuildBatchSize ?? 5000;
      let cursor = 0;
      let processed = 0;
      await onProgress({ processed, total });
      for (;;) {
        const batch = await this.store.readBatch(cursor, batchSize, p.eventTypes);
        if (batch.position === cursor) break;
        await inTransaction(this.pool, async (c) => {
          await stillOurs(c);
          await c.query(`SET LOCAL search_path TO ${shadow}, ${LIVE_SCHEMA}`);
          await p.apply(batch.events, c);
        });
        cursor = batch.position;
        processed += batch.events.length;
        await onProgress({ processed, total: Math.max(total, processed) });
        if (batch.events.length < batchSize) break;
      }
      // The swap: wait for the live runner's batch, catch up the last events, exchange the tables.
      const final = await inTransaction(this.pool, async (c) => {
        await readCheckpoint(c, name, true);
        await stillOurs(c);
        for (;;) {
          const batch: ReadBatch = await this.store.readBatch(cursor, batchSize, p.eventTypes, c);
          if (batch.position === cursor) break;
          await c.query(`SET LOCAL search_path TO ${shadow}, ${LIVE_SCHEMA}`);
          await p.apply(batch.events, c);
          cursor = batch.position;
          processed += batch.events.length;
          if (batch.events.length < batchSize) break;
        }
        await c.query(`SET LOCAL search_path TO ${LIVE_SCHEMA}`);
        const retired = quoteIdent(`retired_${shadowSchema(name)}`);
        await c.query(`DROP SCHEMA IF EXISTS ${retired} CASCADE`);
        await c.query(`CREATE SCHEMA ${retired}`);
        for (const t of p.tables) {
          await c.query(`ALTER TABLE IF EXISTS ${LIVE_SCHEMA}.${quoteIdent(t)} SET SCHEMA ${retired}`);
          await c.query(`ALTER TABLE ${shadow}.${quoteIdent(t)} SET SCHEMA ${LIVE_SCHEMA}`);
        }
        await c.query(`DROP SCHEMA ${retired} CASCADE`);
        await c.query(`DROP SCHEMA ${shadow} CASCADE`);
        await c.query(
          `UPDATE projection_checkpoints SET position = $2, version = $3, status = 'running', parked_position = NULL, parked_event_id = NULL,
             parked_event_type = NULL, parked_error = NULL, parked_attempts = NULL, updated_at = now() WHERE name = $1`,
          [name, cursor, p.version]);
        await logOperatorAction(c, { projection: name, action: 'rebuilt', position: cursor, actor });
        return { position: cursor, events: processed };
      });
      this.runners.get(name)?.wake();
      this.checkpoints.announce(name, final.position);
      await this.checkpoints.flush();
      await onProgress({ processed, total: Math.max(total, processed) });
      return final;
    } finally {
      await lock.end().catch(() => undefined);
    }
  }
}

/** Drives one projection in this process: standby until it holds the lock, then follows the store. */
class ProjectionRunner {
  private stopped = false;
  private lock: Client | undefined;
  private position = 0;
  private loop: Promise<void> | undefined;
  private wakeNow: (() => void) | undefined;
  private lockLost: ((e: unknown) => void) | undefined;
  /** Resolves once stop() is called: ends a follow() whichever way it started. */
  private readonly stopping: Promise<Error>;
  private signalStop: (e: Error) => void = () => undefined;

  constructor(
    private readonly p: Projection,
    private readonly pool: Pool,
    private readonly store: PostgresEventStore,
    private readonly options: EngineOptions,
    private readonly onCommitted: (position: number) => void,
  ) {
    this.stopping = new Promise((res) => { this.signalStop = res; });
  }

  get active(): boolean {
    return this.lock !== undefined;
  }

  start(): void {
    this.loop = this.run();
  }

  wake(): void {
    this.wakeNow?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.signalStop(new Error('stopping'));
    this.wake();
    await this.loop;
    await this.releaseLock();
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((res) => {
      const done = () => {
        clearTimeout(t);
        if (this.wakeNow === done) this.wakeNow = undefined;
        res();
      };
      const t = setTimeout(done, ms);
      this.wakeNow = done;
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (!(await this.acquireLock())) {
          await this.sleep(this.options.standbyRetryMs ?? 1000);
          continue;
        }
        if (this.stopped) break;
        const row = await readCheckpoint(this.pool, this.p.name);
        if (!row) throw new Error(`projection ${this.p.name} has no checkpoint row`);
        if (row.status === 'parked') {
          // Waits for an operator (woken at once when the retry/skip/rebuild happens in this process).
          await this.sleep(PARKED_POLL_MS);
          continue;
        }
        this.position = row.position;
        await this.follow();
        failures = 0;
      } catch (e) {
        if (this.stopped) break;
        failures++;
        this.options.log('warn', `projection ${this.p.name}: runner error, restarting`, { err: errorText(e) });
        await this.releaseLock();
        await this.sleep(Math.min(10_000, 200 * 2 ** Math.min(failures, 6)));
      }
    }
  }

  /** Follows the store until the subscription ends (stop, resync, park, lost lock). */
  private async follow(): Promise<void> {
    const lockLost = new Promise<unknown>((res) => { this.lockLost = res; });
    // The lock connection may have died between taking the lock and now (its error handler found no
    // follower to tell): never follow without the lock.
    if (!this.lock) {
      this.lockLost = undefined;
      throw new Error('lock connection lost before following');
    }
    const sub = this.store.subscribeBatches(
      { fromPosition: this.position, batchSize: this.options.batchSize, eventTypes: this.p.eventTypes },
      (batch) => this.applyBatch(batch),
    );
    // stop() may have been called while the lock was being taken: `stopping` is already settled then.
    const outcome = await Promise.race([sub.failed, lockLost, this.stopping]);
    await sub.stop();
    this.lockLost = undefined;
    if (outcome instanceof Resync || outcome instanceof Parked || this.stopped) return;
    throw outcome;
  }

  private async applyBatch(batch: ReadBatch): Promise<void> {
    try {
      await this.commit(batch.events, batch.position);
      return;
    } catch (e) {
      // Resync, stop and infrastructure failures (connection lost, deadlock...) are
      // not the events' fault: the runner restarts instead of parking an innocent event.
      if (e instanceof Resync || this.stopped || isTransient(e)) throw e;
      this.options.log('warn', `projection ${this.p.name}: batch failed, applying its events one by one`, { err: errorText(e) });
    }
    for (const event of batch.events) {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.commit([event], event.position);
          break;
        } catch (e) {
          if (e instanceof Resync || this.stopped || isTransient(e)) throw e;
          if (attempt >= this.options.maxAttempts) {
            await this.park(event, e, attempt);
            throw new Parked();
          }
          await new Promise((r) => setTimeout(r, 50 * attempt));
        }
      }
    }
    if (batch.position !== this.position) await this.commit([], batch.position);
  }

  /**
   * One transaction: lock the checkpoint row, check it is where we think, apply, move it.
   *
   * The checkpoint row is locked (FOR UPDATE) before the apply touches the live tables,
   * on purpose: the rebuild swap locks the same row first and then takes ACCESS EXCLUSIVE
   * locks on the live tables, so taking the row lock last would invert the lock order and
   * let a busy runner deadlock the swap. To keep round trips down, BEGIN, the search_path
   * and the locking read travel as one simple-protocol query (the name as a literal), and
   * a batch without events is a single guarded UPDATE outside any explicit transaction.
   */
  private async commit(events: readonly RecordedEvent[], to: number): Promise<void> {
    if (events.length === 0) {
      // Nothing to apply, so no table locks: one atomic guarded UPDATE is enough. A concurrent
      // swap or operator action that holds the row makes it wait and re-check the predicate.
      const res = await this.pool.query(
        `UPDATE projection_checkpoints SET position = $3, updated_at = now() WHERE name = $1 AND position = $2 AND status = 'running'`,
        [this.p.name, this.position, to]);
      if (res.rowCount === 0) throw new Resync();
    } else {
      await inTransaction(this.pool, async (c) => {
        const row = await this.lockCheckpoint(c);
        if (!row || row.position !== this.position || row.status !== 'running') throw new Resync();
        await this.p.apply(events, c);
        await c.query('UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1', [this.p.name, to]);
      }, true);
    }
    this.position = to;
    this.onCommitted(to);
  }

  /** Runs as the transaction's first query: BEGIN; SET LOCAL search_path; SELECT ... FOR UPDATE, in one round trip. */
  private async lockCheckpoint(c: PoolClient): Promise<{ position: number; status: string } | undefined> {
    const results = await c.query(
      `BEGIN; SET LOCAL search_path TO ${LIVE_SCHEMA}; ` +
      `SELECT position, status FROM projection_checkpoints WHERE name = ${c.escapeLiteral(this.p.name)} FOR UPDATE`) as unknown as QueryResult[];
    const row = (results.at(-1)?.rows[0] ?? undefined) as { position: string | number; status: string } | undefined;
    return row ? { position: Number(row.position), status: row.status } : undefined;
  }

  private async park(event: RecordedEvent, error: unknown, attempts: number): Promise<void> {
    const message = errorText(error).slice(0, 4000);
    await inTransaction(this.pool, async (c) => {
      const res = await c.query(
        `UPDATE projection_checkpoints SET status = 'parked', parked_position = $3, parked_event_id = $4, parked_event_type = $5,
           parked_error = $6, parked_attempts = $7, updated_at = now() WHERE name = $1 AND position = $2 AND status = 'running'`,
        [this.p.name, this.position, event.position, event.id, event.type, message, attempts]);
      if (res.rowCount === 0) throw new Resync();
      await logOperatorAction(c, { projection: this.p.name, action: 'parked', position: event.position, eventId: event.id, error: message, actor: 'system:projection-engine' });
    });
    this.options.log('error', `projection ${this.p.name} parked on event ${event.id} at ${event.position}`, { eventType: event.type, err: message, attempts });
  }

  private async acquireLock(): Promise<boolean> {
    if (this.lock) return true;
    const client = new Client({ connectionString: this.options.connectionString, application_name: `projection:${this.p.name}` });
    client.on('error', (e) => {
      this.options.log('warn', `projection ${this.p.name}: lock connection lost`, { err: errorText(e) });
      if (this.lock === client) this.lock = undefined;
      client.end().catch(() => undefined);
      this.lockLost?.(e);
    });
    try {
      await client.connect();
      const res = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [RUNNER_LOCK, this.p.name]);
      if (res.rows[0]?.ok) {
        if (this.stopped) {
          await client.end().catch(() => undefined);
          return false;
        }
        this.lock = client;
        this.options.log('info', `projection ${this.p.name}: runner active in this process`);
        return true;
      }
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    await client.end().catch(() => undefined);
    return false;
  }

  private async releaseLock(): Promise<void> {
    const l = this.lock;
    this.lock = undefined;
    if (l) await l.end().catch(() => undefined);
  }
}

/** With fnBegins, fn's first query must itself start the transaction (BEGIN; ...), saving a round trip. */
export async function inTransaction<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>, fnBegins = false): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    if (!fnBegins) await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (e) {
    // A connection that cannot even roll back is not given back to the pool.
    await c.query('ROLLBACK').catch((re: unknown) => { broken = re instanceof Error ? re : new Error(String(re)); });
    throw e;
  } finally {
    c.release(broken);
  }
}

/** Failures of the database connection or of concurrency control: worth a retry, never a reason to park an event. */
function isTransient(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    // 08 connection exception, 40001 serialization failure, 40P01 deadlock, 53 insufficient resources,
    // 57P01-57P03 server shutting down / not accepting connections.
    if (/^(08|53|57P0[123]$|40001$|40P01$)/.test(code)) return true;
    if (/^E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN)$/.test(code)) return true;
  }
  return /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|not queryable/i.test(e.message);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
