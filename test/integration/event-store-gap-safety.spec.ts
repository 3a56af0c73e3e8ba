import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type {
  EventToAppend,
  ExpectedRevision,
  RecordedEvent,
  Subscription,
} from '../../src/platform/event-store/event-store';
import { PostgresEventStore, type ReadBatch } from '../../src/platform/event-store/postgres-event-store';
import { ADVISORY_LOCKS } from '../../src/platform/locks';
import { createTestDatabase, type TestDatabase } from '../support/services';
import { eventually, testEvent } from '../support/events';

/**
 * Gap safety of the PostgreSQL event store: transactions commit out of
 * position order, and no reader of the global order may skip (or repeat) an
 * event because of that. Every scenario uses real concurrent transactions.
 */

/** The real adapter, counting the reads that ended "blocked" so a test can let a subscriber poll a few times. */
class ObservedStore extends PostgresEventStore {
  blockedReads = 0;

  override async readBatch(...args: Parameters<PostgresEventStore['readBatch']>): Promise<ReadBatch> {
    const batch = await super.readBatch(...args);
    if (batch.blocked) this.blockedReads++;
    return batch;
  }
}

let db: TestDatabase;
let store: ObservedStore;
const open: PoolClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase('gap', { poolSize: 20 });
  store = new ObservedStore(db.pool, { listenConnectionString: db.url });
});
afterAll(async () => {
  for (const c of open.splice(0)) {
    await c.query('ROLLBACK').catch(() => undefined);
    c.release();
  }
  await store.close();
  // pool.end() does not wait for its connections to close, and DROP DATABASE ... WITH (FORCE)
  // may terminate one that is still closing: that error is expected, not a failure of this file.
  db.pool.on('error', () => undefined);
  await db.drop();
});

/** A client of its own for a transaction the test keeps open. */
async function txClient(): Promise<PoolClient> {
  const c = await db.pool.connect();
  open.push(c);
  return c;
}

function release(c: PoolClient): void {
  open.splice(open.indexOf(c), 1);
  c.release();
}

/** Calls es_append inside the client's open transaction, with the JSON the adapter sends; returns the events' positions. */
async function appendInTransaction(
  c: PoolClient,
  streamId: string,
  events: readonly EventToAppend[],
): Promise<number[]> {
  const payload = JSON.stringify(
    events.map((e) => ({ id: e.id, type: e.type, data: e.data, metadata: e.metadata, v: 1 })),
  );
  const res = await c.query(`SELECT * FROM es_append($1, 'any', NULL, $2::jsonb, false)`, [streamId, payload]);
  expect(res.rows[0]).toMatchObject({ status: 'ok' });
  const last = Number(res.rows[0].last_position);
  return events.map((_, i) => last - (events.length - 1 - i));
}

interface Recorder {
  readonly events: RecordedEvent[];
  readonly sub: Subscription;
}

/** Subscribes and records every delivered event (tests compare the whole sequence, so repeats and disorder show). */
function record(s: PostgresEventStore, fromPosition: number, batchSize?: number): Recorder {
  const events: RecordedEvent[] = [];
  const options = batchSize === undefined ? { fromPosition } : { fromPosition, batchSize };
  const sub = s.subscribe(options, (batch) => {
    events.push(...batch);
    return Promise.resolve();
  });
  return { events, sub };
}

/** Lets the subscribers look at the store (and find it blocked) a few more times. */
async function letSubscribersPoll(times = 5): Promise<void> {
  const target = store.blockedReads + times;
  await eventually(() => store.blockedReads >= target, `${times} more blocked reads`);
}

const ids = (events: readonly RecordedEvent[]) => events.map((e) => e.id);
const stream = (label: string) => `gap-${label}-${randomUUID()}`;

