import type { Decider } from '../../domain/shared/event';
import {
  handleCommand,
  handleCommandBatch,
  requestFingerprint,
  StateCache,
} from '../../src/platform/commands/command-handling';
import type { EventStore } from '../../src/platform/event-store/event-store';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * handleCommand with a StateCache: decisions read only the events after the
 * cached revision, and stay right when other writers (other processes, other
 * caches) append in between.
 */
type Take = { type: 'Take'; data: { n: number } };
type Taken = { type: 'test.Taken'; data: { n: number; left: number } };
const STOCK = 40;
const decider: Decider<Take, Taken, number> = {
  initialState: STOCK,
  evolve: (left, e) => left - e.data.n,
  decide: (c, left) => (c.data.n <= left ? [{ type: 'test.Taken', data: { n: c.data.n, left: left - c.data.n } }] : []),
};
const ctx = () => ({ correlationId: 'c', causationId: 'c', actor: 'system:test', now: new Date() });

let db: TestDatabase;
let store: PostgresEventStore;
beforeAll(async () => {
  db = await createTestDatabase('cmd');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
});
afterAll(async () => {
  await store.close();
  await db.drop();
});

it('three writers, two with their own cache and one without, never take more than there is, and each decision saw the true state', async () => {
  const caches = [new StateCache<number>(), new StateCache<number>(), undefined];
  const takes = Array.from({ length: 60 }, (_, i) =>
    handleCommand({
      store,
      decider,
      streamId: 'stock-1',
      command: { type: 'Take', data: { n: 1 + (i % 3) } },
      ctx: ctx(),
      retries: 100,
      cache: caches[i % 3],
    }),
  );
  await Promise.all(takes);
  const events = await store.readStream('stock-1');
  let left = STOCK;
  for (const e of events) {
    left -= Number(e.data.n);
    expect(e.data.left).toBe(left); // the decider saw exactly the state the stream had
  }
  expect(left).toBeGreaterThanOrEqual(0);
  expect(left).toBeLessThan(3); // it stopped only when no take could fit
});

it('a cache reads only the new events: after a write elsewhere it catches up, and a stale entry is never worse than no entry', async () => {
  const cache = new StateCache<number>();
  await handleCommand({
    store,
    decider,
    streamId: 'stock-2',
    command: { type: 'Take', data: { n: 5 } },
    ctx: ctx(),
    retries: 5,
    cache,
  });
  expect(cache.get('stock-2')).toEqual({ revision: 0, state: 35 });
  await handleCommand({
    store,
    decider,
    streamId: 'stock-2',
    command: { type: 'Take', data: { n: 30 } },
    ctx: ctx(),
    retries: 5,
  }); // another process
  await handleCommand({
    store,
    decider,
    streamId: 'stock-2',
    command: { type: 'Take', data: { n: 10 } },
    ctx: ctx(),
    retries: 5,
    cache,
  }); // does not fit: 5 left
  expect(cache.get('stock-2')).toEqual({ revision: 1, state: 5 });
  expect((await store.readStream('stock-2')).map((e) => e.data.n)).toEqual([5, 30]);
});

it('the cache is bounded: the least recently used stream goes first', () => {
  const cache = new StateCache<number>(2);
  cache.set('a', 0, 1);
  cache.set('b', 0, 2);
  cache.get('a');
  cache.set('c', 0, 3);
  expect([cache.get('a')?.state, cache.get('b'), cache.get('c')?.state, cache.size]).toEqual([1, undefined, 3, 2]);
});

// Issue 9: two strangers sending one Idempotency-Key to a public command got one result (the
// first one's): every stranger is "anonymous", so ids derived from (anonymous, key) were shared.
it('an anonymous idempotency key only answers the identical request; a different request with it is decided afresh', async () => {
  const anonymous = (n: number) =>
    handleCommand({
      store,
      decider,
      streamId: 'stock-anon',
      command: { type: 'Take', data: { n } },
      ctx: { ...ctx(), actor: 'anonymous', idempotencyKey: 'shared-key-1' },
      retries: 5,
    });
  const first = await anonymous(1);
  const retry = await anonymous(1);
  expect(retry).toMatchObject({ duplicate: true, position: first.position });
  const stranger = await anonymous(2);
  expect(stranger.duplicate).toBe(false);
  expect(stranger.position).not.toBe(first.position);
  expect((await store.readStream('stock-anon')).map((e) => e.data.n)).toEqual([1, 2]);
  // An authenticated caller's keys are its own: unchanged.
  const mine = await handleCommand({
    store,
    decider,
    streamId: 'stock-anon',
    command: { type: 'Take', data: { n: 3 } },
    ctx: { ...ctx(), actor: 'user:1', idempotencyKey: 'shared-key-1' },
    retries: 5,
  });
  expect(
    await handleCommand({
      store,
      decider,
      streamId: 'stock-anon',
      command: { type: 'Take', data: { n: 4 } },
      ctx: { ...ctx(), actor: 'user:1', idempotencyKey: 'shared-key-1' },
      retries: 5,
    }),
  ).toMatchObject({ duplicate: true, position: mine.position });
});

