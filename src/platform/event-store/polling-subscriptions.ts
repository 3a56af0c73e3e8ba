import type { AnyEvent, RecordedEvent, ReadBatch, Subscription } from './event-store';
import { backoffMs, type BackoffPolicy } from '../processing/backoff';

/** A subscription whose read failed (the store is away) asks again after 200 ms, doubling up to 5 s. */
const READ_RETRY_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 5000 };
/** A subscription blocked behind an older transaction still in flight looks again after 5 ms, doubling up to 200 ms. */
const BLOCKED_POLL_BACKOFF: BackoffPolicy = { initialMs: 5, maxMs: 200 };
/**
 * A caught-up loop whose type filter excludes every type just appended is woken this much later (once
 * for all such appends meanwhile), only to move its position past them: at ingest rates, hundreds of
 * telemetry appends a second no longer cost every other projection and processor a read (and a
 * checkpoint write) each.
 */
export const UNRELATED_WAKE_MS = 100;

export interface PollOptions {
  /** Deliver batches after this position (exclusive). */
  readonly fromPosition: number;
  readonly batchSize: number;
  /** Reads the next batch after a position; the adapter's readBatch with the subscription's filter. */
  readonly read: (position: number, batchSize: number) => Promise<ReadBatch>;
  /** The subscription's type filter (none: every type); decides which appends wake it at once. */
  readonly eventTypes?: readonly string[];
  /** How long a caught-up loop waits for a wake before it reads anyway (covers a lost wake-up source). */
  readonly idleMs: () => number;
  /** Runs once before the first read (e.g. LISTEN). */
  readonly beforeFirstRead?: () => Promise<void>;
}

/**
 * The subscriptions of one event-store adapter: catch-up and live are the
 * same loop over the adapter's readBatch, and the adapter wakes the loops
 * (`wake`) when it knows of new events: every loop for a NOTIFY or a live `$all`
 * subscription (types unknown); for a local append of known types, at once
 * the loops that read those types, have no filter, or wait behind an older
 * transaction (its end may be this append's), and the others
 * UNRELATED_WAKE_MS later. A caught-up loop sleeps until woken or `idleMs`; a
 * batch blocked behind an older transaction is read again soon; a failed read
 * backs off; a failing handler ends the subscription (`failed`).
 */
interface Loop {
  readonly types: ReadonlySet<string> | undefined;
  /** A wake arrived since the loop's last read began. */
  woken: boolean;
  /** The last read found committed events behind an older transaction still in flight. */
  blocked: boolean;
  /** Ends the loop's current sleep. */
  wake: (() => void) | undefined;
  deferred: NodeJS.Timeout | undefined;
}

export class PollingSubscriptions {
  private readonly loops = new Set<Loop>();
  private readonly running = new Set<Subscription>();

  constructor(private readonly log?: (msg: string, err?: unknown) => void) {}

  /** Wakes every loop of this store. */
  wakeAll(): void {
    this.wake(undefined);
  }

  /** New events of these types (undefined: unknown) are readable or about to be: wakes the loops they concern. */
  wake(types: readonly string[] | undefined): void {
    for (const l of [...this.loops]) {
      if (types === undefined || l.types === undefined || l.blocked || types.some((t) => l.types!.has(t))) {
        this.wakeLoop(l);
      } else if (!l.deferred) {
        l.deferred = setTimeout(() => {
          l.deferred = undefined;
          this.wakeLoop(l);
        }, UNRELATED_WAKE_MS);
        l.deferred.unref();
      }
    }
  }

  private wakeLoop(l: Loop): void {
    l.woken = true;
    if (l.deferred) {
      clearTimeout(l.deferred);
      l.deferred = undefined;
    }
    l.wake?.();
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running].map((s) => s.stop()));
  }

  start(options: PollOptions, handler: (batch: ReadBatch) => Promise<void>): Subscription {
    let position = options.fromPosition;
    let stopped = false;
    const me: Loop = {
      types: options.eventTypes ? new Set(options.eventTypes) : undefined,
      woken: false,
      blocked: false,
      wake: undefined,
      deferred: undefined,
    };
    this.loops.add(me);
    let reportFailure: (e: unknown) => void = () => undefined;
    const failed = new Promise<unknown>((res) => {
      reportFailure = res;
    });
    const sleep = (ms: number) =>
      new Promise<void>((res) => {
        const done = () => {
          clearTimeout(timer);
          me.wake = undefined;
          res();
        };
        const timer = setTimeout(done, ms);
        me.wake = done;
      });

    const loop = async () => {
      await options.beforeFirstRead?.();
      let blocked = 0;
      let errors = 0;
      while (!stopped) {
        me.woken = false;
        let batch: ReadBatch;
        try {
          batch = await options.read(position, options.batchSize);
          errors = 0;
        } catch (e) {
          if (stopped) break;
          errors++;
          this.log?.('event store: subscription read failed, retrying', e);
          await sleep(backoffMs(errors, READ_RETRY_BACKOFF));
          continue;
        }
        if (batch.position !== position) {
          try {
            await handler(batch);
          } catch (e) {
            stopped = true;
            reportFailure(e);
            return;
          }
          position = batch.position;
          blocked = 0;
        }
        if (stopped) break;
        if (batch.events.length >= options.batchSize) continue;
        me.blocked = batch.blocked;
        if (batch.blocked) {
          // Committed events wait behind an older transaction still in flight: look again as soon
          // as an append ends (a wake; one during the read counts too), or soon, for a transaction
          // that announces nothing.
          if (!me.woken) await sleep(backoffMs(++blocked, BLOCKED_POLL_BACKOFF));
        } else if (!me.woken) {
          // Caught up: wait for a wake; the timeout covers a lost one.
          await sleep(options.idleMs());
        }
      }
    };
    const looping = loop()
      .catch((e: unknown) => {
        stopped = true;
        reportFailure(e);
      })
      .finally(() => {
        if (me.deferred) clearTimeout(me.deferred);
        this.loops.delete(me);
      });
    const sub: Subscription = {
      failed,
      stop: async () => {
        stopped = true;
        me.wake?.();
        await looping;
        this.running.delete(sub);
      },
    };
    this.running.add(sub);
    return sub;
  }
}

/**
 * The one place stored events become a domain union: the JSON in `data` is
 * taken to be the shape its `type` has in E. What makes that true is outside
 * the type system: only deciders of that union append these types, schemas
 * only change by a new version with an upcaster (each adapter's toRecorded
 * applies them), and a reader asks for the union of the stream or types it
 * reads. Both adapters, and so every reader, go through here instead of
 * casting on their own.
 */
export function asUnion<E extends AnyEvent>(events: RecordedEvent[]): RecordedEvent<E>[] {
  return events as unknown as RecordedEvent<E>[];
}

/** `subscribe` over `subscribeBatches`: handlers see only non-empty batches, as the union they name. */
export function eventsOnly<E extends AnyEvent>(
  handler: (events: RecordedEvent<E>[]) => Promise<void>,
): (batch: ReadBatch) => Promise<void> {
  return (batch) => (batch.events.length > 0 ? handler(asUnion<E>(batch.events)) : Promise.resolve());
}
