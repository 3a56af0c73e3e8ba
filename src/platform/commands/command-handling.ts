import { createHash, randomUUID } from 'node:crypto';
import { fold, type Command, type Decider, type Event } from '../../../domain/shared/event';
import {
  ConcurrencyError,
  IdempotencyConflictError,
  type EventStore,
  type EventToAppend,
} from '../event-store/event-store';
import type { CommandContext, CommandResult } from './command-context';
import type { StreamSnapshots } from './snapshots';

/**
 * The write side in one function: load the stream, fold it with `evolve`,
 * `decide`, append at the expected revision. A concurrency conflict reloads
 * and decides again, a bounded number of times, then surfaces as 409.
 *
 * With an idempotency key, event ids derive from (actor, key, stream, index):
 * a retried command finds its original append and returns its result. For
 * anonymous callers the key is also scoped by the command's content.
 */
export interface HandleCommandOptions<C extends Command, E extends Event, S> {
  readonly store: EventStore;
  readonly decider: Decider<C, E, S>;
  readonly streamId: string;
  readonly command: C;
  readonly ctx: CommandContext;
  /** How many times a concurrency conflict reloads and decides again before it surfaces as 409. */
  readonly retries: number;
  /** Decide from a cached fold plus the newer events. */
  readonly cache?: StateCache<S> | undefined;
  /** When no cache holds the stream: start from its snapshot, and take one every so many events. */
  readonly snapshots?: StreamSnapshots<S> | undefined;
  /**
   * Look the idempotency key up before deciding (default), to answer a retried command with
   * its original result. Senders that need no result and whose deciders ignore repeats (the
   * saga) skip the round trip: the derived event ids still keep a repeat from being stored twice.
   */
  readonly lookupKey?: boolean;
  /**
   * Decide first from what the caller already knows, without reading the stream: the cached fold
   * (`trustCache`), or, with nothing cached, a stream that does not exist yet (`assumeNew`: a fresh
   * id). The append's expected revision proves that guess right; a conflict, a decider error or a
   * decision of nothing reads the stream and decides again as usual, so the result is the same as
   * reading first, one round trip cheaper when the guess holds (the saga writes its streams step
   * after step, and this process saw every step).
   */
  readonly trustCache?: boolean;
  readonly assumeNew?: boolean;
}

export async function handleCommand<C extends Command, E extends Event, S>(
  options: HandleCommandOptions<C, E, S>,
): Promise<CommandResult & { events: readonly E[] }> {
  const { store, decider, streamId, command, ctx, retries, cache } = options;
  const key = ctx.idempotencyKey;
  // Every stranger is "anonymous", so their keys share one space: scoped by the request itself,
  // a key only ever answers a request identical to the one that used it (a retry); a different
  // request with the same key is decided afresh, never handed someone else's result.
  const idKey = key && ctx.actor === ANONYMOUS ? `${key}\n${requestFingerprint(command)}` : key;
  if (idKey && options.lookupKey !== false) {
    const original = await store.findAppend(streamId, eventId(ctx.actor, idKey, streamId, 0));
    if (original) return { position: original.position, revision: original.nextRevision, duplicate: true, events: [] };
  }
  const guess = options.trustCache ? cache?.get(streamId) : undefined;
  const guessed = guess ?? (options.assumeNew ? { revision: -1, state: decider.initialState } : undefined);
  if (guessed) {
    const sent = await decideOnGuess(options, idKey, guessed);
    if (sent) return sent;
  }
  for (let attempt = 0; ; attempt++) {
    const { revision: current, state } = await readState(options);
    const events = decider.decide(command, state);
    if (events.length === 0) return { position: 0, revision: current, duplicate: false, events };
    try {
      return await appendDecided(options, idKey, events, state, current);
    } catch (e) {
      if (e instanceof ConcurrencyError && attempt < retries) continue;
      throw e;
    }
  }
}

/**
 * handleCommand's first try on a guessed state (see `trustCache`): the result when the guess held,
 * undefined when the stream must be read (a conflict, the decider refused or decided nothing).
 */
