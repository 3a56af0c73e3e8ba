import type { Pool, PoolClient, QueryResult } from 'pg';
import type { RecordedEvent } from '../../../domain/shared/recorded-event';
import type { EventStore, ReadBatch } from '../event-store/event-store';
import { backoffMs, type BackoffPolicy } from './backoff';
import {
  ensureCheckpoint,
  logOperatorAction,
  moveCheckpoint,
  parkCheckpoint,
  resolveParked,
  type CheckpointRow,
} from './checkpoints';
import { KeyedPipeline } from './keyed-pipeline';
import {
  heldEvents,
  holdEvent,
  loadParkedKeys,
  parkKey,
  releaseHeld,
  unparkKey,
  type ParkedKeyStatus,
} from './parked-keys';
import { LOCK_CLASS, PARKED_BY, type PipelinedProcessor, type Processor } from './processor';
import { SessionLock } from './session-lock';
import { LIVE_SCHEMA, errorText, inTransaction, isTransient } from './transaction';

/**
 * The processor runtime: drives one processor (processor.ts) in this process.
 *
 * - One active runner per processor across all processes: an advisory lock
 *   (class by kind, src/platform/locks.ts) held on a dedicated connection.
 *   Without it the runner stands by and tries again every standbyRetryMs;
 *   when the holder's connection dies, a standby takes over.
 * - It follows the store from its checkpoint (processor_checkpoints) until
 *   the subscription fails, the lock is lost or it is stopped, whichever comes
 *   first; a lock lost at any moment after it was taken, even before the
 *   runner follows, ends the run.
 * - Each batch moves the checkpoint: in the handler's own transaction
 *   (exactly once) or right after the handler (at least once), and only from
 *   where this runner last saw it; if it moved (a rebuild swapped, an
 *   operator acted), the runner re-reads it instead of overwriting it.
 * - Failures: a transient one (connection, deadlock) restarts the runner from
 *   its checkpoint after a backoff; any other parks the processor on the
 *   event that keeps failing, or is retried like a transient one, as the
 *   processor chose (`onFailure`).
 * - Metrics and announcements through `observe`; `stop()` lets the batch in
 *   flight finish (its handler sees the abort signal) and releases the lock.
 */

export type ProcessorLog = (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;

export interface RunnerObserver {
  /** This process took (true) or gave up (false) the processor's lock. */
  active?(isActive: boolean): void;
  /** The runner failed and restarts from its checkpoint after a backoff. */
  failure?(error: unknown): void;
  /** The checkpoint has moved to `position` (committed). */
  committed?(position: number): void;
}

export interface RunnerOptions {
  readonly connectionString: string;
  /** Events per batch (and, for in-transaction processors, per transaction). */
  readonly batchSize: number;
  /** For `onFailure: 'park'`: failures of one event before the processor parks on it. */
  readonly maxAttempts: number;
  /** How often a standby tries to take over (default 1 s). */
  readonly standbyRetryMs?: number;
  /** Wait before restarting after failures in a row (default 400 ms doubling to 10 s). */
  readonly backoff?: BackoffPolicy;
  /** Pipelined processors: keys handled at once (default 32). */
  readonly concurrency?: number;
  /** Pipelined processors: events read ahead and not finished at most (default 4 × batchSize). */
  readonly maxPending?: number;
  /** Pipelined processors: wait between attempts at one key's failing event (default POISON_BACKOFF). */
  readonly keyBackoff?: BackoffPolicy;
  readonly log: ProcessorLog;
  readonly observe?: RunnerObserver;
}

const DEFAULT_STANDBY_RETRY_MS = 1000;
const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 400, maxMs: 10_000 };
/** Between attempts at one failing event, before it is parked. */
const POISON_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 1000 };
/** How often a parked runner looks whether an operator (in another process) resolved it. */
const PARKED_POLL_MS = 500;
/** A pipelined runner writes its checkpoint at most this often: a crash resends a little more, harmlessly. */
const PIPELINE_FLUSH_MS = 20;
const DEFAULT_CONCURRENCY = 32;

/** Thrown inside a batch when the checkpoint moved under us (a rebuild swapped, an operator, another runner). */
class Resync extends Error {}
/** Thrown when the runner parked its processor. */
class Parked extends Error {}

