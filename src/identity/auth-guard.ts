import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../../domain/shared/errors';
import { IdentityServices } from './identity.services';
import { AuthErrorCode } from '../platform/http/auth-errors';
import {
  AUTH_KIND,
  IS_PUBLIC,
  ROLES,
  type AuthMode,
  type AuthenticatedRequest,
  type Principal,
} from '../platform/http/access';

/** What a route declares with @Public(), @DeviceAuth() and @Roles(), read once per route. */
interface RouteAccess {
  readonly cls: unknown;
  readonly isPublic: boolean;
  readonly mode: AuthMode;
  readonly roles: readonly string[] | undefined;
}

/**
 * One global guard reading the access metadata every context declares with
 * @Public(), @DeviceAuth() and @Roles() (src/platform/http/access.ts): a
 * public route passes; any other runs this instance's passport strategies of
 * the token kind it takes (`jwt`, `device-jwt`, or both in turn:
 * `IdentityServices.authenticateRequest`), then the role check.
 *
 * The strategies are the passport-jwt strategy objects passport has registered
 * (jwt.strategies.ts), called directly as passport's middleware calls them,
 * rather than through @nestjs/passport's AuthGuard and `passport.authenticate`:
 * the same verification, without a middleware closure, an options merge and a
 * second promise per request (profiled: that, with the Redis round trip of
 * the revocation check, was where an authenticated request's extra time went).
 * A strategy's error (AUTH.TOKEN_REVOKED, 503 AUTH.REVOCATION_UNAVAILABLE, a 400
 * on a too long header) is thrown as it is, a failure as its AUTH.* code
 * (AUTH.MISSING_TOKEN, AUTH.INVALID_TOKEN, AUTH.TOKEN_EXPIRED); the problem
 * filter turns both into RFC 9457 responses (401 with WWW-Authenticate: Bearer).
 * A token the strategy verified on this instance within the last minute, and that the
 * (fresh) revocation mirror does not hold, is admitted synchronously with the same principal
 * (`IdentityServices.recalledPrincipal`): measured, the strategy's callbacks and promises were
 * most of what an authenticated request still cost over a public one.
 */
@Injectable()
export class AccessGuard implements CanActivate {
  /** By route handler: its metadata never changes once the app is built. */
  private readonly routes = new WeakMap<object, RouteAccess>();

  constructor(
    private readonly reflector: Reflector,
    private readonly identity: IdentityServices,
  ) {}

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const access = this.accessOf(context);
    if (access.isPublic) return true;
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    // A token verified here recently and not revoked: admitted without a promise (most requests).
    const known = this.identity.recalledPrincipal(req, access.mode);
    if (known) return admit(req, known, access.roles);
    return this.identity.authenticateRequest(req, access.mode).then((principal) => admit(req, principal, access.roles));
  }

  private accessOf(context: ExecutionContext): RouteAccess {
    const handler = context.getHandler();
    const cls = context.getClass();
    const known = this.routes.get(handler);
    if (known?.cls === cls) return known;
    const targets = [handler, cls];
    const access: RouteAccess = {
      cls,
      isPublic: this.reflector.getAllAndOverride<boolean | undefined>(IS_PUBLIC, targets) === true,
      mode: this.reflector.getAllAndOverride<AuthMode | undefined>(AUTH_KIND, targets) ?? 'user',
      roles: this.reflector.getAllAndOverride<string[] | undefined>(ROLES, targets),
    };
    this.routes.set(handler, access);
    return access;
  }
}

function admit(req: AuthenticatedRequest, principal: Principal, roles: readonly string[] | undefined): true {
  req.principal = principal;
  req.actor = `${principal.kind}:${principal.id}`;
  if (roles?.length && !roles.some((r) => principal.roles.includes(r))) {
    throw new DomainError('forbidden', AuthErrorCode.FORBIDDEN, `this route needs the role ${roles.join(' or ')}`);
  }
  return true;
}
