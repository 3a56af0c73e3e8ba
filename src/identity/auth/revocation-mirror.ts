import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { DomainError } from '../../../domain/shared/errors';
import { AuthErrorCode } from '../../platform/http/auth-errors';
import {
  issuedAt,
  parseRevocationEntry,
  type RevocableClaims,
  type RevocationEntry,
  type RevocationList,
  type RevokedBy,
} from './revocation';
import { DEFAULT_REDIS_TIMEOUT_MS } from './redis-call';

/**
 * The revocation list (revocation.ts) held in memory, so that a request is
 * checked without a round trip to Redis:
 *
 * 1. subscribe to the list's notices and to a channel of this mirror's own;
 * 2. load every entry and the number of the last revocation (`seq`), atomically;
 * 3. apply each notice as it comes; a notice numbered past the next one means one was
 *    missed: load again;
 * 4. every `maxStalenessMs / 4`, a heartbeat (`RevocationList.tick`) publishes the current
 *    `seq` on the mirror's own channel. Redis delivers a connection's messages in the order
 *    they were published, so when the heartbeat arrives every notice published before it has
 *    arrived too: if the mirror's `seq` equals the heartbeat's, the mirror held every
 *    revocation Redis had when the heartbeat was sent (it is fresh as of then); if not, a
 *    notice was lost: load again.
 *
 * A check fails CLOSED with 503 AUTH.REVOCATION_UNAVAILABLE when the mirror was last known
 * complete more than `maxStalenessMs` ago (it first asks for a heartbeat and waits for it a
 * moment, so a busy event loop alone does not turn requests away), and at once when the
 * subscription is lost (the connection closed: Redis stopped, the connection was killed).
 * So a revocation stored in Redis is refused by every instance's next request that starts
 * `maxStalenessMs` after it, or answered with 503 there: never let through.
 *
 * Revocations only ever add (a token, a family, a later cutoff) until they expire, so
 * applying one twice, out of order, or from this instance's own write before its notice
 * (`RevocationList.onRevoked`) is always safe.
 */
export interface RevocationMirrorOptions {
  /** Where the list lives; its connection runs the loads and heartbeats. */
  readonly list: RevocationList;
  /** For the mirror's own subscriber connection. */
  readonly redisUrl: string;
  /** A check refuses (503) when the mirror was last known complete longer ago than this. */
  readonly maxStalenessMs: number;
  /** How long a check on a stale mirror waits for a heartbeat before it answers 503; default min(500, maxStalenessMs). */
  readonly waitMs?: number | undefined;
  readonly log: {
    info(obj: Record<string, unknown>, msg: string): void;
    warn(obj: Record<string, unknown>, msg: string): void;
  };
  /** Monotonic milliseconds (tests may pass their own); default performance.now. */
  readonly clock?: (() => number) | undefined;
  /** Epoch milliseconds, for entry expiry; default Date.now. */
  readonly now?: (() => number) | undefined;
  /** Client name of the subscriber connection (CLIENT LIST); default auth-revocation-mirror:<random>. */
  readonly connectionName?: string | undefined;
}

/** What the mirror can say about a token without waiting. */
export type MirrorVerdict = 'ok' | RevokedBy | 'stale';

/** The mirror's state, for /metrics and tests. */
export interface MirrorStatus {
  /** 'down': not subscribed; 'loading': subscribed, loading; 'live': applying notices as they come. */
  readonly state: 'stopped' | 'down' | 'loading' | 'live';
  /** Number of the last revocation applied in order. */
  readonly seq: number;
  /** Monotonic ms at which the mirror was last known to hold every revocation (-Infinity: never). */
  readonly freshAt: number;
  readonly entries: number;
  /** Full loads so far (the first one, after a reconnect, after a missed notice). */
  readonly loads: number;
  /** Loads caused by a missed notice (a gap in the numbers, or a heartbeat ahead of the mirror). */
  readonly gaps: number;
}

/** Entries are swept this often (a hit on an expired one deletes it earlier). */
const SWEEP_INTERVAL_MS = 30_000;
/** A failed load is tried again after this long (the subscription stays). */
const RELOAD_BACKOFF_MS = 200;

