import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool, type PoolClient } from 'pg';
import type { EventToAppend, RecordedEvent } from '../../src/platform/event-store/event-store';
import { alignPositions, PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { ADVISORY_LOCKS } from '../../src/platform/locks';
import { migrate } from '../../src/platform/migrations';
import { createTestDatabase, type TestDatabase } from '../support/services';
import { eventually, testEvent } from '../support/events';

/**
 * Positions after a logical restore (migrations/0024). A pg_dump restored into
 * another cluster brings events whose positions came from that cluster's
 * transaction ids; here the same situation is made directly: rows are written
 * with positions far ahead of this cluster's ids, as pg_restore writes them,
 * and the offset row says another cluster set it. The end-to-end test with
 * real pg_dump / pg_restore between two clusters is test/e2e/backup-restore.e2e.spec.ts.
 */

/** The migrations before 0024: a store as deployed before positions had an offset. */
const beforeOffset = mkdtempSync(join(tmpdir(), 'migrations-0020-'));
for (const f of readdirSync(join(__dirname, '../../migrations'))) {
  if (/^\d{4}_/.test(f) && Number(f.slice(0, 4)) < 24)
    copyFileSync(join(__dirname, '../../migrations', f), join(beforeOffset, f));
}
afterAll(() => rmSync(beforeOffset, { recursive: true, force: true }));

let db: TestDatabase;
const open: PoolClient[] = [];
const pools: Pool[] = [];
const stores: PostgresEventStore[] = [];

beforeEach(async () => {
  db = await createTestDatabase('restore');
});
afterEach(async () => {
  for (const c of open.splice(0)) {
    await c.query('ROLLBACK').catch(() => undefined);
    c.release();
  }
  for (const s of stores.splice(0)) await s.close();
  for (const p of pools.splice(0)) await p.end();
  db.pool.on('error', () => undefined);
  await db.drop();
});

function newStore(pool: Pool = db.pool): PostgresEventStore {
  const s = new PostgresEventStore(pool, { listenConnectionString: db.url });
  stores.push(s);
  return s;
}

/** A pool with fresh sessions, as a process gets after reconnecting to a database that changed under it. */
function newPool(): Pool {
  const p = new Pool({ connectionString: db.url, max: 4 });
  pools.push(p);
  return p;
}

async function txClient(): Promise<PoolClient> {
  const c = await db.pool.connect();
  open.push(c);
  return c;
}

async function appendInTransaction(c: PoolClient, streamId: string, events: readonly EventToAppend[]): Promise<number> {
  const payload = JSON.stringify(
    events.map((e) => ({ id: e.id, type: e.type, data: e.data, metadata: e.metadata, v: 1 })),
  );
  const res = await c.query(`SELECT * FROM es_append($1, 'any', NULL, $2::jsonb, false)`, [streamId, payload]);
  expect(res.rows[0]).toMatchObject({ status: 'ok' });
  return Number(res.rows[0].last_position);
}

/**
 * Writes `count` events the way pg_restore does (plain rows), at positions of a cluster whose
 * transaction ids are `ahead` ids past this one's; returns the newest position.
 */
async function restoreRowsFromAheadCluster(count: number, ahead = 1_000_000): Promise<number> {
  const xid = Number((await db.pool.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x);
  const base = (xid + ahead) * 65536;
  const stream = `restored-${randomUUID()}`;
  for (let i = 0; i < count; i++) {
    const e = testEvent('restore.Restored', { i });
    await db.pool.query(
      `INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [base + i * 65536, e.id, stream, i, e.type, e.data, e.metadata],
    );
  }
  return base + (count - 1) * 65536;
}

async function newestPosition(): Promise<number> {
  return Number((await db.pool.query<{ p: string }>('SELECT max(position) AS p FROM events')).rows[0]!.p);
}

function record(s: PostgresEventStore, fromPosition: number): { events: RecordedEvent[]; stop: () => Promise<void> } {
  const events: RecordedEvent[] = [];
  const sub = s.subscribe({ fromPosition }, (batch) => {
    events.push(...batch);
    return Promise.resolve();
  });
  return { events, stop: () => sub.stop() };
}

describe('postgres event store: positions after a restore into another cluster', () => {
  it('after the start-up migration, a new event sorts after every restored one and reaches a reader checkpointed at the restored head', async () => {
    await newStore().append(`before-${randomUUID()}`, [testEvent('restore.Before')], 'no_stream');
    const restoredHead = await restoreRowsFromAheadCluster(3);
    // A read model restored with the events has its checkpoint at the restored head.
    const checkpoint = restoredHead;

    const { positions } = await migrate(db.pool); // what every start runs
    expect(positions?.raised).toBe(true);
    const store = newStore(newPool());
    const reader = record(store, checkpoint);
    try {
      const fresh = testEvent('restore.After');
      const r = await store.append(`after-${randomUUID()}`, [fresh], 'no_stream');
      expect(r.position).toBeGreaterThan(restoredHead);
      expect(r.position).toBeLessThan(2 ** 53);
      await eventually(() => reader.events.length >= 1, 'the new event delivered to the restored checkpoint');
      expect(reader.events.map((e) => e.id)).toEqual([fresh.id]);
      expect(await store.headPosition()).toBe(r.position);

      // A second start finds the store aligned: nothing changes.
      const again = await migrate(db.pool);
      expect(again.positions).toEqual({ previousOffset: positions?.offset, offset: positions?.offset, raised: false });
    } finally {
      await reader.stop();
    }
  });

  it('an append on a fresh session finds a misaligned store on its own, aligns it and lands above the restored events', async () => {
    await newStore().append(`before-${randomUUID()}`, [testEvent('restore.Before')], 'no_stream');
    const restoredHead = await restoreRowsFromAheadCluster(2);
    // No start-up alignment: the database changed under a running process, which reconnects.
    const logs: string[] = [];
    const store = new PostgresEventStore(newPool(), { listenConnectionString: db.url, log: (m) => logs.push(m) });
    stores.push(store);
    const reader = record(store, restoredHead);
    try {
      const r = await store.appendMulti([
        { streamId: `m1-${randomUUID()}`, events: [testEvent('restore.M1')], expected: 'no_stream' },
        { streamId: `m2-${randomUUID()}`, events: [testEvent('restore.M2')], expected: 'no_stream' },
      ]);
      expect(r[0]!.position).toBeGreaterThan(restoredHead);
      const skip = await store.appendSkippingKnown([
        { streamId: `t-${randomUUID()}`, events: [testEvent('restore.T')] },
      ]);
      expect(skip[0]!.position).toBeGreaterThan(r[1]!.position);
      await eventually(() => reader.events.length >= 3, 'all three delivered');
      expect(reader.events.map((e) => e.type)).toEqual(['restore.M1', 'restore.M2', 'restore.T']);
      expect(logs.filter((l) => l.includes('positions aligned'))).toHaveLength(1);
    } finally {
      await reader.stop();
    }
  });

  it('a dump of another cluster restored under open sessions is caught by the next append on any of them', async () => {
    const one = new Pool({ connectionString: db.url, max: 1 }); // one session: it has checked the store before the restore
    pools.push(one);
    const store = newStore(one);
    await store.append(`before-${randomUUID()}`, [testEvent('restore.Before')], 'no_stream');
    const restoredHead = await restoreRowsFromAheadCluster(2);
    await db.pool.query(`UPDATE es_position_offset SET system_identifier = 'another-cluster'`);
    const r = await store.append(`after-${randomUUID()}`, [testEvent('restore.After')], 'no_stream');
    expect(r.position).toBeGreaterThan(restoredHead);
  });

  it("the store's own cluster id recorded by another cluster also triggers the check, and a store whose ids are ahead is left alone", async () => {
    const store = newStore();
    const first = await store.append(`s-${randomUUID()}`, [testEvent('restore.One')], 'no_stream');
    // Restored into a cluster whose ids are ahead of the dump's: positions already continue above.
    await db.pool.query(`UPDATE es_position_offset SET system_identifier = 'another-cluster'`);
    const a = await alignPositions(db.pool);
    expect(a).toEqual({ previousOffset: 0, offset: 0, raised: false });
    const row = await db.pool.query<{ system_identifier: string | null }>(
      'SELECT system_identifier FROM es_position_offset',
    );
    const own = await db.pool.query<{ id: string | null }>('SELECT es_cluster_id() AS id');
    expect(row.rows[0]!.system_identifier).toBe(own.rows[0]!.id);
    const next = await store.append(`s-${randomUUID()}`, [testEvent('restore.Two')], 'no_stream');
    expect(next.position).toBeGreaterThan(first.position);
  });

  it('the raise waits for an append in flight with the old offset, holds new appends back, and no reader skips or repeats an event', async () => {
    const store = newStore();
    const start = await store.headPosition();
    const reader = record(store, start);
    const t1 = await txClient();
    try {
      // An append in flight with the old offset (its session has checked the store already).
      await t1.query('BEGIN');
      const early = testEvent('restore.InFlight');
      const earlyPosition = await appendInTransaction(t1, `t1-${randomUUID()}`, [early]);
      // Meanwhile the database receives events of a cluster far ahead (a restore under a running process).
      const restoredHead = await restoreRowsFromAheadCluster(2);
      await db.pool.query(`UPDATE es_position_offset SET system_identifier = 'another-cluster'`);

      const aligning = alignPositions(newPool());
      await eventually(async () => (await waitingForOffsetLock()) >= 1, 'the raise waits for the append in flight');
      // A new append (on a session that checked the store before) queues behind the raise.
      const late = testEvent('restore.AfterRaise');
      const appending = store.append(`t3-${randomUUID()}`, [late], 'no_stream');
      await eventually(async () => (await waitingForOffsetLock()) >= 2, 'the new append waits for the raise');
      expect(reader.events).toEqual([]);

      await t1.query('COMMIT');
      const a = await aligning;
      expect(a.raised).toBe(true);
      const r = await appending;
      expect(r.position).toBeGreaterThan(restoredHead);

      await eventually(() => reader.events.length >= 4, 'every event delivered');
      const sentinel = testEvent('restore.Sentinel');
      await store.append(`s-${randomUUID()}`, [sentinel], 'no_stream');
      await eventually(() => reader.events.length >= 5, 'the sentinel delivered');
      expect(reader.events.map((e) => e.type)).toEqual([
        'restore.InFlight',
        'restore.Restored',
        'restore.Restored',
        'restore.AfterRaise',
        'restore.Sentinel',
      ]);
      expect(reader.events[0]!.position).toBe(earlyPosition);
      expect(reader.events.map((e) => e.position)).toEqual(
        [...reader.events.map((e) => e.position)].sort((x, y) => x - y),
      );
      expect(await newestPosition()).toBe(reader.events.at(-1)!.position);
    } finally {
      await t1.query('ROLLBACK').catch(() => undefined);
      await reader.stop();
    }
  });

  it('a store that stayed in its cluster is never shifted, even with an old transaction still open', async () => {
    const store = newStore();
    const t1 = await txClient();
    try {
      await t1.query('BEGIN');
      await appendInTransaction(t1, `t1-${randomUUID()}`, [testEvent('restore.Open')]);
      await store.append(`t2-${randomUUID()}`, [testEvent('restore.Later')], 'no_stream');
      // Does not wait for the open append either (it would time out here).
      expect(await alignPositions(newPool())).toEqual({ previousOffset: 0, offset: 0, raised: false });
    } finally {
      await t1.query('ROLLBACK');
    }
  });

  it('upgrading a store to 0024 shifts nothing, unless it was restored from another cluster before the upgrade', async () => {
    for (const restored of [false, true]) {
      const old = await createTestDatabase('upgrade', { migrate: false });
      try {
        expect((await migrate(old.pool, beforeOffset)).positions).toBeUndefined();
        const oldStore = new PostgresEventStore(old.pool);
        const before = await oldStore.append(`s-${randomUUID()}`, [testEvent('restore.Old')], 'no_stream');
        let head = before.position;
        if (restored) {
          const xid = Number(
            (await old.pool.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x,
          );
          head = (xid + 1_000_000) * 65536;
          const e = testEvent('restore.Restored');
          await old.pool.query(
            `INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata) VALUES ($1, $2, $3, 0, $4, '{}', $5)`,
            [head, e.id, `restored-${randomUUID()}`, e.type, e.metadata],
          );
        }
        const { positions } = await migrate(old.pool);
        expect(positions?.raised).toBe(restored);
        const after = await oldStore.append(`s-${randomUUID()}`, [testEvent('restore.New')], 'no_stream');
        expect(after.position).toBeGreaterThan(head);
        if (!restored)
          expect((await old.pool.query('SELECT xid_offset FROM es_position_offset')).rows).toEqual([{ xid_offset: 0 }]);
        await oldStore.close();
      } finally {
        old.pool.on('error', () => undefined);
        await old.drop();
      }
    }
  });

  it('refuses the repair and appends under a transaction snapshot, and an append past 2^53, with clear errors', async () => {
    const c = await txClient();
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await expect(c.query('SELECT * FROM es_align_positions()')).rejects.toMatchObject({
      message: expect.stringContaining('READ COMMITTED'),
    });
    await c.query('ROLLBACK');
    // An append too: its snapshot could predate a raise, and its positions would sort below the restored events.
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await expect(appendInTransaction(c, `rr-${randomUUID()}`, [testEvent('restore.RR')])).rejects.toMatchObject({
      code: '25000',
    });
    await c.query('ROLLBACK');

    await db.pool.query(`UPDATE es_position_offset SET xid_offset = $1`, [2 ** 37]);
    await expect(
      newStore(newPool()).append(`big-${randomUUID()}`, [testEvent('restore.Big')], 'no_stream'),
    ).rejects.toMatchObject({ code: '54000', message: expect.stringContaining('positions exhausted') });
  });
});

/** Sessions waiting for the offset lock (ADVISORY_LOCKS.eventStorePositions), shared or exclusive. */
async function waitingForOffsetLock(): Promise<number> {
  const res = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND classid = 0 AND objid = $1 AND objsubid = 1`,
    [ADVISORY_LOCKS.eventStorePositions],
  );
  return res.rows[0]!.n;
}
