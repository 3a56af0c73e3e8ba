import type { PoolClient } from 'pg';
import { DomainError } from '../../../domain/shared/errors';
import type { Event } from '../../../domain/shared/event';
import type { AnyEvent, EventMetadata, RecordedEvent } from '../../../domain/shared/recorded-event';
import { PlatformErrorCode } from '../platform-errors';

/**
 * The event store port. Two adapters implement it (PostgreSQL, the default,
 * and EventStoreDB/KurrentDB); both must pass test/integration/event-store.contract.ts.
 */

/** What the writer expects the stream's current revision to be. Revisions start at 0. */
export type ExpectedRevision = 'no_stream' | 'any' | 'stream_exists' | bigint | number;

export type { AnyEvent, EventMetadata, RecordedEnvelope, RecordedEvent } from '../../../domain/shared/recorded-event';

export interface EventToAppend {
  /** Unique; derive it from an idempotency key to make the append idempotent. */
  readonly id: string;
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly metadata: EventMetadata;
  /** Version of `data`'s shape; old versions are upcast on read. Default 1. */
  readonly schemaVersion?: number;
}

export interface AppendResult {
  /** Revision of the stream's last event after the append. */
  readonly nextRevision: number;
  /** Global position of the last event appended. */
  readonly position: number;
  /** True when every event was already stored: nothing new was written. */
  readonly duplicate: boolean;
}

export interface Subscription {
  /** Stops delivery; resolves when the handler is no longer running. */
  stop(): Promise<void>;
  /** Resolves when the subscription has failed (handler threw); never resolves on a clean stop. */
  readonly failed: Promise<unknown>;
}

export interface SubscribeOptions<E extends AnyEvent = Event> {
  /** Deliver events after this position (exclusive). 0 = from the beginning. */
  readonly fromPosition: number;
  /** Max events per handler call. */
  readonly batchSize?: number;
  /** Only these event types (the position still advances past others). */
  readonly eventTypes?: readonly E['type'][];
}

/** One read of the global order, as the processor runtime consumes it. */
export interface ReadBatch {
  readonly events: RecordedEvent[];
  /** Cursor after this batch: every event up to here was delivered or filtered out. */
  readonly position: number;
  /** True when committed events exist beyond what could be read yet (PostgreSQL: an older transaction is in flight). */
  readonly blocked: boolean;
}

export interface ReadBatchOptions {
  /**
   * PostgreSQL only: read in this transaction (its snapshot, its locks). Other
   * adapters ignore it: their store is not in the read model's database, so no
   * transaction spans both (a rebuild's swap holds the checkpoint row instead).
   */
  readonly pgClient?: PoolClient;
}

/** One stream's part of an appendMulti. */
export interface StreamWrite {
  readonly streamId: string;
  readonly events: readonly EventToAppend[];
  readonly expected: ExpectedRevision;
}

export interface SkipKnownResult {
  readonly streamId: string;
  /** Events stored by this call (the others were stored before). */
  readonly appended: number;
  readonly newIds: readonly string[];
  readonly nextRevision: number;
  /** Last position written; for an all-duplicate write, the newest position of the stored ids. */
  readonly position: number;
}

/** What a reader at some position has not read yet, of some event types. */
export interface Backlog {
  /** When the oldest unread event was recorded (undefined: nothing unread). */
  readonly oldestRecordedAt: Date | undefined;
  /** How many are unread, counted up to the limit asked for (null when not counted). */
  readonly events: number | null;
}

/**
 * Readers name the union of events they expect (`readStream<UserEvent>(...)`)
 * and get `RecordedEvent<UserEvent>`: type and data narrowed together. That is
 * a claim about stored data, which the adapter makes once for every reader
 * (the only cast between the store and a handler); with no union named a
 * reader gets plain records, as before.
 */
