import type { Pool, PoolClient } from 'pg';
import type { Projection } from '../../../projections/projection';
import { ADVISORY_LOCKS } from '../locks';

/** Checkpoint rows and the operator log: the state an operator sees in /admin/projections. */

export type ProjectionStatus = 'running' | 'parked';

export interface CheckpointRow {
  name: string;
  position: number;
  version: number;
  status: ProjectionStatus;
  parked_position: number | null;
  parked_event_id: string | null;
  parked_event_type: string | null;
  parked_error: string | null;
  parked_attempts: number | null;
  updated_at: Date;
}

export const LIVE_SCHEMA = 'public';
export const shadowSchema = (name: string) => `rebuild_${name.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`;
export const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** Advisory lock class serialising the first registration of a projection (see src/platform/locks.ts). */
export const REGISTER_LOCK = ADVISORY_LOCKS.projectionRegister;

export async function readCheckpoint(db: Pool | PoolClient, name: string, forUpdate = false): Promise<CheckpointRow | undefined> {
  const res = await db.query<CheckpointRow>(
    `SELECT * FROM projection_checkpoints WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`, [name]);
  const row = res.rows[0];
  if (!row) return undefined;
  // bigint columns arrive as strings unless the process installed the int8 parser; the engine compares positions as numbers.
  return {
    ...row,
    position: Number(row.position),
    parked_position: row.parked_position === null ? null : Number(row.parked_position),
  };
}

/** Creates the live tables and the checkpoint row of a projection seen for the first time. */
export async function registerProjection(pool: Pool, p: Projection): Promise<CheckpointRow> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [REGISTER_LOCK, p.name]);
    let row = await readCheckpoint(client, p.name);
    if (!row) {
      await client.query(`SET LOCAL search_path TO ${LIVE_SCHEMA}`);
      for (const ddl of p.setup) await client.query(ddl);
      await client.query('INSERT INTO projection_checkpoints (name, position, version) VALUES ($1, 0, $2)', [p.name, p.version]);
      row = await readCheckpoint(client, p.name);
    }
    await client.query('COMMIT');
    if (!row) throw new Error(`projection ${p.name}: checkpoint row missing after registration`);
    return row;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

export async function logOperatorAction(
  db: Pool | PoolClient,
  entry: { projection: string; action: 'parked' | 'retry' | 'skip' | 'rebuilt'; position?: number | null; eventId?: string | null; error?: string | null; actor: string },
): Promise<void> {
  await db.query(
    'INSERT INTO projection_operator_log (projection, action, position, event_id, error, actor) VALUES ($1, $2, $3, $4, $5, $6)',
    [entry.projection, entry.action, entry.position ?? null, entry.eventId ?? null, entry.error ?? null, entry.actor],
  );
}
