import type { Pool, PoolClient } from 'pg';
import type { RecordedEvent } from '../../../domain/shared/recorded-event';
import { logOperatorAction } from './checkpoints';
import { inTransaction } from './transaction';

/**
 * Parked keys of a pipelined processor (migrations/0026): a key (an order)
 * whose event kept failing is set aside with that event and every later event
 * of the key, while the other keys flow and the checkpoint moves on. An
 * operator retries (the held events are handled again, in order) or skips
 * (the failing event is dropped, the later ones are handled); both are
 * recorded in the operator log with the key.
 */

export type ParkedKeyStatus = 'parked' | 'resuming';

export interface ParkedKey {
  readonly key: string;
  readonly status: ParkedKeyStatus;
  readonly position: number;
  readonly eventId: string;
  readonly eventType: string;
  readonly error: string;
  readonly attempts: number;
  /** Events of the key waiting: the failing one and the later ones. */
  readonly heldEvents: number;
  readonly parkedAt: Date;
  readonly updatedAt: Date;
}

type Db = Pool | PoolClient;

const SELECT_KEY = `SELECT k.key, k.status, k.position::float8 AS position, k.event_id AS "eventId", k.event_type AS "eventType",
  k.error, k.attempts, k.parked_at AS "parkedAt", k.updated_at AS "updatedAt",
  (SELECT count(*)::int FROM processor_parked_events e WHERE e.processor = k.processor AND e.key = k.key) AS "heldEvents"
  FROM processor_parked_keys k`;

/** Every parked or resuming key of a processor (the runner loads them when it starts). */
export async function loadParkedKeys(db: Db, processor: string): Promise<Map<string, ParkedKeyStatus>> {
  const res = await db.query<{ key: string; status: ParkedKeyStatus }>(
    'SELECT key, status FROM processor_parked_keys WHERE processor = $1',
    [processor],
  );
  return new Map(res.rows.map((r) => [r.key, r.status]));
}

export async function findParkedKey(db: Db, processor: string, key: string): Promise<ParkedKey | undefined> {
  const res = await db.query<ParkedKey>(`${SELECT_KEY} WHERE k.processor = $1 AND k.key = $2`, [processor, key]);
  return res.rows[0];
}

/** Keys in key order after `after`, at most `limit`. */
export async function listParkedKeys(
  db: Db,
  processor: string,
  options: { status?: ParkedKeyStatus; limit: number; after?: string },
): Promise<ParkedKey[]> {
  const res = await db.query<ParkedKey>(
    `${SELECT_KEY} WHERE k.processor = $1 AND ($2::text IS NULL OR k.status = $2) AND ($3::text IS NULL OR k.key > $3)
     ORDER BY k.key LIMIT $4`,
    [processor, options.status ?? null, options.after ?? null, options.limit],
  );
  return res.rows;
}

/**
 * Parks `key` on `event` (kept first in line), recorded in the operator log.
 * Committed before the checkpoint may pass the event.
 */
export async function parkKey(
  pool: Pool,
  processor: string,
  key: string,
  event: RecordedEvent,
  error: string,
  attempts: number,
  actor: string,
): Promise<void> {
  await inTransaction(pool, async (c) => {
    await c.query(
      `INSERT INTO processor_parked_keys (processor, key, status, position, event_id, event_type, error, attempts)
       VALUES ($1, $2, 'parked', $3, $4, $5, $6, $7)
       ON CONFLICT (processor, key) DO UPDATE SET status = 'parked', position = EXCLUDED.position,
         event_id = EXCLUDED.event_id, event_type = EXCLUDED.event_type, error = EXCLUDED.error,
         attempts = EXCLUDED.attempts, updated_at = now()`,
      [processor, key, event.position, event.id, event.type, error, attempts],
    );
    await holdOn(c, processor, key, event);
    await logOperatorAction(c, {
      processor,
      key,
      action: 'parked',
      position: event.position,
      eventId: event.id,
      error,
      actor,
    });
  });
}

/** A later event of a parked key, set aside behind the failing one. Idempotent (a redelivery after a crash). */
export async function holdEvent(pool: Pool, processor: string, key: string, event: RecordedEvent): Promise<void> {
  await holdOn(pool, processor, key, event);
}

async function holdOn(db: Db, processor: string, key: string, event: RecordedEvent): Promise<void> {
  await db.query(
    `INSERT INTO processor_parked_events (processor, key, position, event) VALUES ($1, $2, $3, $4)
     ON CONFLICT (processor, key, position) DO NOTHING`,
    [processor, key, event.position, JSON.stringify(event)],
  );
}

/** The held events of a key, in order. */
export async function heldEvents(db: Db, processor: string, key: string): Promise<RecordedEvent[]> {
  const res = await db.query<{ event: RecordedEvent & { recordedAt: string } }>(
    'SELECT event FROM processor_parked_events WHERE processor = $1 AND key = $2 ORDER BY position',
    [processor, key],
  );
  return res.rows.map((r) => ({ ...r.event, recordedAt: new Date(r.event.recordedAt) }));
}

/** A held event was handled: it leaves the line. */
export async function releaseHeld(db: Db, processor: string, key: string, position: number): Promise<void> {
  await db.query('DELETE FROM processor_parked_events WHERE processor = $1 AND key = $2 AND position = $3', [
    processor,
    key,
    position,
  ]);
}

/** Every held event was handled: the key runs again. False when it was parked again meanwhile. */
export async function unparkKey(db: Db, processor: string, key: string): Promise<boolean> {
  const res = await db.query(
    `DELETE FROM processor_parked_keys k WHERE processor = $1 AND key = $2 AND status = 'resuming'
       AND NOT EXISTS (SELECT 1 FROM processor_parked_events e WHERE e.processor = k.processor AND e.key = k.key)`,
    [processor, key],
  );
  return res.rowCount === 1;
}

/**
 * An operator's decision on a parked key, recorded: `retry` handles its held
 * events again from the failing one; `skip` drops the failing event and
 * handles the later ones. Undefined when the key is not parked. The runner
 * picks the key up when woken, or within its poll interval from another process.
 */
export async function resolveParkedKey(
  pool: Pool,
  processor: string,
  key: string,
  action: 'retry' | 'skip',
  actor: string,
): Promise<ParkedKey | undefined> {
  return inTransaction(pool, async (c) => {
    const res = await c.query<{ position: string; event_id: string; error: string }>(
      `SELECT position, event_id, error FROM processor_parked_keys WHERE processor = $1 AND key = $2 AND status = 'parked' FOR UPDATE`,
      [processor, key],
    );
    const row = res.rows[0];
    if (!row) return undefined;
    if (action === 'skip') await releaseHeld(c, processor, key, Number(row.position));
    await c.query(
      `UPDATE processor_parked_keys SET status = 'resuming', updated_at = now() WHERE processor = $1 AND key = $2`,
      [processor, key],
    );
    await logOperatorAction(c, {
      processor,
      key,
      action,
      position: Number(row.position),
      eventId: row.event_id,
      error: row.error,
      actor,
    });
    return findParkedKey(c, processor, key);
  });
}

/** The operator log of one key, newest first. */
export async function keyOperatorLog(
  db: Db,
  processor: string,
  key: string,
  limit = 100,
): Promise<Record<string, unknown>[]> {
  const res = await db.query(
    `SELECT id, action, position, event_id AS "eventId", error, actor, at FROM processor_operator_log
     WHERE processor = $1 AND key = $2 ORDER BY id DESC LIMIT $3`,
    [processor, key, limit],
  );
  return res.rows as Record<string, unknown>[];
}
