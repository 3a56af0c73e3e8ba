import { randomUUID } from 'node:crypto';
import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { Gauge } from 'prom-client';
import { fold } from '../../domain/shared/event';
import { DomainError } from '../../domain/shared/errors';
import { deviceDecider, initialDeviceState, type DeviceState } from '../../domain/identity/device.decider';
import { deviceQuotaDecider, type DeviceQuotaState } from '../../domain/identity/device-quota.decider';
import { deviceQuotaStreamId, type DeviceQuotaEvent } from '../../domain/identity/device-quota.events';
import { deviceStreamId, type DeviceEvent } from '../../domain/identity/device.events';
import { emailStreamId } from '../../domain/identity/email-reservation.events';
import { normaliseEmail } from '../../domain/identity/email';
import { userDecider, type UserCommand, type UserState } from '../../domain/identity/user.decider';
import { userStreamId, type UserEvent } from '../../domain/identity/user.events';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { handleCommand } from '../platform/commands/command-handling';
import { Platform } from '../platform/platform';
import {
  DEFAULT_KEY_RELOAD_INTERVAL_MS,
  LoginLimiter,
  PasswordHasher,
  RefreshTokenStore,
  RevocationList,
  RevocationMirror,
  SignupLimiter,
  SigningKeys,
  TokenService,
  authRedisOptions,
  normaliseAccount,
  runStrategy,
  authFailure,
  type OwnStrategies,
  type TokenRequest,
} from './auth';
import { DeviceJwtStrategy, UserJwtStrategy, recalledPrincipal } from './jwt.strategies';
import type { AuthMode, Authenticator, Principal } from '../platform/http/access';
import { SessionWatch, checkSessions } from './session-watch';
import { AuthErrorCode } from '../platform/http/auth-errors';

export interface Session {
  tokenType: 'Bearer';
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

const invalidCredentials = () =>
  new DomainError('unauthenticated', AuthErrorCode.INVALID_CREDENTIALS, 'the email or the password is wrong');
/**
 * Identity's machinery and what is not a write use case: login, refresh,
 * logout, authentication, device tokens, watching long-lived sessions, and
 * the loads the use cases (src/identity/<use-case>.ts) share. Authentication
 * decisions read the event store (a user disabled a moment ago is disabled
 * now), never a read model that may lag.
 */
@Injectable()
export class IdentityServices implements Authenticator, OnModuleInit, OnApplicationShutdown {
  readonly keys: SigningKeys;
  readonly tokens: TokenService;
  readonly revocation: RevocationList;
  /** The revocation list in memory: what every request is checked against (no round trip). */
  readonly revocationMirror: RevocationMirror;
  readonly refresh: RefreshTokenStore;
  readonly hasher: PasswordHasher;
  readonly limiter: LoginLimiter;
  readonly sessions: SessionWatch;
  readonly signupLimiter: SignupLimiter;
  /** passport's `jwt` and `device-jwt` strategies of this instance (jwt.strategies.ts). */
  readonly strategies: OwnStrategies;
  private readonly redis: Redis;

  constructor(readonly platform: Platform) {
    const c = platform.config;
    // Re-reads the key file now and then, so this instance signs with a key rotated by another process.
    this.keys = SigningKeys.fromConfig(c, {
      configuredKeys: c.JWT_KEYS,
      reloadIntervalMs: DEFAULT_KEY_RELOAD_INTERVAL_MS,
      onReloadError: (e) =>
        platform.log.warn({ err: e }, 'could not re-read the JWT key file; the keys in memory stay in use'),
    });
    this.tokens = new TokenService(this.keys, {
      issuer: c.JWT_ISSUER,
      userAudience: c.JWT_AUDIENCE,
      deviceAudience: c.JWT_DEVICE_AUDIENCE,
      accessTokenTtlS: c.ACCESS_TOKEN_TTL_S,
      deviceTokenTtlS: c.DEVICE_TOKEN_TTL_S,
    });
    // Its own connection with a short command timeout: auth fails closed (503) rather than hanging.
    this.redis = new Redis(platform.redisUrl, { ...authRedisOptions(), enableAutoPipelining: true });
    this.redis.on('error', () => undefined);
    const prefix = `${c.QUEUE_PREFIX}:auth:`;
    this.revocation = new RevocationList(this.redis, {
      keyPrefix: `${prefix}revoked:`,
      maxTokenLifeS: this.tokens.maxTokenLifeS,
    });
    this.revocationMirror = new RevocationMirror({
      list: this.revocation,
      redisUrl: platform.redisUrl,
      maxStalenessMs: c.REVOCATION_MAX_STALENESS_MS,
      log: platform.log,
    });
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
    this.strategies = {
      user: new UserJwtStrategy(this),
      device: new DeviceJwtStrategy(this),
    };
    this.hasher = PasswordHasher.fromConfig(c, { log: platform.log });
    this.limiter = LoginLimiter.fromConfig(this.redis, c, { keyPrefix: `${prefix}login:` });
    authMetrics(platform, this);
    this.signupLimiter = new SignupLimiter(this.redis, {
      maxPerAddress: c.SIGNUP_MAX_PER_ADDRESS,
      windowS: c.SIGNUP_WINDOW_S,
      keyPrefix: `${prefix}signup:`,
    });
  }