it('the request fingerprint ignores the clock and key order, not the content', () => {
  const at = (now: Date, data: Record<string, unknown>) => requestFingerprint({ type: 'Take', data: { ...data, now } });
  expect(at(new Date(1), { n: 1, m: { b: 1, a: 2 } })).toBe(at(new Date(2), { m: { a: 2, b: 1 }, n: 1 }));
  expect(at(new Date(1), { n: 1 })).not.toBe(at(new Date(1), { n: 2 }));
  expect(requestFingerprint({ type: 'Take', data: { n: 1 } })).not.toBe(
    requestFingerprint({ type: 'Give', data: { n: 1 } }),
  );
});

/** The store with its stream reads counted (the guesses of trustCache/assumeNew are about saving them). */
function counting(inner: EventStore): { store: EventStore; reads: () => number } {
  let n = 0;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'readStream')
        return (...args: Parameters<EventStore['readStream']>) => {
          n++;
          return target.readStream(...args);
        };
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store, reads: () => n };
}

it('trustCache decides on a current cache without reading, and on a stale one reads and decides again (never on the stale state)', async () => {
  const { store: counted, reads } = counting(store);
  const cache = new StateCache<number>();
  const take = (n: number, c: StateCache<number> | undefined, s: EventStore = counted) =>
    handleCommand({
      store: s,
      decider,
      streamId: 'stock-trust',
      command: { type: 'Take', data: { n } },
      ctx: ctx(),
      retries: 5,
      cache: c,
      trustCache: true,
    });
  await take(5, cache); // nothing cached: read first
  expect(reads()).toBe(1);
  await take(5, cache); // cached and current: no read
  expect(reads()).toBe(1);
  expect(cache.get('stock-trust')).toEqual({ revision: 1, state: 30 });
  await take(28, undefined, store); // another process takes 28: 2 left, the cache says 30
  const r = await take(10, cache); // decided on 30 (fits), the append conflicts, read: 2 left, nothing fits
  expect(r.events).toEqual([]);
  expect(reads()).toBe(2);
  const events = await store.readStream('stock-trust');
  expect(events.map((e) => e.data.left)).toEqual([35, 30, 2]);
  expect(cache.get('stock-trust')).toEqual({ revision: 2, state: 2 });
});

it('assumeNew decides on the empty stream without reading; a stream that exists after all is read and decided again', async () => {
  const { store: counted, reads } = counting(store);
  const take = (streamId: string, n: number) =>
    handleCommand({
      store: counted,
      decider,
      streamId,
      command: { type: 'Take', data: { n } },
      ctx: ctx(),
      retries: 5,
      assumeNew: true,
    });
  await take('stock-new-1', 4);
  expect(reads()).toBe(0);
  const again = await take('stock-new-1', 6); // exists: the no_stream append conflicts, read, decided on 36
  expect(again.revision).toBe(1);
  expect(reads()).toBe(1);
  expect((await store.readStream('stock-new-1')).map((e) => e.data.left)).toEqual([36, 30]);
});

it('handleCommandBatch: batches racing other writers never take more than there is, and each answer names its own events', async () => {
  const cache = new StateCache<number>();
  const batches = Array.from({ length: 8 }, (_, b) =>
    handleCommandBatch(
      { store, decider, streamId: 'stock-batch', retries: 100, cache, trustCache: true },
      Array.from({ length: 4 }, (_, i) => ({
        command: { type: 'Take' as const, data: { n: 1 + ((b + i) % 3) } },
        ctx: { ...ctx(), idempotencyKey: `b${b}:${i}` },
      })),
    ),
  );
  const others = Array.from({ length: 8 }, () =>
    handleCommand({
      store,
      decider,
      streamId: 'stock-batch',
      command: { type: 'Take', data: { n: 1 } },
      ctx: ctx(),
      retries: 100,
    }),
  );
  const outcomes = (await Promise.all(batches)).flat();
  const alone = (await Promise.all(others)).filter((r) => r.events.length).length;
  const events = await store.readStream('stock-batch');
  let left = STOCK;
  for (const e of events) {
    left -= Number(e.data.n);
    expect(e.data.left).toBe(left);
  }
  expect(left).toBeGreaterThanOrEqual(0);
  for (const o of outcomes) {
    if (!o.ok) throw new Error(`a batched take failed: ${String(o.error)}`);
    if (o.sent.events.length === 0) continue;
    // The answer's revision holds exactly this command's event.
    expect(events[o.sent.revision]!.data).toEqual(o.sent.events[0]!.data);
  }
  expect(outcomes.filter((o) => o.ok && o.sent.events.length).length + alone).toBe(events.length);
  expect(left).toBeLessThan(3); // it stopped only when no take could fit
});

it('handleCommandBatch: a batch holding a command stored before (a resend) sends each alone, and the resend stores nothing twice', async () => {
  const keyed = (key: string, n: number) => ({
    command: { type: 'Take' as const, data: { n } },
    ctx: { ...ctx(), idempotencyKey: key },
  });
  const opts = { store, decider, streamId: 'stock-resend', retries: 5 } as const;
  const [first] = await handleCommandBatch(opts, [keyed('k1', 3)]);
  expect(first).toMatchObject({ ok: true, sent: { revision: 0 } });
  const out = await handleCommandBatch(opts, [keyed('k1', 3), keyed('k2', 2)]);
  expect(out[0]).toMatchObject({ ok: true, sent: { duplicate: true } });
  expect(out[1]).toMatchObject({ ok: true, sent: { duplicate: false, revision: 1 } });
  expect((await store.readStream('stock-resend')).map((e) => e.data.left)).toEqual([37, 35]);
});