export class RevocationMirror {
  private readonly tokens = new Map<string, number>();
  private readonly families = new Map<string, number>();
  private readonly subjects = new Map<string, { at: number; until: number }>();
  private readonly clock: () => number;
  private readonly now: () => number;
  private readonly waitMs: number;
  private readonly tickIntervalMs: number;
  private readonly tickChannel = `${randomUUID()}`;
  private readonly connectionName: string;
  private state: MirrorStatus['state'] = 'stopped';
  private seq = 0;
  private freshAt = -Infinity;
  private loads = 0;
  private gaps = 0;
  /** Bumped whenever a load in flight must be forgotten (lost subscription, newer load). */
  private generation = 0;
  /** Notices received while loading, applied after the snapshot. */
  private buffered: RevocationEntry[] = [];
  private nextTick = 0;
  private lastTickAt = -Infinity;
  /** When the last load was sent: a heartbeat sent before it may report an older number. */
  private loadSentAt = -Infinity;
  /** Heartbeats in flight: id -> when sent (monotonic ms). */
  private readonly ticks = new Map<number, number>();
  private readonly waiters = new Set<() => void>();
  private subscriber: Redis | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private reloadTimer: NodeJS.Timeout | undefined;
  private stopListening: (() => void) | undefined;
  /** Whether revocations stored before the list was indexed have been indexed (once per process). */
  private indexed = false;

  constructor(private readonly options: RevocationMirrorOptions) {
    if (!(options.maxStalenessMs > 0)) throw new Error('maxStalenessMs must be positive');
    this.clock = options.clock ?? (() => performance.now());
    this.now = options.now ?? Date.now;
    this.waitMs = options.waitMs ?? Math.min(DEFAULT_REDIS_TIMEOUT_MS, options.maxStalenessMs);
    this.tickIntervalMs = Math.max(10, Math.floor(options.maxStalenessMs / 4));
    this.connectionName = options.connectionName ?? `auth-revocation-mirror:${this.tickChannel.slice(0, 8)}`;
  }

  /** The channel this mirror's heartbeats come back on. */
  private get heartbeatChannel(): string {
    return `${this.options.list.channel}:heartbeat:${this.tickChannel}`;
  }

  get status(): MirrorStatus {
    return {
      state: this.state,
      seq: this.seq,
      freshAt: this.freshAt,
      entries: this.tokens.size + this.families.size + this.subjects.size,
      loads: this.loads,
      gaps: this.gaps,
    };
  }

  /** Client name of the subscriber connection (tests kill it with CLIENT KILL). */
  get subscriberName(): string {
    return this.connectionName;
  }

  /**
   * Subscribes, loads and starts the heartbeat. Resolves once the mirror is live, or after
   * `timeoutMs` (then checks answer 503 until it is; it keeps trying to connect).
   */
  async start(timeoutMs = 5000): Promise<void> {
    if (this.subscriber) return;
    this.state = 'down';
    this.stopListening = this.options.list.onRevoked((entry) => this.apply(entry));
    const sub = new Redis(this.options.redisUrl, {
      lazyConnect: true,
      connectionName: this.connectionName,
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
      // Re-subscribed by hand on every 'ready', then loaded: a load must follow the subscription.
      autoResubscribe: false,
    });
    this.subscriber = sub;
    sub.on('error', () => undefined); // reconnects by itself; until then checks answer 503
    sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    sub.on('close', () => this.lost('the subscriber connection closed'));
    sub.on('ready', () => void this.subscribe(sub));
    this.timer = setInterval(() => this.heartbeat(), this.tickIntervalMs);
    this.timer.unref();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    sub.connect().catch(() => undefined);
    await this.waitFresh(timeoutMs);
  }

  close(): void {
    this.state = 'stopped';
    this.generation++;
    clearInterval(this.timer);
    clearInterval(this.sweeper);
    clearTimeout(this.reloadTimer);
    this.stopListening?.();
    const sub = this.subscriber;
    this.subscriber = undefined;
    sub?.disconnect();
    this.freshAt = -Infinity;
    this.wake();
  }

  /** Why the token is revoked, 'ok', or 'stale' when the mirror cannot vouch for its answer now. */
  verdict(claims: RevocableClaims): MirrorVerdict {
    if (!this.isFresh()) return 'stale';
    return this.lookup(claims) ?? 'ok';
  }

