import {
  BACKWARDS,
  END,
  FORWARDS,
  KurrentDBClient,
  StreamNotFoundError,
  eventTypeFilter,
  excludeSystemEvents,
  jsonEvent,
  type AllStreamSubscription,
  type Filter,
  type JSONEventData,
  type RecordedEvent as ClientRecordedEvent,
} from '@kurrent/kurrentdb-client';
import { StreamsServiceService } from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v2/streams/streams_grpc_pb';
import { randomUUID } from 'node:crypto';
import type { Event } from '../../../domain/shared/event';
import {
  ConcurrencyError,
  IdempotencyConflictError,
  UpcasterRegistry,
  type AnyEvent,
  type AppendResult,
  type Backlog,
  type EventStore,
  type EventToAppend,
  type ExpectedRevision,
  type ReadBatch,
  type RecordedEvent,
  type SkipKnownResult,
  type StreamWrite,
  type SubscribeOptions,
  type Subscription,
} from './event-store';
import { PollingSubscriptions, asUnion, eventsOnly } from './polling-subscriptions';
import {
  decodeMetadata,
  encodeMetadata,
  eventTypeRegex,
  isAfter,
  isWrongExpectedVersion,
  parseKurrentDbUrl,
  redactUrl,
  toPortError,
  toPosition,
  toReadPosition,
  toRevision,
  toStreamState,
} from './kurrentdb-mapping';

/**
 * The EventStoreDB / KurrentDB adapter of the EventStore port, on
 * @kurrent/kurrentdb-client. What maps how is in kurrentdb-mapping.ts; what
 * is weaker than on PostgreSQL is said where it happens and in the README
 * ("Event store: KurrentDB").
 *
 * - Global position = the commit position of the event in `$all`.
 * - Reads of `$all` (readBatch, readAll, subscriptions) never skip: a batch
 *   shorter than asked ends at the head of `$all` as seen *before* the read,
 *   so the cursor moves past filtered-out (and system) events only up to a
 *   point the read is known to have covered.
 * - Subscriptions poll readBatch and are woken by one live `$all`
 *   subscription per store (and by local appends).
 */

export interface KurrentDbEventStoreOptions {
  readonly log?: (msg: string, err?: unknown) => void;
  readonly upcasters?: UpcasterRegistry;
  /**
   * Accept a server without atomic multi-stream append (before KurrentDB 25.1):
   * appendMulti then appends stream after stream (see appendMultiSequential).
   */
  readonly allowNonAtomicMultiStream?: boolean;
  /** Called after every append that stored events (metrics). */
  readonly onAppended?: (count: number) => void;
}

/** appendSkippingKnown looks for already-stored ids among this many of the stream's newest events. */
export const SKIP_KNOWN_WINDOW = 10_000;
const MAX_APPEND_ATTEMPTS = 10;
/** How long a caught-up subscription waits for a wake before it reads anyway (a lost live subscription). */
const IDLE_POLL_MS = 1000;

/** The part of the client the adapter reaches past its public API for: the server's capabilities. */
interface WithCapabilities {
  readonly capabilities: Promise<{
    serverVersion: string;
    supports(method: unknown, feature?: string): boolean;
  }>;
}

export class KurrentDbEventStore implements EventStore {
  readonly kind = 'kurrentdb';
  private readonly upcasters: UpcasterRegistry;
  private readonly polling: PollingSubscriptions;
  private live: AllStreamSubscription | undefined;
  private liveRetry: NodeJS.Timeout | undefined;
  /** The live subscription's loss was logged and it has not been back since. */
  private liveLost = false;
  private closed = false;

  private constructor(
    private readonly client: KurrentDBClient,
    private readonly options: KurrentDbEventStoreOptions,
    /** The server has the atomic multi-stream append (KurrentDB 25.1+). */
    readonly atomicMultiStream: boolean,
    readonly serverVersion: string,
  ) {
    this.upcasters = options.upcasters ?? new UpcasterRegistry();
    this.polling = new PollingSubscriptions(options.log);
  }

