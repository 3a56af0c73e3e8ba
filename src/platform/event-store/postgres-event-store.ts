import { randomUUID } from 'node:crypto';
import { Client, type Pool, type PoolClient } from 'pg';
import {
  ConcurrencyError,
  IdempotencyConflictError,
  UpcasterRegistry,
  type AppendResult,
  type EventStore,
  type EventToAppend,
  type ExpectedRevision,
  type EventMetadata,
  type AnyEvent,
  type Backlog,
  type ReadBatch,
  type ReadBatchOptions,
  type RecordedEvent,
  type SkipKnownResult,
  type StreamWrite,
  type SubscribeOptions,
  type Subscription,
} from './event-store';
import { PollingSubscriptions, asUnion, eventsOnly } from './polling-subscriptions';
import {
  appendSkipKnownByCopy,
  appendSkipKnownGroup,
  skipKnownResult,
  type SkipKnownRow,
  GroupCommitter,
  groupParams,
  writeGroup,
  writeGroupByCopy,
  type GroupAnswer,
  type GroupWrite,
} from './postgres-group-commit';
import type { Event } from '../../../domain/shared/event';

/**
 * The PostgreSQL adapter (the default event store). See
 * migrations/0001_create_events.sql for why positions come from transaction ids,
 * and 0024_es_position_offset.sql for how they survive a logical restore.
 */

const CHANNEL = 'es_events';
const MAX_APPEND_ATTEMPTS = 10;
const NOTIFY_INTERVAL_MS = 5;
/** A NOTIFY payload names the types appended only while they fit in this many characters (PostgreSQL's limit is 8,000 bytes). */
const NOTIFY_TYPES_MAX_CHARS = 4000;

/** A row of `events` as `EVENT_COLUMNS` selects it (also read by the console's explorer, event-explorer.ts). */
export interface EventRow {
  position: string;
  event_id: string;
  stream_id: string;
  stream_revision: string;
  type: string;
  data: Record<string, unknown>;
  metadata: EventMetadata;
  schema_version: number;
  recorded_at: Date;
}

export const EVENT_COLUMNS =
  'position, event_id, stream_id, stream_revision, type, data, metadata, schema_version, recorded_at';
// Everything below the oldest in-flight transaction's first possible position is final
// (es_horizon() adds the store's transaction-id offset; it runs in the calling statement's snapshot).
const HORIZON = 'es_horizon()';

export interface PostgresEventStoreOptions {
  /** Connection string for the dedicated LISTEN connection (defaults to the pool's). */
  readonly listenConnectionString?: string;
  readonly upcasters?: UpcasterRegistry;
  /** Called after every append that stored events (metrics). */
  readonly onAppended?: (count: number) => void;
  readonly log?: (msg: string, err?: unknown) => void;
  /** Group commit (postgres-group-commit.ts): groups written at once. Default 2. */
  readonly groupMaxInFlight?: number;
  /** Group commit: events per group (a larger one waits for the next); default 10,000. */
  readonly groupMaxEvents?: number;
}

/** Limits of one group: a transaction's block holds 65,536 positions; a group stays well below. */
const GROUP_MAX_EVENTS = 10_000;
const GROUP_MAX_APPENDS = 500;
const GROUP_RETRY_MS = 60_000;
/** From this many events a group is written with COPY (es_append_group_plan), below with es_append_group. */
const GROUP_COPY_MIN_EVENTS = 200;

/** es_append_group cannot be used (see writeGroup). */
class GroupCommitUnavailable extends Error {}

/** What es_align_positions() did: the transaction-id offset before and after. */
export interface PositionAlignment {
  readonly previousOffset: number;
  readonly offset: number;
  /** True when the store came from another cluster whose transaction ids were ahead of this one's. */
  readonly raised: boolean;
}

/**
 * Makes the store's positions match the cluster it is in (after a pg_dump /
 * pg_restore into another cluster, new positions would sort below the stored
 * ones). Waits for appends in flight; a no-op for a store that stayed in its
 * cluster. Run at start (migrate) and by an append that finds the store misaligned.
 */
export async function alignPositions(pool: Pool | PoolClient): Promise<PositionAlignment> {
  const res = await pool.query<{ previous_offset: string; xid_offset: string; raised: boolean }>(
    'SELECT previous_offset, xid_offset, raised FROM es_align_positions()',
  );
  const r = res.rows[0];
  if (!r) throw new Error('es_align_positions returned no row');
  return { previousOffset: Number(r.previous_offset), offset: Number(r.xid_offset), raised: r.raised };
}

