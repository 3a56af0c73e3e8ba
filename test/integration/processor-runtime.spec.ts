import { Pool } from 'pg';
import type { RecordedEvent } from '../../domain/shared/recorded-event';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { ADVISORY_LOCKS } from '../../src/platform/locks';
import { operatorLog, readCheckpoint } from '../../src/platform/processing/checkpoints';
import type { TransactionalProcessor } from '../../src/platform/processing/processor';
import { ProcessorRunner, type RunnerOptions } from '../../src/platform/processing/processor-runner';
import { eventually, testEvent } from '../support/events';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * The processor runtime itself, driving a reactor that is neither a
 * projection nor the saga: a ledger that records, in its own table, every
 * event it is handed and which runner handled it. What the runtime promises
 * any processor: one active runner across processes with take-over, a
 * checkpoint committed in the handler's transaction (a handler that throws
 * after writing leaves neither its rows nor a moved checkpoint), and failing
 * events parked for an operator, whose retry and skip are recorded.
 */

let db: TestDatabase;
let store: PostgresEventStore;

const LEDGER_DDL = `CREATE TABLE reactor_ledger (
  reactor text NOT NULL, event_id uuid NOT NULL, position bigint NOT NULL, runner text NOT NULL)`;

interface LedgerControl {
  /** Ids of events the handler fails on, after it has written its rows. */
  readonly poison: Set<string>;
  /** While true, every batch fails after its rows are written. */
  failAll: boolean;
}

/** The ledger reactor: writes one row per event on the runtime's transaction, then maybe throws. */
function ledger(
  name: string,
  eventType: string,
  runner: string,
  control: LedgerControl,
  onFailure: 'park' | 'retry' = 'park',
): TransactionalProcessor {
  return {
    name,
    kind: 'reactor',
    eventTypes: [eventType],
    onFailure,
    checkpoint: 'in-transaction',
    async handle(events: readonly RecordedEvent[], { tx }) {
      for (const e of events) {
        await tx.query('INSERT INTO reactor_ledger (reactor, event_id, position, runner) VALUES ($1, $2, $3, $4)', [
          name,
          e.id,
          e.position,
          runner,
        ]);
      }
      if (control.failAll) throw new Error('ledger: failing on purpose');
      const bad = events.find((e) => control.poison.has(e.id));
      if (bad) throw new Error(`ledger: poison event ${bad.id}`);
    },
  };
}

/** One "process": its own pool, event store and runner, as a separate instance would have. */
interface Instance {
  runner: ProcessorRunner;
  logs: { level: string; msg: string; err?: unknown }[];
  failures: number;
  close(): Promise<void>;
}
const open: Instance[] = [];

function instance(processor: TransactionalProcessor, options: Partial<RunnerOptions> = {}): Instance {
  const pool = new Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => undefined); // an idle connection ended by the tests' pg_terminate_backend
  const s = new PostgresEventStore(pool, { listenConnectionString: db.url });
  const logs: { level: string; msg: string; err?: unknown }[] = [];
  let closed = false;
  const inst: Instance = {
    runner: undefined as unknown as ProcessorRunner,
    logs,
    failures: 0,
    close: async () => {
      if (closed) return;
      closed = true;
      await inst.runner.stop();
      await s.close();
      await pool.end();
    },
  };
  inst.runner = new ProcessorRunner(processor, pool, s, {
    connectionString: db.url,
    batchSize: 10,
    maxAttempts: 2,
    standbyRetryMs: 50,
    backoff: { initialMs: 20, maxMs: 200 },
    log: (level, msg, extra) => {
      logs.push({ level, msg, err: extra?.err });
    },
    observe: {
      failure: () => {
        inst.failures++;
      },
    },
    ...options,
  });
  open.push(inst);
  return inst;
}

/** `n` events, each appended on its own (one transaction each). */
async function append(type: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const e = testEvent(type, { i });
    await store.append(`ledger-${e.id}`, [e], 'no_stream');
    ids.push(e.id);
  }
  return ids;
}

/** `n` events appended together (one transaction), their ids known before: a handler can be told to fail on one first. */
function prepare(type: string, n: number): { ids: string[]; append(): Promise<void> } {
  const events = Array.from({ length: n }, (_, i) => testEvent(type, { i }));
  return {
    ids: events.map((e) => e.id),
    append: async () => {
      await store.append(`ledger-${events[0]!.id}`, events, 'no_stream');
    },
  };
}

