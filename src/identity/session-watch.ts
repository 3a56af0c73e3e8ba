import { Redis } from 'ioredis';
import type { Pool } from 'pg';
import { deviceQuotaStreamId, type DeviceQuotaEvent } from '../../domain/identity/device-quota.events';
import type { EventStore } from '../platform/event-store/event-store';
import type { DeviceState } from '../../domain/identity/device.decider';
import type { UserState } from '../../domain/identity/user.decider';
import {
  parseRevocationNotice,
  type RefreshTokenStore,
  type RevocationList,
  type RevocationNotice,
  type RevokedBy,
} from './auth';
import type { Principal } from '../platform/http/access';

/**
 * Long-lived sessions (SSE streams, MQTT connections) are authorised once, when
 * they open; this ends them when that access is withdrawn later, on whichever
 * instance holds them:
 *
 * - at once, on a revocation notice from Redis pub/sub (RevocationList publishes
 *   one with every revocation: logout, refresh-token reuse, disable, role loss,
 *   device revoke, a disabled owner's devices);
 * - at the token's expiry (a timer per session);
 * - on a periodic re-check of every session against the authoritative state
 *   (revocation keys, refresh families, the user's and device's event streams),
 *   the safety net for a notice that was missed (pub/sub delivers at most once,
 *   and not while the subscriber reconnects; a re-check also runs right after a
 *   reconnect).
 *
 * A re-check that cannot reach Redis or PostgreSQL fails closed, with a grace of
 * one interval: a session not confirmed for two intervals in a row is ended
 * (its client reconnects and is authenticated afresh).
 */

export type SessionEndReason =
  | 'token expired'
  | 'token revoked'
  | 'session ended'
  | 'access withdrawn'
  | 'user disabled'
  | 'role revoked'
  | 'device revoked'
  | 'device owner disabled'
  | 'access unverifiable';

export interface SessionWatchOptions {
  readonly redisUrl: string;
  /** RevocationList.channel */
  readonly channel: string;
  readonly recheckIntervalMs: number;
  /** For each principal, why its access is withdrawn now, or undefined while it stands. Throws when it cannot tell. */
  readonly recheck: (principals: readonly Principal[]) => Promise<(SessionEndReason | undefined)[]>;
  readonly log: {
    info(obj: Record<string, unknown>, msg: string): void;
    warn(obj: Record<string, unknown>, msg: string): void;
  };
  readonly now?: () => number;
}

interface Watched {
  readonly principal: Principal;
  readonly end: (reason: SessionEndReason) => void;
  readonly keys: readonly string[];
  timer: NodeJS.Timeout | undefined;
  /** Since when re-checks have failed to confirm this session (undefined: confirmed by the last one). */
  unconfirmedSince: number | undefined;
}

/**
 * Notices are remembered this long: a session authenticated just before a revocation
 * but registered just after its notice (the route was still setting up) is ended when
 * it registers, instead of at the next re-check.
 */
const RECENT_NOTICE_MS = 60_000;
/** setTimeout's longest delay; a token living longer is re-armed by the periodic re-check. */
const MAX_TIMER_MS = 2_147_000_000;
/** Sessions re-checked per call of `recheck` (it loads their users and devices). */
const RECHECK_CHUNK = 200;

export class SessionWatch {
  private readonly sessions = new Set<Watched>();
  /** 'jti:<jti>', 'sid:<sid>', 'sub:<subject>' -> the sessions a notice about it concerns. */
  private readonly index = new Map<string, Set<Watched>>();
  private readonly now: () => number;
  /** Recent notices by index key (see RECENT_NOTICE_MS): when received, and a subject's cutoff. */
  private readonly recent = new Map<string, { readonly receivedAt: number; readonly notice: RevocationNotice }>();
  private subscriber: Redis | undefined;
  private interval: NodeJS.Timeout | undefined;
  private rechecking: Promise<void> | undefined;
  private ready = false;

  constructor(private readonly options: SessionWatchOptions) {
    this.now = options.now ?? Date.now;
    if (!(options.recheckIntervalMs > 0)) throw new Error('recheckIntervalMs must be positive');
  }

  /** Sessions being watched in this process. */
  get size(): number {
    return this.sessions.size;
  }