async function decideOnGuess<C extends Command, E extends Event, S>(
  options: HandleCommandOptions<C, E, S>,
  idKey: string | undefined,
  guess: { readonly revision: number; readonly state: S },
): Promise<(CommandResult & { events: readonly E[] }) | undefined> {
  let events: readonly E[];
  try {
    events = options.decider.decide(options.command, guess.state);
  } catch {
    return undefined; // maybe refused on a state that is behind: the read path decides for good
  }
  if (events.length === 0) return undefined;
  const { snapshots, streamId } = options;
  await snapshots?.saveIfDue(streamId, guess.revision, guess.state);
  try {
    return await appendDecided(options, idKey, events, guess.state, guess.revision);
  } catch (e) {
    if (e instanceof ConcurrencyError) return undefined;
    throw e;
  }
}

/**
 * The stream's state now: the cached fold (or snapshot) and the events after it, read; cached,
 * and snapshotted when due.
 */
async function readState<E extends Event, S>({
  store,
  decider,
  streamId,
  cache,
  snapshots,
}: Pick<HandleCommandOptions<Command, E, S>, 'store' | 'decider' | 'streamId' | 'cache' | 'snapshots'>): Promise<{
  revision: number;
  state: S;
}> {
  const cached = cache?.get(streamId) ?? (await snapshots?.load(streamId));
  const history = await store.readStream<E>(streamId, cached ? cached.revision + 1 : 0);
  const state = cached ? history.reduce((s, e) => decider.evolve(s, e), cached.state) : fold(decider, history);
  const revision = history.length ? history[history.length - 1]!.revision : cached ? cached.revision : -1;
  cache?.set(streamId, revision, state);
  await snapshots?.saveIfDue(streamId, revision, state);
  return { revision, state };
}

/** The events `command` decided, as the store takes them: ids (identity, idempotency key or random) and metadata. */
function toAppend<E extends Event>(
  decider: { identify?(e: E): string | undefined },
  streamId: string,
  command: Command,
  ctx: CommandContext,
  idKey: string | undefined,
  events: readonly E[],
): EventToAppend[] {
  return events.map((e, i) => ({
    id: identityId(decider, streamId, e) ?? (idKey ? eventId(ctx.actor, idKey, streamId, i) : randomUUID()),
    type: e.type,
    data: e.data,
    metadata: {
      correlationId: ctx.correlationId,
      causationId: ctx.causationId,
      actor: ctx.actor,
      command: command.type,
    },
  }));
}

/** Appends what was decided on `state` at `current`, and caches the state after it. */
async function appendDecided<C extends Command, E extends Event, S>(
  { store, decider, streamId, command, ctx, cache }: HandleCommandOptions<C, E, S>,
  idKey: string | undefined,
  events: readonly E[],
  state: S,
  current: number,
): Promise<CommandResult & { events: readonly E[] }> {
  const result = await store.append(
    streamId,
    toAppend(decider, streamId, command, ctx, idKey, events),
    current === -1 ? 'no_stream' : current,
  );
  if (!result.duplicate)
    cache?.set(
      streamId,
      result.nextRevision,
      events.reduce((s, e) => decider.evolve(s, e), state),
    );
  return { position: result.position, revision: result.nextRevision, duplicate: result.duplicate, events };
}

/** The id of an event with an identity (Decider.identify): the same in every decision, so the store keeps one. */
function identityId<E extends Event>(decider: { identify?(e: E): string | undefined }, streamId: string, e: E) {
  const identity = decider.identify?.(e);
  return identity === undefined ? undefined : eventId(IDENTITY_NAMESPACE, identity, streamId, 0);
}
/** Not an actor anyone can be: identity-derived ids never meet key-derived ones. */
const IDENTITY_NAMESPACE = '\u0000identity';

/** The actor of a request nobody authenticated (see actorOf in http/request.ts). */
export const ANONYMOUS = 'anonymous';

/** SHA-256 of the command's type and data, keys sorted, without the injected clock (`now`): equal for a retry. */
export function requestFingerprint(command: Command): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v === null || typeof v !== 'object' || v instanceof Date) return v;
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .filter((k) => k !== 'now')
        .sort()
        .map((k) => [k, canonical(o[k])]),
    );
  };
  return createHash('sha256')
    .update(JSON.stringify(canonical({ type: command.type, data: command.data })))
    .digest('hex');
}

