import { Body, Controller, Delete, Get, HttpCode, Injectable, Param, Post, Query, Req, Res, type OnModuleInit } from '@nestjs/common';
import { Command, CommandBus, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EMAIL_MAX_LENGTH } from '../../domain/identity/email';
import { PASSWORD_MAX_LENGTH, PASSWORD_RULES } from '../../domain/identity/password-policy';
import { notFound } from '../../domain/shared/errors';
import { findUserById, listUsers } from '../../projections/users.queries';
import { listAllDevices, listDevicesByOwner } from '../../projections/devices.queries';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { CommandRegistry, type Caller } from '../platform/commands/command-registry';
import { Ctx, MinPosition } from '../platform/http/request';
import { parseInput } from '../platform/http/validation';
import { Platform } from '../platform/platform';
import { DeviceAuth, Public, Roles, principalOf } from './auth-guard';
import { IdentityServices } from './identity.services';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';

const uuid = z.string().uuid('must be a UUID');
const email = z.string().max(EMAIL_MAX_LENGTH, `must be at most ${EMAIL_MAX_LENGTH} characters`);
const signupSchema = z.object({
  email,
  // Any string over twice the maximum in UTF-16 units has more code points than the maximum:
  // refused here, before the password policy reads it (the policy counts code points exactly).
  password: z.string().max(PASSWORD_MAX_LENGTH * 2, PASSWORD_RULES.maxLength),
  name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
}).strict();
const loginSchema = z.object({ email, password: z.string().max(1024, 'must be at most 1024 characters') }).strict();
const refreshSchema = z.object({ refreshToken: z.string().min(1, 'must not be empty').max(512, 'must be at most 512 characters') }).strict();
const logoutSchema = z.object({ refreshToken: z.string().min(1).max(512).optional() }).strict();
const roleSchema = z.object({ role: z.string().min(1, 'must not be empty').max(32, 'must be at most 32 characters') }).strict();
const deviceSchema = z.object({ name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters') }).strict();
const deviceTokenSchema = z.object({ secret: z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters') }).strict();
const listSchema = z.object({
  limit: z.coerce.number().int().min(1).max(200).optional(),
  after: uuid.optional(),
  q: z.string().max(100, 'must be at most 100 characters').optional(),
  minPosition: z.string().max(32, 'must be at most 32 characters').optional(),
});

/** Commands of identity reachable on the bus (resource routes and POST /commands/:name). */
type Signup = z.infer<typeof signupSchema>;
export class RegisterUser extends Command<CommandResult & { userId: string; email: string }> {
  constructor(readonly input: Signup, readonly ctx: CommandContext) { super(); }
}
export class AssignRole extends Command<CommandResult> {
  constructor(readonly input: { userId: string; role: string }, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class RevokeRole extends Command<CommandResult> {
  constructor(readonly input: { userId: string; role: string }, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class DisableUser extends Command<CommandResult> {
  constructor(readonly input: { userId: string }, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class RegisterDevice extends Command<CommandResult & { deviceId: string; secret: string }> {
  constructor(readonly input: { name: string }, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class RevokeDevice extends Command<CommandResult> {
  constructor(readonly input: { deviceId: string }, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}

@CommandHandler(RegisterUser)
class RegisterUserHandler implements ICommandHandler<RegisterUser> {
  constructor(private readonly identity: IdentityServices) {}
  execute(c: RegisterUser) { return this.identity.signup(c.input, c.ctx); }
}
@CommandHandler(AssignRole)
class AssignRoleHandler implements ICommandHandler<AssignRole> {
  constructor(private readonly identity: IdentityServices) {}
  execute(c: AssignRole) { return this.identity.assignRole(c.input.userId, c.input.role, c.by, c.ctx); }
}
@CommandHandler(RevokeRole)
class RevokeRoleHandler implements ICommandHandler<RevokeRole> {
  constructor(private readonly identity: IdentityServices) {}
  execute(c: RevokeRole) { return this.identity.revokeRole(c.input.userId, c.input.role, c.by, c.ctx); }
}
@CommandHandler(DisableUser)
class DisableUserHandler implements ICommandHandler<DisableUser> {
  constructor(private readonly identity: IdentityServices) {}
  execute(c: DisableUser) { return this.identity.disableUser(c.input.userId, c.by, c.ctx); }
}
@CommandHandler(RegisterDevice)
class RegisterDeviceHandler implements ICommandHandler<RegisterDevice> {
  constructor(private readonly identity: IdentityServices) {}
  execute(c: RegisterDevice) { return this.identity.registerDevice(c.by, c.input.name, c.ctx); }
}
@CommandHandler(RevokeDevice)
class RevokeDeviceHandler implements ICommandHandler<RevokeDevice> {
  constructor(private readonly identity: IdentityServices) {}
  execute(c: RevokeDevice) { return this.identity.revokeDevice(c.input.deviceId, c.by, c.ctx); }
}
export const identityCommandHandlers = [RegisterUserHandler, AssignRoleHandler, RevokeRoleHandler, DisableUserHandler, RegisterDeviceHandler, RevokeDeviceHandler];

const clientAddress = (req: FastifyRequest) => req.ip;

@Controller('auth')
export class AuthController {
  constructor(private readonly identity: IdentityServices, private readonly bus: CommandBus) {}

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
  constructor(private readonly identity: IdentityServices, private readonly bus: CommandBus, private readonly platform: Platform) {}

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
    return listUsers(this.platform.pool, { ...(q.limit ? { limit: q.limit } : {}), ...(q.after ? { after: q.after } : {}), ...(q.q ? { q: q.q } : {}) });
  }

  @Roles('admin')
  @Get('admin/users/:id')
  async get(@Param('id') id: string, @MinPosition() minPosition: number | undefined) {
    parseInput(z.object({ id: uuid }), { id });
    await this.platform.readAfter('users', minPosition);
    const u = await findUserById(this.platform.pool, id);
    if (!u) throw notFound(IdentityErrorCode.USER_NOT_FOUND, `no user ${id}`);
    return u;
  }

  @Roles('admin')
  @Post('admin/users/:id/roles')
  assignRole(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const userId = parseInput(z.object({ id: uuid }), { id }).id;
    return this.bus.execute(new AssignRole({ userId, role: parseInput(roleSchema, body).role }, principalOf(req), ctx));
  }

  @Roles('admin')
  @Delete('admin/users/:id/roles/:role')
  revokeRole(@Param('id') id: string, @Param('role') role: string, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const userId = parseInput(z.object({ id: uuid }), { id }).id;
    return this.bus.execute(new RevokeRole({ userId, role }, principalOf(req), ctx));
  }

  @Roles('admin')
  @Post('admin/users/:id/disable')
  @HttpCode(200)
  disable(@Param('id') id: string, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const userId = parseInput(z.object({ id: uuid }), { id }).id;
    return this.bus.execute(new DisableUser({ userId }, principalOf(req), ctx));
  }
}

@Controller('devices')
export class DevicesController {
  constructor(private readonly identity: IdentityServices, private readonly bus: CommandBus, private readonly platform: Platform) {}

  @Post()
  register(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new RegisterDevice(parseInput(deviceSchema, body), principalOf(req), ctx));
  }

  @Get()
  async list(@Req() req: FastifyRequest, @Query() query: unknown, @MinPosition() minPosition: number | undefined) {
    const p = principalOf(req);
    const q = parseInput(listSchema, query ?? {});
    await this.platform.readAfter('devices', minPosition);
    const opts = { ...(q.limit ? { limit: q.limit } : {}), ...(q.after ? { after: q.after } : {}) };
    return p.roles.includes('admin') ? listAllDevices(this.platform.pool, opts) : listDevicesByOwner(this.platform.pool, p.id, opts);
  }

  /** The device's own credential exchange: id + secret for a short-lived device token. */
  @Public()
  @Post(':id/tokens')
  @HttpCode(200)
  token(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest) {
    // A malformed id is refused before the rate limiter and the argon2 work an unknown device costs.
    const deviceId = parseInput(z.object({ id: uuid }), { id }).id;
    return this.identity.deviceToken(deviceId, parseInput(deviceTokenSchema, body).secret, clientAddress(req));
  }

  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@Param('id') id: string, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    const deviceId = parseInput(z.object({ id: uuid }), { id }).id;
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

@Injectable()
export class IdentityCommands implements OnModuleInit {
  constructor(private readonly registry: CommandRegistry) {}
  onModuleInit() {
    this.registry.register({ name: 'RegisterUser', schema: signupSchema, access: 'public', create: (i, ctx) => new RegisterUser(i, ctx) });
    const userRole = z.object({ userId: uuid, role: z.string().min(1).max(32) }).strict();
    this.registry.register({ name: 'AssignRole', schema: userRole, access: 'admin', create: (i, ctx, by) => new AssignRole(i, by!, ctx) });
    this.registry.register({ name: 'RevokeRole', schema: userRole, access: 'admin', create: (i, ctx, by) => new RevokeRole(i, by!, ctx) });
    this.registry.register({ name: 'DisableUser', schema: z.object({ userId: uuid }).strict(), access: 'admin', create: (i, ctx, by) => new DisableUser(i, by!, ctx) });
    this.registry.register({ name: 'RegisterDevice', schema: deviceSchema, access: 'authenticated', create: (i, ctx, by) => new RegisterDevice(i, by!, ctx) });
    this.registry.register({ name: 'RevokeDevice', schema: z.object({ deviceId: uuid }).strict(), access: 'authenticated', create: (i, ctx, by) => new RevokeDevice(i, by!, ctx) });
  }
}
