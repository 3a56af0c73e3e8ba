import type { Redis } from 'ioredis';
import { DomainError } from '../../../domain/shared/errors';
import type { AccessTokenClaims } from './tokens';
import { DEFAULT_REDIS_TIMEOUT_MS, redisCall } from './redis-call';

/**
 * Revoked access tokens, in Redis.
 *
 *   <prefix>jti:<jti>  "1"          one token (logout); TTL = its remaining life + tolerance
 *   <prefix>sub:<sub>  <epoch s>    every token of the subject issued at or before that
 *                                   second (disable user, revoke device, logout everywhere);
 *                                   TTL = cutoff + max token life - now
 *
 * `check` fails CLOSED: if Redis does not answer within the timeout the request
 * is refused with 503 AUTH.REVOCATION_UNAVAILABLE, never let through.
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

const UNAVAILABLE = 'AUTH.REVOCATION_UNAVAILABLE';

// Keeps the later of the stored and the new cutoff; TTL runs until every token issued by then has expired.
const REVOKE_SUBJECT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local at = tonumber(ARGV[1])
if cur > at then at = cur end
local ttl = math.ceil(at + tonumber(ARGV[2]) - tonumber(ARGV[3]))
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], tostring(at), 'EX', ttl)
return ttl
`;

export class RevocationList {
  private readonly prefix: string;
  private readonly maxTokenLifeS: number;
  private readonly toleranceS: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly redis: Redis, options: RevocationListOptions) {
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

  /** Revokes one token until it would expire anyway. */
  async revokeToken(jti: string, exp: number): Promise<void> {
    if (typeof jti !== 'string' || !jti) throw new Error('jti must be a non-empty string');
    const ttl = Math.ceil(exp + this.toleranceS - this.now() / 1000);
    if (!(ttl > 0)) return; // already expired: verification rejects it without our help
    await this.call(() => this.redis.set(this.jtiKey(jti), '1', 'EX', ttl));
  }

  /**
   * Revokes every token of `sub` issued at or before `atEpochSeconds` (default: now, to the
   * millisecond, so a token issued a moment later in the same second still works).
   */
  async revokeSubject(sub: string, atEpochSeconds: number = this.now() / 1000): Promise<void> {
    if (typeof sub !== 'string' || !sub) throw new Error('sub must be a non-empty string');
    if (!Number.isFinite(atEpochSeconds)) throw new Error('atEpochSeconds must be a number');
    const nowS = Math.floor(this.now() / 1000);
    await this.call(() => this.redis.eval(REVOKE_SUBJECT, 1, this.subjectKey(sub), atEpochSeconds, this.maxTokenLifeS + this.toleranceS, nowS));
  }

  /** Throws unless the token is still good: 401 AUTH.TOKEN_REVOKED, or 503 when Redis does not answer. */
  async check(claims: Pick<AccessTokenClaims, 'jti' | 'sub' | 'iat' | 'iatMs'>): Promise<void> {
    const [byJti, bySubject] = await this.call(() => this.redis.mget(this.jtiKey(claims.jti), this.subjectKey(claims.sub)));
    if (byJti !== null && byJti !== undefined) throw revoked();
    if (bySubject !== null && bySubject !== undefined) {
      const cutoff = Number(bySubject);
      // An unreadable cutoff counts as "everything revoked": fail closed.
      const issued = claims.iatMs !== undefined ? claims.iatMs / 1000 : claims.iat;
      if (!Number.isFinite(cutoff) || issued <= cutoff) throw revoked();
    }
  }

  private call<T>(op: () => Promise<T>): Promise<T> {
    return redisCall(op, this.timeoutMs, UNAVAILABLE, 'the token revocation list');
  }
}

const revoked = () => new DomainError('unauthenticated', 'AUTH.TOKEN_REVOKED', 'the access token has been revoked');