  /**
   * Connects, checks the server answers, and finds out whether it can append
   * to several streams atomically. Without that (EventStoreDB, KurrentDB
   * before 25.1) it says so and refuses, unless allowNonAtomicMultiStream.
   */
  static async connect(url: string, options: KurrentDbEventStoreOptions = {}): Promise<KurrentDbEventStore> {
    const normalized = parseKurrentDbUrl(url);
    const client = KurrentDBClient.connectionString(normalized);
    try {
      // The first call opens the connection: an unreachable server fails here, at start-up.
      await headOf(client).catch((e: unknown) => {
        const why = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        throw new Error(`KURRENTDB_URL: no answer from KurrentDB at ${redactUrl(normalized)} (${why})`, { cause: e });
      });
      const features = await (client as unknown as WithCapabilities).capabilities;
      const atomic = features.supports(StreamsServiceService.appendSession);
      const where = `KurrentDB ${features.serverVersion || '(version unknown)'} at ${redactUrl(normalized)}`;
      if (!atomic) {
        const weaker =
          `${where} has no atomic multi-stream append (KurrentDB 25.1 or later has it): ` +
          'email and SKU uniqueness and the atomicity of multi-stream writes cannot be guaranteed ' +
          '(a reservation and its account, product or device become two appends; a failure between them ' +
          'leaves the email, SKU or device slot taken with nothing behind it)';
        if (!options.allowNonAtomicMultiStream)
          throw new Error(`${weaker}. Refusing to start; set KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM=true to accept.`);
        options.log?.(`${weaker}; KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM=true: multi-stream writes are sequential`);
      }
      return new KurrentDbEventStore(client, options, atomic, features.serverVersion);
    } catch (e) {
      await client.dispose().catch(() => undefined);
      throw e;
    }
  }

  // ---- appends -------------------------------------------------------------

  async append(streamId: string, events: readonly EventToAppend[], expected: ExpectedRevision): Promise<AppendResult> {
    return this.appendOnce(streamId, events, expected, true);
  }

  /** `lookUpOriginal`: on a conflict, look for these ids in the stream (a re-send) before reporting it. */
  private async appendOnce(
    streamId: string,
    events: readonly EventToAppend[],
    expected: ExpectedRevision,
    lookUpOriginal: boolean,
  ): Promise<AppendResult> {
    if (events.length === 0) throw new Error('append needs at least one event');
    let result: AppendResult;
    const writeId = randomUUID();
    try {
      const r = await this.client.appendToStream(streamId, toEventData(events, writeId), {
        streamState: toStreamState(expected),
      });
      // The server answers a re-send of stored ids as a success (older servers without a position,
      // newer ones with the original's): only the call whose writeId is stored wrote the events.
      const written = await this.readWrite(streamId, r.nextExpectedRevision, events.length);
      if (r.position === undefined || !isOurs(written, events, writeId)) {
        result = await this.originalOf(streamId, events);
      } else {
        result = {
          nextRevision: toRevision(r.nextExpectedRevision),
          position: toPosition(r.position.commit),
          duplicate: false,
        };
      }
    } catch (e) {
      if (!isWrongExpectedVersion(e) || !lookUpOriginal) throw toPortError(e, streamId, expected);
      // A re-send after the stream moved on: the original append, if these ids are it.
      const original = await this.findStored(streamId, events);
      if (!original) throw toPortError(e, streamId, expected);
      result = original;
    }
    if (!result.duplicate) this.appended(events.length);
    return result;
  }

  /** The `count` events a write that ended at `lastRevision` stored (fewer if the stream is shorter). */
  private async readWrite(streamId: string, lastRevision: bigint, count: number): Promise<ClientRecordedEvent[]> {
    const first = lastRevision - BigInt(count - 1);
    return first < 0n ? [] : this.readRaw(streamId, first, count);
  }

