import type { Decider } from '../../domain/shared/event';
import { handleCommand, requestFingerprint, StateCache } from '../../src/platform/commands/command-handling';
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