  async onModuleInit(): Promise<void> {
    await Promise.all([this.hasher.init(), this.revocationMirror.start(), this.sessions.start()]);
  }

  async onApplicationShutdown(): Promise<void> {
    this.keys.close();
    this.revocationMirror.close();
    this.hasher.close();
    await this.sessions.close();
    this.redis.disconnect();
  }

  async loadUser(userId: string): Promise<UserState> {
    const events = await this.platform.store.readStream<UserEvent>(userStreamId(userId));
    return fold(userDecider, events);
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
    const ok =
      user?.status === 'active' || user?.status === 'disabled'
        ? (await this.hasher.verify(user.passwordHash, input.password)) && user.status === 'active'
        : await this.hasher.verifyAgainstDummy(input.password);
    if (!ok || !user) {
      await this.limiter.recordFailure(account, address);
      throw invalidCredentials();
    }
    await this.limiter.recordSuccess(account, address);
    if (this.hasher.needsRehash(user.passwordHash)) {
      const passwordHash = await this.hasher.hash(input.password, 'verify');
      await this.userCommand(
        { type: 'RehashPassword', data: { userId: user.userId, passwordHash, now: new Date() } },
        systemContext('login-rehash'),
      );
    }
    return this.issueSession(user);
  }

  private async issueSession(user: UserState, refreshed?: { token: string; familyId: string }): Promise<Session> {
    const rt = refreshed ?? (await this.refresh.issue(user.userId));
    const at = await this.tokens.issueAccessToken({
      sub: user.userId,
      roles: user.roles,
      kind: 'user',
      sid: rt.familyId,
    });
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

  /**
   * The `Authenticator` port: runs the same passport strategies as the HTTP guard on a bare
   * Authorization header (see `authenticateRequest`).
   */
  authenticate(header: string | undefined, mode: AuthMode): Promise<Principal> {
    const req = { headers: { authorization: header } };
    const known = this.recalledPrincipal(req, mode);
    return known ? Promise.resolve(known) : this.authenticateRequest(req, mode);
  }

  /**
   * The principal of a request whose token was verified here recently and is not revoked, at
   * once (jwt.strategies.ts `recalledPrincipal`); undefined when the strategies must decide
   * (`authenticateRequest`). With 'user-or-device', a token is remembered with its one kind.
   */
  recalledPrincipal(req: TokenRequest, mode: AuthMode): Principal | undefined {
    if (mode !== 'user-or-device') return recalledPrincipal(this, req, mode);
    return recalledPrincipal(this, req, 'user') ?? recalledPrincipal(this, req, 'device');
  }

  /**
   * Runs this instance's passport strategies on a request (the global AccessGuard, and the
   * `Authenticator` port): the token of the kind the route takes, then the revocation mirror,
   * failing closed. With 'user-or-device', `jwt` first, then `device-jwt` (as passport runs a
   * list of strategies: a failure tries the next one, an error ends it).
   */
  async authenticateRequest(req: TokenRequest, mode: AuthMode): Promise<Principal> {
    if (mode !== 'user-or-device') {
      const outcome = await runStrategy<Principal>(this.strategies[mode], req);
      if ('user' in outcome) return outcome.user;
      throw outcome.failure;
    }
    let failure: DomainError | undefined;
    for (const kind of ['user', 'device'] as const) {
      const outcome = await runStrategy<Principal>(this.strategies[kind], req);
      if ('user' in outcome) return outcome.user;
      failure = outcome.failure;
    }
    throw failure ?? authFailure(undefined);
  }

  async userCommand(command: UserCommand, ctx: CommandContext): Promise<CommandResult> {
    return handleCommand({
      store: this.platform.store,
      decider: userDecider,
      streamId: userStreamId(command.data.userId),
      command,
      ctx,
      retries: this.platform.config.COMMAND_RETRIES,
    });
  }

  // ---- devices -----------------------------------------------------------

  async loadDevice(deviceId: string): Promise<DeviceState> {
    const events = await this.platform.store.readStream<DeviceEvent>(deviceStreamId(deviceId));
    return fold(deviceDecider, events);
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

  async loadDeviceQuota(ownerId: string): Promise<{ state: DeviceQuotaState; revision: number }> {
    const events = await this.platform.store.readStream<DeviceQuotaEvent>(deviceQuotaStreamId(ownerId));
    return {
      state: fold(deviceQuotaDecider, events),
      revision: events.length ? events[events.length - 1]!.revision : -1,
    };
  }

  async deviceToken(
    deviceId: string,
    secret: string,
    address: string,
  ): Promise<{ accessToken: string; expiresIn: number; tokenType: 'Bearer' }> {
    const account = `device:${deviceId}`;
    await this.limiter.check(account, address);
    const device = /^[0-9a-f-]{36}$/i.test(deviceId) ? await this.loadDevice(deviceId) : initialDeviceState;
    const ok =
      device.status === 'active'
        ? await this.hasher.verify(device.secretHash, secret)
        : await this.hasher.verifyAgainstDummy(secret);
    if (!ok) {
      await this.limiter.recordFailure(account, address);
      throw new DomainError(
        'unauthenticated',
        AuthErrorCode.INVALID_DEVICE_CREDENTIALS,
        'the device id or secret is wrong, or the device is revoked',
      );
    }
    await this.limiter.recordSuccess(account, address);
    // Told only to a caller that proved it holds the secret.
    if ((await this.loadUser(device.ownerId)).status !== 'active') {
      throw new DomainError(
        'forbidden',
        AuthErrorCode.DEVICE_OWNER_DISABLED,
        'the device belongs to a disabled user; it may not obtain tokens',
      );
    }
    const at = await this.tokens.issueAccessToken({ sub: deviceId, kind: 'device', roles: [] });
    return { tokenType: 'Bearer', accessToken: at.token, expiresIn: at.expiresIn };
  }
}

/** What an operator watches of authentication on /metrics. */
function authMetrics(platform: Platform, identity: Pick<IdentityServices, 'revocationMirror' | 'hasher'>): void {
  const registers = [platform.metrics.registry];
  const gauge = (name: string, help: string, value: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  gauge(
    'auth_revocation_mirror_age_seconds',
    'Since when the in-memory revocation list was last confirmed complete (-1: not live; over REVOCATION_MAX_STALENESS_MS requests get 503)',
    () => {
      const s = identity.revocationMirror.status;
      return s.state === 'live' ? (performance.now() - s.freshAt) / 1000 : -1;
    },
  );
  gauge('auth_revocation_mirror_entries', 'Revocations held in memory', () => identity.revocationMirror.status.entries);
  gauge(
    'auth_revocation_mirror_loads',
    'Full loads of the revocation list since start (first load, reconnects, missed notices)',
    () => identity.revocationMirror.status.loads,
  );
  gauge(
    'auth_revocation_mirror_gaps',
    'Missed revocation notices detected (each followed by a load)',
    () => identity.revocationMirror.status.gaps,
  );
  gauge('auth_password_hashes_running', 'Password hashes being computed', () => identity.hasher.running);
  gauge('auth_password_hashes_waiting', 'Password hashes waiting for a slot', () => identity.hasher.waiting);
}

export function systemContext(component: string): CommandContext {
  const id = randomUUID();
  return { correlationId: id, causationId: `system:${component}`, actor: `system:${component}`, now: new Date() };
}