  /** The original result of a re-sent append; the server said it succeeded, so its absence is a broken invariant. */
  private async originalOf(streamId: string, events: readonly EventToAppend[]): Promise<AppendResult> {
    const found = await this.findStored(streamId, events);
    if (!found) throw new Error(`KurrentDB answered an append to ${streamId} as stored, but its events are not there`);
    return found;
  }

  /**
   * Looks for these events in the stream: all stored, in order, from the first
   * id → the original result (duplicate); the first id stored but not all
   * the rest → IdempotencyConflictError; the first id not stored → undefined.
   */
  private async findStored(streamId: string, events: readonly EventToAppend[]): Promise<AppendResult | undefined> {
    const stored = await this.readRaw(streamId, 0n);
    const at = stored.findIndex((e) => e.id === events[0]?.id);
    if (at < 0) {
      if (events.some((e) => stored.some((s) => s.id === e.id))) throw new IdempotencyConflictError(streamId);
      return undefined;
    }
    const run = stored.slice(at, at + events.length);
    if (run.length !== events.length || run.some((e, i) => e.id !== events[i]?.id))
      throw new IdempotencyConflictError(streamId);
    const last = run.at(-1)!;
    return { nextRevision: toRevision(last.revision), position: positionOf(last), duplicate: true };
  }

  async findAppend(streamId: string, firstEventId: string): Promise<AppendResult | undefined> {
    const stored = await this.readRaw(streamId, 0n);
    const at = stored.findIndex((e) => e.id === firstEventId);
    if (at < 0) return undefined;
    // The append's later events carry its first event's id (toEventData): its extent.
    let end = at;
    while (end + 1 < stored.length && appendOf(stored[end + 1]!) === firstEventId) end++;
    const last = stored[end]!;
    return { nextRevision: toRevision(last.revision), position: positionOf(last), duplicate: true };
  }

  async appendMulti(writes: readonly StreamWrite[]): Promise<AppendResult[]> {
    if (writes.length === 0) return [];
    for (const w of writes) if (w.events.length === 0) throw new Error('append needs at least one event');
    if (!this.atomicMultiStream) return this.appendMultiSequential(writes);
    let results: AppendResult[];
    const writeId = randomUUID();
    try {
      const r = await this.client.multiStreamAppend(
        writes.map((w) => ({
          streamName: w.streamId,
          expectedState: toStreamState(w.expected),
          events: toEventData(w.events, writeId),
        })),
      );
      results = [];
      let ours = 0;
      for (const w of writes) {
        const done = r.responses.find((x) => x.streamName === w.streamId);
        if (!done) throw new Error(`multi-stream append: no answer for stream ${w.streamId}`);
        // The answer carries one position for the whole append: each stream's comes from its last event.
        const written = await this.readWrite(w.streamId, done.revision, w.events.length);
        if (isOurs(written, w.events, writeId)) ours++;
        const last = written.at(-1);
        results.push({
          nextRevision: toRevision(done.revision),
          position: last ? positionOf(last) : toPosition(r.position),
          duplicate: false,
        });
      }
      // A re-send the server took as idempotent: the original results (all stored before, or a reused key).
      if (ours < writes.length) return await this.originalsOf(writes, ours);
    } catch (e) {
      if (!isWrongExpectedVersion(e)) throw e;
      // A re-send: every write stored before → their original results; only some → a reused key.
      const found = await Promise.all(writes.map((w) => this.findStored(w.streamId, w.events)));
      const dupes = found.filter((f) => f !== undefined).length;
      if (dupes === writes.length) return found as AppendResult[];
      if (dupes > 0) throw new IdempotencyConflictError(writes[found.findIndex((f) => f !== undefined)]!.streamId);
      const failed = writes.find((w) => w.streamId === e.streamName) ?? writes[0]!;
      throw toPortError(e, failed.streamId, failed.expected);
    }
    this.appended(writes.reduce((n, w) => n + w.events.length, 0));
    return results;
  }

