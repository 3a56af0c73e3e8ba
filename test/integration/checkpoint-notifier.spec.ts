import { CheckpointNotifier } from '../../src/platform/processing/checkpoint-notifier';
import { eventually } from '../support/events';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * The per-process checkpoint notifier behind Projections.waitFor (issue 9:
 * live streams no longer poll PostgreSQL each), on a real PostgreSQL: two
 * notifiers stand for two processes sharing the database.
 */
let db: TestDatabase;
let here: CheckpointNotifier;
let there: CheckpointNotifier;
const log = () => undefined;

beforeAll(async () => {
  db = await createTestDatabase('ckpt_notify');
  await db.pool.query(
    `INSERT INTO processor_checkpoints (name, kind, position, version) VALUES ('probe', 'projection', 100, 1)`,
  );
  // Fallback polls far beyond any wait here: a waiter wakes by the local announce or by NOTIFY, or not at all.
  const pollMs = { listening: 3_600_000, unlistened: 3_600_000 };
  here = new CheckpointNotifier(db.pool, { connectionString: db.url, log, pollMs });
  there = new CheckpointNotifier(db.pool, { connectionString: db.url, log, pollMs });
});
afterAll(async () => {
  await here.close();
  await there.close();
  await db.drop();
});

const commit = async (n: CheckpointNotifier, position: number) => {
  await db.pool.query(`UPDATE processor_checkpoints SET position = $1 WHERE name = 'probe'`, [position]);
  n.announce('probe', position);
};

it('answers from the stored checkpoint, even with no time to wait', async () => {
  expect(await here.wait('probe', 100, 0)).toBe(true);
  expect(await here.wait('probe', 101, 0)).toBe(false);
  expect(here.waiting).toBe(0);
});

/** LISTEN connections of these notifiers that are listening (their last query was the LISTEN). */
const listening = async () =>
  (
    await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'projection-checkpoints' AND query LIKE 'LISTEN %'`,
    )
  ).rows[0]!.n;

it('wakes a waiter in this process on a local commit, and one in another process by NOTIFY', async () => {
  const local = here.wait('probe', 200, 60_000);
  const remote = there.wait('probe', 200, 60_000);
  // Both listen before the commits: a NOTIFY sent earlier would be unheard, and only a poll would wake.
  await eventually(async () => (await listening()) === 2, 'both notifiers listening');
  await commit(here, 150);
  await commit(here, 200);
  await expect(local).resolves.toBe(true);
  await expect(remote).resolves.toBe(true);
  expect(here.waiting + there.waiting).toBe(0);
});

it('a waiter whose signal aborts answers false and stops waiting', async () => {
  const ctrl = new AbortController();
  const waiting = there.wait('probe', 1_000_000, 60_000, ctrl.signal);
  ctrl.abort();
  await expect(waiting).resolves.toBe(false);
  expect(there.waiting).toBe(0);
});