/** The backend holding the reactor's runner lock (one at most, whichever process it belongs to). */
async function lockHolders(name: string): Promise<number[]> {
  const r = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objid = hashtext($2)::oid
        AND objsubid = 2 AND granted`,
    [ADVISORY_LOCKS.reactorRunner, name],
  );
  return r.rows.map((x) => x.pid);
}

async function positionOf(id: string): Promise<number> {
  const r = await db.pool.query<{ position: number }>('SELECT position FROM events WHERE event_id = $1', [id]);
  return r.rows[0]!.position;
}

async function checkpoint(name: string) {
  const row = await readCheckpoint(db.pool, name);
  if (!row) throw new Error(`no checkpoint for ${name}`);
  return row;
}

async function ledgerRows(name: string): Promise<{ event_id: string; runner: string }[]> {
  const r = await db.pool.query<{ event_id: string; runner: string }>(
    'SELECT event_id, runner FROM reactor_ledger WHERE reactor = $1 ORDER BY position',
    [name],
  );
  return r.rows;
}

async function reachedEnd(name: string, lastId: string): Promise<boolean> {
  return (await checkpoint(name).catch(() => undefined))?.position === (await positionOf(lastId));
}

beforeAll(async () => {
  db = await createTestDatabase('proc');
  await db.pool.query(LEDGER_DDL);
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
});

afterEach(async () => {
  for (const i of open.splice(0)) await i.close();
});

afterAll(async () => {
  await store.close();
  await db.drop();
});

describe('processor runtime (a reactor that is neither a projection nor the saga)', () => {
  it('runs one active runner across processes; a standby takes over a clean stop and a lost lock connection, handling each event once', async () => {
    const name = 'ledger-takeover';
    const type = 'test.LedgerTakeover';
    const control: LedgerControl = { poison: new Set(), failAll: false };
    const a = instance(ledger(name, type, 'a', control));
    const b = instance(ledger(name, type, 'b', control));
    a.runner.start();
    await eventually(() => a.runner.active, 'a active');
    b.runner.start();
    const first = await append(type, 25);
    await eventually(() => reachedEnd(name, first.at(-1)!), 'a caught up');
    // b stood by all along: it never held the lock, so it handled nothing.
    expect(b.runner.active).toBe(false);
    expect((await ledgerRows(name)).map((r) => r.runner)).toEqual(first.map(() => 'a'));
    expect(await lockHolders(name)).toHaveLength(1);

    // A clean stop gives the lock up; the standby takes over from the checkpoint.
    await a.close();
    await eventually(() => b.runner.active, 'b took over');
    const second = await append(type, 15);
    await eventually(() => reachedEnd(name, second.at(-1)!), 'b caught up');
    expect((await ledgerRows(name)).map((r) => r.runner)).toEqual([...first.map(() => 'a'), ...second.map(() => 'b')]);

    // A lost lock connection while events keep coming: a runner (the standby, or b again
    // once it has noticed) takes over, and still every event is recorded exactly once.
    const c = instance(ledger(name, type, 'c', control));
    c.runner.start();
    let appending = true;
    const more: string[] = [];
    const appender = (async () => {
      for (let i = 0; appending && i < 500; i++) more.push(...(await append(type, 1)));
    })();
    await eventually(() => more.length >= 5, 'appending');
    // b holds the lock (c stood by since it started): end b's lock connection as a network failure would.
    const [holder, ...others] = await lockHolders(name);
    expect(others).toEqual([]);
    await db.pool.query('SELECT pg_terminate_backend($1)', [holder]);
    await eventually(() => b.logs.some((l) => /lock connection lost/.test(l.msg)), 'b noticed its lock is gone');
    await eventually(() => more.length >= 15, 'appending after the loss');
    appending = false;
    await appender;
    await eventually(() => reachedEnd(name, more.at(-1)!), 'caught up after the take-over');
    expect(await lockHolders(name)).toHaveLength(1);
    expect(b.runner.active !== c.runner.active).toBe(true);
    const rows = await ledgerRows(name);
    expect(rows.map((r) => r.event_id)).toEqual([...first, ...second, ...more]);
  });

  it("commits the checkpoint in the handler's transaction: a handler that throws after writing leaves neither its rows nor a moved checkpoint", async () => {
    const name = 'ledger-atomic';
    const type = 'test.LedgerAtomic';
    const control: LedgerControl = { poison: new Set(), failAll: false };
    // `retry`: the batch is tried again and again from the checkpoint, never parked.
    const r = instance(ledger(name, type, 'r', control, 'retry'));
    r.runner.start();
    const before = await append(type, 5);
    await eventually(() => reachedEnd(name, before.at(-1)!), 'first events handled');
    const at = (await checkpoint(name)).position;

    control.failAll = true;
    const failing = await append(type, 12);
    // Several attempts have written their rows and thrown: none of it is visible.
    await eventually(() => r.failures >= 3, 'the handler failed three times');
    expect((await ledgerRows(name)).map((x) => x.event_id)).toEqual(before);
    expect(await checkpoint(name)).toMatchObject({ position: at, status: 'running' });
    expect(r.logs.some((l) => l.level === 'error' && /runner error, restarting from its checkpoint/.test(l.msg))).toBe(
      true,
    );

    control.failAll = false;
    await eventually(() => reachedEnd(name, failing.at(-1)!), 'handled once the handler stops failing');
    expect((await ledgerRows(name)).map((x) => x.event_id)).toEqual([...before, ...failing]);
    expect(await checkpoint(name)).toMatchObject({ status: 'running', parked_position: null });
    expect(await operatorLog(db.pool, name)).toEqual([]);
  });

  it("sends the processor's prepare SQL with the query that opens the batch's transaction: the handler is told and sees its rows, and a failing batch rolls it back", async () => {
    const name = 'ledger-prepare';
    const type = 'test.LedgerPrelude';
    const control: LedgerControl = { poison: new Set(), failAll: false };
    const base = ledger(name, type, 'r', control, 'retry');
    const seen: { prepared: boolean | undefined; visible: number }[] = [];
    const r = instance({
      ...base,
      // One row per batch, in the batch's transaction (ids are UUIDs, positions numbers: safe as literals).
      prepare: (events) =>
        `INSERT INTO reactor_ledger (reactor, event_id, position, runner) VALUES ('${name}:prepare', '${events[0]!.id}', ${events[0]!.position}, 'prepare')`,
      async handle(events, ctx) {
        const v = await ctx.tx.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM reactor_ledger WHERE reactor = $1 AND event_id = $2 AND runner = 'prepare'",
          [`${name}:prepare`, events[0]!.id],
        );
        seen.push({ prepared: ctx.prepared, visible: v.rows[0]!.n });
        await base.handle(events, ctx);
      },
    });
    r.runner.start();
    const before = await append(type, 3);
    await eventually(() => reachedEnd(name, before.at(-1)!), 'first events handled');
    control.failAll = true;
    const failing = await append(type, 4);
    await eventually(() => r.failures >= 2, 'the handler failed twice');
    control.failAll = false;
    await eventually(() => reachedEnd(name, failing.at(-1)!), 'handled once the handler stops failing');

    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(seen.every((x) => x.prepared === true && x.visible === 1)).toBe(true);
    // Exactly one prepare row per committed batch, each naming its batch's first event: the failed attempts left none.
    const prepares = await db.pool.query<{ event_id: string }>(
      'SELECT event_id FROM reactor_ledger WHERE reactor = $1 ORDER BY position',
      [`${name}:prepare`],
    );
    const handled = (await ledgerRows(name)).map((x) => x.event_id);
    expect(handled).toEqual([...before, ...failing]);
    expect(prepares.rows.length).toBeGreaterThanOrEqual(2);
    expect(prepares.rows.every((x) => handled.includes(x.event_id))).toBe(true);
    expect(new Set(prepares.rows.map((x) => x.event_id)).size).toBe(prepares.rows.length);
    expect(prepares.rows.map((x) => x.event_id)).toContain(failing[0]);
    expect(await checkpoint(name)).toMatchObject({ status: 'running', position: await positionOf(failing.at(-1)!) });
  });

  it('parks on an event that keeps failing, for an operator to retry or skip, every decision in the operator log', async () => {
    const name = 'ledger-park';
    const type = 'test.LedgerPark';
    const control: LedgerControl = { poison: new Set(), failAll: false };
    const p = instance(ledger(name, type, 'p', control));
    p.runner.start();
    // In one transaction, so the poison event shares a batch with good events before and after it.
    const batch = prepare(type, 6);
    const [good1, good2, good3, poison, ...afterPoison] = batch.ids;
    control.poison.add(poison!);
    await batch.append();
    await eventually(async () => (await readCheckpoint(db.pool, name))?.status === 'parked', 'parked');

    // The events before the poison are handled (one by one once the batch failed); the poison
    // event and those after it are not, and the checkpoint stays right before it.
    const parked = await checkpoint(name);
    expect(parked).toMatchObject({
      position: await positionOf(good3!),
      parked_position: await positionOf(poison!),
      parked_event_id: poison,
      parked_event_type: type,
      parked_attempts: 2,
      status: 'parked',
    });
    expect(parked.parked_error).toMatch(/poison event/);
    expect((await ledgerRows(name)).map((x) => x.event_id)).toEqual([good1, good2, good3]);
    expect(await operatorLog(db.pool, name)).toEqual([
      expect.objectContaining({
        action: 'parked',
        eventId: poison,
        position: await positionOf(poison!),
        actor: 'system:processor-runtime',
      }),
    ]);
    expect(p.logs.some((l) => l.level === 'error' && l.msg.includes(`parked on event ${poison}`))).toBe(true);

    // Retry while it still fails: it parks again, and both decisions are recorded.
    expect(await p.runner.resolve('retry', 'user:ops')).toMatchObject({ status: 'running', position: parked.position });
    await eventually(async () => (await operatorLog(db.pool, name)).length === 3, 'parked again');
    expect(await checkpoint(name)).toMatchObject({
      status: 'parked',
      parked_event_id: poison,
      position: parked.position,
    });
    expect((await operatorLog(db.pool, name)).map((l) => [l.action, l.actor])).toEqual([
      ['parked', 'system:processor-runtime'],
      ['retry', 'user:ops'],
      ['parked', 'system:processor-runtime'],
    ]);

    // Retry once the cause is fixed: the poison event and those after it are handled, once.
    control.poison.delete(poison!);
    await p.runner.resolve('retry', 'user:ops');
    await eventually(() => reachedEnd(name, afterPoison.at(-1)!), 'resumed after the retry');
    expect(await checkpoint(name)).toMatchObject({ status: 'running', parked_event_id: null });
    expect((await ledgerRows(name)).map((x) => x.event_id)).toEqual([good1, good2, good3, poison, ...afterPoison]);

    // Skip: the checkpoint moves past the event without handling it.
    const second = prepare(type, 2);
    const [poison2, good4] = second.ids;
    control.poison.add(poison2!);
    await second.append();
    await eventually(
      async () => (await readCheckpoint(db.pool, name))?.status === 'parked',
      'parked on the second poison',
    );
    expect(await checkpoint(name)).toMatchObject({ parked_event_id: poison2 });
    const skipped = await p.runner.resolve('skip', 'user:ops');
    expect(skipped).toMatchObject({ status: 'running', position: await positionOf(poison2!), parked_event_id: null });
    await eventually(() => reachedEnd(name, good4!), 'resumed after the skip');
    expect((await ledgerRows(name)).map((x) => x.event_id)).toEqual([
      good1,
      good2,
      good3,
      poison,
      ...afterPoison,
      good4,
    ]);
    expect((await operatorLog(db.pool, name)).slice(0, 2)).toEqual([
      expect.objectContaining({
        action: 'skip',
        eventId: poison2,
        position: await positionOf(poison2!),
        actor: 'user:ops',
      }),
      expect.objectContaining({ action: 'parked', eventId: poison2, actor: 'system:processor-runtime' }),
    ]);

    // Nothing to decide on a processor that is not parked.
    expect(await p.runner.resolve('skip', 'user:ops')).toBeUndefined();
    expect(await checkpoint(name)).toMatchObject({ kind: 'reactor', status: 'running' });
  });

  it('refuses to run on a checkpoint that belongs to another kind of processor', async () => {
    await db.pool.query(
      `INSERT INTO processor_checkpoints (name, kind, position) VALUES ('ledger-taken', 'projection', 0)`,
    );
    const control: LedgerControl = { poison: new Set(), failAll: false };
    const x = instance(ledger('ledger-taken', 'test.LedgerTaken', 'x', control));
    x.runner.start();
    await append('test.LedgerTaken', 2);
    await eventually(() => x.failures >= 2, 'refused twice');
    expect(x.logs.filter((l) => /runner error/.test(l.msg)).map((l) => l.err)).toEqual(
      expect.arrayContaining(['reactor ledger-taken: the checkpoint of that name belongs to a projection']),
    );
    expect(await ledgerRows('ledger-taken')).toEqual([]);
    expect(await checkpoint('ledger-taken')).toMatchObject({ kind: 'projection', position: 0 });
  });
});
