import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Jwt } from 'jsonwebtoken';
import type { StrategyOptionsWithRequest } from 'passport-jwt';
import type { Config } from '../../config';
import { DomainError } from '../../../domain/shared/errors';
import type { SigningKeys, VerificationKey } from './signing-keys';
import { AccessTokenStrategy, bearerToken, runStrategy } from './access-token-strategy';
import { AuthErrorCode } from '../../platform/http/auth-errors';

/**
 * Access tokens (RFC 9068 style JWTs, `typ: at+jwt`).
 *
 * A user token has aud = JWT_AUDIENCE and `kind: "user"`; a device token has
 * aud = JWT_DEVICE_AUDIENCE and `kind: "device"`; neither verifies where the
 * other is expected. Verification trusts nothing the token says about how to
 * verify it: the key comes from our own key set (or key file) by `kid`, the algorithm is
 * the one pinned to that key, and the protected header may carry only `alg`,
 * `kid` and `typ` (so `crit`, `jwk`, `jku`, `x5u`, `x5c`, `b64` ... are refused).
 *
 * Tokens are signed here with jose; they are verified by the passport-jwt strategy
 * (access-token-strategy.ts) with the options and checks this service supplies.
 */
export type TokenKind = 'user' | 'device';

export interface AccessTokenClaims {
  readonly sub: string;
  readonly roles: readonly string[];
  readonly jti: string;
  readonly exp: number;
  readonly iat: number;
  /** Issue time in milliseconds (claim `iat_ms`): lets a revocation separate tokens issued within the same second. */
  readonly iatMs?: number;
  readonly kind: TokenKind;
  /** The session (refresh-token family) a user token was issued for, when given at issue. */
  readonly sid?: string;
}

export interface IssuedAccessToken {
  readonly token: string;
  readonly jti: string;
  /** Seconds from issue to expiry. */
  readonly expiresIn: number;
  /** Expiry, seconds since the epoch. */
  readonly exp: number;
}

export interface TokenServiceOptions {
  readonly issuer: string;
  readonly userAudience: string;
  readonly deviceAudience: string;
  readonly accessTokenTtlS: number;
  readonly deviceTokenTtlS: number;
  /** Accepted clock skew in seconds (0..5); default 5. */
  readonly clockToleranceS?: number | undefined;
  /** Milliseconds since the epoch; tests pass a skewed clock. */
  readonly now?: (() => number) | undefined;
}

export const ACCESS_TOKEN_TYP = 'at+jwt';
const MAX_TOKEN_LENGTH = 8192;
const VERIFIED_CACHE_S = 60;
const VERIFIED_CACHE_MAX = 10_000;
/** How many characters at the end of a token (its signature's end) find its entry among the verified ones. */
const VERIFIED_KEY_CHARS = 24;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const ALLOWED_HEADER = new Set(['alg', 'kid', 'typ']);

const invalid = () => new DomainError('unauthenticated', AuthErrorCode.INVALID_TOKEN, 'the access token is not valid');

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((r) => typeof r === 'string');