describe('postgres event store: gap safety', () => {
  it('holds back an event committed after an older open transaction, then delivers both in position order, once', async () => {
    const start = await store.headPosition();
    const plain = record(store, start);
    // A type-filtered subscriber moves its cursor past events of other types: it must not move it past T1 either.
    const cursors: number[] = [];
    const filteredSeen: RecordedEvent[] = [];
    const filtered = store.subscribeBatches({ fromPosition: start, eventTypes: ['gap.Second'] }, (batch) => {
      cursors.push(batch.position);
      filteredSeen.push(...batch.events);
      return Promise.resolve();
    });
    const t1 = await txClient();
    try {
      const first = [testEvent('gap.First', { n: 1 }), testEvent('gap.First', { n: 2 })];
      const second = testEvent('gap.Second');
      await t1.query('BEGIN');
      const t1Positions = await appendInTransaction(t1, stream('t1'), first);
      const t2 = await store.append(stream('t2'), [second], 'no_stream');
      expect(t2.position).toBeGreaterThan(t1Positions[1]!);

      // While T1 is open, nobody reads T2's event, and the cursor never passes T1's position.
      expect(await store.readAll(start, 100)).toEqual([]);
      expect(await store.readBatch(start, 100)).toEqual({ events: [], position: start, blocked: true });
      expect(await store.readBatch(start, 100, ['gap.Second'])).toEqual({ events: [], position: start, blocked: true });
      expect(await store.headPosition()).toBe(start);
      await letSubscribersPoll();
      expect(plain.events).toEqual([]);
      expect(filteredSeen).toEqual([]);
      for (const c of cursors) expect(c).toBeLessThan(t1Positions[0]!);

      await t1.query('COMMIT');
      await eventually(() => plain.events.length >= 3, 'T1 and T2 delivered');
      await eventually(() => filteredSeen.length >= 1, 'T2 delivered to the filtered subscriber');
      // A later event proves nothing more (no repeat) came in between.
      const sentinel = testEvent('gap.Second', { sentinel: true });
      await store.append(stream('sentinel'), [sentinel], 'no_stream');
      await eventually(() => plain.events.length >= 4 && filteredSeen.length >= 2, 'sentinel delivered');

      expect(ids(plain.events)).toEqual([first[0]!.id, first[1]!.id, second.id, sentinel.id]);
      expect(plain.events.slice(0, 3).map((e) => e.position)).toEqual([...t1Positions, t2.position]);
      expect(ids(filteredSeen)).toEqual([second.id, sentinel.id]);
      expect(ids(await store.readAll(start, 100))).toEqual(ids(plain.events));
    } finally {
      await t1.query('ROLLBACK').catch(() => undefined);
      release(t1);
      await plain.sub.stop();
      await filtered.stop();
    }
  });

  it('delivers the later event once an older open transaction rolls back', async () => {
    const start = await store.headPosition();
    const sub = record(store, start);
    const t1 = await txClient();
    try {
      const doomed = testEvent('gap.Doomed');
      const kept = testEvent('gap.Kept');
      await t1.query('BEGIN');
      const [doomedPosition] = await appendInTransaction(t1, stream('t1'), [doomed]);
      const t2 = await store.append(stream('t2'), [kept], 'no_stream');
      expect(t2.position).toBeGreaterThan(doomedPosition!);

      expect(await store.readBatch(start, 100)).toEqual({ events: [], position: start, blocked: true });
      await letSubscribersPoll();
      expect(sub.events).toEqual([]);

      // No NOTIFY follows a rollback: the subscriber must notice on its own that it is no longer blocked.
      await t1.query('ROLLBACK');
      await eventually(() => sub.events.length >= 1, 'T2 delivered after the rollback', 60_000);
      const sentinel = testEvent('gap.Sentinel');
      await store.append(stream('sentinel'), [sentinel], 'no_stream');
      await eventually(() => sub.events.length >= 2, 'sentinel delivered');

      expect(ids(sub.events)).toEqual([kept.id, sentinel.id]);
      expect(ids(await store.readAll(start, 100))).toEqual([kept.id, sentinel.id]);
      expect(await store.readBatch(sub.events.at(-1)!.position, 100)).toEqual({
        events: [],
        position: sub.events.at(-1)!.position,
        blocked: false,
      });
    } finally {
      await t1.query('ROLLBACK').catch(() => undefined);
      release(t1);
      await sub.sub.stop();
    }
  });

  it('delivers an event of a transaction that took its xid before a later, earlier-committing one (naive "position > checkpoint" loses it)', async () => {
    const start = await store.headPosition();
    const sub = record(store, start);
    const t1 = await txClient();
    try {
      await t1.query('BEGIN');
      const xid = await t1.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
      const late = testEvent('gap.Late');
      const early = testEvent('gap.Early');
      const t2 = await store.append(stream('t2'), [early], 'no_stream');

      // A naive reader has read T2's event and checkpointed its position by now ...
      const naive = await db.pool.query<{ position: number }>(
        'SELECT position FROM events WHERE position > $1 ORDER BY position',
        [start],
      );
      expect(naive.rows.map((r) => r.position)).toEqual([t2.position]);
      // ... but T1 appends below it, so "position > checkpoint" would never see T1's event.
      const [latePosition] = await appendInTransaction(t1, stream('t1'), [late]);
      const offset = Number(
        (await db.pool.query<{ o: string }>('SELECT xid_offset AS o FROM es_position_offset')).rows[0]!.o,
      );
      expect(latePosition).toBe((Number(xid.rows[0]!.xid) + offset) * 65536);
      expect(latePosition).toBeLessThan(t2.position);

      expect(await store.readBatch(start, 100)).toEqual({ events: [], position: start, blocked: true });
      await letSubscribersPoll();
      expect(sub.events).toEqual([]);

      await t1.query('COMMIT');
      await eventually(() => sub.events.length >= 2, 'both events delivered');
      const sentinel = testEvent('gap.Sentinel');
      await store.append(stream('sentinel'), [sentinel], 'no_stream');
      await eventually(() => sub.events.length >= 3, 'sentinel delivered');

      expect(sub.events.map((e) => [e.id, e.position])).toEqual([
        [late.id, latePosition],
        [early.id, t2.position],
        [sentinel.id, sub.events[2]!.position],
      ]);
      expect(ids(await store.readAll(start, 100))).toEqual([late.id, early.id, sentinel.id]);
    } finally {
      await t1.query('ROLLBACK').catch(() => undefined);
      release(t1);
      await sub.sub.stop();
    }
  });

  it("keeps a stream's revisions in position order: an older transaction may not append after a newer one", async () => {
    const start = await store.headPosition();
    const s = stream('shared');
    const t1 = await txClient();
    try {
      await t1.query('BEGIN');
      await t1.query('SELECT pg_current_xact_id()');
      const first = testEvent('gap.Rev0');
      const t2 = await store.append(s, [first], 'no_stream');
      // T1's positions would sort before revision 0's: revision 1 would reach readers before revision 0.
      const payload = JSON.stringify([
        { id: randomUUID(), type: 'gap.Rev1', data: {}, metadata: first.metadata, v: 1 },
      ]);
      const refused = await t1
        .query(`SELECT * FROM es_append($1, 'any', NULL, $2::jsonb, false)`, [s, payload])
        .catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: '40001' });
      await t1.query('ROLLBACK');

      // Retried in a new transaction, the append lands after revision 0.
      await t1.query('BEGIN');
      const [retried] = await appendInTransaction(t1, s, [testEvent('gap.Rev1')]);
      await t1.query('COMMIT');
      expect(retried).toBeGreaterThan(t2.position);
      const all = await store.readAll(start, 100);
      expect(all.map((e) => [e.streamId, e.revision, e.type])).toEqual([
        [s, 0, 'gap.Rev0'],
        [s, 1, 'gap.Rev1'],
      ]);

      // An older transaction appending to a stream nobody newer touched is fine, and twice in one transaction too.
      const other = stream('older-ok');
      await t1.query('BEGIN');
      await t1.query('SELECT pg_current_xact_id()');
      await store.append(stream('unrelated'), [testEvent('gap.Unrelated')], 'no_stream');
      const [a] = await appendInTransaction(t1, other, [testEvent('gap.A')]);
      const [b] = await appendInTransaction(t1, other, [testEvent('gap.B')]);
      await t1.query('COMMIT');
      expect(b).toBe(a! + 1);
      expect((await store.readStream(other)).map((e) => [e.revision, e.position])).toEqual([
        [0, a],
        [1, b],
      ]);
    } finally {
      await t1.query('ROLLBACK').catch(() => undefined);
      release(t1);
    }
  });

  it('16 concurrent writers, 50,000 events: three subscribers each see every event exactly once, in position order', async () => {
    const TOTAL = 50_000;
    const WRITERS = 16;
    const start = await store.headPosition();
    // A second adapter instance on the same database: no local wake-ups reach its subscriber, only NOTIFY (or its fallback timer).
    const remote = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
    const subscribers = [record(store, start, 10), record(store, start, 500), record(remote, start, 5000)];
    try {
      const random = mulberry32(20240611);
      const pick = (n: number) => Math.floor(random() * n);
      const shared = Array.from({ length: 64 }, (_, i) => `load-shared-${i}-${randomUUID()}`);
      let remaining = TOTAL;
      const appends: { ids: string[]; position: number }[] = [];

      const writer = async (w: number) => {
        // Streams this writer alone appends to, with exact expected revisions.
        const owned = Array.from({ length: 8 }, (_, i) => ({ id: `load-own-${w}-${i}-${randomUUID()}`, next: -1 }));
        try {
          await writeUntilDone(w, owned);
        } catch (e) {
          remaining = 0; // stop the other writers too
          throw e;
        }
      };
      const writeUntilDone = async (w: number, owned: { id: string; next: number }[]) => {
        while (remaining > 0) {
          const size = Math.min(remaining, random() < 0.4 ? 1 : 2 + pick(31));
          remaining -= size;
          const events = Array.from({ length: size }, (_, i) => testEvent(`load.E${pick(5)}`, { w, i }));
          let streamId: string;
          let expected: ExpectedRevision;
          let own: { id: string; next: number } | undefined;
          if (random() < 0.5) {
            streamId = shared[pick(shared.length)]!;
            expected = 'any';
          } else {
            own = owned[pick(owned.length)]!;
            streamId = own.id;
            expected = own.next === -1 ? 'no_stream' : own.next;
          }
          const r = await store.append(streamId, events, expected);
          expect(r.duplicate).toBe(false);
          if (own) {
            expect(r.nextRevision).toBe(own.next + size);
            own.next = r.nextRevision;
          }
          appends.push({ ids: events.map((e) => e.id), position: r.position });
        }
      };

      const blockedBefore = store.blockedReads;
      const began = Date.now();
      await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
      const wrote = Date.now();
      for (const [i, s] of subscribers.entries()) {
        await eventually(
          () => s.events.length >= TOTAL,
          `subscriber ${i} caught up (${s.events.length}/${TOTAL})`,
          90_000,
        );
      }
      const delivered = Date.now();
      console.log(
        `gap-safety load: ${TOTAL} events in ${appends.length} appends written in ${wrote - began} ms; ` +
          `subscribers caught up ${delivered - wrote} ms later; ${store.blockedReads - blockedBefore} reads found the horizon blocked`,
      );

      // Everything written is stored once; appends' positions are their last events'.
      const all: RecordedEvent[] = [];
      for (let from = start; ;) {
        const page = await store.readAll(from, 10_000);
        if (page.length === 0) break;
        all.push(...page);
        from = page.at(-1)!.position;
      }
      expect(all).toHaveLength(TOTAL);
      const allIds = ids(all);
      expect(new Set(allIds).size).toBe(TOTAL);
      expect(new Set(appends.flatMap((a) => a.ids))).toEqual(new Set(allIds));
      expect(all.filter((e, i) => i > 0 && e.position <= all[i - 1]!.position)).toEqual([]);
      // An append's events are consecutive, and its result names its last event's position.
      const positionOf = new Map(all.map((e) => [e.id, e.position]));
      const badAppends = appends.filter((a) =>
        a.ids.some((id, i) => positionOf.get(id) !== a.position - (a.ids.length - 1 - i)),
      );
      expect(badAppends).toEqual([]);
      // Each stream's revisions run 0, 1, 2... in position order.
      const nextRevision = new Map<string, number>();
      const outOfOrder: RecordedEvent[] = [];
      for (const e of all) {
        if (e.revision !== (nextRevision.get(e.streamId) ?? 0)) outOfOrder.push(e);
        nextRevision.set(e.streamId, e.revision + 1);
      }
      expect(outOfOrder).toEqual([]);

      // Every subscriber saw exactly that sequence: each event once, in position order.
      const expected = all.map((e) => `${e.position}:${e.id}`);
      for (const s of subscribers) {
        expect(s.events).toHaveLength(TOTAL);
        expect(
          firstDifference(
            s.events.map((e) => `${e.position}:${e.id}`),
            expected,
          ),
        ).toBeUndefined();
      }
    } finally {
      for (const s of subscribers) await s.sub.stop();
      await remote.close();
    }
  }, 180_000);
});

