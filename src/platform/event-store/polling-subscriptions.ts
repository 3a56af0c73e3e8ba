import type { AnyEvent, RecordedEvent, ReadBatch, Subscription } from './event-store';
import { backoffMs, type BackoffPolicy } from '../processing/backoff';

/** A subscription whose read failed (the store is away) asks again after 200 ms, doubling up to 5 s. */
const READ_RETRY_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 5000 };
/** A subscription blocked behind an older transaction still in flight looks again after 5 ms, doubling up to 200 ms. */
const BLOCKED_POLL_BACKOFF: BackoffPolicy = { initialMs: 5, maxMs: 200 };

export interface PollOptions {
  /** Deliver batches after this position (exclusive). */
  readonly fromPosition: number;
  readonly batchSize: number;
  /** Reads the next batch after a position; the adapter's readBatch with the subscription's filter. */
  readonly read: (position: number, batchSize: number) => Promise<ReadBatch>;
  /** How long a caught-up loop waits for a wake before it reads anyway (covers a lost wake-up source). */
  readonly idleMs: () => number;
  /** Runs once before the first read (e.g. LISTEN). */
  readonly beforeFirstRead?: () => Promise<void>;
}

/**
 * The subscriptions of one event-store adapter: catch-up and live are the
 * same loop over the adapter's readBatch, and the adapter wakes every waiting
 * loop (`wakeAll`) when it knows of new events (a local append, NOTIFY, a live
 * `$all` subscription). A caught-up loop sleeps until woken or `idleMs`; a
 * batch blocked behind an older transaction is read again soon; a failed read
 * backs off; a failing handler ends the subscription (`failed`).
 */
export class PollingSubscriptions {
  private generation = 0;
  private readonly wakers = new Set<() => void>();
  private readonly running = new Set<Subscription>();

  constructor(private readonly log?: (msg: string, err?: unknown) => void) {}

  /** Wakes every waiting loop of this store. */
  wakeAll(): void {
    this.generation++;
    for (const w of [...this.wakers]) w();
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running].map((s) => s.stop()));
  }

  start(options: PollOptions, handler: (batch: ReadBatch) => Promise<void>): Subscription {
    let position = options.fromPosition;
    let stopped = false;
    let wake: (() => void) | undefined;
    let reportFailure: (e: unknown) => void = () => undefined;
    const failed = new Promise<unknown>((res) => {
      reportFailure = res;
    });
    const sleep = (ms: number) =>
      new Promise<void>((res) => {
        const done = () => {
          clearTimeout(timer);
          this.wakers.delete(done);
          wake = undefined;
          res();
        };
        const timer = setTimeout(done, ms);
        wake = done;
        this.wakers.add(done);
      });

    const loop = async () => {
      await options.beforeFirstRead?.();
      let blocked = 0;
      let errors = 0;
      while (!stopped) {
        const seen = this.generation;
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
        if (batch.blocked) {
          // Committed events wait behind an older transaction still in flight: look again as soon
          // as an append ends (a wake; one during the read counts too), or soon, for a transaction
          // that announces nothing.
          if (this.generation === seen) await sleep(backoffMs(++blocked, BLOCKED_POLL_BACKOFF));
        } else if (this.generation === seen) {
          // Caught up: wait for a wake; the timeout covers a lost one.
          await sleep(options.idleMs());
        }
      }
    };
    const looping = loop().catch((e: unknown) => {
      stopped = true;
      reportFailure(e);
    });
    const sub: Subscription = {
      failed,
      stop: async () => {
        stopped = true;
        wake?.();
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
