import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EMAIL_MAX_LENGTH } from '../../domain/identity/email';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';
import { DomainError, notFound } from '../../domain/shared/errors';
import { AuthErrorCode } from '../platform/http/auth-errors';
import { findUserById, listUsers } from '../../projections/users.queries';
import { listAllDevices, listDevicesByOwner } from '../../projections/devices.queries';
import type { CommandContext } from '../platform/commands/command-context';
import { Ctx, MinPosition } from '../platform/http/request';
import { parseInput } from '../platform/http/validation';
import { Platform } from '../platform/platform';
import { AssignRole, roleSchema } from './assign-role';
import { DeviceAuth, Public, Roles, principalOf } from '../platform/http/access';
import { DisableUser } from './disable-user';
import { idSchema, uuid } from './identity-input';
import { IdentityServices } from './identity.services';
import { RegisterDevice, deviceSchema } from './register-device';
import { RegisterUser, signupSchema } from './register-user';
import { RevokeDevice } from './revoke-device';
import { RevokeRole } from './revoke-role';

/**
 * The HTTP routes of identity. A write route parses its input and sends its
 * use case's command on the bus (src/identity/<use-case>.ts); login, refresh,
 * logout and device tokens are IdentityServices; reads query the read models.
 */

const loginSchema = z
  .object({
    email: z.string().max(EMAIL_MAX_LENGTH, `must be at most ${EMAIL_MAX_LENGTH} characters`),
    password: z.string().max(1024, 'must be at most 1024 characters'),
  })
  .strict();
const refreshSchema = z
  .object({ refreshToken: z.string().min(1, 'must not be empty').max(512, 'must be at most 512 characters') })
  .strict();