export class ProcessorRunner {
  private lock: SessionLock | undefined;
  private loop: Promise<void> | undefined;
  private wakeNow: (() => void) | undefined;
  /** One per start(): aborted by stop(). A run only ever looks at its own. */
  private controller = new AbortController();
  /** Failures in a row; a committed batch resets it. */
  private failures = 0;
  private readonly label: string;
  /** The checkpoint as this runner last read or committed it (for /admin and tests). */
  position = 0;
  /** Pipelined: keys parked or being resumed, as this runner knows them. */
  private parkedKeys = new Map<string, ParkedKeyStatus>();
  /** Pipelined: the pipeline of the current run (for follow-ups). */
  private pipeline: KeyedPipeline | undefined;

  constructor(
    readonly processor: Processor,
    private readonly pool: Pool,
    private readonly store: EventStore,
    private readonly options: RunnerOptions,
  ) {
    this.controller.abort();
    this.label = `${processor.kind} ${processor.name}`;
  }

  get name(): string {
    return this.processor.name;
  }

  /** True while this process holds the processor's lock. */
  get active(): boolean {
    return this.lock?.held ?? false;
  }

  start(): void {
    if (!this.controller.signal.aborted) return;
    const controller = new AbortController();
    this.controller = controller;
    const stopping = new Promise<Error>((res) => {
      controller.signal.addEventListener('abort', () => res(new Error('stopping')), { once: true });
    });
    const previous = this.loop;
    // A run still finishing after a stop() that was not awaited ends before the new one begins.
    this.loop = (async () => {
      await previous;
      await this.run(controller.signal, stopping);
    })();
  }

  /** Ends a sleep now: standby, backoff or parked (after an operator acted, a rebuild swapped). */
  wake(): void {
    this.wakeNow?.();
  }

  /** Lets the batch in flight finish (or end early on the abort signal), then gives the lock up. */
  async stop(): Promise<void> {
    this.controller.abort();
    this.wake();
    await this.loop;
  }