describe('postgres event store: the read horizon waits only for transactions that may append', () => {
  it('reads past a long transaction that declared it will not append (a rebuild batch) and one of another database', async () => {
    const start = await store.headPosition();
    const sub = record(store, start);
    const quiet = await txClient();
    const other = await createTestDatabase('gapother', { migrate: false });
    const elsewhere = await other.pool.connect();
    try {
      // A rebuild batch: declares, then writes for a long time (it holds a transaction id throughout).
      await quiet.query('BEGIN');
      await quiet.query('SELECT es_declare_no_append()');
      await quiet.query('CREATE TEMP TABLE gap_quiet_work (n int) ON COMMIT DROP');
      await quiet.query('INSERT INTO gap_quiet_work VALUES (1)');
      // A writing transaction in another database of the cluster.
      await elsewhere.query('BEGIN');
      await elsewhere.query('CREATE TABLE busy (n int)');
      const xids = await Promise.all(
        [quiet, elsewhere].map(async (c) =>
          Number((await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x),
        ),
      );

      const e1 = testEvent('gap.PastQuiet');
      const a1 = await store.append(stream('past-quiet'), [e1], 'no_stream');
      const offset = Number(
        (await db.pool.query<{ o: string }>('SELECT xid_offset AS o FROM es_position_offset')).rows[0]!.o,
      );
      // Both open transactions are older than the append: the old horizon (oldest xid in flight) would hold it back.
      for (const x of xids) expect((x + offset) * 65536).toBeLessThan(a1.position);
      expect(await store.readBatch(start, 100)).toMatchObject({
        events: [{ id: e1.id }],
        position: a1.position,
        blocked: false,
      });
      expect(await store.headPosition()).toBe(a1.position);
      await eventually(() => sub.events.length >= 1, 'the subscriber reads past both');
      expect(ids(sub.events)).toEqual([e1.id]);

      // The declaration holds: that transaction can no longer append (so reading past it skips nothing).
      const refused = await appendInTransaction(quiet, stream('quiet'), [testEvent('gap.Refused')]).catch(
        (e: unknown) => e,
      );
      expect(refused).toMatchObject({ code: 'ES002' });
      await quiet.query('ROLLBACK');

      // A transaction that has appended cannot declare.
      await quiet.query('BEGIN');
      await appendInTransaction(quiet, stream('appended'), [testEvent('gap.Appended')]);
      await expect(quiet.query('SELECT es_declare_no_append()')).rejects.toMatchObject({ code: 'ES002' });
      await quiet.query('ROLLBACK');

      // A transaction of this database that did not declare still holds readers back: it may append any time.
      // Also while another reader is asking about it (readers hold the question's lock shared, so
      // they never answer one another: 0031).
      await quiet.query('BEGIN');
      const undeclared = (await quiet.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      const e2 = testEvent('gap.BehindUndeclared');
      const a2 = await store.append(stream('behind'), [e2], 'no_stream');
      expect(await store.readBatch(a1.position, 100)).toEqual({ events: [], position: a1.position, blocked: true });
      const asking = await txClient();
      try {
        const question = [ADVISORY_LOCKS.eventStoreNoAppendXid, undeclared];
        await asking.query('SELECT pg_advisory_lock_shared($1::int, es_xid_key($2::bigint))', question);
        expect(await store.readBatch(a1.position, 100)).toEqual({ events: [], position: a1.position, blocked: true });
        await asking.query('SELECT pg_advisory_unlock_shared($1::int, es_xid_key($2::bigint))', question);
      } finally {
        release(asking);
      }
      await quiet.query('ROLLBACK');
      await eventually(() => sub.events.length >= 2, 'delivered once the undeclared transaction ended');
      expect(sub.events.map((e) => [e.id, e.position])).toEqual([
        [e1.id, a1.position],
        [e2.id, a2.position],
      ]);
    } finally {
      await quiet.query('ROLLBACK').catch(() => undefined);
      release(quiet);
      await elsewhere.query('ROLLBACK').catch(() => undefined);
      elsewhere.release();
      await other.drop();
      await sub.sub.stop();
    }
  });

  it("never holds a declaration back behind a reader's question lock (one left by a cancelled read included): readers then wait for that transaction", async () => {
    const start = await store.headPosition();
    const declaring = await txClient();
    const asking = await txClient();
    try {
      await declaring.query('BEGIN');
      // A failure here is a hang turned into an error, not a 5-minute test timeout.
      await declaring.query("SET LOCAL statement_timeout = '5s'");
      const x = (await declaring.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      // A session holding the question about x (a reader cancelled between its try-lock and its unlock).
      const question = [ADVISORY_LOCKS.eventStoreNoAppendXid, x];
      await asking.query('SELECT pg_advisory_lock_shared($1::int, es_xid_key($2::bigint))', question);
      await declaring.query('SELECT es_declare_no_append()'); // returns at once
      await declaring.query('CREATE TEMP TABLE gap_declared_work (n int) ON COMMIT DROP');
      // Declared all the same: it cannot append.
      await declaring.query('SAVEPOINT s');
      await expect(
        appendInTransaction(declaring, stream('declared'), [testEvent('gap.Refused')]),
      ).rejects.toMatchObject({ code: 'ES002' });
      await declaring.query('ROLLBACK TO SAVEPOINT s');
      // Unrecognised as quiet, so readers wait for it, as for any transaction: conservative, never a skip.
      const e = testEvent('gap.BehindUnrecognised');
      const a = await store.append(stream('behind-unrecognised'), [e], 'no_stream');
      expect(await store.readBatch(start, 100)).toEqual({ events: [], position: start, blocked: true });
      await declaring.query('COMMIT');
      expect(await store.readBatch(start, 100)).toMatchObject({ events: [{ id: e.id }], position: a.position });
      await asking.query('SELECT pg_advisory_unlock_shared($1::int, es_xid_key($2::bigint))', question);
    } finally {
      await declaring.query('ROLLBACK').catch(() => undefined);
      release(declaring);
      await asking.query('SELECT pg_advisory_unlock_all()');
      release(asking);
    }
  });
});

/** Where two long sequences first differ (a readable failure instead of a 50,000-line diff). */
function firstDifference(
  actual: readonly string[],
  expected: readonly string[],
): { index: number; actual?: string; expected?: string } | undefined {
  for (let i = 0; i < Math.max(actual.length, expected.length); i++) {
    if (actual[i] !== expected[i])
      return {
        index: i,
        ...(actual[i] === undefined ? {} : { actual: actual[i] }),
        ...(expected[i] === undefined ? {} : { expected: expected[i] }),
      };
  }
  return undefined;
}

/** A small seeded PRNG: the mix of appends is the same from run to run (up to which writer draws which number). */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
