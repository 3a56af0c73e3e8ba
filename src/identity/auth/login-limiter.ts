import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { ChainableCommander, Redis } from 'ioredis';
import type { Config } from '../../config';
import { DomainError } from '../../../domain/shared/errors';
import { DEFAULT_REDIS_TIMEOUT_MS, redisCall } from './redis-call';
import { AuthErrorCode } from '../../platform/http/auth-errors';

/**
 * Failed-login counters in Redis, in fixed windows that start at the first
 * failure. Guessing stays throttled, yet a stranger cannot lock the owner out
 * (OWASP Authentication Cheat Sheet, "Account lockout"): the password is
 * never checked before these limits, so each limit must only refuse those
 * who could be the guesser.
 *
 *   <prefix>pair:<sha256(account, address)>  failures of one account from one address: 429 for that pair only
 *   <prefix>addr:<address>                   failures from one address, any account: 429 for that address
 *   <prefix>acct:<sha256(account)>           failures of one account, any address: 429 only for addresses
 *                                            not known to the account (a distributed guesser), never the owner's
 *   <prefix>known:<sha256(account, address)> an address that logged in to this account (kept knownAddressTtlS)
 *
 * Addresses are normalised (IPv6 per /64); no e-mail address is stored in a
 * key. A success clears its pair and marks the address as known; it clears
 * neither the address counter (one good account would launder guesses at
 * others) nor the account counter (the owner's login would give a
 * distributed guesser a fresh budget). Every call fails closed (503) when
 * Redis does not answer.
 */
export interface LoginLimiterOptions {
  /** Failures of one account from one address before that pair is refused. */
  readonly maxPerAccountAddress: number;
  readonly maxPerAddress: number;
  /** Failures of one account from all addresses before addresses it does not know are refused. */
  readonly maxPerAccount: number;
  readonly windowS: number;
  /** How long a successful login keeps its address known to the account. */
  readonly knownAddressTtlS: number;
  /** Key prefix; default "auth:login:". */
  readonly keyPrefix?: string | undefined;
  /** Per-call bound; default 500 ms. */
  readonly timeoutMs?: number | undefined;
}

const UNAVAILABLE = AuthErrorCode.LOGIN_LIMITER_UNAVAILABLE;

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

