import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate } from '../../src/platform/migrations';
import { projectRoot } from '../../src/platform/paths';
import { ensureCheckpoint, operatorLog, readCheckpoint } from '../../src/platform/processing/checkpoints';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * Migration 0025 on a database deployed before it: the projections' and the
 * saga's checkpoints, in their two old tables, end up in the one
 * processor_checkpoints table with every position (and parked event, version,
 * operator log entry) kept, so no processor starts over after the upgrade.
 */

let db: TestDatabase;
let before: string;

beforeAll(async () => {
  db = await createTestDatabase('mig', { migrate: false });
  // The migrations as they were before 0025, applied as a deployed database had them.
  before = mkdtempSync(join(tmpdir(), 'migrations-0024-'));
  const all = join(projectRoot(), 'migrations');
  for (const f of readdirSync(all).filter((f) => /^\d{4}_/.test(f) && Number(f.slice(0, 4)) < 25))
    copyFileSync(join(all, f), join(before, f));
});

afterAll(async () => {
  rmSync(before, { recursive: true, force: true });
  await db.drop();
});

it('moves the projection and saga checkpoints into processor_checkpoints, keeping every position', async () => {
  expect((await migrate(db.pool, before)).current).toBe(24);
  const parkedEvent = '6f1c2c3e-8a5b-4f7e-9d10-3b2a1c0d9e8f';
  await db.pool.query(`INSERT INTO projection_checkpoints (name, position, version, updated_at) VALUES
    ('users', 1234, 3, '2026-01-02T03:04:05Z'), ('orders', 99, 1, '2026-01-02T03:04:06Z')`);
  await db.pool.query(
    `INSERT INTO projection_checkpoints (name, position, version, status, parked_position, parked_event_id,
      parked_event_type, parked_error, parked_attempts, updated_at)
    VALUES ('devices', 40, 2, 'parked', 41, $1, 'telemetry.DeviceRegistered', 'boom', 3, '2026-01-02T03:04:07Z')`,
    [parkedEvent],
  );
  await db.pool.query(
    `INSERT INTO projection_operator_log (projection, action, position, event_id, error, actor)
    VALUES ('devices', 'parked', 41, $1, 'boom', 'system:projection-engine'), ('users', 'rebuilt', 1200, NULL, NULL, 'user:ops')`,
    [parkedEvent],
  );
  await db.pool.query(
    `INSERT INTO saga_checkpoints (name, position, updated_at) VALUES ('order-fulfilment', 5678, '2026-01-02T03:04:08Z')`,
  );

  const result = await migrate(db.pool);
  expect(result.applied).toContain('0025_processor_checkpoints.sql');

  const rows = await db.pool.query(
    `SELECT name, kind, position, version, status, parked_position, parked_event_id, parked_event_type, parked_error, parked_attempts,
            updated_at FROM processor_checkpoints ORDER BY name`,
  );
  expect(rows.rows).toEqual([
    {
      name: 'devices',
      kind: 'projection',
      position: 40,
      version: 2,
      status: 'parked',
      parked_position: 41,
      parked_event_id: parkedEvent,
      parked_event_type: 'telemetry.DeviceRegistered',
      parked_error: 'boom',
      parked_attempts: 3,
      updated_at: new Date('2026-01-02T03:04:07Z'),
    },
    {
      name: 'order-fulfilment',
      kind: 'saga',
      position: 5678,
      version: 1,
      status: 'running',
      parked_position: null,
      parked_event_id: null,
      parked_event_type: null,
      parked_error: null,
      parked_attempts: null,
      updated_at: new Date('2026-01-02T03:04:08Z'),
    },
    {
      name: 'orders',
      kind: 'projection',
      position: 99,
      version: 1,
      status: 'running',
      parked_position: null,
      parked_event_id: null,
      parked_event_type: null,
      parked_error: null,
      parked_attempts: null,
      updated_at: new Date('2026-01-02T03:04:06Z'),
    },
    {
      name: 'users',
      kind: 'projection',
      position: 1234,
      version: 3,
      status: 'running',
      parked_position: null,
      parked_event_id: null,
      parked_event_type: null,
      parked_error: null,
      parked_attempts: null,
      updated_at: new Date('2026-01-02T03:04:05Z'),
    },
  ]);
  const gone = await db.pool
    .query(`SELECT to_regclass('saga_checkpoints') AS saga, to_regclass('projection_checkpoints') AS projection,
      to_regclass('projection_operator_log') AS log`);
  expect(gone.rows[0]).toEqual({ saga: null, projection: null, log: null });

  // The operator log follows, under the column that now names any processor.
  expect((await operatorLog(db.pool, 'devices')).map((l) => [l.action, l.position, l.eventId, l.actor])).toEqual([
    ['parked', 41, parkedEvent, 'system:projection-engine'],
  ]);
  expect((await operatorLog(db.pool, 'users')).map((l) => [l.action, l.position, l.actor])).toEqual([
    ['rebuilt', 1200, 'user:ops'],
  ]);

  // What the runtime reads on its next start: the saga resumes where it was, not from 0.
  expect(await ensureCheckpoint(db.pool, 'order-fulfilment', 'saga')).toMatchObject({
    position: 5678,
    status: 'running',
  });
  expect(await readCheckpoint(db.pool, 'devices')).toMatchObject({
    position: 40,
    status: 'parked',
    parked_position: 41,
  });
  // New rows must say their kind: no default hides a forgotten one.
  await expect(db.pool.query(`INSERT INTO processor_checkpoints (name) VALUES ('nameless')`)).rejects.toThrow(/kind/);
  // The old table's checks came along under their new names.
  await expect(
    db.pool.query(`INSERT INTO processor_checkpoints (name, kind, status) VALUES ('odd', 'reactor', 'paused')`),
  ).rejects.toThrow(/processor_checkpoints_status_check/);
  // Nothing is left to apply: running the migrations again changes nothing.
  expect((await migrate(db.pool)).applied).toEqual([]);
});