  /**
   * Subscribes to revocation notices and starts the periodic re-check. Resolves once
   * subscribed, or after `timeoutMs` (then the subscription completes later, and the
   * re-check after it covers what was missed meanwhile).
   */
  async start(timeoutMs = 5000): Promise<void> {
    if (this.subscriber) return;
    const sub = new Redis(this.options.redisUrl, {
      lazyConnect: true,
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
    });
    this.subscriber = sub;
    sub.on('error', () => undefined); // reconnects by itself; the re-check covers the gap
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.options.channel) return;
      const notice = parseRevocationNotice(message);
      if (notice) this.onNotice(notice);
    });
    sub.on('ready', () => {
      // Notices published while we were disconnected are lost: look again at once.
      if (this.ready) void this.recheckNow();
      this.ready = true;
    });
    this.interval = setInterval(() => void this.recheckNow(), this.options.recheckIntervalMs);
    this.interval.unref();
    let timer: NodeJS.Timeout | undefined;
    const subscribed = sub.connect().then(() => sub.subscribe(this.options.channel));
    try {
      await Promise.race([
        subscribed,
        new Promise((res) => {
          timer = setTimeout(res, timeoutMs);
        }),
      ]);
    } catch (e) {
      this.options.log.warn(
        { err: e },
        'sessions: could not subscribe to revocation notices yet; re-checks cover the gap',
      );
    } finally {
      clearTimeout(timer);
    }
    subscribed.catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.interval) clearInterval(this.interval);
    this.interval = undefined;
    for (const w of this.sessions) clearTimeout(w.timer);
    const sub = this.subscriber;
    this.subscriber = undefined;
    sub?.disconnect();
    await this.rechecking;
  }

  /**
   * Watches a session opened with `principal`: `end(reason)` is called once, when
   * its access is withdrawn. Returns the function that stops watching.
   */
  watch(principal: Principal, end: (reason: SessionEndReason) => void): () => void {
    const keys = [`jti:${principal.jti}`, `sub:${principal.id}`, ...(principal.sid ? [`sid:${principal.sid}`] : [])];
    const w: Watched = { principal, end, keys, timer: undefined, unconfirmedSince: undefined };
    this.sessions.add(w);
    for (const k of keys) {
      let set = this.index.get(k);
      if (!set) this.index.set(k, (set = new Set()));
      set.add(w);
    }
    this.armExpiry(w);
    const missed = keys.map((k) => this.recent.get(k)).find((r) => r && this.concerns(r.notice, principal));
    // Not inside watch(): the caller has not stored its unwatch function yet.
    if (missed) setTimeout(() => this.finish(w, endReason(missed.notice)), 0).unref();
    return () => this.forget(w);
  }

  /** Re-checks every session now (also runs every recheckIntervalMs); concurrent calls share one run. */
  recheckNow(): Promise<void> {
    this.rechecking ??= this.recheckAll().finally(() => {
      this.rechecking = undefined;
    });
    return this.rechecking;
  }

  private onNotice(n: RevocationNotice): void {
    const key = `${n.kind}:${n.id}`;
    const now = this.now();
    this.recent.delete(key); // re-inserted last: the map stays in order of receipt
    this.recent.set(key, { receivedAt: now, notice: n });
    for (const [k, r] of this.recent) {
      if (now - r.receivedAt < RECENT_NOTICE_MS) break;
      this.recent.delete(k);
    }
    for (const w of [...(this.index.get(key) ?? [])]) {
      if (this.concerns(n, w.principal)) this.finish(w, endReason(n));
    }
  }

  /** Whether the notice revokes this principal's token (its key already matched). */
  private concerns(n: RevocationNotice, p: Principal): boolean {
    switch (n.kind) {
      case 'jti':
      case 'sid':
        return true;
      case 'sub':
        // Only tokens issued up to the cutoff: one issued after it (a new login) stands.
        return p.iat === undefined || p.iat <= n.at;
      default: {
        const never: never = n;
        throw new Error(`unknown notice ${JSON.stringify(never)}`);
      }
    }
  }

  private armExpiry(w: Watched): void {
    clearTimeout(w.timer);
    const ms = w.principal.exp * 1000 - this.now();
    if (ms <= 0) {
      // Ended on the next tick, not inside watch(): the caller has not stored the unwatch function yet.
      w.timer = setTimeout(() => this.finish(w, 'token expired'), 0);
    } else {
      w.timer = setTimeout(
        () => (this.now() >= w.principal.exp * 1000 ? this.finish(w, 'token expired') : this.armExpiry(w)),
        Math.min(ms, MAX_TIMER_MS),
      );
    }
    w.timer.unref();
  }

  private async recheckAll(): Promise<void> {
    const all = [...this.sessions];
    for (let at = 0; at < all.length; at += RECHECK_CHUNK) {
      const chunk = all.slice(at, at + RECHECK_CHUNK).filter((w) => this.sessions.has(w));
      if (chunk.length === 0) continue;
      let reasons: (SessionEndReason | undefined)[];
      try {
        reasons = await this.options.recheck(chunk.map((w) => w.principal));
      } catch (e) {
        const now = this.now();
        this.options.log.warn(
          { err: e, sessions: chunk.length },
          'sessions: re-check failed; sessions not confirmed twice in a row are ended',
        );
        for (const w of chunk) {
          w.unconfirmedSince ??= now;
          if (now - w.unconfirmedSince >= 2 * this.options.recheckIntervalMs) this.finish(w, 'access unverifiable');
        }
        continue;
      }
      chunk.forEach((w, i) => {
        w.unconfirmedSince = undefined;
        const reason = reasons[i] ?? (w.principal.exp * 1000 <= this.now() ? 'token expired' : undefined);
        if (reason) this.finish(w, reason);
      });
    }
  }

  private finish(w: Watched, reason: SessionEndReason): void {
    if (!this.forget(w)) return;
    this.options.log.info(
      { kind: w.principal.kind, subject: w.principal.id, reason },
      'sessions: access withdrawn; ending a long-lived session',
    );
    try {
      w.end(reason);
    } catch (e) {
      this.options.log.warn({ err: e }, 'sessions: ending a session failed');
    }
  }

  private forget(w: Watched): boolean {
    if (!this.sessions.delete(w)) return false;
    clearTimeout(w.timer);
    for (const k of w.keys) {
      const set = this.index.get(k);
      set?.delete(w);
      if (set?.size === 0) this.index.delete(k);
    }
    return true;
  }
}

