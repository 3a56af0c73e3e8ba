import type { Redis } from 'ioredis';
import { DomainError } from '../../../domain/shared/errors';
import type { AccessTokenClaims } from './tokens';
import { DEFAULT_REDIS_TIMEOUT_MS, redisCall } from './redis-call';
import { AuthErrorCode } from '../../platform/http/auth-errors';

/**
 * Revoked access tokens, in Redis.
 *
 *   <prefix>jti:<jti>  "1"          one token (logout); TTL = its remaining life + tolerance
 *   <prefix>sub:<sub>  <epoch s>    every token of the subject issued at or before that
 *                                   second (disable user, revoke device, logout everywhere);
 *                                   TTL = cutoff + max token life - now
 *   <prefix>sid:<sid>  "1"          every access token of one refresh family (logout, refresh
 *                                   token reuse): the family mints no more, so no cutoff is
 *                                   needed; TTL = max token life
 *
 * `check` fails CLOSED: if Redis does not answer within the timeout the request
 * is refused with 503 AUTH.REVOCATION_UNAVAILABLE, never let through.
 *
 * Every revocation is also published on `<prefix>notices` (one JSON notice, in
 * the same script as the write), so that each instance can end the long-lived
 * sessions (SSE streams, MQTT connections) it holds for that token at once
 * (src/identity/session-watch.ts). Pub/sub is fire and forget: the key is the
 * truth, the notice only makes it fast.
 */
export interface RevocationListOptions {
  /** Key prefix; default "auth:revoked:". Tests use their own. */
  readonly keyPrefix?: string | undefined;
  /** Longest life of any access token, clock tolerance included (TokenService.maxTokenLifeS). */
  readonly maxTokenLifeS: number;
  /** Extra seconds entries outlive their tokens (verifiers' clock tolerance); default 5. */
  readonly clockToleranceS?: number | undefined;
  /** Per-call bound; default 500 ms. */
  readonly timeoutMs?: number | undefined;
  readonly now?: (() => number) | undefined;
}

const UNAVAILABLE = AuthErrorCode.REVOCATION_UNAVAILABLE;
/** Tokens per MGET in whyRevoked: keeps one Redis command (and its reply) small. */
const MAX_TOKENS_PER_CHECK = 500;

/** What a revocation notice says: one token (`jti`), one refresh family (`sid`), or a subject's tokens issued at or before `at` (epoch s). */
export type RevocationNotice =
  | { readonly kind: 'jti'; readonly id: string }
  | { readonly kind: 'sid'; readonly id: string }
  | { readonly kind: 'sub'; readonly id: string; readonly at: number };