export type { ReadBatch, SkipKnownResult } from './event-store';

export class PostgresEventStore implements EventStore {
  readonly kind = 'postgresql';
  private readonly upcasters: UpcasterRegistry;
  private readonly polling: PollingSubscriptions;
  private listener: Client | undefined;
  private listenerStarting: Promise<void> | undefined;
  private notifyTimer: NodeJS.Timeout | undefined;
  /** Types appended since the last NOTIFY. */
  private notifyTypes = new Set<string>();
  /** Names this store's NOTIFYs, so its own listener ignores them: its appends woke its subscribers already. */
  private readonly instanceId = randomUUID();
  /** NOTIFYs this store's listener received: its own (ignored) and other stores' (for tests and diagnostics). */
  readonly notifications = { own: 0, others: 0 };
  private closed = false;
  private readonly groups: GroupCommitter;
  private groupRetryAt = 0;
  private skipKnownGroupRetryAt = 0;

  constructor(
    private readonly pool: Pool,
    private readonly options: PostgresEventStoreOptions = {},
  ) {
    this.upcasters = options.upcasters ?? new UpcasterRegistry();
    this.polling = new PollingSubscriptions(options.log);
    this.groups = new GroupCommitter({
      maxInFlight: options.groupMaxInFlight ?? 2,
      maxEvents: options.groupMaxEvents ?? GROUP_MAX_EVENTS,
      maxAppends: GROUP_MAX_APPENDS,
      // Two or more COPY groups at once when a free slot would otherwise idle (each >= GROUP_COPY_MIN_EVENTS).
      splitMinEvents: 2 * GROUP_COPY_MIN_EVENTS,
      write: (writes) => this.writeGroup(writes),
      settle: (w, answer) => answerToResult(w.streamId, w.expected, answer),
      alone: async (w) => {
        const result = await this.retrying((again) =>
          this.appendOn(this.pool, w.streamId, w.events, w.expected, again),
        );
        if (!result.duplicate) this.appended(w.events.length, typesOf(w.events));
        return result;
      },
      stored: (count, types) => this.appended(count, types),
    });
  }

  /** Goes out with the appends that arrive meanwhile, in one transaction (group commit, see postgres-group-commit.ts). */
  async append(streamId: string, events: readonly EventToAppend[], expected: ExpectedRevision): Promise<AppendResult> {
    if (events.length === 0) throw new Error('append needs at least one event');
    expectedToSql(expected); // an invalid expected revision fails this call alone, before it joins a group
    return this.groups.append(streamId, events, expected);
  }

  /**
   * One group through es_append_group, retried as one append is. On a database not
   * migrated to 0027 yet (a rolling upgrade), appends are written one by one and
   * the group function is tried again after GROUP_RETRY_MS.
   */
  private async writeGroup(writes: readonly GroupWrite[]): Promise<GroupAnswer[]> {
    if (Date.now() < this.groupRetryAt) throw new GroupCommitUnavailable();
    try {
      const events = writes.reduce((n, w) => n + w.events.length, 0);
      return await this.retrying((again) =>
        events >= GROUP_COPY_MIN_EVENTS
          ? writeGroupByCopy(this.pool, writes, expectedToSql, again)
          : writeGroup(this.pool, groupParams(writes, expectedToSql, again)),
      );
    } catch (e) {
      if (!isUndefinedFunction(e)) throw e;
      this.groupRetryAt = Date.now() + GROUP_RETRY_MS;
      this.options.log?.('event store: es_append_group is missing (migration 0027 not applied), appending one by one');
      throw new GroupCommitUnavailable();
    }
  }