  /** After a multi-stream append that wrote nothing new (ours === 0): the original results. */
  private async originalsOf(writes: readonly StreamWrite[], ours: number): Promise<AppendResult[]> {
    if (ours > 0) throw new Error('multi-stream append: stored only some of its streams (not atomic?)');
    const found = await Promise.all(writes.map((w) => this.findStored(w.streamId, w.events)));
    const missing = found.findIndex((f) => f === undefined);
    if (missing >= 0) throw new IdempotencyConflictError(writes[missing]!.streamId);
    return found as AppendResult[];
  }

  /**
   * The weaker mode (KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM=true on a server
   * before 25.1): one append per stream, in order. Each append is atomic and
   * checks its expected revision, so a taken email or SKU still stops the
   * writes after it; but a failure after the first write leaves the earlier
   * writes stored (e.g. an email reserved with no user behind it). A retry with
   * the same idempotency key completes such a half-done write: writes already
   * stored answer as duplicates and the rest are appended (PostgreSQL would
   * have stored none, so it never meets that case).
   */
  private async appendMultiSequential(writes: readonly StreamWrite[]): Promise<AppendResult[]> {
    const out: AppendResult[] = [];
    for (const w of writes) out.push(await this.append(w.streamId, w.events, w.expected));
    return out;
  }

  /**
   * Per stream: reads the ids among the newest SKIP_KNOWN_WINDOW events, appends
   * the others at the exact revision it read (retrying when another writer got
   * there first). Weaker than PostgreSQL's one transaction over a unique index:
   * streams are appended one by one (each atomic), and an id older than the
   * window is not seen (a resend that late is stored again).
   */
  async appendSkippingKnown(
    writes: readonly { streamId: string; events: readonly EventToAppend[] }[],
  ): Promise<SkipKnownResult[]> {
    const out: SkipKnownResult[] = [];
    for (const w of writes) {
      for (let attempt = 1; ; attempt++) {
        const tail = await this.readRaw(w.streamId, 'end', SKIP_KNOWN_WINDOW);
        const known = new Map(tail.map((e) => [e.id, e]));
        const seen = new Set<string>();
        const fresh = w.events.filter((e) => !known.has(e.id) && !seen.has(e.id) && seen.add(e.id));
        const newest = tail[0];
        if (fresh.length === 0) {
          const positions = w.events.flatMap((e) => {
            const k = known.get(e.id);
            return k ? [positionOf(k)] : [];
          });
          out.push({
            streamId: w.streamId,
            appended: 0,
            newIds: [],
            nextRevision: newest ? toRevision(newest.revision) : -1,
            position: positions.length ? Math.max(...positions) : 0,
          });
          break;
        }
        try {
          // A conflict here only means another writer got there first: read the tail again (not the whole stream).
          const r = await this.appendOnce(w.streamId, fresh, newest ? newest.revision : 'no_stream', false);
          out.push({
            streamId: w.streamId,
            appended: r.duplicate ? 0 : fresh.length,
            newIds: r.duplicate ? [] : fresh.map((e) => e.id),
            nextRevision: r.nextRevision,
            position: r.position,
          });
          break;
        } catch (e) {
          if ((e instanceof ConcurrencyError || e instanceof IdempotencyConflictError) && attempt < MAX_APPEND_ATTEMPTS)
            continue;
          throw e;
        }
      }
    }
    return out;
  }

  private appended(count: number): void {
    this.polling.wakeAll();
    this.options.onAppended?.(count);
  }

  // ---- reads -----------------------------------------------------------------

  async readStream<E extends AnyEvent = Event>(
    streamId: string,
    fromRevision = 0,
    limit = 100_000,
  ): Promise<RecordedEvent<E>[]> {
    const raw = await this.readRaw(streamId, BigInt(fromRevision), limit);
    return asUnion<E>(raw.map((e) => this.toRecorded(e)));
  }