  /**
   * Throws 401 AUTH.TOKEN_REVOKED for a revoked token; returns at once (no promise) when the
   * mirror is fresh and the token good; otherwise a promise that waits a moment for the mirror
   * to be confirmed, then answers the same way or rejects with 503 AUTH.REVOCATION_UNAVAILABLE.
   */
  check(claims: RevocableClaims): void | Promise<void> {
    const v = this.verdict(claims);
    if (v === 'ok') return;
    if (v !== 'stale') throw revoked();
    return this.waitFresh(this.state === 'down' ? 0 : this.waitMs).then((fresh) => {
      if (!fresh) throw unavailable();
      if (this.lookup(claims)) throw revoked();
    });
  }

  /** Resolves true once the mirror is fresh, false after `timeoutMs` (at once for 0). */
  waitFresh(timeoutMs: number): Promise<boolean> {
    if (this.isFresh()) return Promise.resolve(true);
    if (timeoutMs <= 0 || this.state === 'stopped') return Promise.resolve(false);
    // One heartbeat in flight that was sent after the mirror went stale is enough.
    if (this.state === 'live' && this.clock() - this.lastTickAt > this.options.maxStalenessMs / 2) this.heartbeat();
    return new Promise((resolve) => {
      const done = (fresh: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(fresh);
      };
      const wake = () => {
        if (this.isFresh()) done(true);
        else if (this.state === 'stopped') done(false);
      };
      const timer = setTimeout(() => done(this.isFresh()), timeoutMs);
      this.waiters.add(wake);
    });
  }

  private isFresh(): boolean {
    return this.state === 'live' && this.clock() - this.freshAt <= this.options.maxStalenessMs;
  }

  private lookup(claims: RevocableClaims): RevokedBy | undefined {
    const nowS = this.now() / 1000;
    const token = this.tokens.get(claims.jti);
    if (token !== undefined) {
      if (token >= nowS) return 'token';
      this.tokens.delete(claims.jti);
    }
    if (claims.sid !== undefined) {
      const family = this.families.get(claims.sid);
      if (family !== undefined) {
        if (family >= nowS) return 'family';
        this.families.delete(claims.sid);
      }
    }
    const subject = this.subjects.get(claims.sub);
    if (subject !== undefined) {
      if (subject.until < nowS) this.subjects.delete(claims.sub);
      else if (issuedAt(claims) <= subject.at) return 'subject';
    }
    return undefined;
  }

  private apply(entry: RevocationEntry): void {
    const n = entry.notice;
    switch (n.kind) {
      case 'jti':
        this.tokens.set(n.id, Math.max(this.tokens.get(n.id) ?? -Infinity, entry.until));
        return;
      case 'sid':
        this.families.set(n.id, Math.max(this.families.get(n.id) ?? -Infinity, entry.until));
        return;
      case 'sub': {
        const cur = this.subjects.get(n.id);
        this.subjects.set(n.id, {
          at: Math.max(cur?.at ?? -Infinity, n.at),
          until: Math.max(cur?.until ?? -Infinity, entry.until),
        });
        return;
      }
      default: {
        const never: never = n;
        throw new Error(`unknown revocation ${JSON.stringify(never)}`);
      }
    }
  }

  private onMessage(channel: string, message: string): void {
    if (channel === this.heartbeatChannel) {
      this.onHeartbeat(message);
      return;
    }
    if (channel !== this.options.list.channel) return;
    // A notice without a lifetime is kept as long as any token lives.
    const entry = parseRevocationEntry(message, this.now() / 1000 + this.options.list.entryLifeS);
    if (!entry) return;
    if (this.state === 'loading') {
      this.buffered.push(entry);
      return;
    }
    if (this.state !== 'live') return;
    this.apply(entry);
    if (entry.seq === this.seq + 1) this.seq = entry.seq;
    else if (entry.seq === undefined || entry.seq > this.seq) this.missed(`notice ${entry.seq ?? '(unnumbered)'}`);
  }

  private onHeartbeat(message: string): void {
    const [id, seq] = message.split(' ').map(Number);
    if (id === undefined || seq === undefined) return;
    const sentAt = this.ticks.get(id);
    for (const t of this.ticks.keys()) if (t <= id) this.ticks.delete(t);
    if (this.state !== 'live' || sentAt === undefined || sentAt < this.loadSentAt) return;
    if (seq !== this.seq) {
      this.missed(`heartbeat at ${seq}`);
      return;
    }
    if (sentAt > this.freshAt) this.freshAt = sentAt;
    this.wake();
  }