  /** One transaction: all or nothing (see the port). */
  async appendMulti(writes: readonly StreamWrite[]): Promise<AppendResult[]> {
    const results = await this.retrying(async (again) => {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const out: AppendResult[] = [];
        for (const w of writes) out.push(await this.appendOn(client, w.streamId, w.events, w.expected, again));
        const dupes = out.filter((r) => r.duplicate).length;
        if (dupes > 0 && dupes < out.length)
          throw new IdempotencyConflictError(writes[out.findIndex((r) => r.duplicate)]!.streamId);
        await client.query(dupes ? 'ROLLBACK' : 'COMMIT');
        return out;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        client.release();
      }
    });
    if (!results.some((r) => r.duplicate))
      this.appended(
        writes.reduce((n, w) => n + w.events.length, 0),
        typesOf(writes.flatMap((w) => w.events)),
      );
    return results;
  }

  /**
   * One transaction (see the port): es_append_skip_known_group (migrations/0029), arrays in one
   * statement; from GROUP_COPY_MIN_EVENTS events the function only decides and the fresh rows go in
   * with one COPY. On a database not migrated to 0029 yet, es_append_skip_known (0005) as before.
   */
  async appendSkippingKnown(
    writes: readonly { streamId: string; events: readonly EventToAppend[] }[],
  ): Promise<SkipKnownResult[]> {
    if (writes.length === 0) return [];
    let out: SkipKnownResult[];
    if (Date.now() < this.skipKnownGroupRetryAt) {
      out = await this.appendSkippingKnownJson(writes);
    } else {
      try {
        const events = writes.reduce((n, w) => n + w.events.length, 0);
        out = await this.retrying(() =>
          events >= GROUP_COPY_MIN_EVENTS
            ? appendSkipKnownByCopy(this.pool, writes)
            : appendSkipKnownGroup(this.pool, writes),
        );
      } catch (e) {
        if (!isUndefinedFunction(e)) throw e;
        this.skipKnownGroupRetryAt = Date.now() + GROUP_RETRY_MS;
        this.options.log?.(
          'event store: es_append_skip_known_group is missing (migration 0029 not applied), using es_append_skip_known',
        );
        out = await this.appendSkippingKnownJson(writes);
      }
    }
    const n = out.reduce((a, r) => a + r.appended, 0);
    if (n > 0) this.appended(n, typesOf(writes.flatMap((w) => w.events)));
    return out;
  }

  /** es_append_skip_known (migrations/0005, 0024): the whole call as one jsonb document. */
  private async appendSkippingKnownJson(
    writes: readonly { streamId: string; events: readonly EventToAppend[] }[],
  ): Promise<SkipKnownResult[]> {
    const payload = JSON.stringify(
      writes.map((w) => ({
        stream: w.streamId,
        events: w.events.map(storedJson),
      })),
    );
    const res = await this.retrying(() =>
      this.pool.query<SkipKnownRow>(
        'SELECT stream_id, appended, new_ids::text[] AS new_ids, revision, last_position FROM es_append_skip_known($1::jsonb)',
        [payload],
      ),
    );
    return res.rows.map(skipKnownResult);
  }

  /** `types`: of the events appended (local subscribers that read none of them are woken later). */
  private appended(count: number, types: readonly string[]): void {
    this.announce(types);
    this.options.onAppended?.(count);
  }

  /**
   * A concurrent append won the race for a revision (or these ids): ask again,
   * and es_append answers conflict, duplicate or appends after it. A
   * serialization failure (raised when the transaction's id is older than the
   * stream's last append) is retried the same way, in a new transaction.
   */
  private async retrying<T>(attempt: (again: boolean) => Promise<T>): Promise<T> {
    let aligned = false;
    for (let n = 1; ; n++) {
      try {
        return await attempt(n > 1);
      } catch (e) {
        if ((isUniqueViolation(e) || isSerializationFailure(e) || isDeadlock(e)) && n < MAX_APPEND_ATTEMPTS) continue;
        // The database was restored (or DATABASE_URL switched) under a running process: the
        // append's transaction has ended, so the repair can take its exclusive lock now.
        if (isMisaligned(e) && !aligned) {
          aligned = true;
          const a = await alignPositions(this.pool);
          this.options.log?.(
            `event store: positions aligned with this cluster (transaction-id offset ${a.previousOffset} -> ${a.offset})`,
          );
          continue;
        }
        throw e;
      }
    }
  }

  /**
   * One es_append call on a pool or a transaction's client; interprets its answer.
   * `checkIds`: look for already-stored event ids before inserting (a retry after a unique violation).
   */
  private async appendOn(
    q: Pool | PoolClient,
    streamId: string,
    events: readonly EventToAppend[],
    expected: ExpectedRevision,
    checkIds: boolean,
  ): Promise<AppendResult> {
    if (events.length === 0) throw new Error('append needs at least one event');
    const [kind, revision] = expectedToSql(expected);
    const payload = JSON.stringify(events.map(storedJson));
    const res = await q.query<{ status: string; revision: string; last_position: string | null }>(
      'SELECT status, revision, last_position FROM es_append($1, $2, $3, $4::jsonb, $5)',
      [streamId, kind, revision, payload, checkIds],
    );
    const row = res.rows[0];
    if (!row) throw new Error('es_append returned no row');
    return answerToResult(streamId, expected, {
      status: row.status as GroupAnswer['status'],
      revision: Number(row.revision),
      position: row.last_position === null ? null : Number(row.last_position),
    });
  }

  async readStream<E extends AnyEvent = Event>(
    streamId: string,
    fromRevision = 0,
    limit = 100_000,
  ): Promise<RecordedEvent<E>[]> {
    const res = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_revision >= $2 ORDER BY stream_revision LIMIT $3`,
      [streamId, fromRevision, limit],
    );
    return asUnion<E>(res.rows.map((r) => this.toRecorded(r)));
  }

  async readAll<E extends AnyEvent = Event>(
    fromPosition: number,
    limit: number,
    eventTypes?: readonly E['type'][],
  ): Promise<RecordedEvent<E>[]> {
    return asUnion<E>((await this.readBatch(fromPosition, limit, eventTypes)).events);
  }

  /**
   * One gap-safe read of the global order. Only positions below the horizon
   * are read; with a type filter the cursor still advances past events of
   * other types (to the newest final event scanned), never past the horizon.
   */
  async readBatch(
    fromPosition: number,
    limit: number,
    eventTypes?: readonly string[],
    options: ReadBatchOptions = {},
  ): Promise<ReadBatch> {
    const q = options.pgClient ?? this.pool;
    const filtered = eventTypes !== undefined;
    // The rows and, against the same horizon (below it nothing changes any more), the newest
    // final event of any type, for a short filtered read to skip past, and whether committed
    // events wait above the horizon (blocked), in one statement and one snapshot. An append that
    // commits after it wakes the subscriber (local append or NOTIFY), so no second look is needed.
    // (ORDER BY ... LIMIT 1, not EXISTS: with the horizon unknown at plan time, EXISTS is planned as a
    // sequential scan that stops at the first match, and finds none: the whole table per read.)
    const res = await q.query<EventRow & { horizon: string; max_final: string | null; beyond: boolean }>(
      `WITH h AS MATERIALIZED (SELECT ${HORIZON} AS horizon),
       x AS MATERIALIZED (SELECT h.horizon,
              ${filtered ? '(SELECT max(position) FROM events WHERE position > $1 AND position < h.horizon)' : 'NULL::bigint'} AS max_final,
              (SELECT position FROM events WHERE position >= h.horizon ORDER BY position LIMIT 1) IS NOT NULL AS beyond FROM h)
       SELECT e.*, x.horizon, x.max_final, x.beyond FROM x LEFT JOIN LATERAL (
         SELECT ${EVENT_COLUMNS} FROM events
          WHERE position > $1 AND position < x.horizon ${filtered ? 'AND type = ANY($3)' : ''}
          ORDER BY position LIMIT $2) e ON true`,
      filtered ? [fromPosition, limit, eventTypes] : [fromPosition, limit],
    );
    const first = res.rows[0];
    const rows = res.rows.filter((r) => r.position !== null);
    const events = rows.map((r) => this.toRecorded(r));
    const last = events.at(-1);
    let position = last ? last.position : fromPosition;
    if (rows.length < limit) {
      // Nothing more of these types below the horizon: skip to the newest final event of any type.
      if (filtered && first?.max_final) position = Math.max(position, Number(first.max_final));
      return { events, position, blocked: first?.beyond === true };
    }
    return { events, position, blocked: false };
  }

  async headPosition(): Promise<number> {
    const res = await this.pool.query<{ max: string | null }>(
      `SELECT max(position) AS max FROM events WHERE position < ${HORIZON}`,
    );
    return Number(res.rows[0]?.max ?? 0);
  }

  async backlog(fromPosition: number, eventTypes: readonly string[], countLimit?: number): Promise<Backlog> {
    // The oldest unapplied event is the first one after the position: one index step, whatever the backlog.
    const oldest = await this.pool.query<{ recorded_at: Date }>(
      'SELECT recorded_at FROM events WHERE position > $1 AND type = ANY($2) ORDER BY position LIMIT 1',
      [fromPosition, eventTypes],
    );
    const counted =
      countLimit !== undefined
        ? await this.pool.query<{ events: number }>(
            'SELECT count(*)::int AS events FROM (SELECT 1 FROM events WHERE position > $1 AND type = ANY($2) LIMIT $3) x',
            [fromPosition, eventTypes, countLimit],
          )
        : undefined;
    return {
      oldestRecordedAt: oldest.rows[0]?.recorded_at,
      events: counted ? (counted.rows[0]?.events ?? 0) : null,
    };
  }

  async countEvents(eventTypes: readonly string[]): Promise<number> {
    const res = await this.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE type = ANY($1)', [
      eventTypes,
    ]);
    return res.rows[0]?.n ?? 0;
  }

  async findAppend(streamId: string, firstEventId: string): Promise<AppendResult | undefined> {
    const first = await this.pool.query<{ position: string; stream_id: string }>(
      'SELECT position, stream_id FROM events WHERE event_id = $1',
      [firstEventId],
    );
    const row = first.rows[0];
    if (!row) return undefined;
    if (row.stream_id !== streamId) throw new IdempotencyConflictError(streamId);
    // An append is one transaction, so its events share the transaction's position block.
    const res = await this.pool.query<{ rev: string; pos: string }>(
      `SELECT max(stream_revision) AS rev, max(position) AS pos FROM events
        WHERE stream_id = $1 AND position >= $2 AND position < (($2::bigint >> 16) + 1) << 16`,
      [streamId, row.position],
    );
    const r = res.rows[0];
    if (!r) return undefined;
    return { nextRevision: Number(r.rev), position: Number(r.pos), duplicate: true };
  }

  subscribe<E extends AnyEvent = Event>(
    options: SubscribeOptions<E>,
    handler: (events: RecordedEvent<E>[]) => Promise<void>,
  ): Subscription {
    return this.subscribeBatches(options, eventsOnly(handler));
  }

  /** Polls readBatch, woken by NOTIFY and local appends (see the port). */
  subscribeBatches(options: SubscribeOptions, handler: (batch: ReadBatch) => Promise<void>): Subscription {
    return this.polling.start(
      {
        fromPosition: options.fromPosition,
        batchSize: options.batchSize ?? 500,
        ...(options.eventTypes ? { eventTypes: options.eventTypes } : {}),
        read: (position, batchSize) => this.readBatch(position, batchSize, options.eventTypes),
        // Caught up: wait for NOTIFY (or a local append); the timeout covers a lost notification.
        idleMs: () => (this.listener ? 2000 : 250),
        beforeFirstRead: () =>
          this.ensureListener().catch((e: unknown) =>
            this.options.log?.('event store: LISTEN failed, polling instead', e),
          ),
      },
      handler,
    );
  }

  /**
   * Wakes the subscribers of this process these types concern at once (the others a
   * little later; see PollingSubscriptions.wake) and, at most every
   * NOTIFY_INTERVAL_MS, every other process via NOTIFY. The NOTIFY is its own
   * statement after the commit: inside the append's transaction PostgreSQL
   * would serialise the commits of all notifying writers. Its payload names this
   * store and the types appended since the last one (notifyPayload), so that the
   * store's own listener ignores it and another store wakes only the subscribers
   * those types concern: at ingest rates, a NOTIFY every 5 ms no longer makes every
   * subscriber of every process read the log 200 times a second.
   */
  private announce(types: readonly string[]): void {
    this.polling.wake(types);
    for (const t of types) this.notifyTypes.add(t);
    if (this.notifyTimer || this.closed) return;
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = undefined;
      const payload = notifyPayload(this.instanceId, this.notifyTypes);
      this.notifyTypes = new Set();
      this.pool
        // A NOTIFY takes a transaction id (its queue entry carries one): declared, so readers of the
        // global order do not wait for it (migrations/0027).
        .query(`SELECT es_declare_no_append(), pg_notify('${CHANNEL}', $1)`, [payload])
        .catch((e: unknown) => this.options.log?.('event store: NOTIFY failed', e));
    }, NOTIFY_INTERVAL_MS);
  }

  /** A NOTIFY on the channel: ignored when it is this store's own, else wakes the subscribers it concerns. */
  private notified(payload: string | undefined): void {
    const n = readNotifyPayload(payload);
    if (n.from === this.instanceId) {
      this.notifications.own++;
      return;
    }
    this.notifications.others++;
    this.polling.wake(n.types);
  }

  private ensureListener(): Promise<void> {
    if (this.listener || this.closed) return Promise.resolve();
    this.listenerStarting ??= (async () => {
      const conn = this.options.listenConnectionString ?? connectionStringOf(this.pool);
      const client = new Client(conn ? { connectionString: conn } : {});
      client.on('notification', (m) => this.notified(m.payload));
      client.on('error', (e) => {
        this.options.log?.('event store: LISTEN connection lost', e);
        if (this.listener === client) this.listener = undefined;
        this.listenerStarting = undefined;
        client.end().catch(() => undefined);
        this.polling.wakeAll();
        if (!this.closed)
          setTimeout(() => {
            void this.ensureListener().catch(() => undefined);
          }, 1000);
      });
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
    })().catch((e: unknown) => {
      this.listenerStarting = undefined;
      throw e;
    });
    return this.listenerStarting;
  }

  private toRecorded(r: EventRow): RecordedEvent {
    const stored = storedEvent(r);
    const { data, version } = this.upcasters.apply(r.type, r.schema_version, r.data);
    if (version === r.schema_version) return stored;
    return {
      ...stored,
      data,
      schemaVersion: version,
      metadata: { ...r.metadata, storedSchemaVersion: r.schema_version },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.notifyTimer) clearTimeout(this.notifyTimer);
    await this.polling.stopAll();
    const l = this.listener;
    this.listener = undefined;
    this.polling.wakeAll();
    if (l) await l.end().catch(() => undefined);
  }
}

/** The distinct types of these events (for wake-ups). */
const typesOf = (events: readonly EventToAppend[]): string[] => [...new Set(events.map((e) => e.type))];

/**
 * The payload of a NOTIFY on the events channel: `<store id>` alone when the types
 * appended are unknown or too many to list, else `<store id> <type>,<type>…`.
 * (Event types are identifiers: no spaces or commas.)
 */
export function notifyPayload(from: string, types: ReadonlySet<string>): string {
  const list = [...types];
  const listed = list.join(',');
  return list.length === 0 || listed.length > NOTIFY_TYPES_MAX_CHARS || list.some((t) => /[\s,]/.test(t))
    ? from
    : `${from} ${listed}`;
}

/** Reads notifyPayload's format; anything else (an empty payload from an older version) names nobody and every type. */
export function readNotifyPayload(payload: string | undefined): { from?: string; types?: string[] } {
  const m = /^([0-9a-f-]{36})(?: (\S+))?$/.exec(payload ?? '');
  if (!m) return {};
  return m[2] ? { from: m[1]!, types: m[2].split(',') } : { from: m[1]! };
}

/** An event as the es_append* functions take it (migrations/0005, 0024). */
export function storedJson(e: EventToAppend): Record<string, unknown> {
  return { id: e.id, type: e.type, data: e.data, metadata: e.metadata, v: e.schemaVersion ?? 1 };
}

/** An expected revision as the es_append* functions take it: a kind and, for 'exact', the revision. */
export function expectedToSql(expected: ExpectedRevision): [string, number | null] {
  if (expected === 'any' || expected === 'no_stream' || expected === 'stream_exists') return [expected, null];
  const n = Number(expected);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid expected revision ${String(expected)}`);
  return ['exact', n];
}

