import type { Pool } from 'pg';
import type { Projection } from '../../../projections/projection';
import { DomainError, notFound } from '../../../domain/shared/errors';
import type { EventStore } from '../event-store/event-store';
import { ADVISORY_LOCKS } from '../locks';
import { CheckpointNotifier } from './checkpoint-notifier';
import {
  createCheckpoint,
  operatorLog,
  readCheckpoint,
  resolveParked,
  type CheckpointRow,
  type CheckpointStatus,
} from './checkpoints';
import { projector } from './processor';
import { ProcessorRunner, type ProcessorLog } from './processor-runner';
import { rebuildProjection, type RebuildProgress } from './rebuild';
import { LIVE_SCHEMA, errorText } from './transaction';
import { PlatformErrorCode } from '../platform-errors';

/**
 * The read models on the processor runtime: registers their tables and
 * checkpoints, runs each as a processor (processor-runner.ts; one active
 * runner per projection across processes, checkpoint in the same transaction
 * as the rows, poison events parked for an operator), and answers what the
 * platform asks about them: status and lag, read-your-writes (waitFor), the
 * operator's retry and skip, and rebuilds (rebuild.ts).
 */

export type { RebuildProgress } from './rebuild';

export interface ProjectionsOptions {
  readonly connectionString: string;
  readonly batchSize: number;
  readonly maxAttempts: number;
  /** How often a standby tries to take over a projection. */
  readonly standbyRetryMs?: number;
  readonly rebuildBatchSize?: number;
  readonly log: ProcessorLog;
}

export interface ProjectionInfo {
  name: string;
  version: number;
  definedVersion: number;
  checkpoint: number;
  status: CheckpointStatus | 'stale';
  /** Events of the types it handles that it has not applied yet (null when not counted, e.g. for /health). */
  lagEvents: number | null;
  /** Age of the oldest event it has not applied yet (0 when caught up). */
  lagSeconds: number;
  /** True when this process holds the projection's runner lock. */
  activeHere: boolean;
  parked: null | {
    position: number;
    eventId: string | null;
    eventType: string | null;
    error: string | null;
    attempts: number | null;
  };
  updatedAt: Date;
}

/** Unapplied events are counted up to this many (a bound on the scan /admin asks for). */
const LAG_COUNT_LIMIT = 1_000_000;

/** Advisory lock class serialising the first registration of a projection (see src/platform/locks.ts). */
const REGISTER_LOCK = ADVISORY_LOCKS.projectionRegister;

export class Projections {
  private readonly byName = new Map<string, Projection>();
  private readonly runners = new Map<string, ProcessorRunner>();
  /** Wakes waitFor callers on commits here (directly) and in other processes (NOTIFY). */
  private readonly checkpoints: CheckpointNotifier;

  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore,
    projections: readonly Projection[],
    private readonly options: ProjectionsOptions,
  ) {
    for (const p of projections) {
      if (!/^[a-z][a-z0-9_-]{0,50}$/.test(p.name)) throw new Error(`invalid projection name ${p.name}`);
      this.byName.set(p.name, p);
    }
    this.checkpoints = new CheckpointNotifier(pool, {
      connectionString: options.connectionString,
      log: (msg, err) => options.log('warn', msg, { err: errorText(err) }),
    });
  }

  get projections(): Projection[] {
    return [...this.byName.values()];
  }

  get(name: string): Projection {
    const p = this.byName.get(name);
    if (!p) throw notFound(PlatformErrorCode.PROJECTION_NOT_FOUND, `no projection named ${name}`);
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
      const runner = new ProcessorRunner(projector(p), this.pool, this.store, {
        connectionString: this.options.connectionString,
        batchSize: this.options.batchSize,
        maxAttempts: this.options.maxAttempts,
        ...(this.options.standbyRetryMs !== undefined ? { standbyRetryMs: this.options.standbyRetryMs } : {}),
        log: this.options.log,
        observe: { committed: (position) => this.checkpoints.announce(p.name, position) },
      });
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
    if (!row) throw notFound(PlatformErrorCode.PROJECTION_NOT_FOUND, `projection ${p.name} is not registered`);
    const backlog = await this.store.backlog(row.position, p.eventTypes, countLag ? LAG_COUNT_LIMIT : undefined);
    const l = { events: backlog.events, oldest: backlog.oldestRecordedAt };
    return {
      name: p.name,
      version: row.version,
      definedVersion: p.version,
      checkpoint: row.position,
      status: row.status === 'running' && row.version !== p.version ? 'stale' : row.status,
      lagEvents: l.events,
      lagSeconds: l.oldest ? Math.max(0, (Date.now() - l.oldest.getTime()) / 1000) : 0,
      activeHere: this.runners.get(p.name)?.active ?? false,
      parked:
        row.status === 'parked'
          ? {
              position: row.parked_position ?? 0,
              eventId: row.parked_event_id,
              eventType: row.parked_event_type,
              error: row.parked_error,
              attempts: row.parked_attempts,
            }
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
    // Through the runner when this process has one (it is woken at once), else on the table alone
    // (an instance that serves HTTP only): the active runner elsewhere notices within its parked poll.
    const runner = this.runners.get(name);
    const updated = runner ? await runner.resolve(action, actor) : await resolveParked(this.pool, name, actor, action);
    if (!updated)
      throw new DomainError('conflict', PlatformErrorCode.PROJECTION_NOT_PARKED, `projection ${name} is not parked`);
    return updated;
  }

  async operatorLog(name: string, limit = 100): Promise<Record<string, unknown>[]> {
    return operatorLog(this.pool, name, limit);
  }

  /**
   * Rebuilds a projection from position 0 into a shadow schema while the live
   * tables keep serving, then swaps them in one transaction once caught up.
   */
  async rebuild(
    name: string,
    actor: string,
    onProgress: (p: RebuildProgress) => void | Promise<void> = () => undefined,
  ): Promise<{ position: number; events: number }> {
    const p = this.get(name);
    await registerProjection(this.pool, p);
    return rebuildProjection(
      {
        pool: this.pool,
        store: this.store,
        connectionString: this.options.connectionString,
        ...(this.options.rebuildBatchSize !== undefined ? { batchSize: this.options.rebuildBatchSize } : {}),
        log: this.options.log,
      },
      p,
      {
        actor,
        onProgress,
        onSwapped: async (position) => {
          this.runners.get(name)?.wake();
          this.checkpoints.announce(name, position);
          await this.checkpoints.flush();
        },
      },
    );
  }
}

/** Creates the live tables and the checkpoint row of a projection seen for the first time. */
async function registerProjection(pool: Pool, p: Projection): Promise<CheckpointRow> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [REGISTER_LOCK, p.name]);
    let row = await readCheckpoint(client, p.name);
    if (!row) {
      await client.query(`SET LOCAL search_path TO ${LIVE_SCHEMA}`);
      for (const ddl of p.setup) await client.query(ddl);
      await createCheckpoint(client, p.name, 'projection', p.version);
      row = await readCheckpoint(client, p.name);
    }
    await client.query('COMMIT');
    if (!row) throw new Error(`projection ${p.name}: checkpoint row missing after registration`);
    if (row.kind !== 'projection')
      throw new Error(`projection ${p.name}: the checkpoint of that name belongs to a ${row.kind}`);
    return row;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}
