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
import { ApiDoc, commandResultSchema } from '../platform/http/openapi';
import {
  devicePageSchema,
  deviceIdentitySchema,
  deviceRegisteredSchema,
  deviceTokenIssuedSchema,
  jwksSchema,
  meSchema,
  sessionSchema,
  userPageSchema,
  userRegisteredSchema,
  userSchema,
} from './identity.responses';

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

const userRoleParams = idSchema.extend({ role: roleSchema.shape.role });

const clientAddress = (req: FastifyRequest) => req.ip;
/** What a route that hashes or verifies a secret may answer when the hashing process is saturated. */
const BUSY = [AuthErrorCode.BUSY];

@Controller('auth')
export class AuthController {
  constructor(
    private readonly identity: IdentityServices,
    private readonly bus: CommandBus,
  ) {}

  @ApiDoc({
    summary: 'Sign up (register a user)',
    body: signupSchema,
    command: true,
    responses: {
      201: userRegisteredSchema,
      200: { description: 'An Idempotency-Key replay of the same sign-up.', schema: userRegisteredSchema },
    },
    errors: {
      400: [IdentityErrorCode.INVALID_EMAIL, IdentityErrorCode.WEAK_PASSWORD, IdentityErrorCode.INVALID_NAME],
      409: [IdentityErrorCode.EMAIL_TAKEN],
      429: [AuthErrorCode.TOO_MANY_SIGNUPS],
      503: [...BUSY, AuthErrorCode.SIGNUP_LIMITER_UNAVAILABLE],
    },
  })
  @Public()
  @Post('signup')
  async signup(@Body() body: unknown, @Ctx() ctx: CommandContext, @Res({ passthrough: true }) reply: FastifyReply) {
    const result = await this.bus.execute(new RegisterUser(parseInput(signupSchema, body), ctx));
    // As on POST /commands/:name: a replay of a keyed sign-up created nothing.
    if (result.duplicate) void reply.status(200);
    return result;
  }

  @ApiDoc({
    summary: 'Log in: an access token and a refresh token',
    body: loginSchema,
    responses: { 200: sessionSchema },
    errors: {
      401: [AuthErrorCode.INVALID_CREDENTIALS],
      429: [AuthErrorCode.TOO_MANY_ATTEMPTS],
      503: [...BUSY, AuthErrorCode.LOGIN_LIMITER_UNAVAILABLE],
    },
  })
  @Public()
  @Post('login')
  @HttpCode(200)
  login(@Body() body: unknown, @Req() req: FastifyRequest) {
    return this.identity.login(parseInput(loginSchema, body), clientAddress(req));
  }

  @ApiDoc({
    summary: 'Trade a refresh token for a new pair (the old one is spent; reusing it ends the session)',
    body: refreshSchema,
    responses: { 200: sessionSchema },
    errors: { 401: [AuthErrorCode.INVALID_REFRESH_TOKEN, AuthErrorCode.REFRESH_REUSED] },
  })
  @Public()
  @Post('refresh')
  @HttpCode(200)
  refresh(@Body() body: unknown) {
    return this.identity.refreshSession(parseInput(refreshSchema, body).refreshToken);
  }

  @ApiDoc({
    summary: 'Log out: revoke this access token (and the refresh token, when given)',
    body: logoutSchema,
    bodyRequired: false,
    responses: { 204: { description: 'Logged out.' } },
  })
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

  @ApiDoc({ summary: 'Public keys that verify access tokens (JWKS)', tags: ['auth'], responses: { 200: jwksSchema } })
  @Public()
  @Get('.well-known/jwks.json')
  jwks() {
    return this.identity.keys.jwks();
  }

  @ApiDoc({
    summary: 'The calling user',
    responses: { 200: meSchema },
    errors: { 404: [IdentityErrorCode.USER_NOT_FOUND] },
  })
  @Get('users/me')
  async me(@Req() req: FastifyRequest) {
    const p = principalOf(req);
    const user = await this.identity.loadUser(p.id);
    if (user.status === 'none') throw notFound(IdentityErrorCode.USER_NOT_FOUND, 'no such user');
    return { userId: user.userId, email: user.email, name: user.name, roles: user.roles, status: user.status };
  }

  @ApiDoc({
    summary: 'Search users',
    query: listSchema,
    readsModel: true,
    responses: { 200: userPageSchema },
    errors: { 400: [IdentityErrorCode.INVALID_QUERY] },
  })
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

  @ApiDoc({
    summary: 'One user',
    params: idSchema,
    readsModel: true,
    responses: { 200: userSchema },
    errors: { 404: [IdentityErrorCode.USER_NOT_FOUND] },
  })
  @Roles('admin')
  @Get('admin/users/:id')
  async get(@Param('id') id: string, @MinPosition() minPosition: number | undefined) {
    parseInput(idSchema, { id });
    await this.platform.readAfter('users', minPosition);
    const u = await findUserById(this.platform.pool, id);
    if (!u) throw notFound(IdentityErrorCode.USER_NOT_FOUND, `no user ${id}`);
    return u;
  }