/** es_append's (and es_append_group's) answer for one append: its result, or the error it stands for. */
function answerToResult(streamId: string, expected: ExpectedRevision, a: GroupAnswer): AppendResult {
  const status: string = a.status;
  switch (status) {
    case 'ok':
      return { nextRevision: a.revision, position: Number(a.position), duplicate: false };
    case 'duplicate':
      return { nextRevision: a.revision, position: Number(a.position), duplicate: true };
    case 'conflict':
      throw new ConcurrencyError(streamId, expected, a.revision === -1 ? 'no_stream' : a.revision);
    case 'id_conflict':
      throw new IdempotencyConflictError(streamId);
    default:
      throw new Error(`es_append: unexpected status ${status}`);
  }
}

function isUndefinedFunction(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === '42883';
}

function isDeadlock(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === '40P01';
}

function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === '23505';
}

function isSerializationFailure(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === '40001';
}

/** es_append_offset() refuses a store whose positions do not match the cluster (migrations/0024). */
function isMisaligned(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'ES001';
}

function connectionStringOf(pool: Pool): string | undefined {
  return (pool as unknown as { options?: { connectionString?: string } }).options?.connectionString;
}

/** An `events` row as stored (no upcasting). */
export function storedEvent(r: EventRow): RecordedEvent {
  return {
    id: r.event_id,
    streamId: r.stream_id,
    revision: Number(r.stream_revision),
    position: Number(r.position),
    type: r.type,
    data: r.data,
    metadata: r.metadata,
    schemaVersion: r.schema_version,
    recordedAt: r.recorded_at,
  };
}
