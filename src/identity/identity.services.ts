import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Redis } from 'ioredis';
import { fold } from '../../domain/shared/event';
import { DomainError, notFound } from '../../domain/shared/errors';
import { deviceDecider, initialDeviceState, type DeviceState } from '../../domain/identity/device.decider';
import { deviceStreamId, type DeviceEvent } from '../../domain/identity/device.events';
import { emailReservationDecider, emailStreamId, normaliseEmail, type EmailEvent } from '../../domain/identity/email';
import { checkPassword } from '../../domain/identity/password-policy';
import { initialUserState, userDecider, type UserCommand, type UserState } from '../../domain/identity/user.decider';
import { userStreamId, type UserEvent } from '../../domain/identity/user.events';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import type { Caller } from '../platform/commands/command-registry';
import { eventId, handleCommand } from '../platform/commands/command-handling';
import { ConcurrencyError } from '../platform/event-store/event-store';
import { Platform } from '../platform/platform';
import {
  DEFAULT_KEY_RELOAD_INTERVAL_MS, LoginLimiter, PasswordHasher, RefreshTokenStore, RevocationList, SigningKeys, TokenService, authRedisOptions, issuedAt, normaliseAccount,
  type AccessTokenClaims,
} from './auth';
import type { Principal } from './auth-guard';
import { SessionWatch, checkSessions, devicesOwnedBy } from './session-watch';

export interface Session {
  tokenType: 'Bearer';
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

const invalidCredentials = () => new DomainError('unauthenticated', 'AUTH.INVALID_CREDENTIALS', 'the email or the password is wrong');
const missingToken = () => new DomainError('unauthenticated', 'AUTH.MISSING_TOKEN', 'this route needs Authorization: Bearer <token>');

/**
 * Identity's use cases: sign-up, login, refresh, logout, roles, devices.
 * Authentication decisions read the event store (a user disabled a moment ago
 * is disabled now), never a read model that may lag.
 */
@Injectable()
export class IdentityServices implements OnModuleInit, OnApplicationShutdown {
  readonly keys: SigningKeys;
  readonly tokens: TokenService;
  readonly revocation: RevocationList;
  readonly refresh: RefreshTokenStore;
  readonly hasher: PasswordHasher;
  readonly limiter: LoginLimiter;
  readonly sessions: SessionWatch;
  private readonly redis: Redis;

  constructor(private readonly platform: Platform) {
    const c = platform.config;
    // Re-reads the key file now and then, so this instance signs with a key rotated by another process.
    this.keys = SigningKeys.fromConfig(c, {
      configuredKeys: c.JWT_KEYS,
      reloadIntervalMs: DEFAULT_KEY_RELOAD_INTERVAL_MS,
      onReloadError: (e) => platform.log.warn({ err: e }, 'could not re-read the JWT key file; the keys in memory stay in use'),
    });
    this.tokens = new TokenService(this.keys, {
      issuer: c.JWT_ISSUER, userAudience: c.JWT_AUDIENCE, deviceAudience: c.JWT_DEVICE_AUDIENCE,
      accessTokenTtlS: c.ACCESS_TOKEN_TTL_S, deviceTokenTtlS: c.DEVICE_TOKEN_TTL_S,
    });
    // Its own connection with a short command timeout: auth fails closed (503) rather than hanging.
    this.redis = new Redis(platform.redisUrl, { ...authRedisOptions(), enableAutoPipelining: true });
    this.redis.on('error', () => undefined);
    const prefix = `${c.QUEUE_PREFIX}:auth:`;
    this.revocation = new RevocationList(this.redis, { keyPrefix: `${prefix}revoked:`, maxTokenLifeS: this.tokens.maxTokenLifeS });
    this.refresh = new RefreshTokenStore(platform.pool, {
      ttlS: c.REFRESH_TOKEN_TTL_S,
      // A rotated token presented again means that login session was stolen: its access tokens end
      // with its refresh tokens. The user's other sessions stand (see README, "Sessions").
      onReuse: ({ familyId }) => this.revocation.revokeFamily(familyId),
    });
    this.sessions = new SessionWatch({
      redisUrl: platform.redisUrl,
      channel: this.revocation.channel,
      recheckIntervalMs: c.SESSION_RECHECK_INTERVAL_S * 1000,
      recheck: (principals) => checkSessions(this, principals),
      log: platform.log,
    });
    this.hasher = new PasswordHasher({ concurrency: c.ARGON2_CONCURRENCY });
    this.limiter = new LoginLimiter(this.redis, {
      maxPerAccount: c.LOGIN_MAX_PER_ACCOUNT, maxPerAddress: c.LOGIN_MAX_PER_ADDRESS, windowS: c.LOGIN_WINDOW_S, keyPrefix: `${prefix}login:`,
    });
  }

