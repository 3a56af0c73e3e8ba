/**
 * Events handled by key, in parallel across keys, in order within a key, and
 * the lowest position not finished yet: what a pipelined processor
 * (processor.ts, `checkpoint: 'pipelined'`) needs to let one slow key (an
 * order waiting on its payment provider) never hold the others back, while
 * its checkpoint still never passes an event that is not finished.
 *
 * - `push` queues a task behind the earlier ones of its key; at most
 *   `concurrency` keys run at once. It waits while `maxPending` tasks are
 *   unfinished, so reading ahead of slow keys is bounded.
 * - `mark` records a position with nothing to do (a read that ended past
 *   filtered-out events), so the checkpoint moves past it too.
 * - `safe` is the highest position below which every task is finished.
 * - A task that throws fails the pipeline: `failed` resolves with the error,
 *   nothing more starts, and `close` waits for the tasks still running.
 */
export interface PipelineOptions {
  readonly concurrency: number;
  readonly maxPending: number;
  /** `safe` moved forward. */
  readonly onSafe?: (position: number) => void;
}

interface Slot {
  readonly position: number;
  done: boolean;
}

interface Task {
  /** Absent for work that holds no position back (resuming a parked key: its events are stored aside). */
  readonly slot: Slot | undefined;
  readonly run: () => Promise<void>;
}

export class KeyedPipeline {
  /** Unfinished and finished positions in arrival order; finished ones leave from the front. */
  private readonly slots: Slot[] = [];
  private head = 0;
  /** Queued tasks per key; a key is present while it has a task queued or running. */
  private readonly queues = new Map<string, Task[]>();
  /** Keys with a task waiting for a free slot of concurrency, in arrival order. */
  private readonly ready: string[] = [];
  private readonly runningKeys = new Set<string>();
  private readonly runningTasks = new Set<Promise<void>>();
  private roomWaiters: (() => void)[] = [];
  private closed = false;
  private failure: ((e: unknown) => void) | undefined;
  /** Resolves with the first task error. */
  readonly failed: Promise<unknown>;
  safe: number;

  constructor(
    from: number,
    private readonly options: PipelineOptions,
  ) {
    this.safe = from;
    this.failed = new Promise((res) => {
      this.failure = res;
    });
  }

  /** Unfinished tasks (and marks not yet passed). */
  get pending(): number {
    return this.slots.length - this.head;
  }

  /**
   * Queues `run` for `key` at `position` (undefined: the task holds no position
   * back); resolves once it is queued and there is room for more.
   */
  async push(position: number | undefined, key: string, run: () => Promise<void>): Promise<void> {
    if (this.closed) return;
    const slot: Slot | undefined = position === undefined ? undefined : { position, done: false };
    if (slot) this.slots.push(slot);
    const queue = this.queues.get(key);
    if (queue) queue.push({ slot, run });
    else {
      this.queues.set(key, [{ slot, run }]);
      this.ready.push(key);
      this.pump();
    }
    while (!this.closed && this.pending >= this.options.maxPending) {
      await new Promise<void>((res) => this.roomWaiters.push(res));
    }
  }

  /**
   * Queues `run` for `key` with no position and without waiting for room: for
   * work a running task adds (waiting there for room could wait for itself).
   */
  enqueue(key: string, run: () => Promise<void>): void {
    if (this.closed) return;
    const queue = this.queues.get(key);
    if (queue) queue.push({ slot: undefined, run });
    else {
      this.queues.set(key, [{ slot: undefined, run }]);
      this.ready.push(key);
      this.pump();
    }
  }

  /** A position with nothing to handle: the checkpoint may pass it once everything before it is finished. */
  mark(position: number): void {
    if (this.closed) return;
    this.slots.push({ position, done: true });
    this.advance();
  }

  /** Starts nothing more and waits for the tasks running now (their keys' later tasks are dropped). */
  async close(): Promise<void> {
    this.closed = true;
    this.release();
    while (this.runningTasks.size) await Promise.allSettled([...this.runningTasks]);
  }

  private pump(): void {
    while (!this.closed && this.runningKeys.size < this.options.concurrency && this.ready.length) {
      const key = this.ready.shift()!;
      this.runningKeys.add(key);
      const p = this.drainKey(key);
      this.runningTasks.add(p);
      void p.finally(() => this.runningTasks.delete(p));
    }
  }

  /** Runs one key's tasks in order until its queue is empty, then frees its slot of concurrency. */
  private async drainKey(key: string): Promise<void> {
    try {
      for (;;) {
        const queue = this.queues.get(key);
        const task = queue?.[0];
        if (!queue || !task || this.closed) {
          this.queues.delete(key);
          return;
        }
        await task.run();
        queue.shift();
        if (task.slot) {
          task.slot.done = true;
          this.advance();
        }
        // Fairness: a key with more work goes behind the keys waiting, so a busy key cannot starve them.
        if (queue.length && this.ready.length) {
          this.ready.push(key);
          return;
        }
      }
    } catch (e) {
      this.closed = true;
      this.release();
      this.failure?.(e);
    } finally {
      this.runningKeys.delete(key);
      this.pump();
    }
  }

  private advance(): void {
    let moved = false;
    while (this.head < this.slots.length && this.slots[this.head]!.done) {
      this.safe = Math.max(this.safe, this.slots[this.head]!.position);
      this.head++;
      moved = true;
    }
    if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots.splice(0, this.head);
      this.head = 0;
    }
    if (!moved) return;
    this.release();
    this.options.onSafe?.(this.safe);
  }

  private release(): void {
    if (!this.closed && this.pending >= this.options.maxPending) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }
}
