import type { Pool, PoolClient } from 'pg';
import type { ProcessorKind } from './processor';
import { inTransaction } from './transaction';

/**
 * The one checkpoint table (processor_checkpoints, migrations/0025) and the
 * operator log: how far each processor has got, whether it is parked on an
 * event, and every park, retry, skip and rebuild, with who did it. What an
 * operator sees in /admin/projections.
 */

export type CheckpointStatus = 'running' | 'parked';

export interface CheckpointRow {
  name: string;
  kind: ProcessorKind;
  position: number;
  /** The projection definition's version the rows were built with (1 for other kinds). */
  version: number;
  status: CheckpointStatus;
  parked_position: number | null;
  parked_event_id: string | null;
  parked_event_type: string | null;
  parked_error: string | null;
  parked_attempts: number | null;
  updated_at: Date;
}

export type OperatorAction = 'parked' | 'retry' | 'skip' | 'rebuilt';

type Db = Pool | PoolClient;

export async function readCheckpoint(db: Db, name: string, forUpdate = false): Promise<CheckpointRow | undefined> {
  const res = await db.query<CheckpointRow>(
    `SELECT * FROM processor_checkpoints WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    [name],
  );
  const row = res.rows[0];
  if (!row) return undefined;
  // bigint columns arrive as strings unless the process installed the int8 parser; the runtime compares positions as numbers.
  return {
    ...row,
    position: Number(row.position),
    parked_position: row.parked_position === null ? null : Number(row.parked_position),
  };
}

/** A new processor starts from the beginning of the store. Does nothing when the row exists. */
export async function createCheckpoint(db: Db, name: string, kind: ProcessorKind, version = 1): Promise<void> {
  await db.query(
    'INSERT INTO processor_checkpoints (name, kind, position, version) VALUES ($1, $2, 0, $3) ON CONFLICT (name) DO NOTHING',
    [name, kind, version],
  );
}

/**
 * The checkpoint a processor resumes from, created at 0 the first time. Names
 * are one namespace across kinds: a saga cannot take over a projection's row.
 */
export async function ensureCheckpoint(db: Db, name: string, kind: ProcessorKind): Promise<CheckpointRow> {
  let row = await readCheckpoint(db, name);
  if (!row) {
    await createCheckpoint(db, name, kind);
    row = await readCheckpoint(db, name);
  }
  if (!row) throw new Error(`${kind} ${name}: checkpoint row missing after creating it`);
  if (row.kind !== kind) throw new Error(`${kind} ${name}: the checkpoint of that name belongs to a ${row.kind}`);
  return row;
}

/**
 * Moves a checkpoint from `from` to `to` in one guarded statement (outside
 * any explicit transaction when `db` is the pool). False when the row is not
 * where the caller thinks or is parked: someone else moved it (a rebuild
 * swapped, an operator acted, another runner), and the caller must re-read.
 */
export async function moveCheckpoint(db: Db, name: string, from: number, to: number): Promise<boolean> {
  const res = await db.query(
    `UPDATE processor_checkpoints SET position = $3, updated_at = now() WHERE name = $1 AND position = $2 AND status = 'running'`,
    [name, from, to],
  );
  return res.rowCount === 1;
}

/** Parks the processor at `from` on the event that keeps failing. False when the row moved meanwhile. */
export async function parkCheckpoint(
  db: PoolClient,
  name: string,
  from: number,
  parked: { position: number; eventId: string; eventType: string; error: string; attempts: number },
): Promise<boolean> {
  const res = await db.query(
    `UPDATE processor_checkpoints SET status = 'parked', parked_position = $3, parked_event_id = $4, parked_event_type = $5,
       parked_error = $6, parked_attempts = $7, updated_at = now() WHERE name = $1 AND position = $2 AND status = 'running'`,
    [name, from, parked.position, parked.eventId, parked.eventType, parked.error, parked.attempts],
  );
  return res.rowCount === 1;
}

/** Back to running at `position`, the parked fields cleared (an operator's retry or skip, a rebuild's swap). */
export async function unparkCheckpoint(
  db: PoolClient,
  name: string,
  position: number,
  version?: number,
): Promise<void> {
  await db.query(
    `UPDATE processor_checkpoints SET status = 'running', position = $2, version = COALESCE($3, version), parked_position = NULL,
       parked_event_id = NULL, parked_event_type = NULL, parked_error = NULL, parked_attempts = NULL, updated_at = now() WHERE name = $1`,
    [name, position, version ?? null],
  );
}

export async function logOperatorAction(
  db: Db,
  entry: {
    processor: string;
    action: OperatorAction;
    position?: number | null;
    eventId?: string | null;
    error?: string | null;
    actor: string;
    /** One key of a pipelined processor (an order of the saga); absent for the processor as a whole. */
    key?: string;
  },
): Promise<void> {
  await db.query(
    'INSERT INTO processor_operator_log (processor, action, position, event_id, error, actor, key) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [
      entry.processor,
      entry.action,
      entry.position ?? null,
      entry.eventId ?? null,
      entry.error ?? null,
      entry.actor,
      entry.key ?? null,
    ],
  );
}

/** Newest first. */
export async function operatorLog(db: Db, name: string, limit = 100): Promise<Record<string, unknown>[]> {
  const res = await db.query(
    'SELECT id, action, position, event_id AS "eventId", error, actor, at FROM processor_operator_log WHERE processor = $1 ORDER BY id DESC LIMIT $2',
    [name, limit],
  );
  return res.rows as Record<string, unknown>[];
}

/**
 * An operator's decision on a parked processor, recorded: `retry` applies the
 * parked event again, `skip` moves the checkpoint past it without applying it.
 * Undefined when the processor is not parked (nothing to decide). The caller
 * wakes its runner afterwards, once this has committed: a runner woken earlier
 * would still read 'parked' and sleep on.
 */
export async function resolveParked(
  pool: Pool,
  name: string,
  actor: string,
  action: 'retry' | 'skip',
): Promise<CheckpointRow | undefined> {
  return inTransaction(pool, async (c) => {
    const row = await readCheckpoint(c, name, true);
    if (row?.status !== 'parked') return undefined;
    await unparkCheckpoint(c, name, action === 'skip' ? (row.parked_position ?? row.position) : row.position);
    await logOperatorAction(c, {
      processor: name,
      action,
      position: row.parked_position,
      eventId: row.parked_event_id,
      error: row.parked_error,
      actor,
    });
    const after = await readCheckpoint(c, name);
    if (!after) throw new Error('checkpoint vanished');
    return after;
  });
}