  async onModuleInit(): Promise<void> {
    await this.hasher.init();
    await this.sessions.start();
    const { ADMIN_EMAIL, ADMIN_PASSWORD } = this.platform.config;
    if (ADMIN_EMAIL && ADMIN_PASSWORD) await this.ensureAdmin(ADMIN_EMAIL, ADMIN_PASSWORD);
  }

  async onApplicationShutdown(): Promise<void> {
    this.keys.close();
    await this.sessions.close();
    this.redis.disconnect();
  }

  // ---- users -------------------------------------------------------------

  async signup(input: { email: string; password: string; name: string }, ctx: CommandContext): Promise<CommandResult & { userId: string; email: string }> {
    const email = normaliseEmail(input.email);
    checkPassword(input.password, { email, name: input.name });
    const key = ctx.idempotencyKey;
    const userId = key ? eventId(ctx.actor, key, 'signup', 0) : randomUUID();
    if (key) {
      const original = await this.platform.store.findAppend(userStreamId(userId), eventId(ctx.actor, key, userStreamId(userId), 0));
      if (original) return { userId, email, position: original.position, revision: original.nextRevision, duplicate: true };
    }
    if ((await this.platform.store.readStream(emailStreamId(email), 0, 1)).length > 0) throw this.emailTaken(email);
    const passwordHash = await this.hasher.hash(input.password);
    const emailEvents: readonly EmailEvent[] = emailReservationDecider.decide({ type: 'ReserveEmail', data: { email, userId, now: ctx.now } }, emailReservationDecider.initialState);
    const userEvents: readonly UserEvent[] = userDecider.decide(
      { type: 'RegisterUser', data: { userId, email, name: input.name, passwordHash, now: ctx.now } }, initialUserState);
    const meta = { correlationId: ctx.correlationId, causationId: ctx.causationId, actor: ctx.actor, command: 'RegisterUser' };
    const id = (stream: string, i: number) => (key ? eventId(ctx.actor, key, stream, i) : randomUUID());
    try {
      // One transaction: the email reservation (unique through "no stream") and the user's first events.
      const [, user] = await this.platform.store.appendMulti([
        { streamId: emailStreamId(email), expected: 'no_stream', events: emailEvents.map((e, i) => ({ ...e, id: id(emailStreamId(email), i), metadata: meta })) },
        { streamId: userStreamId(userId), expected: 'no_stream', events: userEvents.map((e, i) => ({ ...e, id: id(userStreamId(userId), i), metadata: meta })) },
      ]);
      return { userId, email, position: user!.position, revision: user!.nextRevision, duplicate: user!.duplicate };
    } catch (e) {
      if (e instanceof ConcurrencyError && e.streamId === emailStreamId(email)) throw this.emailTaken(email);
      throw e;
    }
  }

  private emailTaken(email: string): DomainError {
    return new DomainError('conflict', 'IDENTITY.EMAIL_TAKEN', 'an account with this email exists', [{ field: 'email', rule: 'must not belong to an existing account' }], { email });
  }

  async loadUser(userId: string): Promise<UserState> {
    const events = await this.platform.store.readStream(userStreamId(userId));
    return fold(userDecider, events as unknown as UserEvent[]);
  }

  async userIdByEmail(email: string): Promise<string | undefined> {
    const [reserved] = await this.platform.store.readStream(emailStreamId(email), 0, 1);
    const id = reserved?.data.userId;
    return typeof id === 'string' ? id : undefined;
  }

  async login(input: { email: string; password: string }, address: string): Promise<Session> {
    const account = normaliseAccount(input.email);
    await this.limiter.check(account, address);
    let user: UserState | undefined;
    try {
      const id = await this.userIdByEmail(normaliseEmail(input.email));
      user = id ? await this.loadUser(id) : undefined;
    } catch (e) {
      if (!(e instanceof DomainError && e.kind === 'validation')) throw e;
    }
    // Unknown accounts burn the same argon2 time as known ones: one answer, one timing.
    const ok = user?.status === 'active' || user?.status === 'disabled'
      ? (await this.hasher.verify(user.passwordHash, input.password)) && user.status === 'active'
      : await this.hasher.verifyAgainstDummy(input.password);
    if (!ok || !user) {
      await this.limiter.recordFailure(account, address);
      throw invalidCredentials();
    }
    await this.limiter.recordSuccess(account);
    if (this.hasher.needsRehash(user.passwordHash)) {
      const passwordHash = await this.hasher.hash(input.password);
      await this.userCommand({ type: 'RehashPassword', data: { userId: user.userId, passwordHash, now: new Date() } }, systemContext('login-rehash'));
    }
    return this.issueSession(user);
  }

