import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { Redis } from 'ioredis';
import type { Config } from '../../config';
import { DomainError } from '../../../domain/shared/errors';
import { DEFAULT_REDIS_TIMEOUT_MS, redisCall } from './redis-call';

/**
 * Failed-login counters in Redis, per account and per client address, in a
 * fixed window that starts at the first failure:
 *
 *   <prefix>acct:<sha256(normalised account)>   failures of one account (no e-mail in Redis)
 *   <prefix>addr:<normalised address>          failures from one address (IPv6: its /64)
 *
 * `check` refuses (429 AUTH.TOO_MANY_ATTEMPTS with retryAfterSeconds) once a
 * counter has reached its maximum; a success clears only the account counter
 * (clearing the address counter would let one good account launder guesses
 * at others). Every call fails closed (503) when Redis does not answer.
 */
export interface LoginLimiterOptions {
  readonly maxPerAccount: number;
  readonly maxPerAddress: number;
  readonly windowS: number;
  /** Key prefix; default "auth:login:". */
  readonly keyPrefix?: string | undefined;
  /** Per-call bound; default 500 ms. */
  readonly timeoutMs?: number | undefined;
}

const UNAVAILABLE = 'AUTH.LOGIN_LIMITER_UNAVAILABLE';

export function normaliseAccount(account: string): string {
  return account.normalize('NFKC').trim().toLowerCase();
}

/** The eight groups of an IPv6 address (a trailing dotted quad becomes two groups), lower case, no leading zeros. */
function expandIPv6(ip: string): string[] | undefined {
  let a = ip;
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (quad) {
    const [b0, b1, b2, b3] = quad.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, quad.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const halves = a.split('::');
  if (halves.length > 2) return undefined;
  const part = (s: string | undefined) => (s ? s.split(':') : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return undefined;
  const groups = [...head, ...Array<string>(fill).fill('0'), ...tail];
  return groups.length === 8 ? groups.map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')) : undefined;
}

/** One key per client: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by /64 (one subscriber's block). */
export function normaliseAddress(address: string): string {
  let a = address.trim().toLowerCase();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (isIPv4(a)) return a;
  if (isIPv6(a)) {
    const g = expandIPv6(a);
    if (g) {
      if (g.slice(0, 5).every((x) => x === '0') && g[5] === 'ffff') {
        const hi = parseInt(g[6]!, 16);
        const lo = parseInt(g[7]!, 16);
        return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
      }
      return `${g.slice(0, 4).join(':')}::/64`;
    }
  }
  // Not an IP address (a proxy's name, "unknown"): still one bucket, but a bounded key.
  return `h:${createHash('sha256').update(a).digest('hex').slice(0, 32)}`;
}

export class LoginLimiter {
  private readonly prefix: string;
  private readonly timeoutMs: number;

  constructor(private readonly redis: Redis, private readonly options: LoginLimiterOptions) {
    this.prefix = options.keyPrefix ?? 'auth:login:';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    for (const n of ['maxPerAccount', 'maxPerAddress', 'windowS'] as const) {
      if (!Number.isInteger(options[n]) || options[n] <= 0) throw new Error(`${n} must be a positive integer`);
    }
  }

  static fromConfig(
    redis: Redis,
    config: Pick<Config, 'LOGIN_MAX_PER_ACCOUNT' | 'LOGIN_MAX_PER_ADDRESS' | 'LOGIN_WINDOW_S'>,
    extra: { keyPrefix?: string | undefined; timeoutMs?: number | undefined } = {},
  ): LoginLimiter {
    return new LoginLimiter(redis, {
      maxPerAccount: config.LOGIN_MAX_PER_ACCOUNT,
      maxPerAddress: config.LOGIN_MAX_PER_ADDRESS,
      windowS: config.LOGIN_WINDOW_S,
      keyPrefix: extra.keyPrefix,
      timeoutMs: extra.timeoutMs,
    });
  }

  accountKey(account: string): string {
    return `${this.prefix}acct:${createHash('sha256').update(normaliseAccount(account)).digest('hex')}`;
  }

  addressKey(address: string): string {
    return `${this.prefix}addr:${normaliseAddress(address)}`;
  }

  /** Throws 429 AUTH.TOO_MANY_ATTEMPTS (extra.retryAfterSeconds) when either counter is at its maximum. */
  async check(account: string, address: string): Promise<void> {
    const acct = this.accountKey(account);
    const addr = this.addressKey(address);
    const results = await this.call(async () => {
      const r = await this.redis.multi().get(acct).ttl(acct).get(addr).ttl(addr).exec();
      if (!r) throw new Error('transaction aborted');
      return r.map(([err, value]) => {
        if (err) throw err;
        return value;
      });
    });
    const [acctCount, acctTtl, addrCount, addrTtl] = results;
    const waits: number[] = [];
    if (Number(acctCount ?? 0) >= this.options.maxPerAccount) waits.push(this.retryAfter(acctTtl));
    if (Number(addrCount ?? 0) >= this.options.maxPerAddress) waits.push(this.retryAfter(addrTtl));
    if (waits.length) {
      const retryAfterSeconds = Math.max(...waits);
      throw new DomainError('rate_limited', 'AUTH.TOO_MANY_ATTEMPTS', 'too many failed login attempts; try again later', [], { retryAfterSeconds });
    }
  }

  /** Counts a failed attempt against both the account and the address; returns the counts. */
  async recordFailure(account: string, address: string): Promise<{ account: number; address: number }> {
    const acct = this.accountKey(account);
    const addr = this.addressKey(address);
    const w = this.options.windowS;
    const r = await this.call(async () => {
      // SET NX EX starts the window at the first failure; INCR never extends it.
      const res = await this.redis.multi().set(acct, '0', 'EX', w, 'NX').incr(acct).set(addr, '0', 'EX', w, 'NX').incr(addr).exec();
      if (!res) throw new Error('transaction aborted');
      return res.map(([err, value]) => {
        if (err) throw err;
        return value;
      });
    });
    return { account: Number(r[1]), address: Number(r[3]) };
  }

  /** A successful login clears the account's counter (not the address's). */
  async recordSuccess(account: string): Promise<void> {
    await this.call(() => this.redis.del(this.accountKey(account)));
  }

  private retryAfter(ttl: unknown): number {
    const t = Number(ttl);
    // -1 (no expiry, should not happen) or a race with expiry: wait a whole window / one second.
    if (t === -1) return this.options.windowS;
    return Math.max(1, Number.isFinite(t) ? t : this.options.windowS);
  }

  private call<T>(op: () => Promise<T>): Promise<T> {
    return redisCall(op, this.timeoutMs, UNAVAILABLE, 'the login rate limiter');
  }
}