function parseHeader(segment: string): Record<string, unknown> | undefined {
  try {
    const header: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    if (!header || typeof header !== 'object' || Array.isArray(header)) return undefined;
    return header as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export class TokenService {
  private readonly verified = new Map<
    string,
    { header: string; claims: AccessTokenClaims; kid: string; kind: TokenKind; untilMs: number }
  >();
  private readonly toleranceS: number;
  private readonly now: () => number;
  /** For `verify`: the strategies without the app's verify step, made on first use. */
  private readonly strategies: Partial<Record<TokenKind, AccessTokenStrategy>> = {};

  constructor(
    private readonly keys: SigningKeys,
    private readonly options: TokenServiceOptions,
  ) {
    this.toleranceS = options.clockToleranceS ?? 5;
    if (!(this.toleranceS >= 0 && this.toleranceS <= 5))
      throw new Error('clockToleranceS must be between 0 and 5 seconds');
    if (options.userAudience === options.deviceAudience) throw new Error('user and device audiences must differ');
    this.now = options.now ?? Date.now;
  }

  static fromConfig(
    config: Pick<
      Config,
      'JWT_ISSUER' | 'JWT_AUDIENCE' | 'JWT_DEVICE_AUDIENCE' | 'ACCESS_TOKEN_TTL_S' | 'DEVICE_TOKEN_TTL_S'
    >,
    keys: SigningKeys,
  ): TokenService {
    return new TokenService(keys, {
      issuer: config.JWT_ISSUER,
      userAudience: config.JWT_AUDIENCE,
      deviceAudience: config.JWT_DEVICE_AUDIENCE,
      accessTokenTtlS: config.ACCESS_TOKEN_TTL_S,
      deviceTokenTtlS: config.DEVICE_TOKEN_TTL_S,
    });
  }

  /** The longest life of any token this service issues, plus clock tolerance (seconds). */
  get maxTokenLifeS(): number {
    return Math.max(this.options.accessTokenTtlS, this.options.deviceTokenTtlS) + this.toleranceS;
  }

  audience(kind: TokenKind): string {
    return kind === 'user' ? this.options.userAudience : this.options.deviceAudience;
  }

  ttl(kind: TokenKind): number {
    return kind === 'user' ? this.options.accessTokenTtlS : this.options.deviceTokenTtlS;
  }

  async issueAccessToken(input: {
    sub: string;
    roles?: readonly string[] | undefined;
    kind: TokenKind;
    sid?: string | undefined;
  }): Promise<IssuedAccessToken> {
    const { sub, kind, sid } = input;
    const roles = [...(input.roles ?? [])];
    if (typeof sub !== 'string' || !sub) throw new Error('sub must be a non-empty string');
    if (kind !== 'user' && kind !== 'device') throw new Error('kind must be user or device');
    if (!isStringArray(roles)) throw new Error('roles must be strings');
    if (sid !== undefined && (typeof sid !== 'string' || !sid)) throw new Error('sid must be a non-empty string');
    const key = this.keys.signingKey();
    const nowMs = Math.floor(this.now());
    const iat = Math.floor(nowMs / 1000);
    const expiresIn = this.ttl(kind);
    const exp = iat + expiresIn;
    const jti = randomUUID();
    const token = await new SignJWT(
      sid === undefined ? { kind, roles, iat_ms: nowMs } : { kind, roles, sid, iat_ms: nowMs },
    )
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: ACCESS_TOKEN_TYP })
      .setIssuer(this.options.issuer)
      .setAudience(this.audience(kind))
      .setSubject(sub)
      .setJti(jti)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(key.key);
    return { token, jti, expiresIn, exp };
  }

  /** The clock tokens are issued and checked with (milliseconds since the epoch). */
  get clock(): () => number {
    return this.now;
  }

  /**
   * passport-jwt's options for tokens of this kind (see access-token-strategy.ts): the bearer
   * token, the key by `kid` from our own key set after the header checks, the key set's one
   * algorithm, our issuer and the kind's audience, our clock tolerance and token lifetime, and
   * the whole decoded token (header too) for `claimsOf`.
   */
  strategyOptions(kind: TokenKind): StrategyOptionsWithRequest {
    return {
      jwtFromRequest: bearerToken,
      secretOrKeyProvider: (
        _req: unknown,
        rawJwtToken: unknown,
        done: (err: unknown, key?: string | Buffer) => void,
      ) => {
        let key: VerificationKey;
        try {
          key = this.keyFor(rawJwtToken);
        } catch (e) {
          done(e);
          return;
        }
        // jsonwebtoken takes a KeyObject as it is (its declarations name only string and Buffer).
        done(null, key.key as unknown as Buffer);
      },
      algorithms: [this.keys.alg],
      issuer: this.options.issuer,
      audience: this.audience(kind),
      jsonWebTokenOptions: {
        complete: true,
        clockTolerance: this.toleranceS,
        // Also expires tokens living longer than we issue them (needs `iat`).
        maxAge: this.ttl(kind),
      },
      passReqToCallback: true,
    };
  }

  /**
   * Before the signature is checked: a compact JWS of bounded length whose protected header
   * carries only `alg`, `kid` and `typ`, `typ` at+jwt, and a `kid` of our own key set whose
   * pinned algorithm is the header's. Returns that key; throws AUTH.INVALID_TOKEN otherwise.
   */
  keyFor(token: unknown): VerificationKey {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw invalid();
    const header = parseHeader(token.slice(0, token.indexOf('.')));
    if (!header) throw invalid();
    // Only the parameters we set ourselves; an embedded key, key URL, certificate or crit is refused.
    if (Object.keys(header).some((name) => !ALLOWED_HEADER.has(name))) throw invalid();
    const { alg, kid, typ } = header;
    if (typeof kid !== 'string' || typeof alg !== 'string' || typ !== ACCESS_TOKEN_TYP) throw invalid();
    // An unknown kid may be a key another process has just rotated in: the key file is
    // re-read (when it changed, at most once per few seconds) before the token is refused.
    const key = this.keys.findVerificationKey(kid);
    // The algorithm is the key's, never the token's choice (no alg "none", no HS/ES confusion).
    if (!key || alg !== key.alg) throw invalid();
    return key;
  }

  /**
   * After jsonwebtoken verified the signature, iss, aud, exp/nbf when present and the age:
   * what it does not check. The payload is a JSON object; `exp` and `iat` are present integers
   * (jsonwebtoken accepts a token without `exp`), `iat` not in the future; `aud` is exactly the
   * kind's audience (not a list holding it); `kind`, `sub`, `jti`, `roles`, `sid`, `iat_ms` as issued.
   */
  claimsOf(decoded: Jwt, expected: TokenKind): AccessTokenClaims {
    const payload: unknown = decoded?.payload;
    if (!payload || typeof payload !== 'object' || Array.isArray(payload)) throw invalid();
    const { sub, jti, exp, iat, aud, kind, roles, sid, iat_ms: iatMs } = payload as Record<string, unknown>;
    if (kind !== expected || aud !== this.audience(expected)) throw invalid();
    if (typeof sub !== 'string' || !sub || typeof jti !== 'string' || !jti) throw invalid();
    if (typeof exp !== 'number' || typeof iat !== 'number' || !Number.isInteger(exp) || !Number.isInteger(iat))
      throw invalid();
    if (iat > Math.floor(this.now() / 1000) + this.toleranceS) throw invalid();
    if (!isStringArray(roles)) throw invalid();
    if (sid !== undefined && (typeof sid !== 'string' || !sid)) throw invalid();
    if (
      iatMs !== undefined &&
      (typeof iatMs !== 'number' || !Number.isInteger(iatMs) || Math.floor(iatMs / 1000) !== iat)
    )
      throw invalid();
    return {
      sub,
      roles,
      jti,
      exp,
      iat,
      kind: expected,
      ...(sid === undefined ? {} : { sid }),
      ...(iatMs === undefined ? {} : { iatMs }),
    };
  }

  /**
   * The claims of the token of an Authorization header that passed full verification as this
   * kind, while it is remembered: until its `exp`, at most VERIFIED_CACHE_S, and only while its
   * key is still in our set. The entry is found by the header's last VERIFIED_KEY_CHARS
   * characters (the end of the token's signature: hashing those is cheaper than hashing the
   * whole header), then the WHOLE header must equal the one that was verified: a token with
   * another header or payload but the same signature end misses here and goes through full
   * verification (which refuses it). Nothing is parsed or split on a hit.
   * Revocation is not part of it (the strategies' verify step checks it on every request).
   */
  recallBearer(header: unknown, kind: TokenKind): AccessTokenClaims | undefined {
    if (typeof header !== 'string') return undefined;
    const key = header.slice(-VERIFIED_KEY_CHARS);
    const hit = this.verified.get(key);
    if (hit === undefined || hit.header !== header || hit.kind !== kind) return undefined;
    if (hit.untilMs > this.now() && this.keys.verificationKey(hit.kid)) return hit.claims;
    this.verified.delete(key);
    return undefined;
  }

  /**
   * Remembers a token that passed full verification as this kind (see `recallBearer`), with the
   * exact Authorization header it came in (`header` ends with `token`). The claims are frozen:
   * every request that recalls them shares the one object.
   */
  remember(header: string, token: string, kind: TokenKind, kid: string, claims: AccessTokenClaims): void {
    if (token.length < VERIFIED_KEY_CHARS || !header.endsWith(token)) return;
    const key = token.slice(-VERIFIED_KEY_CHARS);
    if (!this.verified.has(key) && this.verified.size >= VERIFIED_CACHE_MAX) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    Object.freeze(claims.roles);
    this.verified.set(key, {
      header,
      claims: Object.freeze(claims),
      kid,
      kind,
      untilMs: Math.min(claims.exp * 1000, this.now() + VERIFIED_CACHE_S * 1000),
    });
  }

  /**
   * The claims of a valid access token of the expected kind; otherwise throws
   * DomainError unauthenticated AUTH.TOKEN_EXPIRED (a genuine token past its
   * `exp`) or AUTH.INVALID_TOKEN (everything else). The same passport-jwt
   * strategy as HTTP (access-token-strategy.ts), without the app's verify step:
   * revocation is checked separately (RevocationList).
   */
  async verify(token: string, expected: TokenKind): Promise<AccessTokenClaims> {
    if (expected !== 'user' && expected !== 'device') throw invalid();
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw invalid();
    const strategy = (this.strategies[expected] ??= new AccessTokenStrategy(
      { tokens: this, kind: expected },
      (_req, claims, done) => done(null, claims),
    ));
    const outcome = await runStrategy<AccessTokenClaims>(strategy, { headers: { authorization: `Bearer ${token}` } });
    if ('failure' in outcome) throw outcome.failure;
    return outcome.user;
  }
}