  private async issueSession(user: UserState, refreshed?: { token: string; familyId: string }): Promise<Session> {
    const rt = refreshed ?? (await this.refresh.issue(user.userId));
    const at = await this.tokens.issueAccessToken({ sub: user.userId, roles: user.roles, kind: 'user', sid: rt.familyId });
    return { tokenType: 'Bearer', accessToken: at.token, refreshToken: rt.token, expiresIn: at.expiresIn };
  }

  async refreshSession(refreshToken: string): Promise<Session> {
    const rotated = await this.refresh.rotate(refreshToken);
    const user = await this.loadUser(rotated.userId);
    if (user.status !== 'active') {
      await this.refresh.revokeFamily(rotated.familyId, 'user disabled');
      throw new DomainError('unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN', 'the refresh token is not valid');
    }
    return this.issueSession(user, rotated);
  }

  /**
   * Ends the login session: every access token of the presented token's refresh family
   * (not only the one presented) and the family's refresh tokens; with a refresh token of
   * another session of the same user, that session too.
   */
  async logout(principal: Principal, refreshToken: string | undefined): Promise<void> {
    const families = new Set<string>(principal.sid ? [principal.sid] : []);
    const named = refreshToken ? await this.refresh.familyOf(refreshToken, { subject: principal.id }) : undefined;
    if (named) families.add(named);
    for (const family of families) {
      await this.revocation.revokeFamily(family);
      await this.refresh.revokeFamily(family, 'logout', { subject: principal.id });
    }
    await this.revocation.revokeToken(principal.jti, principal.exp);
  }

  /** Verifies a bearer token of the kind the route takes, then the revocation list (fails closed). */
  async authenticate(header: string | undefined, mode: 'user' | 'device' | 'user-or-device'): Promise<Principal> {
    const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header ?? '');
    if (!m) throw missingToken();
    const token = m[1]!;
    let claims: AccessTokenClaims;
    if (mode === 'user-or-device') {
      claims = await this.tokens.verify(token, 'user').catch(() => this.tokens.verify(token, 'device'));
    } else {
      claims = await this.tokens.verify(token, mode);
    }
    await this.revocation.check(claims);
    return {
      kind: claims.kind, id: claims.sub, roles: claims.roles, jti: claims.jti, exp: claims.exp, iat: issuedAt(claims), ...(claims.sid ? { sid: claims.sid } : {}),
    };
  }

  async userCommand(command: UserCommand, ctx: CommandContext): Promise<CommandResult> {
    return handleCommand(this.platform.store, userDecider, userStreamId(command.data.userId), command, ctx, this.platform.config.COMMAND_RETRIES);
  }

  async assignRole(userId: string, role: string, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    return this.userCommand({ type: 'AssignRole', data: { userId, role, by: by.id, now: ctx.now } }, ctx);
  }

  async revokeRole(userId: string, role: string, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    const r = await this.userCommand({ type: 'RevokeRole', data: { userId, role, by: by.id, now: ctx.now } }, ctx);
    // Tokens carry roles: end the current ones so the loss takes effect now (the next refresh carries the new roles).
    await this.revocation.revokeSubject(userId);
    return r;
  }

  async disableUser(userId: string, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    const r = await this.userCommand({ type: 'DisableUser', data: { userId, by: by.id, now: ctx.now } }, ctx);
    await this.revocation.revokeSubject(userId);
    await this.refresh.revokeAllForUser(userId, 'user disabled');
    // Their devices stop with them: current device tokens end here; minting, MQTT CONNECT and
    // ingestion check the owner's status themselves.
    await Promise.all((await devicesOwnedBy(this.platform.pool, userId)).map((deviceId) => this.revocation.revokeSubject(deviceId)));
    return r;
  }

  /** ADMIN_EMAIL/ADMIN_PASSWORD at start-up, and `npm run cli -- users:grant-admin <email>`. */
  async ensureAdmin(rawEmail: string, password?: string): Promise<string> {
    const email = normaliseEmail(rawEmail);
    let userId = await this.userIdByEmail(email);
    if (!userId) {
      if (!password) throw notFound('IDENTITY.USER_NOT_FOUND', `no account with email ${email}`);
      userId = (await this.signup({ email, password, name: 'Administrator' }, systemContext('admin-bootstrap'))).userId;
    }
    await this.userCommand({ type: 'AssignRole', data: { userId, role: 'admin', by: 'system', now: new Date() } }, systemContext('admin-bootstrap'));
    return userId;
  }