  /** A stream's raw events, forwards from a revision or backwards from the end (newest first); none when it does not exist. */
  private async readRaw(streamId: string, from: bigint | 'end', limit?: number): Promise<ClientRecordedEvent[]> {
    const out: ClientRecordedEvent[] = [];
    try {
      for await (const r of this.client.readStream(streamId, {
        direction: from === 'end' ? BACKWARDS : FORWARDS,
        fromRevision: from === 'end' ? END : from,
        ...(limit !== undefined ? { maxCount: limit } : {}),
      })) {
        if (r.event) out.push(r.event);
      }
    } catch (e) {
      if (e instanceof StreamNotFoundError) return [];
      throw e;
    }
    return out;
  }

  async readAll<E extends AnyEvent = Event>(
    fromPosition: number,
    limit: number,
    eventTypes?: readonly E['type'][],
  ): Promise<RecordedEvent<E>[]> {
    return asUnion<E>((await this.readBatch(fromPosition, limit, eventTypes)).events);
  }

  /**
   * Events after `fromPosition` with a server-side filter (the exact types, or
   * every non-system event). A full batch ends at its last event; a shorter one
   * at the head of `$all` read before it (the read saw everything up to there),
   * so the cursor passes filtered events without passing an unread one.
   * `options.pgClient` does not apply here (see the port).
   */
  async readBatch(fromPosition: number, limit: number, eventTypes?: readonly string[]): Promise<ReadBatch> {
    const head = await headOf(this.client);
    const events: RecordedEvent[] = [];
    let lastCommit: bigint | undefined;
    for await (const r of this.client.readAll({
      fromPosition: toReadPosition(fromPosition),
      // The first event may sit at fromPosition itself (reads are inclusive): one more.
      maxCount: limit + 1,
      filter: filterFor(eventTypes),
    })) {
      const e = r.event;
      if (!e || !isAfter(e.position.commit, fromPosition) || e.type.startsWith('$')) continue;
      if (lastCommit !== undefined && e.position.commit <= lastCommit)
        throw new Error(
          `KurrentDB: two events share commit position ${e.position.commit.toString()} (an explicit transaction); ` +
            'this adapter orders events by commit position alone and cannot read them without skipping',
        );
      lastCommit = e.position.commit;
      events.push(this.toRecorded(e));
      if (events.length === limit) break;
    }
    const last = events.at(-1);
    if (events.length === limit) return { events, position: last!.position, blocked: false };
    return { events, position: Math.max(fromPosition, last?.position ?? 0, head), blocked: false };
  }

  async headPosition(): Promise<number> {
    return headOf(this.client);
  }

  async backlog(fromPosition: number, eventTypes: readonly string[], countLimit?: number): Promise<Backlog> {
    let oldest: Date | undefined;
    let n = 0;
    for await (const r of this.client.readAll({
      fromPosition: toReadPosition(fromPosition),
      maxCount: (countLimit ?? 1) + 1,
      filter: filterFor(eventTypes),
    })) {
      const e = r.event;
      if (!e || !isAfter(e.position.commit, fromPosition)) continue;
      oldest ??= e.created;
      n++;
      if (countLimit === undefined || n >= countLimit) break;
    }
    return { oldestRecordedAt: oldest, events: countLimit === undefined ? null : n };
  }

  /** Reads every event of these types (the server filters; no index answers a count): a rebuild's total. */
  async countEvents(eventTypes: readonly string[]): Promise<number> {
    let n = 0;
    for await (const r of this.client.readAll({ filter: filterFor(eventTypes) })) if (r.event) n++;
    return n;
  }

  // ---- subscriptions -----------------------------------------------------------

  subscribe<E extends AnyEvent = Event>(
    options: SubscribeOptions<E>,
    handler: (events: RecordedEvent<E>[]) => Promise<void>,
  ): Subscription {
    return this.subscribeBatches(options, eventsOnly(handler));
  }

  /** Catch-up and live are the same loop over readBatch; the live `$all` subscription only wakes it. */
  subscribeBatches(options: SubscribeOptions, handler: (batch: ReadBatch) => Promise<void>): Subscription {
    this.ensureLive();
    return this.polling.start(
      {
        fromPosition: options.fromPosition,
        batchSize: options.batchSize ?? 500,
        read: (position, batchSize) => this.readBatch(position, batchSize, options.eventTypes),
        idleMs: () => IDLE_POLL_MS,
      },
      handler,
    );
  }

