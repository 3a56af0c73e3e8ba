import { createHash, randomUUID } from 'node:crypto';
import { fold, type Command, type Decider, type Event } from '../../../domain/shared/event';
import { ConcurrencyError, type EventStore } from '../event-store/event-store';
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
}

export async function handleCommand<C extends Command, E extends Event, S>(
  options: HandleCommandOptions<C, E, S>,
): Promise<CommandResult & { events: readonly E[] }> {
  const { store, decider, streamId, command, ctx, retries, cache, snapshots } = options;
  const key = ctx.idempotencyKey;
  // Every stranger is "anonymous", so their keys share one space: scoped by the request itself,
  // a key only ever answers a request identical to the one that used it (a retry); a different
  // request with the same key is decided afresh, never handed someone else's result.
  const idKey = key && ctx.actor === ANONYMOUS ? `${key}\n${requestFingerprint(command)}` : key;
  if (idKey && options.lookupKey !== false) {
    const original = await store.findAppend(streamId, eventId(ctx.actor, idKey, streamId, 0));
    if (original) return { position: original.position, revision: original.nextRevision, duplicate: true, events: [] };
  }
  for (let attempt = 0; ; attempt++) {
    const cached = cache?.get(streamId) ?? (await snapshots?.load(streamId));
    const history = await store.readStream<E>(streamId, cached ? cached.revision + 1 : 0);
    const state = cached ? history.reduce((s, e) => decider.evolve(s, e), cached.state) : fold(decider, history);
    const current = history.length ? history[history.length - 1]!.revision : cached ? cached.revision : -1;
    cache?.set(streamId, current, state);
    if (snapshots?.due(streamId, current)) await snapshots.save(streamId, current, state);
    const events = decider.decide(command, state);
    if (events.length === 0) return { position: 0, revision: current, duplicate: false, events };
    try {
      const result = await store.append(
        streamId,
        events.map((e, i) => ({
          id: identityId(decider, streamId, e) ?? (idKey ? eventId(ctx.actor, idKey, streamId, i) : randomUUID()),
          type: e.type,
          data: e.data,
          metadata: {
            correlationId: ctx.correlationId,
            causationId: ctx.causationId,
            actor: ctx.actor,
            command: command.type,
          },
        })),
        current === -1 ? 'no_stream' : current,
      );
      if (!result.duplicate)
        cache?.set(
          streamId,
          result.nextRevision,
          events.reduce((s, e) => decider.evolve(s, e), state),
        );
      return { position: result.position, revision: result.nextRevision, duplicate: result.duplicate, events };
    } catch (e) {
      if (e instanceof ConcurrencyError && attempt < retries) continue;
      throw e;
    }
  }
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

  get size(): number {
    return this.entries.size;
  }
}
