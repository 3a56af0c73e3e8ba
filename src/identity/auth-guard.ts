import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
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
import { OWN_STRATEGIES, authFailure, type OwnStrategies } from './auth';

/**
 * @nestjs/passport's guard, answering as the platform does: a strategy's error
 * (AUTH.TOKEN_REVOKED, 503 AUTH.REVOCATION_UNAVAILABLE, a 400 on a too long
 * header) as it is, a failure as its AUTH.* code (AUTH.MISSING_TOKEN,
 * AUTH.INVALID_TOKEN, AUTH.TOKEN_EXPIRED); the problem filter turns both into
 * RFC 9457 responses (401 with WWW-Authenticate: Bearer).
 */
function answering<T extends ReturnType<typeof AuthGuard>>(Base: T) {
  return class extends Base {
    override handleRequest<U = Principal>(err: unknown, user: unknown, info: unknown): U {
      if (err) throw err instanceof Error ? err : authFailure(err);
      if (!user) throw authFailure(info);
      return user as U;
    }
  };
}

export class JwtAuthGuard extends answering(AuthGuard('jwt')) {}
export class DeviceJwtAuthGuard extends answering(AuthGuard('device-jwt')) {}
/** `jwt`, then `device-jwt` (passport tries them in turn). */
export class UserOrDeviceJwtAuthGuard extends answering(AuthGuard(['jwt', 'device-jwt'])) {}

/**
 * One global guard reading the access metadata every context declares with
 * @Public(), @DeviceAuth() and @Roles() (src/platform/http/access.ts): a
 * public route passes; any other goes through the passport guard of the
 * token kind it takes (`AuthGuard('jwt')`, `AuthGuard('device-jwt')`, or
 * both in turn), then the role check.
 */
@Injectable()
export class AccessGuard implements CanActivate {
  private readonly guards: Record<AuthMode, CanActivate> = {
    user: new JwtAuthGuard(),
    device: new DeviceJwtAuthGuard(),
    'user-or-device': new UserOrDeviceJwtAuthGuard(),
  };

  constructor(
    private readonly reflector: Reflector,
    private readonly identity: IdentityServices,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets)) return true;
    const req = context
      .switchToHttp()
      .getRequest<AuthenticatedRequest & { user?: Principal; [OWN_STRATEGIES]?: OwnStrategies }>();
    const mode = this.reflector.getAllAndOverride<AuthMode | undefined>(AUTH_KIND, targets) ?? 'user';
    // This instance's strategies (passport's registry holds one per name per process).
    req[OWN_STRATEGIES] = this.identity.strategies;
    await this.guards[mode].canActivate(context);
    const principal = req.user;
    if (!principal) throw authFailure(undefined);
    req.principal = principal;
    req.actor = `${principal.kind}:${principal.id}`;
    const roles = this.reflector.getAllAndOverride<string[] | undefined>(ROLES, targets);
    if (roles?.length && !roles.some((r) => principal.roles.includes(r))) {
      throw new DomainError('forbidden', AuthErrorCode.FORBIDDEN, `this route needs the role ${roles.join(' or ')}`);
    }
    return true;
  }
}