/** Parses a notice from the channel; undefined for anything malformed (the channel is not trusted to be tidy). */
export function parseRevocationNotice(message: string): RevocationNotice | undefined {
  let v: unknown;
  try {
    v = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { kind, id, at } = v as Record<string, unknown>;
  if (typeof id !== 'string' || !id || id.length > 200) return undefined;
  if (kind === 'jti' || kind === 'sid') return { kind, id };
  if (kind === 'sub' && typeof at === 'number' && Number.isFinite(at)) return { kind, id, at };
  return undefined;
}

// Keeps the later of the stored and the new cutoff; TTL runs until every token issued by then has expired.
// The notice carries the cutoff actually stored, so a listener compares with the same number `check` does.
const REVOKE_SUBJECT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local at = tonumber(ARGV[1])
if cur > at then at = cur end
local ttl = math.ceil(at + tonumber(ARGV[2]) - tonumber(ARGV[3]))
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], tostring(at), 'EX', ttl)
redis.call('PUBLISH', ARGV[5], cjson.encode({kind = 'sub', id = ARGV[4], at = at}))
return ttl
`;

// One token or one family: the key and its notice in one step. (The channel is an argument,
// not a key: a channel belongs to no key slot.)
const REVOKE_ONE = `
redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[1]))
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`;

export class RevocationList {
  private readonly prefix: string;
  private readonly maxTokenLifeS: number;
  private readonly toleranceS: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;

  constructor(
    private readonly redis: Redis,
    options: RevocationListOptions,
  ) {
    this.prefix = options.keyPrefix ?? 'auth:revoked:';
    this.maxTokenLifeS = options.maxTokenLifeS;
    this.toleranceS = options.clockToleranceS ?? 5;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
    if (!(this.maxTokenLifeS > 0)) throw new Error('maxTokenLifeS must be positive');
  }

  jtiKey(jti: string): string {
    return `${this.prefix}jti:${jti}`;
  }

  subjectKey(sub: string): string {
    return `${this.prefix}sub:${sub}`;
  }

  familyKey(sid: string): string {
    return `${this.prefix}sid:${sid}`;
  }

  /** The pub/sub channel every revocation is announced on. */
  get channel(): string {
    return `${this.prefix}notices`;
  }

  /** Revokes one token until it would expire anyway. */
  async revokeToken(jti: string, exp: number): Promise<void> {
    if (typeof jti !== 'string' || !jti) throw new Error('jti must be a non-empty string');
    const ttl = Math.ceil(exp + this.toleranceS - this.now() / 1000);
    if (!(ttl > 0)) return; // already expired: verification rejects it without our help
    await this.call(() =>
      this.redis.eval(REVOKE_ONE, 1, this.jtiKey(jti), ttl, this.channel, JSON.stringify({ kind: 'jti', id: jti })),
    );
  }

  /**
   * Revokes every access token of one refresh family (`sid` claim): logout, refresh token
   * reuse. The family's refresh tokens are revoked in PostgreSQL, so it mints none after this;
   * the key lives as long as the longest token could.
   */
  async revokeFamily(sid: string): Promise<void> {
    if (typeof sid !== 'string' || !sid) throw new Error('sid must be a non-empty string');
    const ttl = Math.ceil(this.maxTokenLifeS + this.toleranceS);
    await this.call(() =>
      this.redis.eval(REVOKE_ONE, 1, this.familyKey(sid), ttl, this.channel, JSON.stringify({ kind: 'sid', id: sid })),
    );
  }

  /**
   * Revokes every token of `sub` issued at or before `atEpochSeconds` (default: now, to the
   * millisecond, so a token issued a moment later in the same second still works).
   */
  async revokeSubject(sub: string, atEpochSeconds: number = this.now() / 1000): Promise<void> {
    if (typeof sub !== 'string' || !sub) throw new Error('sub must be a non-empty string');
    if (!Number.isFinite(atEpochSeconds)) throw new Error('atEpochSeconds must be a number');
    const nowS = Math.floor(this.now() / 1000);
    await this.call(() =>
      this.redis.eval(
        REVOKE_SUBJECT,
        1,
        this.subjectKey(sub),
        atEpochSeconds,
        this.maxTokenLifeS + this.toleranceS,
        nowS,
        sub,
        this.channel,
      ),
    );
  }

  /** Throws unless the token is still good: 401 AUTH.TOKEN_REVOKED, or 503 when Redis does not answer. */
  async check(claims: RevocableClaims): Promise<void> {
    const [reason] = await this.whyRevoked([claims]);
    if (reason) throw revoked();
  }

  /**
   * For each token, why it is revoked ('token', 'family', 'subject') or undefined when it is
   * still good: one MGET for the lot (the periodic re-check of long-lived sessions). Throws
   * 503 when Redis does not answer.
   */
  async whyRevoked(tokens: readonly RevocableClaims[]): Promise<(RevokedBy | undefined)[]> {
    if (tokens.length > MAX_TOKENS_PER_CHECK) {
      const out: (RevokedBy | undefined)[] = [];
      for (let at = 0; at < tokens.length; at += MAX_TOKENS_PER_CHECK)
        out.push(...(await this.whyRevoked(tokens.slice(at, at + MAX_TOKENS_PER_CHECK))));
      return out;
    }
    if (tokens.length === 0) return [];
    const keys: string[] = [];
    for (const c of tokens)
      keys.push(this.jtiKey(c.jti), this.subjectKey(c.sub), ...(c.sid ? [this.familyKey(c.sid)] : []));
    const values = await this.call(() => this.redis.mget(keys));
    let i = 0;
    return tokens.map((c) => {
      const byJti = values[i++];
      const bySubject = values[i++];
      const byFamily = c.sid ? values[i++] : null;
      if (byJti !== null && byJti !== undefined) return 'token';
      if (byFamily !== null && byFamily !== undefined) return 'family';
      if (bySubject !== null && bySubject !== undefined) {
        const cutoff = Number(bySubject);
        // An unreadable cutoff counts as "everything revoked": fail closed.
        if (!Number.isFinite(cutoff) || issuedAt(c) <= cutoff) return 'subject';
      }
      return undefined;
    });
  }

  private call<T>(op: () => Promise<T>): Promise<T> {
    return redisCall(op, this.timeoutMs, UNAVAILABLE, 'the token revocation list');
  }
}

export type RevocableClaims = Pick<AccessTokenClaims, 'jti' | 'sub' | 'iat' | 'iatMs' | 'sid'>;
export type RevokedBy = 'token' | 'family' | 'subject';

/** Issue time in seconds, to the millisecond when the token says (`iat_ms`). */
export const issuedAt = (c: Pick<AccessTokenClaims, 'iat' | 'iatMs'>): number =>
  c.iatMs !== undefined ? c.iatMs / 1000 : c.iat;

const revoked = () =>
  new DomainError('unauthenticated', AuthErrorCode.TOKEN_REVOKED, 'the access token has been revoked');