  /**
   * An operator's retry or skip of the event this processor is parked on (see
   * checkpoints.ts), then a wake so this process resumes at once; a runner
   * active elsewhere notices within PARKED_POLL_MS. Undefined when not parked.
   */
  async resolve(action: 'retry' | 'skip', actor: string): Promise<CheckpointRow | undefined> {
    const row = await resolveParked(this.pool, this.name, actor, action);
    this.wake();
    return row;
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((res) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        if (this.wakeNow === done) this.wakeNow = undefined;
        res();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wakeNow = done;
    });
  }

  private async run(signal: AbortSignal, stopping: Promise<Error>): Promise<void> {
    const p = this.processor;
    try {
      while (!signal.aborted) {
        try {
          if (!(await this.acquireLock(signal))) {
            await this.sleep(this.options.standbyRetryMs ?? DEFAULT_STANDBY_RETRY_MS, signal);
            continue;
          }
          const row = await ensureCheckpoint(this.pool, p.name, p.kind);
          if (signal.aborted) break;
          if (row.status === 'parked') {
            // Waits for an operator (woken at once when the retry/skip/rebuild happens in this process).
            await this.sleep(PARKED_POLL_MS, signal);
            continue;
          }
          this.position = row.position;
          await this.follow(signal, stopping);
        } catch (e) {
          if (signal.aborted) break;
          this.failures++;
          this.options.observe?.failure?.(e);
          // A processor that never parks has only this to tell an operator that it is stuck.
          this.options.log(
            p.onFailure === 'retry' ? 'error' : 'warn',
            `${this.label}: runner error, restarting from its checkpoint`,
            { err: errorText(e), position: this.position, failures: this.failures },
          );
          await this.releaseLock();
          await this.sleep(backoffMs(this.failures, this.options.backoff ?? DEFAULT_BACKOFF), signal);
        }
      }
    } finally {
      await this.releaseLock();
    }
  }

  /** Follows the store until the subscription ends: stop, resync or park (returns), a failure or a lost lock (throws). */
  private async follow(signal: AbortSignal, stopping: Promise<Error>): Promise<void> {
    const lock = this.lock;
    // The lock connection may have died between taking the lock and now: never follow without the lock.
    if (!lock?.held) throw new Error('lock connection lost before following');
    const p = this.processor;
    if (p.checkpoint === 'pipelined') return this.followPipelined(p, lock.lost, signal, stopping);
    const sub = this.store.subscribeBatches(
      { fromPosition: this.position, batchSize: this.options.batchSize, eventTypes: p.eventTypes },
      (batch) => this.handleBatch(batch, signal),
    );
    // stop() may have been called while the lock was being taken: `stopping` is already settled then.
    const outcome = await Promise.race([sub.failed, lock.lost, stopping]);
    await sub.stop();
    if (outcome instanceof Resync || outcome instanceof Parked || signal.aborted) return;
    throw outcome;
  }

  /**
   * Follows the store with a keyed pipeline: reading goes on while keys are
   * busy (up to maxPending unfinished events), each event runs as a task of its
   * key, and the checkpoint follows the lowest unfinished position. Ends like
   * follow(); on the way out the tasks running finish (or end on the abort
   * signal) and the checkpoint reached is written.
   */
  private async followPipelined(
    p: PipelinedProcessor,
    lockLost: Promise<Error>,
    signal: AbortSignal,
    stopping: Promise<Error>,
  ): Promise<void> {
    let fail: (e: unknown) => void = () => undefined;
    const failed = new Promise<unknown>((res) => {
      fail = res;
    });
    const from = this.position;
    await p.begin?.();
    const pipeline = new KeyedPipeline(from, {
      concurrency: this.options.concurrency ?? DEFAULT_CONCURRENCY,
      maxPending: this.options.maxPending ?? 4 * this.options.batchSize,
      onSafe: () => flush(),
    });
    this.pipeline = pipeline;
    // The checkpoint: one write at a time, at most every PIPELINE_FLUSH_MS, always to the latest safe position.
    let writing: Promise<void> | undefined;
    let again = false;
    const write = async () => {
      do {
        again = false;
        const to = pipeline.safe;
        if (to > this.position) {
          if (!(await moveCheckpoint(this.pool, p.name, this.position, to))) throw new Resync();
          this.position = to;
          this.failures = 0;
          this.options.observe?.committed?.(to);
          await new Promise((r) => setTimeout(r, PIPELINE_FLUSH_MS));
        }
      } while (again);
    };
    const flush = () => {
      if (writing) {
        again = true;
        return;
      }
      writing = write()
        .catch((e: unknown) => fail(e))
        .finally(() => {
          writing = undefined;
        });
    };

    this.parkedKeys = await loadParkedKeys(this.pool, p.name);
    const resume = (key: string) => {
      this.parkedKeys.set(key, 'resuming');
      // No position: the key's events are stored aside, the checkpoint need not wait for them.
      return pipeline.push(undefined, key, () => this.resumeKey(p, key, signal));
    };
    for (const [key, status] of this.parkedKeys) if (status === 'resuming') await resume(key);

    const sub = this.store.subscribeBatches(
      { fromPosition: from, batchSize: this.options.batchSize, eventTypes: p.eventTypes },
      async (batch) => {
        for (const e of batch.events) {
          const key = p.keyOf(e);
          if (key === undefined) pipeline.mark(e.position);
          else await pipeline.push(e.position, key, () => this.runKeyed(p, key, e, signal));
        }
        pipeline.mark(batch.position);
      },
    );
    // Keys an operator resumed, from this process (woken at once) or another (polled).
    let ended = false;
    const poll = (async () => {
      while (!ended && !signal.aborted) {
        await this.sleep(PARKED_POLL_MS, signal);
        if (ended || signal.aborted) return;
        const keys = await loadParkedKeys(this.pool, p.name);
        for (const [key, status] of keys)
          if (status === 'resuming' && this.parkedKeys.get(key) === 'parked') await resume(key);
      }
    })().catch((e: unknown) => fail(e));

    const outcome = await Promise.race([sub.failed, pipeline.failed, failed, lockLost, stopping]);
    ended = true;
    this.wake();
    await sub.stop();
    await pipeline.close();
    await poll;
    await writing;
    // What finished before the end is kept (not after a resync: the checkpoint is someone else's now).
    if (!(outcome instanceof Resync) && this.lock?.held) {
      again = false;
      await write().catch(() => undefined);
    }
    if (outcome instanceof Resync || signal.aborted) return;
    throw outcome;
  }

  /** One event of a key: set aside behind a parked key's, or handled (and the key parked when it keeps failing). */
  private async runKeyed(p: PipelinedProcessor, key: string, event: RecordedEvent, signal: AbortSignal): Promise<void> {
    if (this.parkedKeys.has(key)) {
      await holdEvent(this.pool, p.name, key, event);
      return;
    }
    await this.attempt(p, key, event, signal);
  }

  /** An event the handler just stored, handled as its key's next task (see HandlerContext.followUp). */
  private followUp(p: PipelinedProcessor, event: RecordedEvent, signal: AbortSignal): void {
    const key = p.keyOf(event);
    if (key === undefined || signal.aborted) return;
    this.pipeline?.enqueue(key, () => this.runKeyed(p, key, event, signal));
  }

  /** An operator retried or skipped a parked key: its held events are handled in order, then it runs again. */
  private async resumeKey(p: PipelinedProcessor, key: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      const held = await heldEvents(this.pool, p.name, key);
      if (held.length === 0) {
        if (await unparkKey(this.pool, p.name, key)) this.parkedKeys.delete(key);
        else {
          const status = (await loadParkedKeys(this.pool, p.name)).get(key);
          if (status) this.parkedKeys.set(key, status);
          else this.parkedKeys.delete(key);
        }
        return;
      }
      for (const e of held) {
        if (!(await this.attempt(p, key, e, signal))) return;
        await releaseHeld(this.pool, p.name, key, e.position);
      }
    }
  }

  /**
   * Handles one event of a key, again after a failure up to maxAttempts, then
   * parks the key (false). A transient failure or a stop is thrown: the runner
   * restarts from its checkpoint, and nothing innocent is parked.
   */
  private async attempt(
    p: PipelinedProcessor,
    key: string,
    event: RecordedEvent,
    signal: AbortSignal,
  ): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await p.handle([event], { signal, followUp: (next) => this.followUp(p, next, signal) });
        return true;
      } catch (e) {
        if (signal.aborted || isTransient(e)) throw e;
        this.options.observe?.failure?.(e);
        if (p.onFailure === 'park' && attempt >= this.options.maxAttempts) {
          const message = errorText(e).slice(0, 4000);
          await parkKey(this.pool, p.name, key, event, message, attempt, PARKED_BY[p.kind]);
          this.parkedKeys.set(key, 'parked');
          this.options.log('error', `${this.label}: ${key} parked on event ${event.id} at ${event.position}`, {
            eventType: event.type,
            err: message,
            attempts: attempt,
          });
          return false;
        }
        this.options.log('warn', `${this.label}: ${key} failed on event ${event.id}, trying again`, {
          err: errorText(e),
          attempt,
        });
        await abortableDelay(backoffMs(attempt, this.options.keyBackoff ?? POISON_BACKOFF), signal);
        if (signal.aborted) throw new Error('stopping');
      }
    }
  }

  private async handleBatch(batch: ReadBatch, signal: AbortSignal): Promise<void> {
    const p = this.processor;
    try {
      await this.commit(batch.events, batch.position, signal);
      return;
    } catch (e) {
      // Resync, stop and infrastructure failures (connection lost, deadlock...) are
      // not the events' fault: the runner restarts instead of parking an innocent event.
      if (
        e instanceof Resync ||
        signal.aborted ||
        isTransient(e) ||
        p.onFailure === 'retry' ||
        batch.events.length === 0
      )
        throw e;
      this.options.log('warn', `${this.label}: batch failed, handling its events one by one`, { err: errorText(e) });
    }
    for (const event of batch.events) {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.commit([event], event.position, signal);
          break;
        } catch (e) {
          if (e instanceof Resync || signal.aborted || isTransient(e)) throw e;
          if (attempt >= this.options.maxAttempts) {
            await this.park(event, e, attempt);
            throw new Parked();
          }
          await new Promise((r) => setTimeout(r, backoffMs(attempt, POISON_BACKOFF)));
        }
      }
    }
    if (batch.position !== this.position) await this.commit([], batch.position, signal);
  }

  /**
   * Handles `events` and moves the checkpoint from where this runner saw it to `to`.
   *
   * In-transaction: one transaction locks the checkpoint row, checks it is where we
   * think, handles, moves it. The row is locked (FOR UPDATE) before the handler
   * touches its tables, on purpose: the rebuild swap locks the same row first and
   * then takes ACCESS EXCLUSIVE locks on the live tables, so taking the row lock last
   * would invert the lock order and let a busy runner deadlock the swap. To keep round
   * trips down, BEGIN, the search_path and the locking read travel as one
   * simple-protocol query (the name as a literal).
   *
   * A batch without events (all filtered out) touches no table: one atomic guarded
   * UPDATE outside any explicit transaction is enough. A concurrent swap or operator
   * action that holds the row makes it wait and re-check the predicate.
   */
  private async commit(events: readonly RecordedEvent[], to: number, signal: AbortSignal): Promise<void> {
    const p = this.processor;
    if (p.checkpoint === 'pipelined') throw new Error(`${this.label}: a pipelined processor has no batch commit`);
    const from = this.position;
    if (events.length === 0) {
      if (!(await moveCheckpoint(this.pool, p.name, from, to))) throw new Resync();
    } else if (p.checkpoint === 'in-transaction') {
      await inTransaction(
        this.pool,
        async (tx) => {
          const prepare = p.prepare?.(events);
          const row = await this.lockCheckpoint(tx, prepare);
          if (!row || row.position !== from || row.status !== 'running') throw new Resync();
          await p.handle(events, { tx, signal, prepared: prepare !== undefined });
        },
        {
          fnBegins: true,
          // The checkpoint moves in the COMMIT's round trip.
          beforeCommit: (tx) =>
            `UPDATE processor_checkpoints SET position = ${checkpointPosition(to)}, updated_at = now() WHERE name = ${tx.escapeLiteral(p.name)}`,
        },
      );
    } else {
      await p.handle(events, { signal });
      if (!(await moveCheckpoint(this.pool, p.name, from, to))) throw new Resync();
    }
    this.position = to;
    this.failures = 0;
    this.options.observe?.committed?.(to);
  }

  /**
   * Runs as the transaction's first query: BEGIN; SET LOCAL search_path; SELECT ... FOR UPDATE, and
   * the handler's prepare for the batch (after the lock, see commit), in one round trip.
   */
  private async lockCheckpoint(
    c: PoolClient,
    prepare: string | undefined,
  ): Promise<{ position: number; status: string } | undefined> {
    // A projection never appends: declared, so readers of the global order do not wait for its batch
    // (migrations/0027). Its commit need not wait for the WAL flush: read model and checkpoint are one
    // transaction, so a server crash can only lose both (the last batches, re-applied from the
    // recovered checkpoint), never one without the other; the live lag loses a flush per batch.
    const declare =
      this.processor.kind === 'projection' ? 'SELECT es_declare_no_append(); SET LOCAL synchronous_commit = off; ' : '';
    const results = (await c.query(
      `BEGIN; SET LOCAL search_path TO ${LIVE_SCHEMA}; ${declare}` +
        `SELECT position, status FROM processor_checkpoints WHERE name = ${c.escapeLiteral(this.name)} FOR UPDATE` +
        (prepare === undefined ? '' : `; ${prepare}`),
    )) as unknown as QueryResult[];
    const locked = results.find((r) => r.command === 'SELECT' && r.fields.some((f) => f.name === 'status'));
    const row = (locked?.rows[0] ?? undefined) as { position: string | number; status: string } | undefined;
    return row ? { position: Number(row.position), status: row.status } : undefined;
  }

  private async park(event: RecordedEvent, error: unknown, attempts: number): Promise<void> {
    const p = this.processor;
    const message = errorText(error).slice(0, 4000);
    await inTransaction(this.pool, async (c) => {
      const parked = await parkCheckpoint(c, p.name, this.position, {
        position: event.position,
        eventId: event.id,
        eventType: event.type,
        error: message,
        attempts,
      });
      if (!parked) throw new Resync();
      await logOperatorAction(c, {
        processor: p.name,
        action: 'parked',
        position: event.position,
        eventId: event.id,
        error: message,
        actor: PARKED_BY[p.kind],
      });
    });
    this.options.log('error', `${this.label} parked on event ${event.id} at ${event.position}`, {
      eventType: event.type,
      err: message,
      attempts,
    });
  }

  private async acquireLock(signal: AbortSignal): Promise<boolean> {
    if (this.lock?.held) return true;
    await this.releaseLock();
    const p = this.processor;
    const lock = await SessionLock.tryTake({
      connectionString: this.options.connectionString,
      applicationName: `${p.kind}:${p.name}`,
      lockClass: LOCK_CLASS[p.kind],
      name: p.name,
      onLost: (e) => {
        this.options.log('warn', `${this.label}: lock connection lost`, { err: errorText(e) });
        this.options.observe?.active?.(false);
      },
    });
    if (!lock) return false;
    if (signal.aborted) {
      await lock.release();
      return false;
    }
    this.lock = lock;
    this.options.observe?.active?.(true);
    this.options.log('info', `${this.label}: runner active in this process`);
    return true;
  }

  private async releaseLock(): Promise<void> {
    const l = this.lock;
    this.lock = undefined;
    if (!l) return;
    await l.release();
    this.options.observe?.active?.(false);
  }
}

/** A checkpoint position as SQL text (it goes into a query string, not a parameter): a whole number or nothing. */
function checkpointPosition(position: number): string {
  if (!Number.isSafeInteger(position) || position < 0)
    throw new Error(`checkpoint position ${position} is not a position`);
  return String(position);
}

/** A wait that ends early when the runner stops. */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((res) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      res();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
