import { timingSafeEqual, createHash } from 'node:crypto';
import { Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { DomainError } from '../../../domain/shared/errors';
import { Platform } from '../platform';

/**
 * Interim access control until the identity context's JWT guard lands:
 * routes marked @AdminOnly() need `Authorization: Bearer <ADMIN_TOKEN>`.
 * The token comes from configuration or is generated at first start into
 * DATA_DIR/secrets/admin-token (never in git, never in an event).
 */
export const ADMIN_ONLY = 'platform:admin-only';
export const AdminOnly = () => SetMetadata(ADMIN_ONLY, true);

const digest = (s: string) => createHash('sha256').update(s).digest();

@Injectable()
export class AdminGuard implements CanActivate {
  constructor(private readonly reflector: Reflector, private readonly platform: Platform) {}

  canActivate(context: ExecutionContext): boolean {
    const adminOnly = this.reflector.getAllAndOverride<boolean>(ADMIN_ONLY, [context.getHandler(), context.getClass()]);
    if (!adminOnly) return true;
    this.verify(context.switchToHttp().getRequest<FastifyRequest>());
    return true;
  }

  /** Throws 401 unless the request carries the admin token; marks the request's actor. */
  verify(req: FastifyRequest): void {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new DomainError('unauthenticated', 'AUTH.MISSING_TOKEN', 'this route needs Authorization: Bearer <admin token>');
    if (!timingSafeEqual(digest(match[1]!), digest(this.platform.adminToken))) {
      throw new DomainError('unauthenticated', 'AUTH.INVALID_TOKEN', 'the bearer token is not valid for this route');
    }
    (req as FastifyRequest & { actor?: string }).actor = 'admin:token';
  }
}
