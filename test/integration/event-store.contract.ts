import { randomUUID } from 'node:crypto';
import {
  ConcurrencyError,
  IdempotencyConflictError,
  type EventStore,
  type RecordedEvent,
} from '../../src/platform/event-store/event-store';
import { eventually, testEvent } from '../support/events';

/**
 * The contract every event store adapter must pass. Each test uses its own
 * stream ids, so the suite can share one store.
 */
export function eventStoreContract(adapter: string, getStore: () => EventStore): void {
  describe(`event store contract: ${adapter}`, () => {
    const stream = (label: string) => `contract-${label}-${randomUUID()}`;

    describe('append with expected revision', () => {
      it('creates a stream with no_stream and returns revision and position', async () => {
        const s = stream('create');
        const r = await getStore().append(s, [testEvent('test.A'), testEvent('test.B')], 'no_stream');
        expect(r.nextRevision).toBe(1);
        expect(r.position).toBeGreaterThan(0);
        expect(r.duplicate).toBe(false);
        const read = await getStore().readStream(s);
        expect(read.map((e) => [e.type, e.revision])).toEqual([
          ['test.A', 0],
          ['test.B', 1],
        ]);
        expect(read[1]?.position).toBe(r.position);
      });

      it('rejects no_stream when the stream exists', async () => {
        const s = stream('exists');
        await getStore().append(s, [testEvent('test.A')], 'no_stream');
        await expect(getStore().append(s, [testEvent('test.A')], 'no_stream')).rejects.toBeInstanceOf(ConcurrencyError);
      });

      it('appends at the exact expected revision and rejects a stale one, storing nothing', async () => {
        const s = stream('exact');
        await getStore().append(s, [testEvent('test.A')], 'no_stream');
        const ok = await getStore().append(s, [testEvent('test.B')], 0);
        expect(ok.nextRevision).toBe(1);
        const err = await getStore()
          .append(s, [testEvent('test.C')], 0)
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConcurrencyError);
        expect((err as ConcurrencyError).actual).toBe(1);
        expect((await getStore().readStream(s)).map((e) => e.type)).toEqual(['test.A', 'test.B']);
      });

      it('rejects an exact revision on a stream that does not exist', async () => {
        const err = await getStore()
          .append(stream('missing'), [testEvent('test.A')], 3)
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConcurrencyError);
        expect((err as ConcurrencyError).actual).toBe('no_stream');
      });

      it('stream_exists needs the stream; any takes whatever is there', async () => {
        const s = stream('any');
        await expect(getStore().append(s, [testEvent('test.A')], 'stream_exists')).rejects.toBeInstanceOf(
          ConcurrencyError,
        );
        expect((await getStore().append(s, [testEvent('test.A')], 'any')).nextRevision).toBe(0);
        expect((await getStore().append(s, [testEvent('test.B')], 'any')).nextRevision).toBe(1);
        expect((await getStore().append(s, [testEvent('test.C')], 'stream_exists')).nextRevision).toBe(2);
      });

      it('lets exactly one of many concurrent writers at the same revision win', async () => {
        const s = stream('race');
        await getStore().append(s, [testEvent('test.A')], 'no_stream');
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => getStore().append(s, [testEvent('test.B', { i })], 0)),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(rejected).toHaveLength(9);
        for (const r of rejected) expect(r.reason).toBeInstanceOf(ConcurrencyError);
        expect(await getStore().readStream(s)).toHaveLength(2);
      });

      it('serialises concurrent "any" appends without losing one', async () => {
        const s = stream('any-race');
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => getStore().append(s, [testEvent('test.N', { i })], 'any')),
        );
        const events = await getStore().readStream(s);
        expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 20 }, (_, i) => i));
        expect(new Set(events.map((e) => e.data.i)).size).toBe(20);
      });
    });

    describe('idempotent appends', () => {
      it('re-sending the same events returns the original result and stores nothing new', async () => {
        const s = stream('idem');
        const events = [testEvent('test.A', { n: 1 }), testEvent('test.B', { n: 2 })];
        const first = await getStore().append(s, events, 'no_stream');
        const again = await getStore().append(s, events, 'no_stream');
        expect(again).toEqual({ ...first, duplicate: true });
        const later = await getStore().append(s, events, 5);
        expect(later.position).toBe(first.position);
        expect(await getStore().readStream(s)).toHaveLength(2);
      });

      it('stores concurrent duplicates once', async () => {
        const s = stream('idem-race');
        const events = [testEvent('test.A')];
        const results = await Promise.all(Array.from({ length: 8 }, () => getStore().append(s, events, 'any')));
        expect(new Set(results.map((r) => r.position)).size).toBe(1);
        expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
        expect(await getStore().readStream(s)).toHaveLength(1);
      });

      it("refuses an append that reuses some of an earlier append's ids with new ones", async () => {
        const s = stream('idem-mixed');
        const a = testEvent('test.A');
        await getStore().append(s, [a], 'no_stream');
        await expect(getStore().append(s, [a, testEvent('test.B')], 'any')).rejects.toBeInstanceOf(
          IdempotencyConflictError,
        );
        expect(await getStore().readStream(s)).toHaveLength(1);
      });

      it('finds the original result of an append by its first event id', async () => {
        const s = stream('find');
        await getStore().append(s, [testEvent('test.0')], 'no_stream');
        const events = [testEvent('test.A'), testEvent('test.B'), testEvent('test.C')];
        const r = await getStore().append(s, events, 0);
        expect(await getStore().findAppend(s, events[0]!.id)).toEqual({ ...r, duplicate: true });
        expect(await getStore().findAppend(s, randomUUID())).toBeUndefined();
      });
    });

    describe('reading', () => {
      it('keeps data and metadata as written', async () => {
        const s = stream('meta');
        const e = {
          id: randomUUID(),
          type: 'test.Meta',
          data: { nested: { a: [1, 2, 3] }, text: 'é✓' },
          metadata: { correlationId: 'corr-1', causationId: 'cause-1', actor: 'user:42' },
          schemaVersion: 1,
        };
        await getStore().append(s, [e], 'no_stream');
        const [read] = await getStore().readStream(s);
        expect(read).toMatchObject({
          id: e.id,
          type: e.type,
          data: e.data,
          metadata: e.metadata,
          streamId: s,
          revision: 0,
          schemaVersion: 1,
        });
        expect(read?.recordedAt).toBeInstanceOf(Date);
      });

      it('reads a stream from a revision', async () => {
        const s = stream('from');
        await getStore().append(
          s,
          [1, 2, 3, 4].map((n) => testEvent('test.N', { n })),
          'no_stream',
        );
        expect((await getStore().readStream(s, 2)).map((e) => e.data.n)).toEqual([3, 4]);
      });

      it('readAll returns events after a position, in increasing position order, in batches', async () => {
        const start = await getStore().headPosition();
        const s1 = stream('all-1');
        const s2 = stream('all-2');
        const written: number[] = [];
        for (let i = 0; i < 5; i++) {
          written.push((await getStore().append(i % 2 ? s1 : s2, [testEvent('test.All', { i })], 'any')).position);
        }
        const seen: RecordedEvent[] = [];
        let from = start;
        for (;;) {
          const all = await getStore().readAll(from, 2);
          if (all.length === 0) break;
          for (const e of all) expect(e.position).toBeGreaterThan(from);
          seen.push(...all.filter((e) => e.streamId === s1 || e.streamId === s2));
          from = all.at(-1)!.position;
        }
        expect(seen.map((e) => e.position)).toEqual(written);
        expect(seen.map((e) => e.data.i)).toEqual([0, 1, 2, 3, 4]);
      });

      it('readAll filters by event type', async () => {
        const start = await getStore().headPosition();
        const s = stream('types');
        const t = `test.Typed${randomUUID().slice(0, 8)}`;
        await getStore().append(
          s,
          [testEvent(t, { n: 1 }), testEvent('test.Other'), testEvent(t, { n: 2 })],
          'no_stream',
        );
        expect((await getStore().readAll(start, 100, [t])).map((e) => e.data.n)).toEqual([1, 2]);
      });

      it('subscribe catches up, then follows new appends in order', async () => {
        const start = await getStore().headPosition();
        const s = stream('sub');
        await getStore().append(s, [testEvent('test.S', { n: 0 }), testEvent('test.S', { n: 1 })], 'no_stream');
        const seen: number[] = [];
        const sub = getStore().subscribe({ fromPosition: start, batchSize: 3 }, (events) => {
          for (const e of events) if (e.streamId === s) seen.push(e.data.n as number);
          return Promise.resolve();
        });
        try {
          await eventually(() => seen.length === 2, 'catch-up');
          for (let n = 2; n < 10; n++) await getStore().append(s, [testEvent('test.S', { n })], n - 1);
          await eventually(() => seen.length === 10, 'live events');
          expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        } finally {
          await sub.stop();
        }
      });

      it('keeps metadata values that are not strings', async () => {
        const s = stream('meta-values');
        const metadata = { correlationId: 'c', causationId: 'd', actor: 'system:test', attempt: 3, tags: ['x'] };
        await getStore().append(s, [{ ...testEvent('test.MetaValues'), metadata }], 'no_stream');
        expect((await getStore().readStream(s))[0]?.metadata).toEqual(metadata);
      });

      it('readBatch with a type filter advances its position past events of other types', async () => {
        const start = await getStore().headPosition();
        const t = `test.Wanted${randomUUID().slice(0, 8)}`;
        const s = stream('batch');
        const wanted = await getStore().append(s, [testEvent(t, { n: 1 })], 'no_stream');
        const after = await getStore().append(s, [testEvent('test.Unwanted'), testEvent('test.Unwanted')], 0);
        const batch = await getStore().readBatch(start, 10, [t]);
        expect(batch.events.map((e) => [e.type, e.data.n, e.position])).toEqual([[t, 1, wanted.position]]);
        // Nothing of that type follows: the cursor moves at least past the unwanted events.
        expect(batch.position).toBeGreaterThanOrEqual(after.position);
        const next = await getStore().readBatch(batch.position, 10, [t]);
        expect(next.events).toEqual([]);
        expect(next.position).toBeGreaterThanOrEqual(batch.position);
        // A full batch stops at its last event, so the rest is read next.
        const more = await getStore().append(s, [testEvent(t, { n: 2 }), testEvent(t, { n: 3 })], 2);
        const one = await getStore().readBatch(batch.position, 1, [t]);
        expect(one.events.map((e) => e.data.n)).toEqual([2]);
        expect(one.position).toBe(one.events[0]!.position);
        const rest = await getStore().readBatch(one.position, 1, [t]);
        expect(rest.events.map((e) => [e.data.n, e.position])).toEqual([[3, more.position]]);
      });

      it('subscribeBatches moves its position past filtered events', async () => {
        const start = await getStore().headPosition();
        const t = `test.Sub${randomUUID().slice(0, 8)}`;
        const s = stream('sub-batches');
        const written = await getStore().append(s, [testEvent('test.Noise'), testEvent('test.Noise')], 'no_stream');
        let position = start;
        const sub = getStore().subscribeBatches({ fromPosition: start, eventTypes: [t] }, (batch) => {
          if (batch.events.length > 0) throw new Error('no event of this type was written');
          position = batch.position;
          return Promise.resolve();
        });
        try {
          await eventually(() => position >= written.position, 'position past the filtered events');
        } finally {
          await sub.stop();
        }
      });

      it('backlog and countEvents answer for the types asked', async () => {
        const t = `test.Counted${randomUUID().slice(0, 8)}`;
        const s = stream('count');
        const before = await getStore().headPosition();
        expect(await getStore().countEvents([t])).toBe(0);
        expect(await getStore().backlog(before, [t], 100)).toEqual({ oldestRecordedAt: undefined, events: 0 });
        const first = await getStore().append(
          s,
          [testEvent(t), testEvent('test.NotCounted'), testEvent(t)],
          'no_stream',
        );
        await getStore().append(s, [testEvent(t)], first.nextRevision);
        expect(await getStore().countEvents([t])).toBe(3);
        const all = await getStore().backlog(before, [t], 100);
        expect(all.events).toBe(3);
        expect(all.oldestRecordedAt).toBeInstanceOf(Date);
        expect((await getStore().backlog(before, [t], 2)).events).toBe(2);
        expect((await getStore().backlog(before, [t])).events).toBeNull();
        expect((await getStore().backlog(first.position, [t], 100)).events).toBe(1);
      });
    });

    describe('multi-stream and skip-known appends', () => {
      it('appendMulti writes every stream or none', async () => {
        const a = stream('multi-a');
        const b = stream('multi-b');
        const [ra, rb] = await getStore().appendMulti([
          { streamId: a, events: [testEvent('test.A')], expected: 'no_stream' },
          { streamId: b, events: [testEvent('test.B'), testEvent('test.B')], expected: 'no_stream' },
        ]);
        expect([ra?.nextRevision, rb?.nextRevision]).toEqual([0, 1]);
        expect((await getStore().readStream(a))[0]?.position).toBe(ra?.position);
        expect((await getStore().readStream(b))[1]?.position).toBe(rb?.position);
        const c = stream('multi-c');
        const err = await getStore()
          .appendMulti([
            { streamId: c, events: [testEvent('test.C')], expected: 'no_stream' },
            { streamId: a, events: [testEvent('test.A')], expected: 'no_stream' },
          ])
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConcurrencyError);
        expect((err as ConcurrencyError).streamId).toBe(a);
        expect(await getStore().readStream(c)).toEqual([]);
      });

      it('appendMulti answers a re-send with the original results', async () => {
        const a = stream('multi-again-a');
        const b = stream('multi-again-b');
        const writes = [
          { streamId: a, events: [testEvent('test.A')], expected: 'no_stream' as const },
          { streamId: b, events: [testEvent('test.B')], expected: 'no_stream' as const },
        ];
        const first = await getStore().appendMulti(writes);
        const again = await getStore().appendMulti(writes);
        expect(again).toEqual(first.map((r) => ({ ...r, duplicate: true })));
        expect(await getStore().readStream(a)).toHaveLength(1);
      });

      it('appendSkippingKnown stores only ids not stored yet, per stream', async () => {
        const a = stream('skip-a');
        const b = stream('skip-b');
        const e1 = testEvent('test.R', { n: 1 });
        const e2 = testEvent('test.R', { n: 2 });
        const e3 = testEvent('test.R', { n: 3 });
        const e4 = testEvent('test.R', { n: 4 });
        const [first] = await getStore().appendSkippingKnown([{ streamId: a, events: [e1, e2] }]);
        expect(first).toMatchObject({ streamId: a, appended: 2, newIds: [e1.id, e2.id], nextRevision: 1 });
        const results = await getStore().appendSkippingKnown([
          { streamId: a, events: [e2, e3] },
          { streamId: b, events: [e4] },
        ]);
        expect(results.map((r) => [r.streamId, r.appended, r.newIds, r.nextRevision])).toEqual([
          [a, 1, [e3.id], 2],
          [b, 1, [e4.id], 0],
        ]);
        const dup = await getStore().appendSkippingKnown([{ streamId: a, events: [e1, e3] }]);
        expect(dup[0]).toMatchObject({ appended: 0, newIds: [], nextRevision: 2 });
        const stored = await getStore().readStream(a);
        expect(stored.map((e) => e.data.n)).toEqual([1, 2, 3]);
        expect(dup[0]?.position).toBe(stored[2]?.position);
      });

      // Large enough for PostgreSQL's COPY path (es_append_skip_known_group deciding, the rows copied).
      it('appendSkippingKnown of hundreds of events: only new ids, in order, revisions dense', async () => {
        const a = stream('skip-big-a');
        const b = stream('skip-big-b');
        const c = stream('skip-big-c');
        const evA = Array.from({ length: 250 }, (_, n) => testEvent('test.R', { n }));
        const evB = Array.from({ length: 100 }, (_, n) => testEvent('test.R', { n }));
        const evC = Array.from({ length: 10 }, (_, n) => testEvent('test.R', { n }));
        await getStore().appendSkippingKnown([
          { streamId: a, events: evA.slice(0, 100) },
          { streamId: c, events: evC },
        ]);
        const results = await getStore().appendSkippingKnown([
          { streamId: a, events: evA },
          { streamId: b, events: evB },
          { streamId: c, events: evC },
        ]);
        expect(results.map((r) => [r.streamId, r.appended, r.newIds, r.nextRevision])).toEqual([
          [a, 150, evA.slice(100).map((e) => e.id), 249],
          [b, 100, evB.map((e) => e.id), 99],
          [c, 0, [], 9],
        ]);
        for (const [s, events, r] of [
          [a, evA, results[0]],
          [b, evB, results[1]],
          [c, evC, results[2]],
        ] as const) {
          const stored = await getStore().readStream(s);
          expect(stored.map((e) => [e.id, e.revision, e.data.n])).toEqual(events.map((e, i) => [e.id, i, i]));
          expect(stored.every((e, i) => i === 0 || e.position > stored[i - 1]!.position)).toBe(true);
          expect(r?.position).toBe(stored.at(-1)?.position);
        }
      });
    });

    describe('subscriptions', () => {
      it('a failing subscriber handler ends its subscription with the error', async () => {
        const start = await getStore().headPosition();
        await getStore().append(stream('fail'), [testEvent('test.F')], 'no_stream');
        const sub = getStore().subscribe({ fromPosition: start }, () => Promise.reject(new Error('handler broke')));
        await expect(sub.failed).resolves.toThrow('handler broke');
        await sub.stop();
      });
    });
  });
}