function endReason(n: RevocationNotice): SessionEndReason {
  return n.kind === 'jti' ? 'token revoked' : n.kind === 'sid' ? 'session ended' : 'access withdrawn';
}

export interface SessionCheckDeps {
  readonly revocation: Pick<RevocationList, 'whyRevoked'>;
  readonly refresh: Pick<RefreshTokenStore, 'endedFamilies'>;
  readonly loadUser: (userId: string) => Promise<UserState>;
  readonly loadDevice: (deviceId: string) => Promise<DeviceState>;
}

/** Loads of user and device streams at once during a re-check: leaves the pool to requests. */
const LOAD_CONCURRENCY = 8;

/**
 * The full check of long-lived sessions: the revocation keys (one MGET), the
 * refresh families (one query), and the user's and device's own streams in
 * the event store (each loaded once), so that a session ends even when the
 * Redis write that should have ended it was lost.
 */
export async function checkSessions(
  deps: SessionCheckDeps,
  principals: readonly Principal[],
): Promise<(SessionEndReason | undefined)[]> {
  const revokedBy = await deps.revocation.whyRevoked(
    principals.map((p) => {
      const iat = p.iat ?? 0; // unknown issue time: any subject cutoff revokes it (fail closed)
      return {
        jti: p.jti,
        sub: p.id,
        iat: Math.floor(iat),
        iatMs: Math.round(iat * 1000),
        ...(p.sid ? { sid: p.sid } : {}),
      };
    }),
  );
  const ended = await deps.refresh.endedFamilies(
    principals.flatMap((p) => (p.kind === 'user' && p.sid ? [p.sid] : [])),
  );
  const users = new Map<string, Promise<UserState>>();
  const devices = new Map<string, Promise<DeviceState>>();
  const user = (id: string) => memo(users, id, (u) => deps.loadUser(u));
  const device = (id: string) => memo(devices, id, (d) => deps.loadDevice(d));
  const byRevocation: Record<RevokedBy, SessionEndReason> = {
    token: 'token revoked',
    family: 'session ended',
    subject: 'access withdrawn',
  };
  const one = async (p: Principal, i: number): Promise<SessionEndReason | undefined> => {
    const r = revokedBy[i];
    if (r) return byRevocation[r];
    if (p.kind === 'user') {
      if (p.sid && ended.has(p.sid.toLowerCase())) return 'session ended';
      const u = await user(p.id);
      if (u.status !== 'active') return 'user disabled';
      if (!p.roles.every((role) => u.roles.includes(role))) return 'role revoked';
      return undefined;
    }
    const d = await device(p.id);
    if (d.status !== 'active') return 'device revoked';
    if ((await user(d.ownerId)).status !== 'active') return 'device owner disabled';
    return undefined;
  };
  const out: (SessionEndReason | undefined)[] = [];
  for (let at = 0; at < principals.length; at += LOAD_CONCURRENCY) {
    out.push(...(await Promise.all(principals.slice(at, at + LOAD_CONCURRENCY).map((p, j) => one(p, at + j)))));
  }
  return out;
}

function memo<T>(cache: Map<string, Promise<T>>, id: string, load: (id: string) => Promise<T>): Promise<T> {
  let p = cache.get(id);
  if (!p) cache.set(id, (p = load(id)));
  return p;
}

/**
 * Every device a user registered, from the event store (a read model may lag):
 * disabling a user revokes them. On PostgreSQL through the partial index of
 * migrations/0023 (it also finds devices registered before device quotas
 * existed). On another store, from the user's device-quota stream: every
 * registration takes its slot there in the same atomic append (register-device.ts).
 */
export async function devicesOwnedBy(
  store: Pick<EventStore, 'kind' | 'readStream'>,
  pool: Pick<Pool, 'query'>,
  userId: string,
): Promise<string[]> {
  if (store.kind !== 'postgresql') {
    const slots = await store.readStream<DeviceQuotaEvent>(deviceQuotaStreamId(userId));
    return [...new Set(slots.flatMap((e) => (e.type === 'identity.DeviceSlotTaken' ? [e.data.deviceId] : [])))];
  }
  const { rows } = await pool.query<{ device_id: string }>(
    `SELECT data->>'deviceId' AS device_id FROM events WHERE type = 'identity.DeviceRegistered' AND data->>'ownerId' = $1`,
    [userId],
  );
  return rows.map((r) => r.device_id);
}
