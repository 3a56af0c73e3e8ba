import { JsonWebTokenError, TokenExpiredError, type Jwt } from 'jsonwebtoken';
import { ExtractJwt, Strategy as JwtStrategy, type VerifiedCallback } from 'passport-jwt';
import { DomainError, validationError } from '../../../domain/shared/errors';
import { AuthErrorCode } from '../../platform/http/auth-errors';
import { PlatformErrorCode } from '../../platform/platform-errors';
import type { AccessTokenClaims, TokenKind, TokenService } from './tokens';

/**
 * The passport-jwt strategy every access token goes through: HTTP routes (the
 * global AccessGuard), `POST /commands/*` and MQTT CONNECT (the `Authenticator`
 * port), and `TokenService.verify`, each running the strategy object directly
 * (`runStrategy`, as passport's middleware runs it).
 *
 * passport-jwt (jsonwebtoken) checks: the signature with the key our key set
 * holds for the token's `kid` (`secretOrKeyProvider`), the algorithm
 * (`algorithms`: the key set's one), `iss`, `aud`, `exp` and `nbf` when
 * present, and the token's age against our lifetime (`maxAge`, needs `iat`).
 * It does not check, so this strategy does: the protected header may carry
 * only `alg`, `kid` and `typ` (no `crit`, `jwk`, `jku`, `x5u`, `x5c`, `b64`
 * ...), `typ` must be `at+jwt`, the `alg` must be the one pinned to that key,
 * the payload must be a JSON object with `exp`, `iat`, `sub`, `jti`, `kind`
 * and `roles` of the right types, `iat` not in the future, `aud` one string and
 * `kind` the expected one (before signature verification: the header checks
 * in `secretOrKeyProvider`; after: `TokenService.claimsOf`).
 *
 * A token that passed all of it is remembered with the exact Authorization
 * header it came in (`TokenService.remember`: at most 60 s, never past its
 * `exp`, only while its key is in our set), so a client resending that header
 * does not pay for an ES256 verification, nor any parsing, on every request
 * (`TokenService.recallBearer`: any other header, even one ending with the same
 * signature, is verified in full); the strategy's own verify step (revocation,
 * in the app) runs on every request.
 */
export const STRATEGY_NAME: Record<TokenKind, string> = { user: 'jwt', device: 'device-jwt' };

/** Far above any token this platform issues (an ES256 access token is under 1 KiB); checked before any parsing. */
export const AUTHORIZATION_MAX_LENGTH = 4096;
const AUTHORIZATION_RULE = `must be at most ${AUTHORIZATION_MAX_LENGTH} characters`;
const BEARER = /^Bearer [A-Za-z0-9._~+/=-]+$/;
const fromBearer = ExtractJwt.fromAuthHeaderAsBearerToken();

/** What the strategies read from a request: its headers (a Fastify request, or `{ headers }` for a bare header). */
export interface TokenRequest {
  readonly headers: { readonly authorization?: string | undefined };
}

/**
 * The bearer token of `Authorization: Bearer <token>`, or null (AUTH.MISSING_TOKEN) for a
 * missing header, another scheme or anything but one token. A header longer than
 * AUTHORIZATION_MAX_LENGTH is a 400 naming the header (thrown before anything is parsed).
 */
export function bearerToken(req: TokenRequest): string | null {
  const header = req.headers.authorization;
  if (header === undefined) return null;
  if (typeof header !== 'string') return null;
  if (header.length > AUTHORIZATION_MAX_LENGTH) {
    throw validationError(PlatformErrorCode.INVALID_HEADER, `Authorization ${AUTHORIZATION_RULE}`, [
      { field: 'Authorization', rule: AUTHORIZATION_RULE },
    ]);
  }
  // The scheme exactly "Bearer", one space, one token of RFC 6750 token68 characters; then passport-jwt's extractor.
  return BEARER.test(header) ? fromBearer(req) : null;
}

const invalid = () => new DomainError('unauthenticated', AuthErrorCode.INVALID_TOKEN, 'the access token is not valid');
const expired = () => new DomainError('unauthenticated', AuthErrorCode.TOKEN_EXPIRED, 'the access token has expired');
const missing = () =>
  new DomainError('unauthenticated', AuthErrorCode.MISSING_TOKEN, 'this route needs Authorization: Bearer <token>');
/** passport-jwt's failure when `jwtFromRequest` found no token. */
const NO_TOKEN = 'No auth token';

/**
 * The AUTH.* error for what a strategy failed with (passport's `fail` challenge; with several
 * strategies, the list of them: the last one counts, as with one strategy tried after another).
 */
export function authFailure(challenge: unknown): DomainError {
  const last: unknown = Array.isArray(challenge) ? challenge[challenge.length - 1] : challenge;
  if (last instanceof DomainError) return last;
  if (last instanceof TokenExpiredError) return expired();
  if (last instanceof JsonWebTokenError) return invalid();
  if (last instanceof Error && last.message === NO_TOKEN) return missing();
  return invalid();
}

