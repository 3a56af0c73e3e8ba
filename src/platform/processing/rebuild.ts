import type { Pool, PoolClient } from 'pg';
import type { Projection } from '../../../projections/projection';
import { DomainError } from '../../../domain/shared/errors';
import type { EventStore } from '../event-store/event-store';
import { ADVISORY_LOCKS } from '../locks';
import { logOperatorAction, readCheckpoint, unparkCheckpoint } from './checkpoints';
import { projector } from './processor';
import type { ProcessorLog } from './processor-runner';
import { SessionLock } from './session-lock';
import { LIVE_SCHEMA, errorText, inTransaction, quoteIdent } from './transaction';
import { PlatformErrorCode } from '../platform-errors';

/**
 * A projection rebuilt from position 0 into a shadow schema while the live
 * tables keep serving, then swapped in, in one transaction, once caught up.
 * Built from the runtime's parts, not a second engine: a SessionLock (one
 * rebuild at a time, with fencing), the projection's processor handler
 * (processor.ts) on transactions whose search_path points at the shadow
 * schema, and the checkpoint row, which the swap moves, un-parks and records
 * in the operator log.
 */

export const shadowSchema = (name: string) => `rebuild_${name.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`;

export interface RebuildProgress {
  processed: number;
  total: number;
}

export interface RebuildDeps {
  readonly pool: Pool;
  readonly store: EventStore;
  readonly connectionString: string;
  /** Events per shadow transaction (default 5000: nobody reads the shadow tables, so batches can be large). */
  readonly batchSize?: number;
  readonly log: ProcessorLog;
}

export interface RebuildRequest {
  readonly actor: string;
  readonly onProgress: (p: RebuildProgress) => void | Promise<void>;
  /** Right after the swap committed (wake the live runner, announce the new checkpoint), before the last progress report. */
  readonly onSwapped: (position: number) => Promise<void>;
}

export async function rebuildProjection(
  deps: RebuildDeps,
  p: Projection,
  request: RebuildRequest,
): Promise<{ position: number; events: number }> {
  const { actor, onProgress } = request;
  const { pool, store } = deps;
  const name = p.name;
  const handler = projector(p);
  const lock = await SessionLock.tryTake({
    connectionString: deps.connectionString,
    applicationName: `projection-rebuild:${name}`,
    lockClass: ADVISORY_LOCKS.projectionRebuild,
    name,
    onLost: (e) => deps.log('warn', `projection ${name}: rebuild lock connection lost`, { err: errorText(e) }),
  });
  if (!lock)
    throw new DomainError('conflict', PlatformErrorCode.REBUILD_RUNNING, `a rebuild of ${name} is already running`);
  const signal = new AbortController().signal;
  try {
    // Fencing: if the lock connection died, another rebuild may have started into the same
    // shadow schema; every write into it (and the swap) first checks the lock is still ours.
    const stillOurs = (c: PoolClient) => lock.assertHeld(c, `rebuild of ${name}: lost the rebuild lock, giving up`);
    const shadow = quoteIdent(shadowSchema(name));
    await inTransaction(pool, async (c) => {
      await stillOurs(c);
      await c.query(`DROP SCHEMA IF EXISTS ${shadow} CASCADE`);
      await c.query(`CREATE SCHEMA ${shadow}`);
      // New objects go to the shadow schema (the first one); functions and types in public still resolve, as they do live.
      await c.query(`SET LOCAL search_path TO ${shadow}, ${LIVE_SCHEMA}`);
      for (const ddl of p.setup) await c.query(ddl);
    });
    const total = await store.countEvents(p.eventTypes);
    const batchSize = deps.batchSize ?? 5000;
    let cursor = 0;
    let processed = 0;
    await onProgress({ processed, total });
    for (;;) {
      const batch = await store.readBatch(cursor, batchSize, p.eventTypes);
      if (batch.position === cursor) break;
      await inTransaction(pool, async (tx) => {
        await stillOurs(tx);
        // A batch of thousands of events is a long transaction: declared as not appending, so
        // live readers of the global order do not wait for it (migrations/0027).
        await tx.query(`SELECT es_declare_no_append(); SET LOCAL search_path TO ${shadow}, ${LIVE_SCHEMA}`);
        await handler.handle(batch.events, { tx, signal });
      });
      cursor = batch.position;
      processed += batch.events.length;
      await onProgress({ processed, total: Math.max(total, processed) });
      if (batch.events.length < batchSize) break;
    }
    // The swap: wait for the live runner's batch, catch up the last events, exchange the tables.
    const final = await inTransaction(pool, async (tx) => {
      await readCheckpoint(tx, name, true);
      await stillOurs(tx);
      for (;;) {
        const batch = await store.readBatch(cursor, batchSize, p.eventTypes, { pgClient: tx });
        if (batch.position === cursor) break;
        await tx.query(`SET LOCAL search_path TO ${shadow}, ${LIVE_SCHEMA}`);
        await handler.handle(batch.events, { tx, signal });
        cursor = batch.position;
        processed += batch.events.length;
        if (batch.events.length < batchSize) break;
      }
      await tx.query(`SET LOCAL search_path TO ${LIVE_SCHEMA}`);
      const retired = quoteIdent(`retired_${shadowSchema(name)}`);
      await tx.query(`DROP SCHEMA IF EXISTS ${retired} CASCADE`);
      await tx.query(`CREATE SCHEMA ${retired}`);
      for (const t of p.tables) {
        await moveTable(tx, LIVE_SCHEMA, t, `retired_${shadowSchema(name)}`);
        await moveTable(tx, shadowSchema(name), t, LIVE_SCHEMA);
      }
      await tx.query(`DROP SCHEMA ${retired} CASCADE`);
      await tx.query(`DROP SCHEMA ${shadow} CASCADE`);
      await unparkCheckpoint(tx, name, cursor, p.version);
      await logOperatorAction(tx, { processor: name, action: 'rebuilt', position: cursor, actor });
      return { position: cursor, events: processed };
    });
    await request.onSwapped(final.position);
    await onProgress({ processed, total: Math.max(total, processed) });
    return final;
  } finally {
    await lock.release();
  }
}

/**
 * Moves a table, and every partition of it (ALTER TABLE SET SCHEMA moves a
 * partitioned table alone; pg_partition_tree lists nothing for a plain table),
 * from one schema to another; nothing when absent.
 */
async function moveTable(tx: PoolClient, from: string, table: string, to: string): Promise<void> {
  const res = await tx.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
       FROM (SELECT to_regclass($1) AS relid, 0 AS level
             UNION SELECT relid, level FROM pg_partition_tree(to_regclass($1))) t
       JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $2
      ORDER BY t.level`,
    [`${quoteIdent(from)}.${quoteIdent(table)}`, from],
  );
  for (const r of res.rows)
    await tx.query(`ALTER TABLE ${quoteIdent(r.schema)}.${quoteIdent(r.name)} SET SCHEMA ${quoteIdent(to)}`);
}