  private heartbeat(): void {
    if (this.state !== 'live') return;
    const id = ++this.nextTick;
    const sentAt = this.clock();
    this.lastTickAt = sentAt;
    this.ticks.set(id, sentAt);
    // Heartbeats that never came back (a lost connection): forget them.
    for (const [t, at] of this.ticks) {
      if (sentAt - at <= 2 * this.options.maxStalenessMs) break;
      this.ticks.delete(t);
    }
    this.options.list.tick(this.heartbeatChannel, id).catch(() => undefined); // no answer: the mirror ages
  }

  /** A notice was missed (a gap in the numbers): load again. */
  private missed(what: string): void {
    this.gaps++;
    this.options.log.warn({ seq: this.seq, saw: what }, 'auth: revocation notices missed; reloading the list');
    this.state = 'loading';
    void this.load();
  }

  private lost(why: string): void {
    if (this.state === 'stopped') return;
    if (this.state === 'live')
      this.options.log.warn({ why }, 'auth: revocation list subscription lost; authenticated requests get 503');
    this.state = 'down';
    this.generation++;
    this.freshAt = -Infinity;
    this.buffered = [];
    this.ticks.clear();
    clearTimeout(this.reloadTimer);
    this.wake();
  }

  private async subscribe(sub: Redis): Promise<void> {
    if (sub !== this.subscriber) return;
    const generation = ++this.generation;
    try {
      await sub.subscribe(this.options.list.channel, this.heartbeatChannel);
    } catch (e) {
      this.options.log.warn({ err: e }, 'auth: could not subscribe to revocation notices; retrying on reconnect');
      return;
    }
    if (generation !== this.generation || sub !== this.subscriber) return;
    this.state = 'loading';
    await this.load();
  }

  private async load(): Promise<void> {
    const generation = ++this.generation;
    this.buffered = [];
    clearTimeout(this.reloadTimer);
    const sentAt = this.clock();
    // Heartbeats and loads share one connection, so a heartbeat sent after this reports at least the snapshot's number.
    this.loadSentAt = sentAt;
    let snapshot;
    try {
      if (!this.indexed) {
        const added = await this.options.list.indexExisting();
        if (added > 0) this.options.log.info({ added }, 'auth: indexed revocations stored by an older release');
        this.indexed = true;
      }
      snapshot = await this.options.list.load();
    } catch (e) {
      if (generation !== this.generation) return;
      this.options.log.warn({ err: e }, 'auth: could not load the revocation list; retrying');
      this.reloadTimer = setTimeout(() => void this.load(), RELOAD_BACKOFF_MS);
      this.reloadTimer.unref();
      return;
    }
    if (generation !== this.generation || this.state !== 'loading') return;
    this.loads++;
    // Merge, never replace: nothing is un-revoked, and this instance's own writes may be newer.
    for (const entry of snapshot.entries) this.apply(entry);
    this.seq = snapshot.seq;
    const later = this.buffered.filter((e) => e.seq === undefined || e.seq > snapshot.seq);
    this.buffered = [];
    later.sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
    for (const entry of later) {
      this.apply(entry);
      if (entry.seq === this.seq + 1) this.seq = entry.seq;
    }
    if (later.some((e) => e.seq === undefined || e.seq > this.seq)) {
      this.missed('notices received while loading');
      return;
    }
    this.state = 'live';
    // Subscribed before the load was sent: every revocation up to this moment is in.
    if (sentAt > this.freshAt) this.freshAt = sentAt;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private sweep(): void {
    const nowS = this.now() / 1000;
    for (const [k, until] of this.tokens) if (until < nowS) this.tokens.delete(k);
    for (const [k, until] of this.families) if (until < nowS) this.families.delete(k);
    for (const [k, s] of this.subjects) if (s.until < nowS) this.subjects.delete(k);
  }
}

const revoked = () =>
  new DomainError('unauthenticated', AuthErrorCode.TOKEN_REVOKED, 'the access token has been revoked');
const unavailable = () =>
  new DomainError(
    'unavailable',
    AuthErrorCode.REVOCATION_UNAVAILABLE,
    'the token revocation list is unavailable; try again shortly',
    [],
    { retryAfterSeconds: 1 },
  );