/** The strategies of one app instance, by the kind of token they take. */
export type OwnStrategies = Readonly<Record<TokenKind, AccessTokenStrategy>>;

type VerifiedClaims = (req: TokenRequest, claims: AccessTokenClaims, done: VerifiedCallback) => void;

/** The fields of passport-jwt's Strategy this class relies on (not in its type declarations). */
interface JwtStrategyInternals {
  _verifOpts?: Record<string, unknown>;
}

export class AccessTokenStrategy extends JwtStrategy {
  readonly tokens: TokenService;
  readonly kind: TokenKind;
  private readonly verifiedClaims: VerifiedClaims;

  /**
   * @param verify called with the claims of a token that passed every check above (the
   *   app's strategies: the revocation check, then the principal); calls `done` as passport's
   *   verify callbacks do.
   */
  constructor(policy: { tokens: TokenService; kind: TokenKind }, verify: VerifiedClaims) {
    super(
      policy.tokens.strategyOptions(policy.kind),
      function (this: AccessTokenStrategy, req: TokenRequest, decoded: Jwt, done: VerifiedCallback) {
        this.accept(req, decoded, done);
      },
    );
    this.name = STRATEGY_NAME[policy.kind];
    this.tokens = policy.tokens;
    this.kind = policy.kind;
    this.verifiedClaims = verify;
    // jsonwebtoken reads the time from the service's clock (tests skew it); passport-jwt copies
    // its options once, so the clock is a getter on the copy it passes to jsonwebtoken.verify.
    const verifOpts = (this as unknown as JwtStrategyInternals)._verifOpts;
    if (!verifOpts || typeof verifOpts !== 'object') throw new Error('passport-jwt: no verification options to extend');
    const clock = policy.tokens.clock;
    Object.defineProperty(verifOpts, 'clockTimestamp', {
      enumerable: true,
      get: () => Math.floor(clock() / 1000),
    });
  }

  /**
   * A token verified recently skips jsonwebtoken; any other goes through passport-jwt. (Each app
   * instance runs its own strategy objects (`runStrategy`), not passport's one registry by name,
   * so several instances in one process (tests) each verify with their own keys.)
   */
  override authenticate(req: TokenRequest, options?: object): void {
    // The exact header verified here recently: nothing to parse (a too long header misses and
    // gets its 400 from bearerToken below).
    const claims = this.tokens.recallBearer(req.headers.authorization, this.kind);
    if (claims) {
      this.run(req, claims);
      return;
    }
    super.authenticate(req as unknown as Parameters<JwtStrategy['authenticate']>[0], options);
  }

  /** passport-jwt's verify step: the claims jsonwebtoken does not check, then the caller's verify. */
  private accept(req: TokenRequest, decoded: Jwt, done: VerifiedCallback): void {
    let claims: AccessTokenClaims;
    try {
      claims = this.tokens.claimsOf(decoded, this.kind);
    } catch (e) {
      done(null, false, e);
      return;
    }
    const header = req.headers.authorization;
    const token = bearerToken(req);
    if (typeof header === 'string' && token !== null && typeof decoded.header.kid === 'string')
      this.tokens.remember(header, token, this.kind, decoded.header.kid, claims);
    this.verifiedClaims(req, claims, done);
  }

  private run(req: TokenRequest, claims: AccessTokenClaims): void {
    try {
      this.verifiedClaims(req, claims, (err: unknown, user?: unknown, info?: unknown) => {
        if (err) this.error(err as Error);
        else if (!user) (this.fail as (challenge?: unknown) => void)(info);
        else this.success(user, info);
      });
    } catch (e) {
      this.error(e as Error);
    }
  }
}

/** What one strategy decided: a user (the verify step's result), or a failure to try the next strategy with. */
export type StrategyOutcome<T> = { readonly user: T } | { readonly failure: DomainError };

/**
 * Runs a strategy on a request outside passport's middleware, as passport runs it (a fresh
 * object per attempt, with the action functions): `fail` becomes a failure, `error` a rejection.
 */
export function runStrategy<T>(strategy: AccessTokenStrategy, req: TokenRequest): Promise<StrategyOutcome<T>> {
  return new Promise((resolve, reject) => {
    const attempt = Object.create(strategy) as AccessTokenStrategy;
    attempt.success = (user: unknown) => resolve({ user: user as T });
    attempt.fail = (challenge?: unknown) => resolve({ failure: authFailure(challenge) });
    attempt.error = (err: unknown) => reject(err instanceof Error ? err : new Error(String(err)));
    attempt.pass = () => resolve({ failure: invalid() });
    attempt.redirect = () => resolve({ failure: invalid() });
    try {
      attempt.authenticate(req, {});
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}
