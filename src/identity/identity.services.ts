import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Redis } from 'ioredis';
import { fold } from '../../domain/shared/event';
import { DomainError, notFound, validationError } from '../../domain/shared/errors';
import { deviceDecider, initialDeviceState, type DeviceState } from '../../domain/identity/device.decider';
import { deviceQuotaDecider, type DeviceQuotaState } from '../../domain/identity/device-quota.decider';
import { deviceQuotaStreamId, type DeviceQuotaEvent } from '../../domain/identity/device-quota.events';
import { deviceStreamId, type DeviceEvent } from '../../domain/identity/device.events';
import { emailReservationDecider } from '../../domain/identity/email-reservation.decider';
import { emailStreamId, type EmailEvent } from '../../domain/identity/email-reservation.events';
import { normaliseEmail } from '../../domain/identity/email';
import { checkPassword } from '../../domain/identity/password-policy';
import { initialUserState, userDecider, type UserCommand, type UserState } from '../../domain/identity/user.decider';
import { userStreamId, type UserEvent } from '../../domain/identity/user.events';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import type { Caller } from '../platform/commands/command-registry';
import { eventId, handleCommand } from '../platform/commands/command-handling';
import { ConcurrencyError } from '../platform/event-store/event-store';
import { Platform } from '../platform/platform';
import {
  DEFAULT_KEY_RELOAD_INTERVAL_MS, LoginLimiter, PasswordHasher, RefreshTokenStore, RevocationList, SignupLimiter, SigningKeys, TokenService, authRedisOptions, issuedAt,
  normaliseAccount,
  type AccessTokenClaims,
} from './auth';
import type { Principal } from './auth-guard';
import { SessionWatch, checkSessions, devicesOwnedBy } from './session-watch';
import { PlatformErrorCode } from '../platform/platform-errors';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';
import { AuthErrorCode } from './auth/auth-errors';

