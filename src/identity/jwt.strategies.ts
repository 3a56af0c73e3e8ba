import { PassportStrategy } from '@nestjs/passport';
import type { Principal } from '../platform/http/access';
import { AccessTokenStrategy, issuedAt, type AccessTokenClaims, type RevocationList, type TokenService } from './auth';

/**
 * The two passport strategies of HTTP authentication, registered with
 * passport as `jwt` (user access tokens) and `device-jwt` (device tokens):
 * passport-jwt with the platform's token policy (auth/access-token-strategy.ts),
 * then, on every request, the revocation list (fails closed: 503
 * AUTH.REVOCATION_UNAVAILABLE when Redis does not answer) and the principal.
 *
 * One pair per app instance, made by IdentityServices (which owns the key set
 * and the revocation list); `AuthGuard('jwt')` / `AuthGuard('device-jwt')`
 * (auth-guard.ts) and the `Authenticator` port (`IdentityServices.authenticate`:
 * `POST /commands/*`, MQTT CONNECT) run these same objects.
 */
export interface StrategyDeps {
  readonly tokens: TokenService;
  readonly revocation: RevocationList;
}

async function principalFor(revocation: RevocationList, claims: AccessTokenClaims): Promise<Principal> {
  await revocation.check(claims);
  return {
    kind: claims.kind,
    id: claims.sub,
    roles: claims.roles,
    jti: claims.jti,
    exp: claims.exp,
    iat: issuedAt(claims),
    ...(claims.sid ? { sid: claims.sid } : {}),
  };
}

export class UserJwtStrategy extends PassportStrategy(AccessTokenStrategy, 'jwt') {
  constructor(private readonly deps: StrategyDeps) {
    super({ tokens: deps.tokens, kind: 'user' });
  }

  validate(_req: unknown, claims: AccessTokenClaims): Promise<Principal> {
    return principalFor(this.deps.revocation, claims);
  }
}

export class DeviceJwtStrategy extends PassportStrategy(AccessTokenStrategy, 'device-jwt') {
  constructor(private readonly deps: StrategyDeps) {
    super({ tokens: deps.tokens, kind: 'device' });
  }

  validate(_req: unknown, claims: AccessTokenClaims): Promise<Principal> {
    return principalFor(this.deps.revocation, claims);
  }
}
