import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import type { AnyEvent, RecordedEvent } from '../../domain/shared/recorded-event';
import type { Projection, Queryable } from '../../projections/projection';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { projector } from '../../src/platform/processing/processor';
import { errorText, inTransaction, quoteIdent } from '../../src/platform/processing/transaction';
import { createTestDatabase, type TestDatabase } from './services';
import { testEvent } from './events';

/**
 * Given/when/then for read models, on real PostgreSQL:
 *
 *   const users = readModel(usersProjection);            // when: this projection (call at file or describe level)
 *   const s = users.given(registered, roleAssigned);     // given: domain events of its union (type-checked)
 *   await s.thenRows('users', [{ user_id: id, ... }]);   // then: the rows of a table (a set: order ignored)
 *   await s.thenQuery((db) => findUserById(db, id), {...}); // or what a query function answers
 *
 * The events go the way they go in production: appended to the real event
 * store, read back through it (JSON round trip, upcasters, the adapter's typed
 * read), then handed to the projection through the processor runtime's
 * adapter (`projector`) inside a transaction, as the runner does.
 *
 * Every scenario is applied twice, into two fresh schemas: once as one batch
 * (a catch-up or a rebuild) and once an event per transaction (a runner
 * following live appends). Every `then` checks both, so a handler whose rows
 * depend on where batches happen to split fails here rather than in a rebuild.
 */

export interface Scenario {
  /** The rows of `table` equal `expected`, in any order (a table is a set); `columns` limits the comparison. */
  thenRows(
    table: string,
    expected: readonly Record<string, unknown>[],
    options?: { columns?: readonly string[] },
  ): Promise<void>;
  /** What `query` answers over the read model equals `expected` (toEqual). */
  thenQuery<T>(query: (db: Queryable) => Promise<T>, expected: T): Promise<void>;
  /** Applying the events fails with this message: the runtime would park the projection on that event. */
  thenFails(message: string | RegExp): Promise<void>;
  /** What `query` answers, once both ways of applying agree on it: for assertions toEqual cannot express. */
  read<T>(query: (db: Queryable) => Promise<T>): Promise<T>;
}

export interface ScenarioOf<E extends AnyEvent> extends Scenario {
  /** The given events as the store recorded them (positions, ids): for rows keyed by position. */
  recorded(): Promise<readonly RecordedEvent<E>[]>;
}

export interface ReadModelSpec<E extends AnyEvent> {
  given(...events: readonly E[]): ScenarioOf<E>;
}

type Mode = 'batch' | 'one-by-one';
const MODES: readonly Mode[] = ['batch', 'one-by-one'];

export function readModel<E extends AnyEvent>(projection: Projection<E>): ReadModelSpec<E> {
  let db: TestDatabase;
  let store: PostgresEventStore;
  const pools: Pool[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('rm', { poolSize: 4 });
    store = new PostgresEventStore(db.pool);
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end()));
    await store.close();
    await db.drop();
  });

  /** Appends the scenario's events to the store and reads them back as a runner would: typed by the adapter. */
  async function record(events: readonly E[]): Promise<RecordedEvent<E>[]> {
    const from = await store.headPosition();
    if (events.length > 0) {
      await store.append(
        `given-${randomUUID()}`,
        events.map((e) => testEvent(e.type, { ...e.data })),
        'no_stream',
      );
    }
    return store.readAll<E>(from, events.length + 1, projection.eventTypes);
  }

  /** A fresh schema with the projection's tables, and a pool whose connections read and write there. */
  async function schema(): Promise<Pool> {
    const name = `rm_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    await db.pool.query(`CREATE SCHEMA ${quoteIdent(name)}`);
    const pool = new Pool({ connectionString: db.url, max: 2, options: `-c search_path=${name},public` });
    // pool.end() resolves before every socket has closed, and db.drop() (WITH FORCE) may then cut one:
    // that is the end of the test, not a failure of whichever test runs next.
    pool.on('error', () => undefined);
    pools.push(pool);
    await inTransaction(pool, async (c) => {
      for (const ddl of projection.setup) await c.query(ddl);
    });
    return pool;
  }

  async function apply(pool: Pool, events: readonly RecordedEvent<E>[], mode: Mode): Promise<void> {
    const handler = projector(projection);
    if (handler.checkpoint !== 'in-transaction') throw new Error('a projection handles in the checkpoint transaction');
    const signal = new AbortController().signal;
    const batches = mode === 'batch' ? [events] : events.map((e) => [e]);
    for (const batch of batches) await inTransaction(pool, (tx) => handler.handle(batch, { tx, signal }));
  }

  return {
    given(...events) {
      // Both runs start on the first `then`; a failure is kept for thenFails and rethrown by the others.
      let recorded: Promise<RecordedEvent<E>[]> | undefined;
      const once = () => (recorded ??= record(events));
      let runs: Promise<{ mode: Mode; pool: Pool; error: unknown }[]> | undefined;
      const run = () =>
        (runs ??= (async () => {
          const read = await once();
          return Promise.all(
            MODES.map(async (mode) => {
              const pool = await schema();
              try {
                await apply(pool, read, mode);
                return { mode, pool, error: undefined };
              } catch (error) {
                return { mode, pool, error };
              }
            }),
          );
        })());
      const applied = async () => {
        const out = await run();
        for (const r of out)
          if (r.error !== undefined)
            throw new Error(`applying the given events (${r.mode}) failed: ${errorText(r.error)}`, { cause: r.error });
        return out;
      };
      const read = async <T>(query: (db: Queryable) => Promise<T>): Promise<T> => {
        const [first, ...others] = await applied();
        if (!first) throw new Error('no run');
        const value = await query(first.pool);
        for (const o of others) expect({ mode: o.mode, value: await query(o.pool) }).toEqual({ mode: o.mode, value });
        return value;
      };
      return {
        recorded: once,
        read,
        async thenQuery(query, expected) {
          expect(await read(query)).toEqual(expected);
        },
        async thenRows(table, expected, options = {}) {
          const cols = options.columns ? options.columns.map(quoteIdent).join(', ') : '*';
          const rows = await read(async (q) =>
            sortRows((await q.query(`SELECT ${cols} FROM ${quoteIdent(table)}`)).rows),
          );
          expect(rows).toEqual(sortRows(expected));
        },
        async thenFails(message) {
          for (const r of await run()) {
            expect({ mode: r.mode, failed: r.error !== undefined }).toEqual({ mode: r.mode, failed: true });
            expect(errorText(r.error)).toMatch(message);
          }
        },
      };
    },
  };
}

/** Rows in a canonical order, so that tables compare as sets. */
function sortRows<R extends Record<string, unknown>>(rows: readonly R[]): R[] {
  return [...rows].sort((a, b) => canonical(a).localeCompare(canonical(b)));
}

/** JSON with object keys sorted at every depth (jsonb does not keep the order a test writes keys in). */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}
