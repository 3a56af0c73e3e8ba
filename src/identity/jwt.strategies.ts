import { PassportStrategy } from '@nestjs/passport';
import type { Principal } from '../platform/http/access';
import {
  AccessTokenStrategy,
  issuedAt,
  type AccessTokenClaims,
  type RevocationMirror,
  type TokenKind,
  type TokenRequest,
  type TokenService,
} from './auth';

/**
 * The two passport strategies of HTTP authentication, registered with
 * passport as `jwt` (user access tokens) and `device-jwt` (device tokens):
 * passport-jwt with the platform's token policy (auth/access-token-strategy.ts),
 * then, on every request, the revocation list and the principal. The list is
 * this instance's in-memory mirror of the Redis list (auth/revocation-mirror.ts):
 * no round trip per request; it fails closed (503 AUTH.REVOCATION_UNAVAILABLE)
 * when the mirror cannot vouch for being current (REVOCATION_MAX_STALENESS_MS).
 *
 * One pair per app instance, made by IdentityServices (which owns the key set
 * and the revocation list); the global AccessGuard (auth-guard.ts) and the
 * `Authenticator` port (`IdentityServices.authenticate`: `POST /commands/*`,
 * MQTT CONNECT) run these same objects.
 */
export interface StrategyDeps {
  readonly tokens: TokenService;
  readonly revocationMirror: Pick<RevocationMirror, 'check' | 'verdict'>;
}

/**
 * One principal per claims object, frozen: a remembered token's claims are one object
 * (`TokenService.remember`), so every request that recalls them is given the same principal
 * and the recalled path allocates nothing for it.
 */
const principals = new WeakMap<AccessTokenClaims, Principal>();

function principalOf(claims: AccessTokenClaims): Principal {
  const known = principals.get(claims);
  if (known !== undefined) return known;
  const principal: Principal = Object.freeze({
    kind: claims.kind,
    id: claims.sub,
    roles: Object.freeze(claims.roles),
    jti: claims.jti,
    exp: claims.exp,
    iat: issuedAt(claims),
    ...(claims.sid ? { sid: claims.sid } : {}),
  });
  principals.set(claims, principal);
  return principal;
}

/** The principal of a token the mirror says is not revoked (without a promise when it can say so at once). */
function principalFor(deps: StrategyDeps, claims: AccessTokenClaims): Principal | Promise<Principal> {
  const pending = deps.revocationMirror.check(claims);
  return pending ? pending.then(() => principalOf(claims)) : principalOf(claims);
}

/**
 * The principal of a request whose Authorization header this instance verified recently
 * (`TokenService.recallBearer`: the full strategy checked that exact header, at most 60 s ago,
 * not past its `exp`, its key still ours) and that the mirror, fresh now, does not hold
 * revoked (token, session or user): what the strategy's verify step would answer, without
 * passport's callbacks and promises (most requests of a client reuse one token), and without
 * parsing the header. Undefined for anything else, and the strategy then decides and says why
 * (401 with its code, 400 for a too long header, 503, a wait for the mirror).
 */
export function recalledPrincipal(deps: StrategyDeps, req: TokenRequest, kind: TokenKind): Principal | undefined {
  const claims = deps.tokens.recallBearer(req.headers.authorization, kind);
  if (claims === undefined || deps.revocationMirror.verdict(claims) !== 'ok') return undefined;
  return principalOf(claims);
}

export class UserJwtStrategy extends PassportStrategy(AccessTokenStrategy, 'jwt') {
  constructor(private readonly deps: StrategyDeps) {
    super({ tokens: deps.tokens, kind: 'user' });
  }

  validate(_req: unknown, claims: AccessTokenClaims): Principal | Promise<Principal> {
    return principalFor(this.deps, claims);
  }
}

export class DeviceJwtStrategy extends PassportStrategy(AccessTokenStrategy, 'device-jwt') {
  constructor(private readonly deps: StrategyDeps) {
    super({ tokens: deps.tokens, kind: 'device' });
  }

  validate(_req: unknown, claims: AccessTokenClaims): Principal | Promise<Principal> {
    return principalFor(this.deps, claims);
  }
}