const logoutSchema = z.object({ refreshToken: z.string().min(1).max(512).optional() }).strict();
const deviceTokenSchema = z
  .object({ secret: z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters') })
  .strict();
const listSchema = z.object({
  limit: z.coerce.number().int().min(1).max(200).optional(),
  after: uuid.optional(),
  q: z.string().max(100, 'must be at most 100 characters').optional(),
  minPosition: z.string().max(32, 'must be at most 32 characters').optional(),
});
/** GET /devices: admins may ask for one owner's devices (the console's "devices of a user"). */
const deviceListSchema = listSchema.extend({ ownerId: uuid.optional() });

const clientAddress = (req: FastifyRequest) => req.ip;

@Controller('auth')
export class AuthController {
  constructor(
    private readonly identity: IdentityServices,
    private readonly bus: CommandBus,
  ) {}

  @Public()
  @Post('signup')
  async signup(@Body() body: unknown, @Ctx() ctx: CommandContext, @Res({ passthrough: true }) reply: FastifyReply) {
    const result = await this.bus.execute(new RegisterUser(parseInput(signupSchema, body), ctx));
    // As on POST /commands/:name: a replay of a keyed sign-up created nothing.
    if (result.duplicate) void reply.status(200);
    return result;
  }

  @Public()
  @Post('login')
  @HttpCode(200)
  login(@Body() body: unknown, @Req() req: FastifyRequest) {
    return this.identity.login(parseInput(loginSchema, body), clientAddress(req));
  }

  @Public()
  @Post('refresh')
  @HttpCode(200)
  refresh(@Body() body: unknown) {
    return this.identity.refreshSession(parseInput(refreshSchema, body).refreshToken);
  }

  @Post('logout')
  @HttpCode(204)
  async logout(@Body() body: unknown, @Req() req: FastifyRequest) {
    await this.identity.logout(principalOf(req), parseInput(logoutSchema, body ?? {}).refreshToken);
  }
}

@Controller()
export class UsersController {
  constructor(
    private readonly identity: IdentityServices,
    private readonly bus: CommandBus,
    private readonly platform: Platform,
  ) {}

  @Public()
  @Get('.well-known/jwks.json')
  jwks() {
    return this.identity.keys.jwks();
  }

  @Get('users/me')
  async me(@Req() req: FastifyRequest) {
    const p = principalOf(req);
    const user = await this.identity.loadUser(p.id);
    if (user.status === 'none') throw notFound(IdentityErrorCode.USER_NOT_FOUND, 'no such user');
    return { userId: user.userId, email: user.email, name: user.name, roles: user.roles, status: user.status };
  }

  @Roles('admin')
  @Get('admin/users')
  async list(@Query() query: unknown, @MinPosition() minPosition: number | undefined) {
    const q = parseInput(listSchema, query ?? {});
    await this.platform.readAfter('users', minPosition);
    return listUsers(this.platform.pool, {
      ...(q.limit ? { limit: q.limit } : {}),
      ...(q.after ? { after: q.after } : {}),
      ...(q.q ? { q: q.q } : {}),
    });
  }

  @Roles('admin')
  @Get('admin/users/:id')
  async get(@Param('id') id: string, @MinPosition() minPosition: number | undefined) {
    parseInput(idSchema, { id });
    await this.platform.readAfter('users', minPosition);
    const u = await findUserById(this.platform.pool, id);
    if (!u) throw notFound(IdentityErrorCode.USER_NOT_FOUND, `no user ${id}`);
    return u;
  }

  @Roles('admin')
  @Post('admin/users/:id/roles')
  assignRole(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const userId = parseInput(idSchema, { id }).id;
    return this.bus.execute(new AssignRole({ userId, role: parseInput(roleSchema, body).role }, principalOf(req), ctx));
  }

  @Roles('admin')
  @Delete('admin/users/:id/roles/:role')
  revokeRole(
    @Param('id') id: string,
    @Param('role') role: string,
    @Req() req: FastifyRequest,
    @Ctx() ctx: CommandContext,
  ) {
    const userId = parseInput(idSchema, { id }).id;
    return this.bus.execute(new RevokeRole({ userId, role }, principalOf(req), ctx));
  }

  @Roles('admin')
  @Post('admin/users/:id/disable')
  @HttpCode(200)
  disable(@Param('id') id: string, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const userId = parseInput(idSchema, { id }).id;
    return this.bus.execute(new DisableUser({ userId }, principalOf(req), ctx));
  }
}

@Controller('devices')
export class DevicesController {
  constructor(
    private readonly identity: IdentityServices,
    private readonly bus: CommandBus,
    private readonly platform: Platform,
  ) {}

  @Post()
  register(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new RegisterDevice(parseInput(deviceSchema, body), principalOf(req), ctx));
  }

  @Get()
  async list(@Req() req: FastifyRequest, @Query() query: unknown, @MinPosition() minPosition: number | undefined) {
    const p = principalOf(req);
    const q = parseInput(deviceListSchema, query ?? {});
    const admin = p.roles.includes('admin');
    if (!admin && q.ownerId !== undefined && q.ownerId !== p.id)
      throw new DomainError(
        'forbidden',
        AuthErrorCode.FORBIDDEN,
        "ownerId: only an admin may list another user's devices",
      );
    await this.platform.readAfter('devices', minPosition);
    const opts = { ...(q.limit ? { limit: q.limit } : {}), ...(q.after ? { after: q.after } : {}) };
    if (admin && q.ownerId) return listDevicesByOwner(this.platform.pool, q.ownerId, opts);
    return admin ? listAllDevices(this.platform.pool, opts) : listDevicesByOwner(this.platform.pool, p.id, opts);
  }

  /** The device's own credential exchange: id + secret for a short-lived device token. */
  @Public()
  @Post(':id/tokens')
  @HttpCode(200)
  token(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest) {
    // A malformed id is refused before the rate limiter and the argon2 work an unknown device costs.
    const deviceId = parseInput(idSchema, { id }).id;
    return this.identity.deviceToken(deviceId, parseInput(deviceTokenSchema, body).secret, clientAddress(req));
  }

  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@Param('id') id: string, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const deviceId = parseInput(idSchema, { id }).id;
    return this.bus.execute(new RevokeDevice({ deviceId }, principalOf(req), ctx));
  }

  /** Who am I, for a device: lets a device check its token. */
  @DeviceAuth()
  @Get('me/identity')
  whoami(@Req() req: FastifyRequest) {
    const p = principalOf(req);
    return { deviceId: p.id, kind: p.kind };
  }
}