export interface EventStore {
  append(streamId: string, events: readonly EventToAppend[], expected: ExpectedRevision): Promise<AppendResult>;
  /** Events of one stream from `fromRevision` (inclusive), in revision order. */
  readStream<E extends AnyEvent = Event>(
    streamId: string,
    fromRevision?: number,
    limit?: number,
  ): Promise<RecordedEvent<E>[]>;
  /** Up to `limit` events after `fromPosition` (exclusive), in global order; never skips a late commit. */
  readAll<E extends AnyEvent = Event>(
    fromPosition: number,
    limit: number,
    eventTypes?: readonly E['type'][],
  ): Promise<RecordedEvent<E>[]>;
  /** Catches up from `fromPosition`, then follows new events. The handler is awaited before the next batch. */
  subscribe<E extends AnyEvent = Event>(
    options: SubscribeOptions<E>,
    handler: (events: RecordedEvent<E>[]) => Promise<void>,
  ): Subscription;
  /** The position of the newest event any reader may see now (0 when empty). */
  headPosition(): Promise<number>;
  /** The original result of an append whose first event had this id, if it was stored. */
  findAppend(streamId: string, firstEventId: string): Promise<AppendResult | undefined>;
  /**
   * Which adapter this is. Only for the few readers that have a faster path
   * on one store (a SQL query over `events`) and a port-only path on others.
   */
  readonly kind: 'postgresql' | 'kurrentdb';
  /**
   * Appends to several streams at once, all or nothing, each write with its
   * own expected revision (a uniqueness reservation with 'no_stream' next to
   * the entity's first events). When every write is a re-sent duplicate,
   * returns their original results; when only some are, IdempotencyConflictError.
   */
  appendMulti(writes: readonly StreamWrite[]): Promise<AppendResult[]>;
  /**
   * Appends to several streams (expected revision "any"), storing only events
   * whose ids are not stored yet: a resend derived from the same key is stored
   * once. Answers per stream which ids were new. "Stored" means anywhere in the
   * store on PostgreSQL (one unique index), among the stream's newest
   * SKIP_KNOWN_WINDOW events on KurrentDB (ids derived from the stream, as
   * telemetry's are, meet both).
   */
  appendSkippingKnown(
    writes: readonly { streamId: string; events: readonly EventToAppend[] }[],
  ): Promise<SkipKnownResult[]>;
  /**
   * One read of the global order after `fromPosition` (exclusive), never
   * skipping: with a type filter the cursor still advances past events of other
   * types, so a checkpoint moves.
   */
  readBatch(
    fromPosition: number,
    limit: number,
    eventTypes?: readonly string[],
    options?: ReadBatchOptions,
  ): Promise<ReadBatch>;
  /**
   * Like subscribe, but the handler also sees batches whose events were all
   * filtered out, so it can move a checkpoint (batch.position) past them.
   */
  subscribeBatches(options: SubscribeOptions, handler: (batch: ReadBatch) => Promise<void>): Subscription;
  /**
   * Events of these types after `fromPosition` (exclusive): when the oldest was
   * recorded and, when `countLimit` is given, how many (counting stops there).
   */
  backlog(fromPosition: number, eventTypes: readonly string[], countLimit?: number): Promise<Backlog>;
  /** How many events of these types are stored (a rebuild's progress total). */
  countEvents(eventTypes: readonly string[]): Promise<number>;
  close(): Promise<void>;
}

/** The stream's revision did not match what the writer expected. */
export class ConcurrencyError extends DomainError {
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    readonly actual: number | 'no_stream',
  ) {
    super(
      'conflict',
      PlatformErrorCode.CONCURRENCY_CONFLICT,
      `stream ${streamId}: expected revision ${String(expected)}, found ${String(actual)}`,
      [],
      { streamId, expected: String(expected), actual: String(actual) },
    );
    this.name = 'ConcurrencyError';
  }
}

/** Some but not all of an append's event ids were stored before: the idempotency key was reused for a different command. */
export class IdempotencyConflictError extends DomainError {
  constructor(readonly streamId: string) {
    super(
      'conflict',
      PlatformErrorCode.IDEMPOTENCY_KEY_REUSED,
      `stream ${streamId}: the idempotency key was already used for a different command`,
    );
    this.name = 'IdempotencyConflictError';
  }
}

/** Upcasting: turns data stored under an old schema version into the current shape, on read. */
export interface Upcaster {
  readonly type: string;
  readonly fromVersion: number;
  upcast(data: Record<string, unknown>): Record<string, unknown>;
}

export class UpcasterRegistry {
  private readonly byKey = new Map<string, Upcaster>();
  register(...upcasters: Upcaster[]): this {
    for (const u of upcasters) this.byKey.set(`${u.type}@${u.fromVersion}`, u);
    return this;
  }
  /** Applies upcasters one version at a time until none matches. */
  apply(
    type: string,
    version: number,
    data: Record<string, unknown>,
  ): { data: Record<string, unknown>; version: number } {
    let v = version;
    let d = data;
    for (let u = this.byKey.get(`${type}@${v}`); u; u = this.byKey.get(`${type}@${v}`)) {
      d = u.upcast(d);
      v += 1;
    }
    return { data: d, version: v };
  }
}
