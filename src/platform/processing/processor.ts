import type { PoolClient } from 'pg';
import type { Queryable } from '../../../projections/projection';
import { copyLines } from './copy';
import type { RecordedEvent } from '../../../domain/shared/recorded-event';
import type { Projection } from '../../../projections/projection';
import { ADVISORY_LOCKS } from '../locks';

/**
 * A processor: something that reads the event store in order from a
 * checkpoint and does its work for each batch. Projections, the
 * order-fulfilment saga and any future reactor are processors; the runtime
 * (processor-runner.ts) gives each the same lock, standby and take-over,
 * checkpoint, backoff, park/retry/skip, metrics and clean stop.
 */
export type ProcessorKind = 'projection' | 'saga' | 'reactor';

export interface HandlerContext {
  /** Aborted when the runner stops: a long batch may end early by throwing (its checkpoint then stays put). */
  readonly signal: AbortSignal;
  /**
   * Pipelined processors: an event the handler itself just stored (committed),
   * to be handled now as the next task of its key rather than when the
   * subscription delivers it, a read horizon later. The subscription still
   * delivers it and the checkpoint waits for that delivery, so the handler must
   * skip the repeat (as it skips any resend).
   */
  readonly followUp?: (event: RecordedEvent) => void;
}

export interface TransactionContext extends HandlerContext {
  /** The transaction that also moves the checkpoint: what is written on it is committed with it, or not at all. */
  readonly tx: PoolClient;
  /** The processor's `prepare` for these events already ran on `tx` (the runner sends it with its first query). */
  readonly prepared?: boolean;
}

interface ProcessorBase {
  /** Unique across kinds: it names the checkpoint row and the lock. */
  readonly name: string;
  readonly kind: ProcessorKind;
  /** The event types it handles; the checkpoint still moves past the others, which are never fetched. */
  readonly eventTypes: readonly string[];
  /**
   * What a failure that is not transient (not a lost connection, a deadlock...) leads to:
   * - `park`: the batch is handled again event by event, each up to the runner's maxAttempts;
   *   the event that still fails parks the processor (in the operator log) until an operator
   *   retries or skips it, or a rebuild replaces it. For handlers whose failures are bugs or bad data.
   * - `retry`: the batch is retried from the checkpoint with backoff until it goes through.
   *   For handlers that must never leave an event behind and whose failures are expected to pass
   *   (the saga: a payment provider that does not answer, a conflict on a busy stream).
   */
  readonly onFailure: 'park' | 'retry';
}

/**
 * Exactly once: `handle` writes on the runtime's transaction, which also
 * moves the checkpoint. For work that is all SQL in this database (read
 * models, an outbox table). Keep batches short: the transaction holds back
 * the horizon below which every reader of the store reads.
 */
export interface TransactionalProcessor extends ProcessorBase {
  readonly checkpoint: 'in-transaction';
  /**
   * SQL without parameters that `handle` needs run first in its transaction (a projection's
   * `prepare`). The runner sends it with the query that opens the transaction, saving a round
   * trip, and says so (`prepared`); any other caller leaves it to `handle`.
   */
  prepare?(events: readonly RecordedEvent[]): string | undefined;
  handle(events: readonly RecordedEvent[], ctx: TransactionContext): Promise<void>;
}

/**
 * At least once: `handle` runs with no transaction of the runtime's open, and
 * the checkpoint moves after it returns, so after a crash in between the batch
 * is handled again. For work whose effects live elsewhere (commands appended
 * through the store, calls to a provider): `handle` must make a repeat
 * harmless (ids derived from the event, a record of what is done). Holding a
 * transaction open across such work instead would hold back every reader's
 * horizon for as long as a provider takes to answer.
 */
export interface IdempotentProcessor extends ProcessorBase {
  readonly checkpoint: 'after-handling';
  handle(events: readonly RecordedEvent[], ctx: HandlerContext): Promise<void>;
}

/**
 * At least once, one event at a time, by key: events of one key (an order) are
 * handled in order, events of different keys at once (up to the runner's
 * concurrency), and the checkpoint is the lowest position not finished yet, so
 * a slow key never holds the others back and a crash resends exactly what was
 * not finished. An event that keeps failing (`onFailure: 'park'`, maxAttempts)
 * parks its key alone (parked-keys.ts): its later events are set aside with it
 * until an operator retries or skips, while every other key flows.
 */
export interface PipelinedProcessor extends ProcessorBase {
  readonly checkpoint: 'pipelined';
  /** The key whose events run in order; undefined: the event needs no handling. */
  keyOf(event: RecordedEvent): string | undefined;
  /** Called with one event at a time; must make a repeat harmless, like an IdempotentProcessor. */
  handle(events: readonly RecordedEvent[], ctx: HandlerContext): Promise<void>;
  /**
   * Called when this runner starts following (after it took the lock), awaited before the first read:
   * drop what a cache assumed before.
   */
  begin?(): void | Promise<void>;
}

export type Processor = TransactionalProcessor | IdempotentProcessor | PipelinedProcessor;

/**
 * The lock class of each kind (src/platform/locks.ts). Kinds keep the classes
 * they had before the runtime was shared, so an instance still running the
 * previous version during a rolling upgrade contends for the same locks.
 */
export const LOCK_CLASS: Readonly<Record<ProcessorKind, number>> = {
  projection: ADVISORY_LOCKS.projectionRunner,
  saga: ADVISORY_LOCKS.sagaRunner,
  reactor: ADVISORY_LOCKS.reactorRunner,
};

/** Who the operator log says parked a processor; projections keep the name their log entries have always had. */
export const PARKED_BY: Readonly<Record<ProcessorKind, string>> = {
  projection: 'system:projection-engine',
  saga: 'system:processor-runtime',
  reactor: 'system:processor-runtime',
};

/** A read model as a processor: its rows and its checkpoint in one transaction. */
export function projector(p: Projection): TransactionalProcessor {
  return {
    name: p.name,
    kind: 'projection',
    eventTypes: p.eventTypes,
    onFailure: 'park',
    checkpoint: 'in-transaction',
    ...(p.prepare ? { prepare: (events: readonly RecordedEvent[]) => p.prepare!(events) } : {}),
    async handle(events, { tx, prepared }) {
      const prepare = prepared ? undefined : p.prepare?.(events);
      if (prepare) await tx.query(prepare);
      await p.apply(events, withCopy(tx));
    },
  };
}

/** The transaction as a projection sees it: queries, and COPY FROM STDIN for set-based loads. */
function withCopy(tx: PoolClient): Queryable {
  return {
    query: (text, values) => tx.query(text, values),
    copyRows: (sql, lines) => copyLines(tx, sql, lines),
  };
}
