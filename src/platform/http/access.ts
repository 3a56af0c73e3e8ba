import { SetMetadata } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { DomainError } from '../../../domain/shared/errors';
import { AuthErrorCode } from './auth-errors';

/**
 * Who may call a route, as every context declares it. The platform owns the
 * vocabulary (these decorators, the principal, the `Authenticator` port);
 * identity supplies the guard and the implementation that checks tokens, so
 * src/platform never imports a context.
 *
 * Every route needs a valid user access token unless marked @Public();
 * @DeviceAuth() routes need a device token instead; @Roles('admin') adds a role check.
 */
export const IS_PUBLIC = 'access:public';
export const ROLES = 'access:roles';
export const AUTH_KIND = 'access:kind';
export const Public = () => SetMetadata(IS_PUBLIC, true);
export const Roles = (...roles: string[]) => SetMetadata(ROLES, roles);
/** The route takes a device token (or, with 'user-or-device', either). */
export const DeviceAuth = (mode: 'device' | 'user-or-device' = 'device') => SetMetadata(AUTH_KIND, mode);

/** Which kind of token a route accepts. */
export type AuthMode = 'user' | 'device' | 'user-or-device';

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
  if (!p)
    throw new DomainError(
      'unauthenticated',
      AuthErrorCode.MISSING_TOKEN,
      'this route needs Authorization: Bearer <token>',
    );
  return p;
}

/**
 * The port through which platform routes authenticate a caller themselves
 * (`POST /commands/:name` is public and lets each command say who may send it).
 * Identity provides it (`IdentityServices`); it throws a DomainError with an
 * AUTH.* code when the header does not carry a valid, unrevoked token.
 */
export abstract class Authenticator {
  abstract authenticate(header: string | undefined, mode: AuthMode): Promise<Principal>;
}
