import { Pool } from 'pg';
import type { Projection } from '../../projections/projection';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { Projections, type ProjectionsOptions } from '../../src/platform/processing/projections';
import {
  ACCOUNT_EVENTS,
  AccountsWorkload,
  IGNORED_EVENT,
  accountsProjection,
  accountsTable,
  allEvents,
  foldAccounts,
  readAccounts,
  type AccountsControl,
} from '../fixtures/accounts-projection';
import { eventually, testEvent } from '../support/events';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * The projection engine against real PostgreSQL: checkpoints committed with
 * the rows, read-your-writes, one active runner across instances, poison
 * events parked for an operator, and rebuilds that swap in while queries run.
 */

let db: TestDatabase;
let store: PostgresEventStore;

/** One "instance" of the platform: its own pool, event store and engine, as a separate process would have. */
interface Instance {
  pool: Pool;
  store: PostgresEventStore;
  engine: Projections;
  logs: { level: string; msg: string }[];
  close(): Promise<void>;
}
const open: Instance[] = [];

function instance(projections: Projection[], options: Partial<ProjectionsOptions> = {}): Instance {
  const pool = new Pool({ connectionString: db.url, max: 8 });
  pool.on('error', () => undefined); // an idle connection ended by the tests' pg_terminate_backend
  const s = new PostgresEventStore(pool, { listenConnectionString: db.url });
  const logs: { level: string; msg: string }[] = [];
  const engine = new Projections(pool, s, projections, {
    connectionString: db.url,
    batchSize: 50,
    maxAttempts: 3,
    standbyRetryMs: 50,
    log: (level, msg) => {
      logs.push({ level, msg });
    },
    ...options,
  });
  let closed = false;
  const inst: Instance = {
    pool,
    store: s,
    engine,
    logs,
    close: async () => {
      if (closed) return;
      closed = true;
      await engine.stop();
      await s.close();
      await pool.end();
    },
  };
  open.push(inst);
  return inst;
}

async function appendWorkload(w: AccountsWorkload, appends: number): Promise<number> {
  let last = 0;
  for (let i = 0; i < appends; i++) {
    const { streamId, events } = w.next();
    last = (await store.append(streamId, events, 'any')).position;
  }
  return last;
}

/**
 * The newest event stored (every append of this test has returned). Not
 * store.headPosition(): that stops below any transaction still in flight
 * (a runner's batch, say), so it can trail the last append.
 */
async function lastAppended(): Promise<number> {
  const r = await db.pool.query<{ max: number | null }>('SELECT max(position) AS max FROM events');
  return r.rows[0]?.max ?? 0;
}

/** Everything stored, folded: what the read model of `name` must hold once caught up. */
async function expected(skipped: ReadonlySet<string> = new Set()) {
  return foldAccounts(await allEvents(db.pool), skipped);
}

beforeAll(async () => {
  db = await createTestDatabase('proj');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
});

afterEach(async () => {
  for (const i of open.splice(0)) await i.close();
});

afterAll(async () => {
  await store.close();
  await db.drop();
});

