import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { alignPositions, type PositionAlignment } from './event-store/postgres-event-store';
import { ADVISORY_LOCKS } from './locks';
import { projectRoot } from './paths';

/**
 * Numbered, forward-only SQL migrations from migrations/NNNN_name.sql, each in
 * its own transaction. An advisory lock keeps two instances from migrating at once.
 * Then the event store's positions are aligned with the cluster (a no-op unless
 * the database was restored from another cluster: migrations/0024).
 */
const MIGRATION_LOCK = ADVISORY_LOCKS.migrations;

export interface MigrationResult {
  applied: string[];
  current: number;
  /** Absent when the directory's migrations stop before 0024 (no offset to align yet). */
  positions?: PositionAlignment;
}

export async function migrate(pool: Pool, dir = join(projectRoot(), 'migrations')): Promise<MigrationResult> {
  const files = readdirSync(dir)
    .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f))
    .sort();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
    );
    for (const file of files) {
      const version = Number(file.slice(0, 4));
      if (done.has(version)) continue;
      const sql = readFileSync(join(dir, file), 'utf8');
      try {
        await client.query('BEGIN');
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${file} failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      applied.push(file);
    }
    const current = Math.max(0, ...files.map((f) => Number(f.slice(0, 4))));
    const aligns = await client.query<{ ok: boolean }>(
      `SELECT to_regprocedure('es_align_positions()') IS NOT NULL AS ok`,
    );
    return { applied, current, ...(aligns.rows[0]?.ok ? { positions: await alignPositions(client) } : {}) };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
}