export interface Session {
  tokenType: 'Bearer';
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

const invalidCredentials = () => new DomainError('unauthenticated', AuthErrorCode.INVALID_CREDENTIALS, 'the email or the password is wrong');
const missingToken = () => new DomainError('unauthenticated', AuthErrorCode.MISSING_TOKEN, 'this route needs Authorization: Bearer <token>');
/** Far above any token this platform issues (an ES256 access token is under 1 KiB); checked before any parsing. */
export const AUTHORIZATION_MAX_LENGTH = 4096;
const AUTHORIZATION_RULE = `must be at most ${AUTHORIZATION_MAX_LENGTH} characters`;
const keyReused = () => new DomainError('conflict', PlatformErrorCode.IDEMPOTENCY_KEY_REUSED,
  'this Idempotency-Key was already used for a different sign-up; send a new key with a new request',
  [{ field: 'Idempotency-Key', rule: 'must not be reused with a different request' }]);

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
  readonly signupLimiter: SignupLimiter;
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
    this.hasher = PasswordHasher.fromConfig(c);
    this.limiter = LoginLimiter.fromConfig(this.redis, c, { keyPrefix: `${prefix}login:` });
    this.signupLimiter = new SignupLimiter(this.redis, { maxPerAddress: c.SIGNUP_MAX_PER_ADDRESS, windowS: c.SIGNUP_WINDOW_S, keyPrefix: `${prefix}signup:` });
  }

  async onModuleInit(): Promise<void> {
    await this.hasher.init();
    await this.sessions.start();
    await this.bootstrapAdmin();
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
    // After the cheap checks, before any lookup or hash. System sign-ups (ADMIN_EMAIL) have no address.
    if (ctx.clientAddress !== undefined) await this.signupLimiter.take(ctx.clientAddress);
    const key = ctx.idempotencyKey;
    // Anonymous callers share one key space: scoped by the address being registered, two strangers'
    // keys never meet, and a key can only ever answer with the account of that same address.
    const userId = key ? eventId(ctx.actor, key, `signup:${email}`, 0) : randomUUID();
    // A taken address is either this very sign-up sent again (same key) or someone else's account.
    const takenOrReplay = async (): Promise<CommandResult & { userId: string; email: string }> => {
      const original = key ? await this.platform.store.findAppend(userStreamId(userId), eventId(ctx.actor, key, userStreamId(userId), 0)) : undefined;
      if (original) return this.replaySignup(userId, email, input, original);
      throw this.emailTaken(email);
    };
    if ((await this.platform.store.readStream(emailStreamId(email), 0, 1)).length > 0) return takenOrReplay();
    const passwordHash = await this.hasher.hash(input.password, 'create');
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
      // A concurrent request with this key got there first: answer as a replay, after the same checks.
      if (user!.duplicate) return await this.replaySignup(userId, email, input, user!);
      return { userId, email, position: user!.position, revision: user!.nextRevision, duplicate: false };
    } catch (e) {
      if (e instanceof ConcurrencyError && e.streamId === emailStreamId(email)) return takenOrReplay();
      throw e;
    }
  }

  /**
   * The Idempotency-Key of this sign-up was used before for this address: the original result
   * only for the same request (same name, and the password verifies against the account's hash),
   * else 409 PLATFORM.IDEMPOTENCY_KEY_REUSED. The password is compared with argon2, never kept:
   * a fingerprint of it in an event would be a fast hash of a password.
   */
  private async replaySignup(userId: string, email: string, input: { password: string; name: string }, original: { position: number; nextRevision: number }): Promise<CommandResult & { userId: string; email: string }> {
    const user = await this.loadUser(userId);
    const same = (user.status === 'active' || user.status === 'disabled') && user.name === input.name.trim()
      && (await this.hasher.verify(user.passwordHash, input.password, 'create'));
    if (!same) throw keyReused();
    return { userId, email, position: original.position, revision: original.nextRevision, duplicate: true };
  }

  private emailTaken(email: string): DomainError {
    return new DomainError('conflict', IdentityErrorCode.EMAIL_TAKEN, 'an account with this email exists', [{ field: 'email', rule: 'must not belong to an existing account' }], { email });
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
    await this.limiter.recordSuccess(account, address);
    if (this.hasher.needsRehash(user.passwordHash)) {
      const passwordHash = await this.hasher.hash(input.password, 'verify');
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
      throw new DomainError('unauthenticated', AuthErrorCode.INVALID_REFRESH_TOKEN, 'the refresh token is not valid');
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
    if (header !== undefined && header.length > AUTHORIZATION_MAX_LENGTH) {
      throw validationError(PlatformErrorCode.INVALID_HEADER, `Authorization ${AUTHORIZATION_RULE}`, [{ field: 'Authorization', rule: AUTHORIZATION_RULE }]);
    }
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
    return handleCommand({ store: this.platform.store, decider: userDecider, streamId: userStreamId(command.data.userId), command, ctx, retries: this.platform.config.COMMAND_RETRIES });
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

  /**
   * ADMIN_EMAIL/ADMIN_PASSWORD at start-up. Creates the account when the address is free. An
   * existing account gets the admin role only when ADMIN_PASSWORD verifies against it: sign-up
   * never proves who owns an address, so whoever registered the operator's address first must
   * not become admin at the next restart. (`npm run cli -- users:grant-admin` is the way to
   * promote an account whose password the operator does not set.)
   */
  async ensureAdmin(rawEmail: string, password: string): Promise<{ userId: string; outcome: 'created' | 'promoted' | 'already admin' | 'refused' }> {
    const email = normaliseEmail(rawEmail);
    const ctx = systemContext('admin-bootstrap');
    const existing = await this.userIdByEmail(email);
    if (!existing) {
      const { userId } = await this.signup({ email, password, name: 'Administrator' }, ctx);
      await this.userCommand({ type: 'AssignRole', data: { userId, role: 'admin', by: 'system', now: ctx.now } }, ctx);
      return { userId, outcome: 'created' };
    }
    const user = await this.loadUser(existing);
    const verified = (user.status === 'active' || user.status === 'disabled') && (await this.hasher.verify(user.passwordHash, password));
    if (!verified) return { userId: existing, outcome: 'refused' };
    if (user.roles.includes('admin')) return { userId: existing, outcome: 'already admin' };
    await this.userCommand({ type: 'AssignRole', data: { userId: existing, role: 'admin', by: 'system', now: ctx.now } }, ctx);
    return { userId: existing, outcome: 'promoted' };
  }

  /** The start-up admin bootstrap, with one log line saying what it did (or refused). */
  private async bootstrapAdmin(): Promise<void> {
    const { ADMIN_EMAIL, ADMIN_PASSWORD } = this.platform.config;
    const log = this.platform.log;
    if (!ADMIN_EMAIL) return;
    if (!ADMIN_PASSWORD) {
      log.warn({ adminEmail: ADMIN_EMAIL }, `ADMIN_EMAIL ${ADMIN_EMAIL} is set without ADMIN_PASSWORD: no admin account was created or promoted`);
      return;
    }
    const { userId, outcome } = await this.ensureAdmin(ADMIN_EMAIL, ADMIN_PASSWORD);
    if (outcome === 'refused') {
      log.error({ adminEmail: ADMIN_EMAIL, userId },
        `ADMIN_EMAIL ${ADMIN_EMAIL} belongs to an existing account whose password is not ADMIN_PASSWORD: it was NOT given the admin role `
        + `(anyone can sign up with any address); set ADMIN_PASSWORD to that account's password, choose another ADMIN_EMAIL, `
        + `or run \`npm run cli -- users:grant-admin ${ADMIN_EMAIL}\` if you trust that account`);
      return;
    }
    const what = { created: 'created', promoted: 'given the admin role', 'already admin': 'already an admin' }[outcome];
    log.info({ adminEmail: ADMIN_EMAIL, userId, outcome }, `admin account ${ADMIN_EMAIL} (user ${userId}): ${what}; log in with ADMIN_EMAIL and ADMIN_PASSWORD`);
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

  /**
   * Registers a device and takes one of its owner's DEVICES_MAX_PER_USER places, in one append
   * (the place at the quota stream's expected revision). The cap is checked once before hashing
   * the secret, so a user at the cap costs no argon2 work, and again in the append.
   */
  async registerDevice(owner: Caller, name: string, ctx: CommandContext): Promise<CommandResult & { deviceId: string; secret: string }> {
    const key = ctx.idempotencyKey;
    const deviceId = key ? eventId(ctx.actor, key, 'device', 0) : randomUUID();
    const deviceStream = deviceStreamId(deviceId);
    const secretShown = () => new DomainError('conflict', IdentityErrorCode.DEVICE_SECRET_SHOWN,
      'this device was registered by an earlier request with the same Idempotency-Key; its secret was shown then', [], { deviceId });
    if (key && (await this.platform.store.findAppend(deviceStream, eventId(ctx.actor, key, deviceStream, 0)))) throw secretShown();
    const quotaStream = deviceQuotaStreamId(owner.id);
    const max = this.platform.config.DEVICES_MAX_PER_USER;
    const take = { type: 'TakeDeviceSlot', data: { ownerId: owner.id, deviceId, max, now: ctx.now } } as const;
    deviceQuotaDecider.decide(take, (await this.loadDeviceQuota(owner.id)).state);
    const secret = randomBytes(32).toString('base64url');
    const secretHash = await this.hasher.hash(secret, 'create');
    const deviceEvents = deviceDecider.decide({ type: 'RegisterDevice', data: { deviceId, ownerId: owner.id, name, secretHash, now: ctx.now } }, initialDeviceState);
    const meta = { correlationId: ctx.correlationId, causationId: ctx.causationId, actor: ctx.actor, command: 'RegisterDevice' };
    const id = (stream: string, i: number) => (key ? eventId(ctx.actor, key, stream, i) : randomUUID());
    const toAppend = (stream: string, events: readonly { type: string; data: object }[]) =>
      events.map((e, i) => ({ type: e.type, data: e.data as Record<string, unknown>, id: id(stream, i), metadata: meta }));
    for (let attempt = 0; ; attempt++) {
      const quota = await this.loadDeviceQuota(owner.id);
      const slotEvents = deviceQuotaDecider.decide(take, quota.state);
      try {
        const results = await this.platform.store.appendMulti([
          ...(slotEvents.length ? [{ streamId: quotaStream, expected: quota.revision < 0 ? 'no_stream' as const : quota.revision, events: toAppend(quotaStream, slotEvents) }] : []),
          { streamId: deviceStream, expected: 'no_stream', events: toAppend(deviceStream, deviceEvents) },
        ]);
        const device = results[results.length - 1]!;
        if (device.duplicate) throw secretShown();
        return { deviceId, secret, position: device.position, revision: device.nextRevision, duplicate: false };
      } catch (e) {
        // Another registration of this owner took a place meanwhile: count again.
        if (e instanceof ConcurrencyError && e.streamId === quotaStream && attempt < this.platform.config.COMMAND_RETRIES) continue;
        if (e instanceof ConcurrencyError && e.streamId === deviceStream) throw secretShown();
        throw e;
      }
    }
  }

  private async loadDeviceQuota(ownerId: string): Promise<{ state: DeviceQuotaState; revision: number }> {
    const events = await this.platform.store.readStream(deviceQuotaStreamId(ownerId));
    return { state: fold(deviceQuotaDecider, events as unknown as DeviceQuotaEvent[]), revision: events.length ? events[events.length - 1]!.revision : -1 };
  }

  async deviceToken(deviceId: string, secret: string, address: string): Promise<{ accessToken: string; expiresIn: number; tokenType: 'Bearer' }> {
    const account = `device:${deviceId}`;
    await this.limiter.check(account, address);
    const device = /^[0-9a-f-]{36}$/i.test(deviceId) ? await this.loadDevice(deviceId) : initialDeviceState;
    const ok = device.status === 'active' ? await this.hasher.verify(device.secretHash, secret) : await this.hasher.verifyAgainstDummy(secret);
    if (!ok) {
      await this.limiter.recordFailure(account, address);
      throw new DomainError('unauthenticated', AuthErrorCode.INVALID_DEVICE_CREDENTIALS, 'the device id or secret is wrong, or the device is revoked');
    }
    await this.limiter.recordSuccess(account, address);
    // Told only to a caller that proved it holds the secret.
    if ((await this.loadUser(device.ownerId)).status !== 'active') {
      throw new DomainError('forbidden', AuthErrorCode.DEVICE_OWNER_DISABLED, 'the device belongs to a disabled user; it may not obtain tokens');
    }
    const at = await this.tokens.issueAccessToken({ sub: deviceId, kind: 'device', roles: [] });
    return { tokenType: 'Bearer', accessToken: at.token, expiresIn: at.expiresIn };
  }

  async revokeDevice(deviceId: string, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    const device = await this.loadDevice(deviceId);
    if (device.status === 'none') throw notFound(IdentityErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
    if (device.ownerId !== by.id && !by.roles.includes('admin')) {
      throw new DomainError('forbidden', AuthErrorCode.FORBIDDEN, 'only the device owner or an admin may revoke it');
    }
    const r = await handleCommand({
      store: this.platform.store, decider: deviceDecider, streamId: deviceStreamId(deviceId),
      command: { type: 'RevokeDevice', data: { deviceId, by: by.id, now: ctx.now } }, ctx, retries: this.platform.config.COMMAND_RETRIES,
    });
    await this.revocation.revokeSubject(deviceId);
    // Also after a repeated revoke (nothing new above): a crash between the two appends is repaired by retrying.
    // Without the key: the decider makes the release idempotent, and the key may have named a registration on this stream.
    const unkeyed: CommandContext = { correlationId: ctx.correlationId, causationId: ctx.causationId, actor: ctx.actor, now: ctx.now };
    await handleCommand({
      store: this.platform.store, decider: deviceQuotaDecider, streamId: deviceQuotaStreamId(device.ownerId),
      command: { type: 'ReleaseDeviceSlot', data: { ownerId: device.ownerId, deviceId, now: ctx.now } }, ctx: unkeyed, retries: this.platform.config.COMMAND_RETRIES,
    });
    return r;
  }
}

export function systemContext(component: string): CommandContext {
  const id = randomUUID();
  return { correlationId: id, causationId: `system:${component}`, actor: `system:${component}`, now: new Date() };
}