describe('projection engine', () => {
  it('applies events and moves the checkpoint in the same transaction', async () => {
    const name = 'acc_basic';
    const { engine } = instance([accountsProjection(name)], { batchSize: 7 });
    expect(await engine.register()).toEqual([]);
    engine.start();
    const w = new AccountsWorkload('basic', 20);

    // While events are appended and applied, every consistent snapshot shows
    // rows that are exactly the fold of the events up to the checkpoint.
    let appending = true;
    const appender = (async () => {
      try {
        await appendWorkload(w, 100);
      } finally {
        appending = false;
      }
    })();
    let snapshots = 0;
    const reader = new Pool({ connectionString: db.url, max: 1 });
    try {
      while (appending || snapshots < 3) {
        const c = await reader.connect();
        try {
          await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          const cp = await c.query<{ position: number }>('SELECT position FROM processor_checkpoints WHERE name = $1', [
            name,
          ]);
          const checkpoint = cp.rows[0]!.position;
          const rows = await readAccounts(c, name);
          const upTo = (
            await c.query<{ position: number }>('SELECT position FROM events WHERE position <= $1', [checkpoint])
          ).rowCount;
          await c.query('COMMIT');
          const seen = (await allEvents(db.pool)).filter((e) => e.position <= checkpoint);
          expect(seen.length).toBe(upTo);
          expect(rows).toEqual(foldAccounts(seen));
          snapshots++;
        } finally {
          c.release();
        }
      }
    } finally {
      await appender;
      await reader.end();
    }
    expect(snapshots).toBeGreaterThanOrEqual(3);

    const head = await lastAppended();
    expect(await engine.waitFor(name, head, 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
    const [info] = await engine.status();
    expect(info).toMatchObject({
      name,
      status: 'running',
      version: 1,
      definedVersion: 1,
      lagEvents: 0,
      lagSeconds: 0,
      activeHere: true,
      parked: null,
    });
    expect(info!.checkpoint).toBeGreaterThanOrEqual(head);
  });

  it('read-your-writes: waitFor resolves once the position written is applied', async () => {
    const name = 'acc_ryw';
    const { engine } = instance([accountsProjection(name)]);
    await engine.register();
    engine.start();
    await store.append('ryw-1', [testEvent(ACCOUNT_EVENTS.opened, { owner: 'ada' })], 'no_stream');
    for (let i = 1; i <= 20; i++) {
      const { position } = await store.append('ryw-1', [testEvent(ACCOUNT_EVENTS.deposited, { amount: i })], 'any');
      expect(await engine.waitFor(name, position, 30_000)).toBe(true);
      const row = await db.pool.query(`SELECT balance, movements FROM ${accountsTable(name)} WHERE id = 'ryw-1'`);
      expect(row.rows[0]).toEqual({ balance: (i * (i + 1)) / 2, movements: i });
    }
    // A position nobody has written yet: waitFor gives up and says so.
    expect(await engine.waitFor(name, (await lastAppended()) + 1_000_000_000, 200)).toBe(false);
    await expect(engine.waitFor('no_such_projection', 1, 10)).rejects.toMatchObject({
      code: 'PLATFORM.PROJECTION_NOT_FOUND',
    });
  });

  it('moves the checkpoint past events of types it does not handle', async () => {
    const name = 'acc_filter';
    const { engine } = instance([accountsProjection(name)]);
    await engine.register();
    engine.start();
    expect(await engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    const before = await readAccounts(db.pool, name);
    const { position } = await store.append(
      'noted-1',
      [testEvent(IGNORED_EVENT), testEvent(IGNORED_EVENT)],
      'no_stream',
    );
    expect(await engine.waitFor(name, position, 30_000)).toBe(true);
    const info = await engine.info(engine.get(name));
    expect(info.checkpoint).toBeGreaterThanOrEqual(position);
    expect(info.lagEvents).toBe(0);
    expect(await readAccounts(db.pool, name)).toEqual(before);
  });

  it('runs one active runner across instances; a standby takes over without doubles or gaps', async () => {
    const name = 'acc_ha';
    const a = instance([accountsProjection(name)], { batchSize: 5 });
    const b = instance([accountsProjection(name)], { batchSize: 5 });
    // Both instances register at once (a second instance must not wait for the first one's runner).
    await Promise.all([a.engine.register(), b.engine.register()]);
    a.engine.start();
    await eventually(async () => (await a.engine.status())[0]!.activeHere, 'instance a active');
    b.engine.start();
    // b registers again while a's runner is active: must not block.
    expect(await b.engine.register()).toEqual([]);

    const w = new AccountsWorkload('ha', 15);
    let head = await appendWorkload(w, 40);
    expect(await b.engine.waitFor(name, head, 30_000)).toBe(true);
    expect((await a.engine.status())[0]!.activeHere).toBe(true);
    expect((await b.engine.status())[0]!.activeHere).toBe(false);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());

    // Stop the active instance while events keep coming: b takes over.
    let appending = true;
    let appendedSince = 0;
    const appender = (async () => {
      while (appending && appendedSince < 2000) {
        await appendWorkload(w, 1);
        appendedSince++;
      }
    })();
    await eventually(
      async () => (await a.engine.info(a.engine.get(name))).checkpoint > head,
      'a applied some of the new events',
    );
    await a.close();
    await eventually(async () => (await b.engine.status())[0]!.activeHere, 'instance b took over');
    // Events appended while b was taking over, and after.
    const atTakeover = appendedSince;
    await eventually(() => appendedSince >= atTakeover + 30, 'more events after the takeover');
    appending = false;
    await appender;
    head = await lastAppended();
    expect(await b.engine.waitFor(name, head, 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
    expect((await b.engine.status())[0]).toMatchObject({ status: 'running', lagEvents: 0, activeHere: true });
  });

  it('takes its lock again when the lock connection dies, with no doubles or gaps', async () => {
    const name = 'acc_lock_lost';
    const { engine, logs } = instance([accountsProjection(name)], { batchSize: 5 });
    await engine.register();
    engine.start();
    const w = new AccountsWorkload('ll', 10);
    // Events keep coming until the lock has been lost three times.
    let appending = true;
    const appender = (async () => {
      for (let i = 0; appending && i < 2000; i++) await appendWorkload(w, 1);
    })();
    const lost = () => logs.filter((l) => /lock connection lost/.test(l.msg)).length;
    for (let i = 1; i <= 3; i++) {
      await eventually(async () => (await engine.status())[0]!.activeHere, `active (${i})`);
      const r = await db.pool.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
        [`projection:${name}`],
      );
      expect(r.rowCount).toBe(1);
      await eventually(() => lost() >= i, `lock loss ${i} noticed`);
    }
    appending = false;
    await appender;
    expect(await engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
    expect((await engine.status())[0]).toMatchObject({ status: 'running', activeHere: true });
  });

  it('never follows without its lock: a lock connection that dies right after the lock is taken is noticed', async () => {
    const name = 'acc_lock_early';
    const logs: string[] = [];
    let killed: Promise<unknown> | undefined;
    // Kills the lock connection the moment the lock is taken; the runner's next step (reading its
    // checkpoint) is held back meanwhile, so the loss happens before it follows.
    const { engine } = instance([accountsProjection(name)], {
      log: (_level, msg) => {
        logs.push(msg);
        if (!killed && /runner active in this process/.test(msg)) {
          killed = db.pool.query(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
            [`projection:${name}`],
          );
        }
      },
    });
    await engine.register();
    const blocker = await db.pool.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE processor_checkpoints IN ACCESS EXCLUSIVE MODE');
    engine.start();
    await eventually(() => killed !== undefined, 'lock taken');
    await killed;
    await eventually(() => logs.some((m) => /lock connection lost/.test(m)), 'lock loss noticed');
    await blocker.query('COMMIT');
    blocker.release();
    await eventually(() => logs.filter((m) => /runner active in this process/.test(m)).length >= 2, 'lock taken again');
    await appendWorkload(new AccountsWorkload('le', 3), 3);
    expect(await engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
    expect((await engine.status())[0]).toMatchObject({ status: 'running', activeHere: true });
  });

  it('gives up a rebuild whose lock connection dies, leaving the live tables alone', async () => {
    const name = 'acc_rebuild_lock';
    const { engine } = instance([accountsProjection(name)], { rebuildBatchSize: 200 });
    await engine.register();
    engine.start();
    expect(await engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    const before = await readAccounts(db.pool, name);
    const rebuildConnections = async () =>
      (
        await db.pool.query(
          'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
          [`projection-rebuild:${name}`],
        )
      ).rowCount;
    let killed = false;
    await expect(
      engine.rebuild(name, 'user:ops', async () => {
        if (killed) return;
        killed = true;
        await db.pool.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
          [`projection-rebuild:${name}`],
        );
        await eventually(async () => (await rebuildConnections()) === 0, 'rebuild lock connection gone');
      }),
    ).rejects.toThrow(/lost the rebuild lock/);
    expect(killed).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(before);
    expect((await engine.operatorLog(name)).filter((l) => l.action === 'rebuilt')).toEqual([]);
    // The next rebuild starts over and succeeds.
    await engine.rebuild(name, 'user:ops');
    expect(await engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
  }, 300_000);

  it('parks on a poison event; retry and skip resolve it and are recorded', async () => {
    const name = 'acc_poison';
    const control: AccountsControl = { failOn: new Set() };
    const { engine, logs } = instance([accountsProjection(name, { control })], { batchSize: 10, maxAttempts: 3 });
    await engine.register();
    engine.start();
    await store.append('poison-1', [testEvent(ACCOUNT_EVENTS.opened, { owner: 'p' })], 'no_stream');
    const ok = await store.append('poison-1', [testEvent(ACCOUNT_EVENTS.deposited, { amount: 1 })], 'any');
    expect(await engine.waitFor(name, ok.position, 30_000)).toBe(true);

    // One append: a good deposit, the poison (its UPDATE runs, then it fails), two more good ones.
    const poison = testEvent(ACCOUNT_EVENTS.deposited, { amount: 100 });
    control.failOn.add(poison.id);
    const res = await store.append(
      'poison-1',
      [
        testEvent(ACCOUNT_EVENTS.deposited, { amount: 10 }),
        poison,
        testEvent(ACCOUNT_EVENTS.deposited, { amount: 1000 }),
        testEvent(ACCOUNT_EVENTS.deposited, { amount: 10000 }),
      ],
      'any',
    );
    const poisonPosition = res.position - 2;
    await eventually(async () => (await engine.info(engine.get(name))).status === 'parked', 'projection parked');
    const parked = await engine.info(engine.get(name));
    expect(parked.parked).toEqual({
      position: poisonPosition,
      eventId: poison.id,
      eventType: ACCOUNT_EVENTS.deposited,
      error: expect.stringMatching(/division by zero/),
      attempts: 3,
    });
    // The events before the poison were applied, the poison's own UPDATE rolled back, nothing after it applied.
    expect(parked.checkpoint).toBe(poisonPosition - 1);
    expect(parked.lagEvents).toBe(3);
    const balance = async () =>
      (await db.pool.query<{ balance: number }>(`SELECT balance FROM ${accountsTable(name)} WHERE id = 'poison-1'`))
        .rows[0]?.balance;
    expect(await balance()).toBe(11);
    expect(await engine.waitFor(name, res.position, 300)).toBe(false);
    // Still parked after more events arrive.
    const later = await store.append('poison-1', [testEvent(ACCOUNT_EVENTS.deposited, { amount: 5 })], 'any');
    expect(await engine.waitFor(name, later.position, 300)).toBe(false);
    expect(await balance()).toBe(11);
    expect(logs.some((l) => l.level === 'error' && /parked/.test(l.msg))).toBe(true);
    const parkedLog = await engine.operatorLog(name);
    expect(parkedLog[0]).toMatchObject({
      action: 'parked',
      position: poisonPosition,
      eventId: poison.id,
      actor: 'system:projection-engine',
    });

    // Retry while the handler still fails: parked again, one more log entry.
    await engine.retry(name, 'user:ops');
    await eventually(async () => (await engine.operatorLog(name)).length === 3, 'parked again after a failing retry');
    expect((await engine.info(engine.get(name))).status).toBe('parked');
    expect(await balance()).toBe(11);

    // Fix the handler, retry: the poison and everything after it are applied once.
    control.failOn.delete(poison.id);
    const retried = await engine.retry(name, 'user:ops');
    expect(retried).toMatchObject({ status: 'running', position: poisonPosition - 1, parked_event_id: null });
    expect(await engine.waitFor(name, later.position, 30_000)).toBe(true);
    expect(await balance()).toBe(11 + 100 + 1000 + 10000 + 5);
    expect((await engine.info(engine.get(name))).parked).toBeNull();

    // A second poison, skipped: the checkpoint moves past it without applying it; later events apply.
    const poison2 = testEvent(ACCOUNT_EVENTS.deposited, { amount: 7 });
    control.failOn.add(poison2.id);
    const res2 = await store.append(
      'poison-1',
      [poison2, testEvent(ACCOUNT_EVENTS.deposited, { amount: 20000 })],
      'any',
    );
    await eventually(
      async () => (await engine.info(engine.get(name))).status === 'parked',
      'parked on the second poison',
    );
    expect((await engine.info(engine.get(name))).parked?.eventId).toBe(poison2.id);
    const skipped = await engine.skip(name, 'user:ops');
    expect(skipped).toMatchObject({ status: 'running', position: res2.position - 1 });
    expect(await engine.waitFor(name, res2.position, 30_000)).toBe(true);
    expect(await balance()).toBe(11 + 100 + 1000 + 10000 + 5 + 20000);
    expect(await readAccounts(db.pool, name)).toEqual(await expected(new Set([poison2.id])));

    const log = (await engine.operatorLog(name)).reverse();
    expect(log.map((l) => [l.action, l.actor, l.eventId])).toEqual([
      ['parked', 'system:projection-engine', poison.id],
      ['retry', 'user:ops', poison.id],
      ['parked', 'system:projection-engine', poison.id],
      ['retry', 'user:ops', poison.id],
      ['parked', 'system:projection-engine', poison2.id],
      ['skip', 'user:ops', poison2.id],
    ]);
    expect(log[5]).toMatchObject({ position: res2.position - 1, error: expect.stringMatching(/division by zero/) });
    // Nothing to resolve now.
    await expect(engine.retry(name, 'user:ops')).rejects.toMatchObject({ code: 'PLATFORM.PROJECTION_NOT_PARKED' });
    await expect(engine.skip(name, 'user:ops')).rejects.toMatchObject({ code: 'PLATFORM.PROJECTION_NOT_PARKED' });
  });

  it('rebuilds into new tables and swaps them in while queries keep answering and events keep coming', async () => {
    const name = 'acc_rebuild';
    const { engine } = instance([accountsProjection(name)], { batchSize: 20, rebuildBatchSize: 150 });
    await engine.register();
    engine.start();
    const w = new AccountsWorkload('rb', 30);
    let head = await appendWorkload(w, 150);
    expect(await engine.waitFor(name, head, 30_000)).toBe(true);
    // Damage the live table: only a real rebuild from the events repairs it.
    await db.pool.query(
      `UPDATE ${accountsTable(name)} SET balance = -1 WHERE id = (SELECT min(id) FROM ${accountsTable(name)})`,
    );

    // Queries against the live table, all through the rebuild: every one must answer.
    let reading = true;
    let answered = 0;
    const errors: unknown[] = [];
    const readers = new Pool({ connectionString: db.url, max: 4 });
    const reader = async () => {
      while (reading) {
        try {
          const r = await readers.query(
            `SELECT count(*)::int AS n, coalesce(sum(balance), 0)::bigint AS total FROM ${accountsTable(name)}`,
          );
          if (typeof r.rows[0]?.n !== 'number') throw new Error('no answer');
          await readers.query(`SELECT * FROM ${accountsTable(name)} WHERE id = $1`, ['rb-1']);
          answered++;
        } catch (e) {
          errors.push(e);
        }
      }
    };
    const readerLoops = [reader(), reader()];
    // Events keep coming through the rebuild, at a pace a rebuild can catch up with
    // (it is slowed down here to let the readers in), and bounded should the test fail.
    let appending = true;
    let appendedDuring = 0;
    const appender = (async () => {
      for (; appending && appendedDuring < 300; appendedDuring++) {
        await appendWorkload(w, 1);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    const progress: { processed: number; total: number }[] = [];
    let result: { position: number; events: number };
    try {
      result = await engine.rebuild(name, 'user:ops', async (p) => {
        progress.push(p);
        // Let the readers and the appender get a word in between rebuild batches.
        const seen = answered;
        await eventually(() => answered > seen + 2, 'readers answering during the rebuild');
      });
    } finally {
      appending = false;
      await appender;
      reading = false;
      await Promise.all(readerLoops);
      await readers.end();
    }
    expect(errors).toEqual([]);
    expect(appendedDuring).toBeGreaterThan(0);
    expect(answered).toBeGreaterThan(progress.length * 2);
    expect(progress.length).toBeGreaterThan(3);
    expect(progress.at(-1)!.processed).toBe(result.events);

    const info = await engine.info(engine.get(name));
    expect(info.status).toBe('running');
    expect(info.checkpoint).toBeGreaterThanOrEqual(result.position);
    const rebuiltLog = (await engine.operatorLog(name))[0];
    expect(rebuiltLog).toMatchObject({ action: 'rebuilt', position: result.position, actor: 'user:ops' });
    const schemas = await db.pool.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE '%rebuild_acc_rebuild%'`);
    expect(schemas.rows).toEqual([]);

    // The live runner continues on the rebuilt tables: row for row the fold of every event.
    head = await lastAppended();
    expect(await engine.waitFor(name, head, 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
    // New events still apply after the swap.
    const more = await appendWorkload(w, 10);
    expect(await engine.waitFor(name, more, 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
  }, 300_000);

  it('rebuilds a parked projection and un-parks it; a stale version is reported and rebuilt', async () => {
    const name = 'acc_parked_rebuild';
    const control: AccountsControl = { failOn: new Set() };
    const first = instance([accountsProjection(name, { control })], { maxAttempts: 1 });
    await first.engine.register();
    first.engine.start();
    const poison = testEvent(ACCOUNT_EVENTS.opened, { owner: 'x' });
    control.failOn.add(poison.id);
    const res = await store.append('prb-1', [poison, testEvent(ACCOUNT_EVENTS.deposited, { amount: 3 })], 'no_stream');
    await eventually(async () => (await first.engine.info(first.engine.get(name))).status === 'parked', 'parked');

    // The handler is fixed (a new version of the code): rebuild applies everything and un-parks.
    control.failOn.clear();
    const result = await first.engine.rebuild(name, 'user:ops');
    expect(result.position).toBeGreaterThanOrEqual(res.position);
    expect(await first.engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    expect(await first.engine.info(first.engine.get(name))).toMatchObject({ status: 'running', parked: null });
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
    expect((await first.engine.operatorLog(name)).map((l) => l.action)).toEqual(['rebuilt', 'parked']);
    await first.close();

    // Version 2 of the same projection: register reports it stale, a rebuild brings it up to date.
    const second = instance([accountsProjection(name, { version: 2 })]);
    expect(await second.engine.register()).toEqual([name]);
    expect((await second.engine.status())[0]).toMatchObject({ status: 'stale', version: 1, definedVersion: 2 });
    second.engine.start();
    await second.engine.rebuild(name, 'system:startup');
    expect((await second.engine.status())[0]).toMatchObject({ status: 'running', version: 2, definedVersion: 2 });
    expect(await second.engine.register()).toEqual([]);
    expect(await second.engine.waitFor(name, await lastAppended(), 30_000)).toBe(true);
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
  }, 300_000);

  it('refuses a second rebuild of the same projection while one runs', async () => {
    const name = 'acc_rebuild_once';
    const { engine } = instance([accountsProjection(name)], { rebuildBatchSize: 500 });
    await engine.register();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    const first = engine.rebuild(name, 'user:a', async () => {
      started();
      await gate;
    });
    await running;
    await expect(engine.rebuild(name, 'user:b')).rejects.toMatchObject({ code: 'PLATFORM.REBUILD_RUNNING' });
    release();
    await first;
    expect(await readAccounts(db.pool, name)).toEqual(await expected());
  }, 300_000);

  it('stops cleanly right after starting, and reports unknown projections', async () => {
    const { engine } = instance([accountsProjection('acc_stop')]);
    await engine.register();
    engine.start();
    await engine.stop();
    expect((await engine.status())[0]!.activeHere).toBe(false);
    engine.start();
    await eventually(async () => (await engine.status())[0]!.activeHere, 'active again after a restart');
    await engine.stop();
    expect(() => engine.get('nope')).toThrow(/no projection named nope/);
    await expect(engine.retry('nope', 'user:ops')).rejects.toMatchObject({ code: 'PLATFORM.PROJECTION_NOT_FOUND' });
  });
});