  @ApiDoc({
    summary: 'Give a user a role',
    params: idSchema,
    body: roleSchema,
    command: true,
    responses: { 201: commandResultSchema },
    errors: {
      400: [IdentityErrorCode.INVALID_ROLE],
      404: [IdentityErrorCode.USER_NOT_FOUND],
      409: [IdentityErrorCode.USER_DISABLED],
    },
  })
  @Roles('admin')
  @Post('admin/users/:id/roles')
  assignRole(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const userId = parseInput(idSchema, { id }).id;
    return this.bus.execute(new AssignRole({ userId, role: parseInput(roleSchema, body).role }, principalOf(req), ctx));
  }

  @ApiDoc({
    summary: 'Take a role from a user (every account keeps the role user)',
    params: userRoleParams,
    command: true,
    responses: { 200: commandResultSchema },
    errors: {
      400: [IdentityErrorCode.INVALID_ROLE, IdentityErrorCode.ROLE_PROTECTED],
      404: [IdentityErrorCode.USER_NOT_FOUND],
      409: [IdentityErrorCode.USER_DISABLED],
    },
  })
  @Roles('admin')
  @Delete('admin/users/:id/roles/:role')
  revokeRole(
    @Param('id') rawId: string,
    @Param('role') rawRole: string,
    @Req() req: FastifyRequest,
    @Ctx() ctx: CommandContext,
  ) {
    const { id: userId, role } = parseInput(userRoleParams, { id: rawId, role: rawRole });
    return this.bus.execute(new RevokeRole({ userId, role }, principalOf(req), ctx));
  }

  @ApiDoc({
    summary: 'Disable a user: sessions end, devices stop',
    params: idSchema,
    command: true,
    responses: { 200: commandResultSchema },
    errors: { 404: [IdentityErrorCode.USER_NOT_FOUND] },
  })
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

  @ApiDoc({
    summary: 'Register a device of the caller (its secret is shown once)',
    body: deviceSchema,
    command: true,
    responses: { 201: deviceRegisteredSchema },
    errors: {
      400: [IdentityErrorCode.INVALID_NAME],
      409: [IdentityErrorCode.TOO_MANY_DEVICES, IdentityErrorCode.DEVICE_SECRET_SHOWN],
      503: BUSY,
    },
  })
  @Post()
  register(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new RegisterDevice(parseInput(deviceSchema, body), principalOf(req), ctx));
  }

  @ApiDoc({
    summary: "The caller's devices (an admin: every device, or one owner's with ownerId)",
    query: deviceListSchema,
    readsModel: true,
    responses: { 200: devicePageSchema },
    errors: { 400: [IdentityErrorCode.INVALID_QUERY], 403: [AuthErrorCode.FORBIDDEN] },
  })
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
  @ApiDoc({
    summary: 'A device trades its id and secret for a short-lived device token',
    params: idSchema,
    body: deviceTokenSchema,
    responses: { 200: deviceTokenIssuedSchema },
    errors: {
      401: [AuthErrorCode.INVALID_DEVICE_CREDENTIALS],
      403: [AuthErrorCode.DEVICE_OWNER_DISABLED],
      429: [AuthErrorCode.TOO_MANY_ATTEMPTS],
      503: [...BUSY, AuthErrorCode.LOGIN_LIMITER_UNAVAILABLE],
    },
  })
  @Public()
  @Post(':id/tokens')
  @HttpCode(200)
  token(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest) {
    // A malformed id is refused before the rate limiter and the argon2 work an unknown device costs.
    const deviceId = parseInput(idSchema, { id }).id;
    return this.identity.deviceToken(deviceId, parseInput(deviceTokenSchema, body).secret, clientAddress(req));
  }

  @ApiDoc({
    summary: 'Revoke a device (its owner or an admin): its tokens and MQTT session end',
    params: idSchema,
    command: true,
    responses: { 200: commandResultSchema },
    errors: {
      403: [AuthErrorCode.FORBIDDEN],
      404: [IdentityErrorCode.DEVICE_NOT_FOUND],
      409: [IdentityErrorCode.DEVICE_REVOKED],
    },
  })
  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@Param('id') id: string, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const deviceId = parseInput(idSchema, { id }).id;
    return this.bus.execute(new RevokeDevice({ deviceId }, principalOf(req), ctx));
  }

  /** Who am I, for a device: lets a device check its token. */
  @ApiDoc({ summary: 'The calling device (checks a device token)', responses: { 200: deviceIdentitySchema } })
  @DeviceAuth()
  @Get('me/identity')
  whoami(@Req() req: FastifyRequest) {
    const p = principalOf(req);
    return { deviceId: p.id, kind: p.kind };
  }
}