const tooManyAttempts = (retryAfterSeconds: number) =>
  new DomainError(
    'rate_limited',
    AuthErrorCode.TOO_MANY_ATTEMPTS,
    'too many failed login attempts; try again later',
    [],
    { retryAfterSeconds },
  );

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export class LoginLimiter {
  private readonly prefix: string;
  private readonly timeoutMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly options: LoginLimiterOptions,
  ) {
    this.prefix = options.keyPrefix ?? 'auth:login:';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    for (const n of [
      'maxPerAccountAddress',
      'maxPerAddress',
      'maxPerAccount',
      'windowS',
      'knownAddressTtlS',
    ] as const) {
      if (!Number.isInteger(options[n]) || options[n] <= 0) throw new Error(`${n} must be a positive integer`);
    }
  }

  static fromConfig(
    redis: Redis,
    config: Pick<
      Config,
      | 'LOGIN_MAX_PER_ACCOUNT_ADDRESS'
      | 'LOGIN_MAX_PER_ACCOUNT'
      | 'LOGIN_MAX_PER_ADDRESS'
      | 'LOGIN_WINDOW_S'
      | 'LOGIN_KNOWN_ADDRESS_TTL_S'
    >,
    extra: { keyPrefix?: string | undefined; timeoutMs?: number | undefined } = {},
  ): LoginLimiter {
    return new LoginLimiter(redis, {
      maxPerAccountAddress: config.LOGIN_MAX_PER_ACCOUNT_ADDRESS,
      maxPerAccount: config.LOGIN_MAX_PER_ACCOUNT,
      maxPerAddress: config.LOGIN_MAX_PER_ADDRESS,
      windowS: config.LOGIN_WINDOW_S,
      knownAddressTtlS: config.LOGIN_KNOWN_ADDRESS_TTL_S,
      keyPrefix: extra.keyPrefix,
      timeoutMs: extra.timeoutMs,
    });
  }

  accountKey(account: string): string {
    return `${this.prefix}acct:${sha256(normaliseAccount(account))}`;
  }

  addressKey(address: string): string {
    return `${this.prefix}addr:${normaliseAddress(address)}`;
  }

  pairKey(account: string, address: string): string {
    return `${this.prefix}pair:${sha256(`${normaliseAccount(account)}\n${normaliseAddress(address)}`)}`;
  }

  knownKey(account: string, address: string): string {
    return `${this.prefix}known:${sha256(`${normaliseAccount(account)}\n${normaliseAddress(address)}`)}`;
  }

  /** Throws 429 AUTH.TOO_MANY_ATTEMPTS (extra.retryAfterSeconds) when this account may not be tried from this address now. */
  async check(account: string, address: string): Promise<void> {
    const pair = this.pairKey(account, address);
    const addr = this.addressKey(address);
    const acct = this.accountKey(account);
    const [pairCount, pairTtl, addrCount, addrTtl, acctCount, acctTtl, known] = await this.exec((m) =>
      m.get(pair).ttl(pair).get(addr).ttl(addr).get(acct).ttl(acct).exists(this.knownKey(account, address)),
    );
    const waits: number[] = [];
    if (Number(pairCount ?? 0) >= this.options.maxPerAccountAddress) waits.push(this.retryAfter(pairTtl));
    if (Number(addrCount ?? 0) >= this.options.maxPerAddress) waits.push(this.retryAfter(addrTtl));
    if (Number(acctCount ?? 0) >= this.options.maxPerAccount && Number(known) === 0)
      waits.push(this.retryAfter(acctTtl));
    if (waits.length) throw tooManyAttempts(Math.max(...waits));
  }

  /** Counts a failed attempt against the pair, the address and the account; returns the counts. */
  async recordFailure(account: string, address: string): Promise<{ pair: number; address: number; account: number }> {
    const w = this.options.windowS;
    const pair = this.pairKey(account, address);
    const addr = this.addressKey(address);
    const acct = this.accountKey(account);
    // SET NX EX starts the window at the first failure; INCR never extends it.
    const r = await this.exec((m) =>
      m
        .set(pair, '0', 'EX', w, 'NX')
        .incr(pair)
        .set(addr, '0', 'EX', w, 'NX')
        .incr(addr)
        .set(acct, '0', 'EX', w, 'NX')
        .incr(acct),
    );
    return { pair: Number(r[1]), address: Number(r[3]), account: Number(r[5]) };
  }

  /** A successful login: clears the pair's failures and makes the address known to the account. */
  async recordSuccess(account: string, address: string): Promise<void> {
    await this.exec((m) =>
      m
        .del(this.pairKey(account, address))
        .set(this.knownKey(account, address), '1', 'EX', this.options.knownAddressTtlS),
    );
  }

  private retryAfter(ttl: unknown): number {
    const t = Number(ttl);
    // -1 (no expiry, should not happen) or a race with expiry: wait a whole window / one second.
    if (t === -1) return this.options.windowS;
    return Math.max(1, Number.isFinite(t) ? t : this.options.windowS);
  }

  private exec(build: (m: ChainableCommander) => ChainableCommander): Promise<unknown[]> {
    return redisCall(
      async () => {
        const res = await build(this.redis.multi()).exec();
        if (!res) throw new Error('transaction aborted');
        return res.map(([err, value]) => {
          if (err) throw err;
          return value;
        });
      },
      this.timeoutMs,
      UNAVAILABLE,
      'the login rate limiter',
    );
  }
}

/**
 * Sign-up attempts per client address in a fixed window (from the first
 * attempt): every attempt that passed input validation counts, before any
 * lookup or hashing, taken or not, so one address can neither flood the
 * hashing queue nor enumerate e-mail addresses. Fails closed (503).
 */
export class SignupLimiter {
  private readonly prefix: string;
  private readonly timeoutMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly options: {
      readonly maxPerAddress: number;
      readonly windowS: number;
      readonly keyPrefix?: string | undefined;
      readonly timeoutMs?: number | undefined;
    },
  ) {
    this.prefix = options.keyPrefix ?? 'auth:signup:';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    for (const n of ['maxPerAddress', 'windowS'] as const) {
      if (!Number.isInteger(options[n]) || options[n] <= 0) throw new Error(`${n} must be a positive integer`);
    }
  }

  addressKey(address: string): string {
    return `${this.prefix}addr:${normaliseAddress(address)}`;
  }

  /** Counts one attempt from `address`; throws 429 AUTH.TOO_MANY_SIGNUPS once the address is over its limit. */
  async take(address: string): Promise<void> {
    const key = this.addressKey(address);
    const [, count, ttl] = await redisCall(
      async () => {
        const res = await this.redis.multi().set(key, '0', 'EX', this.options.windowS, 'NX').incr(key).ttl(key).exec();
        if (!res) throw new Error('transaction aborted');
        return res.map(([err, value]) => {
          if (err) throw err;
          return value;
        });
      },
      this.timeoutMs,
      AuthErrorCode.SIGNUP_LIMITER_UNAVAILABLE,
      'the sign-up rate limiter',
    );
    if (Number(count) > this.options.maxPerAddress) {
      const t = Number(ttl);
      throw new DomainError(
        'rate_limited',
        AuthErrorCode.TOO_MANY_SIGNUPS,
        'too many sign-ups from this address; try again later',
        [],
        { retryAfterSeconds: t > 0 ? t : this.options.windowS },
      );
    }
  }
}
