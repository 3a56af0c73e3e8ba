import type { RecordedEvent } from '../domain/shared/recorded-event';

/**
 * A read model: the tables it owns, the SQL that creates them, and how it
 * applies a batch of events. Table names are unqualified: the engine sets
 * `search_path` so a rebuild writes into fresh tables of the same names in
 * a shadow schema while the live ones keep answering queries.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
}

export interface Projection {
  readonly name: string;
  /** Bump when the tables or the handling change: the platform then rebuilds it. */
  readonly version: number;
  /** Tables this projection owns (unqualified). */
  readonly tables: readonly string[];
  /** DDL that creates them (unqualified names, no schema). */
  readonly setup: readonly string[];
  /** Event types it reads; others are skipped without being fetched. */
  readonly eventTypes: readonly string[];
  /** Applies events in order, inside the transaction that also moves the checkpoint. Must be deterministic. */
  apply(events: readonly RecordedEvent[], db: Queryable): Promise<void>;
}

export interface SqlStatement {
  readonly text: string;
  readonly values?: readonly unknown[];
}

type Handlers = Record<string, (event: RecordedEvent) => SqlStatement | readonly SqlStatement[]>;

/** The common case: a few SQL statements per event type. */
export function sqlProjection(def: Omit<Projection, 'eventTypes' | 'apply'> & { handlers: Handlers }): Projection {
  const { handlers, ...rest } = def;
  return {
    ...rest,
    eventTypes: Object.keys(handlers),
    async apply(events, db) {
      for (const e of events) {
        const handler = handlers[e.type];
        if (!handler) continue;
        const out = handler(e);
        const statements: readonly SqlStatement[] = Array.isArray(out) ? out : [out as SqlStatement];
        for (const s of statements) await db.query(s.text, s.values ? [...s.values] : []);
      }
    },
  };
}
