import type { Event } from '../domain/shared/event';
import type { AnyEvent, RecordedEvent } from '../domain/shared/recorded-event';

/**
 * A read model: the tables it owns, the SQL that creates them, and how it
 * applies a batch of events. Table names are unqualified: the engine sets
 * `search_path` so a rebuild writes into fresh tables of the same names in
 * a shadow schema while the live ones keep answering queries.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
  /**
   * Runs `COPY ... FROM STDIN` with these lines of COPY's text format (each ending in a newline);
   * resolves to the rows copied. Offered by the runtime's transactions (the projector), not by
   * every Queryable: a projection that uses it keeps a fallback.
   */
  copyRows?(sql: string, lines: Iterable<string>): Promise<number>;
}

/**
 * `E` is the union of events the read model reads (from the contexts' unions in
 * domain/). The runtime holds projections of different unions side by side as
 * `Projection` and hands each only the events of its `eventTypes` (the store
 * filters by type), which is what makes `apply`'s narrower parameter true.
 */
export interface Projection<E extends AnyEvent = Event> {
  readonly name: string;
  /** Bump when the tables or the handling change: the platform then rebuilds it. */
  readonly version: number;
  /** Tables this projection owns (unqualified). */
  readonly tables: readonly string[];
  /** DDL that creates them (unqualified names, no schema). */
  readonly setup: readonly string[];
  /** Event types it reads; others are skipped without being fetched. */
  readonly eventTypes: readonly E['type'][];
  /**
   * SQL without parameters to run before `apply` in its transaction, for these events (e.g. creating
   * the partitions they need); undefined: nothing. The runtime sends it with the query that opens the
   * transaction, so it costs no round trip of its own. `apply` may rely on it having run.
   */
  prepare?(events: readonly RecordedEvent<E>[]): string | undefined;
  /** Applies events in order, inside the transaction that also moves the checkpoint. Must be deterministic. */
  apply(events: readonly RecordedEvent<E>[], db: Queryable): Promise<void>;
}

export interface SqlStatement {
  readonly text: string;
  readonly values?: readonly unknown[];
}

/**
 * One handler per event type of the union, each receiving that event narrowed
 * (`e.data` is its data). A handler returns the SQL for its event rather than
 * running it: it stays a pure function of the event (a rebuild gives the same
 * rows), and the runtime runs the statements on the transaction that moves the
 * checkpoint. A type the read model ignores on purpose maps to `() => []`.
 */
export type EventHandlers<E extends AnyEvent, R = SqlStatement | readonly SqlStatement[]> = {
  // `& { type: T }` narrows the union to its member of type T (the others' literal types conflict,
  // so their intersections are never); for an untyped projection (E's type is just `string`) it
  // keeps the plain event, where `Extract<E, { type: T }>` would be never.
  readonly [T in E['type']]: (
    event: string extends E['type'] ? RecordedEvent<E> : RecordedEvent<E> & { readonly type: T },
  ) => R;
};

/**
 * A run-time check that is also the narrowing: `type` has a handler, so it is one of the union's
 * types. (Handlers that return something other than SQL, folded by their projection's own `apply`,
 * are `EventHandlers<E, R>`.)
 */
function handles<E extends AnyEvent, R>(handlers: EventHandlers<E, R>, type: string): type is E['type'] {
  return Object.hasOwn(handlers, type);
}

/** What the handler of `e`'s type returns for it; undefined when there is none. */
export function handle<E extends AnyEvent, R>(handlers: EventHandlers<E, R>, e: RecordedEvent<E>): R | undefined {
  const type: string = e.type;
  return handles(handlers, type) ? handlers[type](e) : undefined;
}

/** The event types a projection reads: the ones it has handlers for. */
export function handledTypes<E extends AnyEvent, R>(handlers: EventHandlers<E, R>): E['type'][] {
  // Every own key passes; the filter is what gives the keys their type (Object.keys says string[]).
  return Object.keys(handlers).filter((t) => handles(handlers, t));
}

/**
 * A one-row INSERT that a batch runs once for all its rows: statements whose text is `text` are not
 * run where they come; their values are gathered and, after the batch's other statements, inserted
 * in one statement, `many` (an `INSERT … SELECT … FROM unnest($1::type[], …)` taking one array per
 * value, in the values' order). Only for a table no other statement of the projection reads or
 * writes: then where in the batch its rows go in changes nothing (the batch commits as one).
 */
export interface GatheredInsert {
  readonly text: string;
  readonly many: string;
}

/** The common case: a few SQL statements per event type. */
export function sqlProjection<E extends AnyEvent = Event>(
  def: Omit<Projection<E>, 'eventTypes' | 'apply'> & {
    handlers: EventHandlers<E>;
    /** One-row INSERTs run once per batch (see GatheredInsert). */
    gather?: readonly GatheredInsert[];
  },
): Projection<E> {
  const { handlers, gather = [], ...rest } = def;
  return {
    ...rest,
    eventTypes: handledTypes(handlers),
    async apply(events, db) {
      const gathered = new Map<string, (readonly unknown[])[]>(gather.map((g) => [g.text, []]));
      for (const e of events) {
        const out = handle(handlers, e);
        if (out === undefined) continue;
        const statements: readonly SqlStatement[] = Array.isArray(out) ? out : [out as SqlStatement];
        for (const s of statements) {
          const rows = gathered.get(s.text);
          if (rows) rows.push(s.values ?? []);
          else await db.query(s.text, s.values ? [...s.values] : []);
        }
      }
      for (const g of gather) {
        const rows = gathered.get(g.text)!;
        if (rows.length === 1) await db.query(g.text, [...rows[0]!]);
        else if (rows.length > 1)
          await db.query(
            g.many,
            rows[0]!.map((_, i) => rows.map((r) => r[i])),
          );
      }
    },
  };
}
