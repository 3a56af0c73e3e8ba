import { Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { DomainError } from '../../domain/shared/errors';
import { IdentityServices } from './identity.services';
import { AuthErrorCode } from './auth/auth-errors';

/**
 * One global guard (the NestJS JWT sample's shape): every route needs a valid
 * user access token unless marked @Public(); @DeviceAuth() routes need a
 * device token instead; @Roles('admin') adds a role check.
 */
export const IS_PUBLIC = 'identity:public';
export const ROLES = 'identity:roles';
export const AUTH_KIND = 'identity:kind';
export const Public = () => SetMetadata(IS_PUBLIC, true);
export const Roles = (...roles: string[]) => SetMetadata(ROLES, roles);
/** The route takes a device token (or, with 'user-or-device', either). */
export const DeviceAuth = (mode: 'device' | 'user-or-device' = 'device') => SetMetadata(AUTH_KIND, mode);

export interface Principal {
  readonly kind: 'user' | 'device';
  readonly id: string;
  readonly roles: readonly string[];
  readonly jti: string;
  readonly exp: number;
  /** The refresh-token family this access token came from (user tokens). */
  readonly sid?: string;
  /** Issue time in epoch seconds, to the millisecond when the token says: a revocation cutoff is compared with it. */
  readonly iat?: number;
}

export type AuthenticatedRequest = FastifyRequest & { principal?: Principal; actor?: string };

export function principalOf(req: FastifyRequest): Principal {
  const p = (req as AuthenticatedRequest).principal;
  if (!p) throw new DomainError('unauthenticated', AuthErrorCode.MISSING_TOKEN, 'this route needs Authorization: Bearer <token>');
  return p;
}

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(private readonly reflector: Reflector, private readonly identity: IdentityServices) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets)) return true;
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const mode = this.reflector.getAllAndOverride<'device' | 'user-or-device' | undefined>(AUTH_KIND, targets) ?? 'user';
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