  /** One live subscription to the end of `$all` per store: any new non-system event wakes every loop. */
  private ensureLive(): void {
    if (this.live || this.closed) return;
    const live = this.client.subscribeToAll({ fromPosition: END, filter: excludeSystemEvents() });
    this.live = live;
    live.on('data', () => {
      this.liveLost = false;
      this.polling.wakeAll();
    });
    live.on('error', (e) => {
      if (this.closed) return;
      if (!this.liveLost) this.options.log?.('event store: live $all subscription lost, polling until it is back', e);
      this.liveLost = true;
      if (this.live === live) this.live = undefined;
      this.polling.wakeAll();
      this.liveRetry ??= setTimeout(() => {
        this.liveRetry = undefined;
        this.ensureLive();
      }, 1000);
    });
  }

  private toRecorded(e: ClientRecordedEvent): RecordedEvent {
    if (!e.isJson) throw new Error(`KurrentDB event ${e.id} in ${e.streamId} is not JSON; this store writes JSON only`);
    const { metadata: stored, schemaVersion } = decodeMetadata(e.metadata);
    const { data, version } = this.upcasters.apply(e.type, schemaVersion, e.data as Record<string, unknown>);
    const metadata = version === schemaVersion ? stored : { ...stored, storedSchemaVersion: schemaVersion };
    return {
      id: e.id,
      streamId: e.streamId,
      revision: toRevision(e.revision),
      position: positionOf(e),
      type: e.type,
      data,
      metadata,
      schemaVersion: version,
      recordedAt: e.created,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.liveRetry) clearTimeout(this.liveRetry);
    await this.polling.stopAll();
    const live = this.live;
    this.live = undefined;
    if (live) await live.unsubscribe().catch(() => undefined);
    await this.client.dispose();
  }
}

/** The commit position of the last record in `$all` (0 for an empty log). */
async function headOf(client: KurrentDBClient): Promise<number> {
  for await (const r of client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1 })) {
    const commit = r.event?.position.commit ?? r.commitPosition;
    if (commit !== undefined) return toPosition(commit);
  }
  return 0;
}

function filterFor(eventTypes: readonly string[] | undefined): Filter {
  return eventTypes ? eventTypeFilter({ regex: eventTypeRegex(eventTypes) }) : excludeSystemEvents();
}

function positionOf(e: ClientRecordedEvent): number {
  const commit = e.position?.commit;
  // Stream reads on servers before 22.6 give no position, or 2^64-1: no global order to build on.
  if (commit === undefined) throw new Error(`KurrentDB gave no position for event ${e.id}: EventStoreDB 22.6+ needed`);
  return toPosition(commit);
}

function appendOf(e: ClientRecordedEvent): string | undefined {
  return decodeMetadata(e.metadata).appendOf;
}

/**
 * Events as the client writes them: JSON data, string-valued metadata; the
 * first tagged with the call's writeId, the others with the first's id.
 */
function toEventData(events: readonly EventToAppend[], writeId: string): JSONEventData[] {
  const first = events[0]?.id;
  return events.map((e, i) =>
    jsonEvent({
      id: e.id,
      type: e.type,
      data: e.data,
      metadata: encodeMetadata(e.metadata, e.schemaVersion ?? 1, i === 0 ? { writeId } : { appendOf: first }),
    }),
  );
}

/** True when the events a write ended with are these ids and the first carries this call's writeId. */
function isOurs(written: readonly ClientRecordedEvent[], events: readonly EventToAppend[], writeId: string): boolean {
  const [first] = written;
  return (
    written.length === events.length &&
    written.every((e, i) => e.id === events[i]?.id) &&
    first !== undefined &&
    decodeMetadata(first.metadata).writeId === writeId
  );
}
