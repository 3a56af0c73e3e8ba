import { Client } from 'pg';
import { ConcurrencyError, UpcasterRegistry } from '../../src/platform/event-store/event-store';
import {
  PostgresEventStore,
  notifyPayload,
  readNotifyPayload,
} from '../../src/platform/event-store/postgres-event-store';
import { createTestDatabase, type TestDatabase } from '../support/services';
import { eventually, testEvent } from '../support/events';
import { eventStoreContract } from './event-store.contract';

let db: TestDatabase;
let store: PostgresEventStore;
const upcasters = new UpcasterRegistry().register(
  { type: 'test.Renamed', fromVersion: 1, upcast: (d) => ({ fullName: d.name }) },
  { type: 'test.Renamed', fromVersion: 2, upcast: (d) => ({ ...d, upcastTwice: true }) },
);

beforeAll(async () => {
  db = await createTestDatabase('es');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url, upcasters });
});
afterAll(async () => {
  await store.close();
  await db.drop();
});

eventStoreContract('postgres', () => store);

describe('postgres event store specifics', () => {
  it('upcasts old schema versions on read without rewriting the stored row', async () => {
    await store.append('upcast-1', [{ ...testEvent('test.Renamed', { name: 'Ada' }), schemaVersion: 1 }], 'no_stream');
    const [e] = await store.readStream('upcast-1');
    expect(e?.data).toEqual({ fullName: 'Ada', upcastTwice: true });
    expect(e?.schemaVersion).toBe(3);
    expect(e?.metadata.storedSchemaVersion).toBe(1);
    const raw = await db.pool.query('SELECT data, schema_version FROM events WHERE stream_id = $1', ['upcast-1']);
    expect(raw.rows[0]).toEqual({ data: { name: 'Ada' }, schema_version: 1 });
  });

  it('NOTIFY: a store ignores its own (its appends woke its subscribers already) and names the types for the others', async () => {
    const id = '0b7f6a52-3c1e-4d0a-9a59-1f2e3d4c5b6a';
    expect(readNotifyPayload(notifyPayload(id, new Set(['a.B', 'c.D'])))).toEqual({ from: id, types: ['a.B', 'c.D'] });
    expect(readNotifyPayload(notifyPayload(id, new Set()))).toEqual({ from: id });
    expect(readNotifyPayload(notifyPayload(id, new Set(['x'.repeat(5000)])))).toEqual({ from: id });
    expect(readNotifyPayload('')).toEqual({}); // an older version's: everybody wakes

    const a = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
    const b = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
    const from = await a.headPosition();
    // A subscription opens its store's LISTEN connection.
    const subs = [a, b].map((s) =>
      s.subscribeBatches({ fromPosition: from, eventTypes: ['test.Notified'] }, () => Promise.resolve()),
    );
    // What goes over the channel, heard as another process would.
    const listener = new Client({ connectionString: db.url });
    await listener.connect();
    await listener.query('LISTEN es_events');
    const heard: string[] = [];
    let n = 0;
    const appendTo = (s: PostgresEventStore) => s.append(`notify-${n++}`, [testEvent('test.Notified')], 'no_stream');
    try {
      await eventually(async () => {
        await appendTo(a);
        return a.notifications.own > 0 && b.notifications.others > 0;
      }, 'both stores listening');
      const before = { ...a.notifications };
      const bHeard = b.notifications.others;
      heard.length = 0;
      listener.on('notification', (m) => heard.push(m.payload ?? ''));
      // Nine appends in one tick: the first go alone, the rest as a group (es_append_group); every one
      // announces its types, so the NOTIFY names them and another store wakes only the subscribers they concern.
      const announced = jest.spyOn(a as unknown as { appended(n: number, types: readonly string[]): void }, 'appended');
      const results = await Promise.all(Array.from({ length: 9 }, () => appendTo(a)));
      expect(new Set(results.map((r) => Math.floor(r.position / 65536))).size).toBeLessThan(9); // a group formed
      expect(announced.mock.calls.length).toBeGreaterThan(0);
      for (const [, types] of announced.mock.calls) expect(types).toEqual(['test.Notified']);
      announced.mockRestore();
      await eventually(() => b.notifications.others > bHeard, 'b hears of a');
      await eventually(() => heard.length > 0, 'a NOTIFY on the channel');
      expect(heard.map((p) => readNotifyPayload(p).types)).toEqual(heard.map(() => ['test.Notified']));
      await appendTo(b);
      await eventually(() => a.notifications.others > before.others, 'a hears of b');
      // Delivered in commit order: a's own NOTIFY came before b's (sent after b heard of a), and was told apart.
      expect(a.notifications.own).toBeGreaterThan(before.own);
      expect(b.notifications.own).toBeGreaterThan(0);
    } finally {
      await Promise.all(subs.map((s) => s.stop()));
      await Promise.all([a.close(), b.close(), listener.end()]);
    }
  });

  it('group commit: appends called together share one transaction, each checked and answered on its own', async () => {
    const earlier = testEvent('test.Earlier');
    const first = await store.append('group-dup', [earlier], 'no_stream');
    await store.append('group-conflict', [testEvent('test.Created')], 'no_stream');
    const fresh = Array.from({ length: 6 }, (_, i) => ({
      streamId: `group-fresh-${i}`,
      event: testEvent('test.Fresh'),
    }));
    // Called in one tick: they go out as one group.
    const settled = await Promise.allSettled([
      ...fresh.map((f) => store.append(f.streamId, [f.event], 'no_stream')),
      store.append('group-conflict', [testEvent('test.Refused')], 'no_stream'),
      store.append('group-dup', [earlier], 'no_stream'),
      store.append('group-fresh-0', [testEvent('test.Second')], 0),
    ]);
    const ok = settled.slice(0, 6).map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    expect(ok.every((r) => r?.duplicate === false && r.nextRevision === 0)).toBe(true);
    // One transaction: the same block of positions (position >> 16 is the transaction id).
    expect(new Set(ok.map((r) => Math.floor((r?.position ?? 0) / 65536))).size).toBe(1);
    expect(settled[6]).toMatchObject({ status: 'rejected', reason: expect.any(ConcurrencyError) });
    expect(settled[7]).toEqual({ status: 'fulfilled', value: { ...first, duplicate: true } });
    // A second append to a stream of the group waits for the next group, and lands after the first.
    expect(settled[8]).toMatchObject({ status: 'fulfilled', value: { nextRevision: 1, duplicate: false } });
    expect(await store.readStream('group-conflict')).toHaveLength(1);
    expect((await store.readStream('group-fresh-0')).map((e) => e.type)).toEqual(['test.Fresh', 'test.Second']);

    // A large group (200 events or more) goes in with COPY: the same answers.
    const big = (type: string) =>
      Array.from({ length: 100 }, (_, i) => testEvent(type, { i, text: 'tab\there\nnewline \\ backslash' }));
    const bigDup = big('test.BigDup');
    const bigFirst = await store.append('group-big-dup', bigDup, 'no_stream');
    const bigs = await Promise.allSettled([
      store.append('group-big-1', big('test.Big'), 'no_stream'),
      store.append('group-big-2', big('test.Big'), 'no_stream'),
      store.append('group-big-dup', bigDup, 'no_stream'),
      store.append('group-conflict', big('test.Refused'), 'no_stream'),
    ]);
    expect(bigs.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    expect(bigs[2]).toEqual({ status: 'fulfilled', value: { ...bigFirst, duplicate: true } });
    const big1 = await store.readStream('group-big-1');
    expect(big1.map((e) => e.revision)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(big1[99]!.data).toEqual({ i: 99, text: 'tab\there\nnewline \\ backslash' });
    expect(bigs[0]).toMatchObject({ status: 'fulfilled', value: { position: big1[99]!.position, nextRevision: 99 } });
    expect(Math.floor(big1[0]!.position / 65536)).toBe(
      Math.floor((await store.readStream('group-big-2'))[0]!.position / 65536),
    );
    expect(await store.readStream('group-conflict')).toHaveLength(1);

    // An append PostgreSQL refuses outright (an event id that is no uuid) fails alone.
    const mixed = await Promise.allSettled([
      store.append('group-bad', [{ ...testEvent('test.Bad'), id: 'not-a-uuid' }], 'no_stream'),
      store.append('group-good-1', [testEvent('test.Good')], 'no_stream'),
      store.append('group-good-2', [testEvent('test.Good')], 'no_stream'),
    ]);
    expect(mixed.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled']);
    expect(await store.readStream('group-bad')).toEqual([]);
    expect(await store.readStream('group-good-2')).toHaveLength(1);
  });

  it('group commit: 400 events or more waiting, two slots free: two groups at once, each append answered on its own', async () => {
    const batch = (type: string) => Array.from({ length: 50 }, (_, i) => testEvent(type, { i }));
    await store.append('split-conflict', [testEvent('test.Created')], 'no_stream');
    const dupEvents = batch('test.SplitDup');
    const dupFirst = await store.append('split-dup', dupEvents, 'no_stream');
    const fresh = Array.from({ length: 8 }, (_, i) => `split-${i}`);
    // Called in one tick: 500 events in 10 appends, and a second append to split-0 that must wait.
    const settled = await Promise.allSettled([
      ...fresh.map((s) => store.append(s, batch('test.Split'), 'no_stream')),
      store.append('split-conflict', batch('test.Refused'), 'no_stream'),
      store.append('split-dup', dupEvents, 'no_stream'),
      store.append('split-0', batch('test.Later'), 49),
    ]);
    const ok = settled.slice(0, 8).map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    expect(ok.every((r) => r?.duplicate === false && r.nextRevision === 49)).toBe(true);
    for (const [i, s] of fresh.entries()) {
      const stored = await store.readStream(s, 0, 50);
      expect(stored.map((e) => e.revision)).toEqual(Array.from({ length: 50 }, (_, k) => k));
      expect(ok[i]?.position).toBe(stored[49]!.position);
    }
    // Two transactions (position >> 16 is the transaction id), each with several of the appends.
    const blocks = ok.map((r) => Math.floor((r?.position ?? 0) / 65536));
    expect(new Set(blocks).size).toBe(2);
    for (const b of new Set(blocks)) expect(blocks.filter((x) => x === b).length).toBeGreaterThanOrEqual(2);
    expect(settled[8]).toMatchObject({ status: 'rejected', reason: expect.any(ConcurrencyError) });
    expect(settled[9]).toEqual({ status: 'fulfilled', value: { ...dupFirst, duplicate: true } });
    expect(await store.readStream('split-conflict')).toHaveLength(1);
    // The second append to split-0 went after the group holding the first had committed.
    expect(settled[10]).toMatchObject({ status: 'fulfilled', value: { nextRevision: 99, duplicate: false } });
    const split0 = await store.readStream('split-0');
    expect(split0.map((e) => e.type)).toEqual([...Array(50).fill('test.Split'), ...Array(50).fill('test.Later')]);
    expect(split0[50]!.position).toBeGreaterThan(ok[0]!.position);
  });

  it('appendMulti writes several streams in one transaction, all or nothing', async () => {
    const a = testEvent('test.Reserved');
    const b = testEvent('test.Created');
    const [ra, rb] = await store.appendMulti([
      { streamId: 'multi-a', events: [a], expected: 'no_stream' },
      { streamId: 'multi-b', events: [b], expected: 'no_stream' },
    ]);
    expect(ra?.position).toBeLessThan(rb!.position);
    // A conflict on any stream rolls back the others.
    await expect(
      store.appendMulti([
        { streamId: 'multi-c', events: [testEvent('test.Created')], expected: 'no_stream' },
        { streamId: 'multi-a', events: [testEvent('test.Reserved')], expected: 'no_stream' },
      ]),
    ).rejects.toBeInstanceOf(ConcurrencyError);
    expect(await store.readStream('multi-c')).toHaveLength(0);
    // Re-sent as a whole, it returns the original results and stores nothing.
    const again = await store.appendMulti([
      { streamId: 'multi-a', events: [a], expected: 'no_stream' },
      { streamId: 'multi-b', events: [b], expected: 'no_stream' },
    ]);
    expect(again.map((r) => r.position)).toEqual([ra!.position, rb!.position]);
    expect(again.every((r) => r.duplicate)).toBe(true);
  });

  it('refuses to update or delete a stored event', async () => {
    await store.append('immutable-1', [testEvent('test.A')], 'no_stream');
    await expect(db.pool.query(`UPDATE events SET type = 'x' WHERE stream_id = 'immutable-1'`)).rejects.toThrow(
      /append-only/,
    );
    await expect(db.pool.query(`DELETE FROM events WHERE stream_id = 'immutable-1'`)).rejects.toThrow(/append-only/);
  });
});
