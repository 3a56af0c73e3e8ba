import { Client, type Pool } from 'pg';

/**
 * One per process: wakes whoever waits for a projection's checkpoint to reach a
 * position (live SSE streams, read-your-writes), instead of each waiter polling
 * PostgreSQL on its own.
 *
 * - A commit in this process is announced directly (`announce`), with its position.
 * - Commits in other processes arrive as NOTIFY on `projection_checkpoint` (payload
 *   "<name> <position>"), sent by the committing process after its transaction
 *   (outside it: a NOTIFY inside would serialise the commits of all notifying writers),
 *   coalesced per projection. One LISTEN connection, opened on the first wait.
 * - A notification can be lost (the LISTEN connection drops, a process dies between
 *   its commit and its NOTIFY), so while anyone waits, one slow poll reads the
 *   checkpoints of the projections waited on — one query per process, whatever
 *   the number of waiters.
 */

export const CHECKPOINT_CHANNEL = 'projection_checkpoint';
/** Fallback poll while the LISTEN connection is up (it only covers lost notifications). */
const FALLBACK_POLL_MS = 1000;
/** Poll while there is no LISTEN connection. */
const UNLISTENED_POLL_MS = 200;
/** Commits of one projection within this window share one NOTIFY. */
const NOTIFY_COALESCE_MS = 10;
/** After a failed LISTEN connect, wait this long before trying again (polling meanwhile). */
const LISTEN_RETRY_MS = 5000;

interface Waiter {
  readonly position: number;
  readonly done: (reached: boolean) => void;
}

export interface CheckpointNotifierOptions {
  readonly connectionString: string;
  readonly log: (msg: string, err: unknown) => void;
  /** The fallback polls' intervals, listening and not (default FALLBACK_POLL_MS, UNLISTENED_POLL_MS). */
  readonly pollMs?: { readonly listening: number; readonly unlistened: number };
}

export class CheckpointNotifier {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly pendingNotify = new Map<string, number>();
  private notifyTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private listener: Client | undefined;
  private listenerStarting: Promise<void> | undefined;
  private listenRetryAt = 0;
  /** Set by close(); the next wait() starts listening again (an engine may be stopped and started). */
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly options: CheckpointNotifierOptions,
  ) {}

  /** Waiters in this process (for tests and metrics). */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  /**
   * Resolves true once projection `name` has committed `position`, false after
   * `timeoutMs` or when `signal` aborts.
   */
  async wait(name: string, position: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    this.closed = false;
    this.ensureListener();
    const deadline = Date.now() + Math.max(0, timeoutMs);
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let settle!: (reached: boolean) => void;
    const result = new Promise<boolean>((res) => {
      settle = res;
    });
    const waiter: Waiter = {
      position,
      done: (reached) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const set = this.waiters.get(name);
        set?.delete(waiter);
        if (set?.size === 0) this.waiters.delete(name);
        settle(reached);
      },
    };
    const onAbort = () => waiter.done(false);
    // Registered before the first read, so a notification arriving meanwhile is not lost.
    let set = this.waiters.get(name);
    if (!set) this.waiters.set(name, (set = new Set()));
    set.add(waiter);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.schedulePoll();
    try {
      const { rows } = await this.pool.query<{ position: number }>(
        'SELECT position FROM processor_checkpoints WHERE name = $1',
        [name],
      );
      if (rows[0]) this.reached(name, Number(rows[0].position));
    } catch (e) {
      this.options.log('projection checkpoint: read failed; the fallback poll retries', e);
    }
    // The timeout counts from the call, but never cuts the first read short (a 0 ms wait still looks once).
    if (!settled) timer = setTimeout(() => waiter.done(false), Math.max(0, deadline - Date.now()));
    return result;
  }

  /** A commit in this process: wakes local waiters now, and the other processes by NOTIFY. */
  announce(name: string, position: number): void {
    this.reached(name, position);
    this.pendingNotify.set(name, Math.max(position, this.pendingNotify.get(name) ?? -1));
    this.notifyTimer ??= setTimeout(() => void this.flush(), NOTIFY_COALESCE_MS);
  }

  /** Sends the pending NOTIFYs now (before a short-lived process such as the CLI ends its pool). */
  async flush(): Promise<void> {
    clearTimeout(this.notifyTimer);
    this.notifyTimer = undefined;
    const batch = [...this.pendingNotify];
    this.pendingNotify.clear();
    await Promise.all(
      batch.map(([n, p]) =>
        this.pool
          // Declared (migrations/0027): the NOTIFY's transaction id does not hold readers of the events back.
          .query('SELECT es_declare_no_append(), pg_notify($1, $2)', [CHECKPOINT_CHANNEL, `${n} ${p}`])
          .catch((e: unknown) => this.options.log('projection checkpoint: NOTIFY failed', e)),
      ),
    );
  }

  /** Sends what is pending, ends the LISTEN connection and the timers; pending waiters answer false. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w.done(false);
    await this.listenerStarting?.catch(() => undefined);
    const l = this.listener;
    this.listener = undefined;
    if (l) await l.end().catch(() => undefined);
  }

  private reached(name: string, position: number): void {
    if (!Number.isFinite(position)) return;
    for (const w of [...(this.waiters.get(name) ?? [])]) if (w.position <= position) w.done(true);
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.closed) return;
    this.pollTimer = setTimeout(
      () => {
        this.pollTimer = undefined;
        void this.poll();
      },
      this.listener
        ? (this.options.pollMs?.listening ?? FALLBACK_POLL_MS)
        : (this.options.pollMs?.unlistened ?? UNLISTENED_POLL_MS),
    );
    this.pollTimer.unref();
  }

  private async poll(): Promise<void> {
    const names = [...this.waiters.keys()];
    if (names.length === 0 || this.polling) return;
    this.polling = true;
    try {
      const { rows } = await this.pool.query<{ name: string; position: number }>(
        'SELECT name, position FROM processor_checkpoints WHERE name = ANY($1)',
        [names],
      );
      for (const r of rows) this.reached(r.name, Number(r.position));
    } catch (e) {
      this.options.log('projection checkpoint: poll failed', e);
    } finally {
      this.polling = false;
      if (this.waiters.size > 0) {
        this.ensureListener();
        this.schedulePoll();
      }
    }
  }

  private ensureListener(): void {
    if (this.listener || this.listenerStarting || this.closed || Date.now() < this.listenRetryAt) return;
    const client = new Client({
      connectionString: this.options.connectionString,
      application_name: 'projection-checkpoints',
    });
    const lost = (e: unknown) => {
      if (this.listener === client) this.listener = undefined;
      this.listenRetryAt = Date.now() + LISTEN_RETRY_MS;
      client.end().catch(() => undefined);
      if (!this.closed) this.options.log('projection checkpoint: LISTEN connection lost; polling until it is back', e);
    };
    client.on('error', lost);
    client.on('notification', (msg) => {
      if (msg.channel !== CHECKPOINT_CHANNEL || !msg.payload) return;
      const m = /^([a-z][a-z0-9_-]{0,50}) (\d{1,18})$/.exec(msg.payload);
      if (m) this.reached(m[1]!, Number(m[2]));
    });
    this.listenerStarting = (async () => {
      try {
        await client.connect();
        await client.query(`LISTEN ${CHECKPOINT_CHANNEL}`);
        if (this.closed) {
          await client.end().catch(() => undefined);
          return;
        }
        this.listener = client;
        // A commit between our last read and LISTEN went unheard: read once more.
        if (this.waiters.size > 0) void this.poll();
      } catch (e) {
        lost(e);
      } finally {
        this.listenerStarting = undefined;
      }
    })();
  }
}
