import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../../domain/shared/errors';
import { IdentityServices } from './identity.services';
import { AuthErrorCode } from '../platform/http/auth-errors';
import { AUTH_KIND, IS_PUBLIC, ROLES, type AuthMode, type AuthenticatedRequest } from '../platform/http/access';

/**
 * One global guard (the NestJS JWT sample's shape) reading the access
 * metadata every context declares with @Public(), @DeviceAuth() and @Roles()
 * (src/platform/http/access.ts).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly identity: IdentityServices,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets)) return true;
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const mode = this.reflector.getAllAndOverride<AuthMode | undefined>(AUTH_KIND, targets) ?? 'user';
    const principal = await this.identity.authenticate(req.headers.authorization, mode);
    req.principal = principal;
    req.actor = `${principal.kind}:${principal.id}`;
    const roles = this.reflector.getAllAndOverride<string[] | undefined>(ROLES, targets);
    if (roles?.length && !roles.some((r) => principal.roles.includes(r))) {
      throw new DomainError('forbidden', AuthErrorCode.FORBIDDEN, `this route needs the role ${roles.join(' or ')}`);
    }
    return true;
  }
}