/** A deterministic UUID (version 8 layout) for the i-th event of a keyed command. */
export function eventId(actor: string, key: string, streamId: string, index: number): string {
  const h = createHash('sha256').update(`${actor}\n${key}\n${streamId}\n${index}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The folded state of recently used streams, so a command on a long stream
 * (a product's inventory takes every order's reservation) reads only the
 * events after the cached revision. Events never change, so the cache can be
 * behind but never wrong: a stale entry reads the newer events, and a write
 * from another process still meets the expected-revision check. Bounded;
 * the least recently used stream goes first.
 */
export class StateCache<S> {
  private readonly entries = new Map<string, { revision: number; state: S }>();
  constructor(private readonly maxStreams = 10_000) {}

  get(streamId: string): { revision: number; state: S } | undefined {
    const e = this.entries.get(streamId);
    if (e) {
      this.entries.delete(streamId);
      this.entries.set(streamId, e);
    }
    return e;
  }

  set(streamId: string, revision: number, state: S): void {
    if (revision < 0) return;
    const e = this.entries.get(streamId);
    if (e && e.revision >= revision) return;
    this.entries.delete(streamId);
    this.entries.set(streamId, { revision, state });
    if (this.entries.size > this.maxStreams) this.entries.delete(this.entries.keys().next().value!);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/** One command of a batch and who sent it. */
export interface BatchedCommand<C extends Command> {
  readonly command: C;
  readonly ctx: CommandContext;
}

/** A batched command's outcome, as handleCommand would have answered it alone. */
export type BatchedOutcome<E extends Event> =
  | { readonly ok: true; readonly sent: CommandResult & { events: readonly E[] } }
  | { readonly ok: false; readonly error: unknown };

/**
 * Several commands to one stream in one append: decided one after the other on the stream's
 * state (each sees the events of those before it, as if sent in turn), written at one expected
 * revision, and answered each with its own events and revision (`position` is the batch's last).
 * A conflict reads the newer events and decides the whole batch again. The first try decides on
 * the cached fold (`trustCache`); a refusal or an empty decision on it is checked on a read.
 * Anything the batch cannot settle for all (an event id stored before: a resend after a crash)
 * sends each command alone through handleCommand. For senders that skip the key lookup (the
 * saga), with keyed contexts.
 */
export async function handleCommandBatch<C extends Command, E extends Event, S>(
  options: Omit<HandleCommandOptions<C, E, S>, 'command' | 'ctx'>,
  batch: readonly BatchedCommand<C>[],
): Promise<BatchedOutcome<E>[]> {
  const { store, decider, streamId, retries, cache } = options;
  const alone = async (): Promise<BatchedOutcome<E>[]> => {
    const out: BatchedOutcome<E>[] = [];
    for (const b of batch) {
      try {
        out.push({ ok: true, sent: await handleCommand({ ...options, ...b, lookupKey: false, trustCache: false }) });
      } catch (error) {
        out.push({ ok: false, error });
      }
    }
    return out;
  };
  for (let attempt = 0; ; attempt++) {
    const guess = attempt === 0 && options.trustCache ? cache?.get(streamId) : undefined;
    const base = guess ?? (await readState(options));
    if (guess) await options.snapshots?.saveIfDue(streamId, guess.revision, guess.state);
    let state = base.state;
    const decided: (readonly E[] | { error: unknown })[] = batch.map((b) => {
      try {
        const events = decider.decide(b.command, state);
        state = events.reduce((s, e) => decider.evolve(s, e), state);
        return events;
      } catch (error) {
        return { error };
      }
    });
    const settled = (d: (typeof decided)[number]): d is readonly E[] => Array.isArray(d);
    // On a guessed state, a refusal or a decision of nothing may only mean the guess is behind.
    if (guess && decided.some((d) => !settled(d) || d.length === 0)) continue;
    const writes = batch.flatMap((b, i) => {
      const events = decided[i]!;
      return settled(events) ? toAppend(decider, streamId, b.command, b.ctx, b.ctx.idempotencyKey, events) : [];
    });
    const answer = (position: number): BatchedOutcome<E>[] => {
      let revision = base.revision;
      return decided.map((events) => {
        if (!settled(events)) return { ok: false, error: events.error };
        revision += events.length;
        return { ok: true, sent: { position, revision, duplicate: false, events } };
      });
    };
    if (writes.length === 0) return answer(0);
    try {
      const result = await store.append(streamId, writes, base.revision === -1 ? 'no_stream' : base.revision);
      if (result.duplicate) return alone();
      cache?.set(streamId, result.nextRevision, state);
      return answer(result.position);
    } catch (e) {
      if (e instanceof ConcurrencyError && attempt < retries) continue;
      if (e instanceof IdempotencyConflictError) return alone();
      throw e;
    }
  }
}