  // ---- devices -----------------------------------------------------------

  async loadDevice(deviceId: string): Promise<DeviceState> {
    const events = await this.platform.store.readStream(deviceStreamId(deviceId));
    return fold(deviceDecider, events as unknown as DeviceEvent[]);
  }

  /**
   * Whether a device may connect and publish now (MQTT CONNECT, readings): it is
   * registered, not revoked, and its owner is not disabled.
   * Contract used by telemetry; identity decides what "may" means.
   */
  async deviceMayConnect(deviceId: string): Promise<boolean> {
    const device = await this.loadDevice(deviceId);
    if (device.status !== 'active') return false;
    return (await this.loadUser(device.ownerId)).status === 'active';
  }

  /**
   * Watches a long-lived session (an MQTT connection, an SSE stream) opened with
   * `principal`: calls `end(reason)` once when its access is withdrawn, on
   * whichever instance holds it (src/identity/session-watch.ts): the token's
   * expiry; its jti revoked; for a user, its refresh family ended (logout, reuse),
   * the user disabled or a role lost; for a device, the device revoked or its
   * owner disabled. Returns the function that stops watching (call it when the
   * session ends by itself).
   */
  watchSession(principal: Principal, end: (reason: string) => void): () => void {
    return this.sessions.watch(principal, end);
  }

  async registerDevice(owner: Caller, name: string, ctx: CommandContext): Promise<CommandResult & { deviceId: string; secret: string }> {
    const deviceId = ctx.idempotencyKey ? eventId(ctx.actor, ctx.idempotencyKey, 'device', 0) : randomUUID();
    const secret = randomBytes(32).toString('base64url');
    const secretHash = await this.hasher.hash(secret);
    const r = await handleCommand(this.platform.store, deviceDecider, deviceStreamId(deviceId),
      { type: 'RegisterDevice', data: { deviceId, ownerId: owner.id, name, secretHash, now: ctx.now } }, ctx, this.platform.config.COMMAND_RETRIES);
    if (r.duplicate) {
      throw new DomainError('conflict', 'IDENTITY.DEVICE_SECRET_SHOWN', 'this device was registered by an earlier request with the same Idempotency-Key; its secret was shown then', [], { deviceId });
    }
    return { deviceId, secret, position: r.position, revision: r.revision, duplicate: false };
  }

  async deviceToken(deviceId: string, secret: string, address: string): Promise<{ accessToken: string; expiresIn: number; tokenType: 'Bearer' }> {
    const account = `device:${deviceId}`;
    await this.limiter.check(account, address);
    const device = /^[0-9a-f-]{36}$/i.test(deviceId) ? await this.loadDevice(deviceId) : initialDeviceState;
    const ok = device.status === 'active' ? await this.hasher.verify(device.secretHash, secret) : await this.hasher.verifyAgainstDummy(secret);
    if (!ok) {
      await this.limiter.recordFailure(account, address);
      throw new DomainError('unauthenticated', 'AUTH.INVALID_DEVICE_CREDENTIALS', 'the device id or secret is wrong, or the device is revoked');
    }
    await this.limiter.recordSuccess(account);
    // Told only to a caller that proved it holds the secret.
    if ((await this.loadUser(device.ownerId)).status !== 'active') {
      throw new DomainError('forbidden', 'AUTH.DEVICE_OWNER_DISABLED', 'the device belongs to a disabled user; it may not obtain tokens');
    }
    const at = await this.tokens.issueAccessToken({ sub: deviceId, kind: 'device', roles: [] });
    return { tokenType: 'Bearer', accessToken: at.token, expiresIn: at.expiresIn };
  }

  async revokeDevice(deviceId: string, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    const device = await this.loadDevice(deviceId);
    if (device.status === 'none') throw notFound('IDENTITY.DEVICE_NOT_FOUND', `no device ${deviceId}`);
    if (device.ownerId !== by.id && !by.roles.includes('admin')) {
      throw new DomainError('forbidden', 'AUTH.FORBIDDEN', 'only the device owner or an admin may revoke it');
    }
    const r = await handleCommand(this.platform.store, deviceDecider, deviceStreamId(deviceId),
      { type: 'RevokeDevice', data: { deviceId, by: by.id, now: ctx.now } }, ctx, this.platform.config.COMMAND_RETRIES);
    await this.revocation.revokeSubject(deviceId);
    return r;
  }
}

export function systemContext(component: string): CommandContext {
  const id = randomUUID();
  return { correlationId: id, causationId: `system:${component}`, actor: `system:${component}`, now: new Date() };
}
