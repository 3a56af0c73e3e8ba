import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as argon2 from 'argon2';
import { emailReservationDecider } from '../../domain/identity/email-reservation.decider';
import { emailStreamId } from '../../domain/identity/email-reservation.events';
import { normaliseEmail } from '../../domain/identity/email';
import { initialUserState, userDecider } from '../../domain/identity/user.decider';
import { userStreamId } from '../../domain/identity/user.events';
import { IdentityServices } from '../../src/identity/identity.services';
import { OWASP_ARGON2ID } from '../../src/identity/auth/passwords';
import type { RecordedEvent } from '../../src/platform/event-store/event-store';
import { portOpen } from '../../src/platform/local/local-services';
import { pickPort } from '../../src/platform/local/processes';
import { startTestApp, type TestApp } from '../support/app';

/**
 * Identity under changed conditions: password hashes made with other argon2
 * parameters are upgraded at login, and an app whose Redis goes away refuses
 * authenticated requests (503) instead of letting them through.
 */
const password = 'an entirely adequate passphrase 7';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function allEvents(app: TestApp): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for (let from = 0; ;) {
    const batch = await app.platform.store.readAll(from, 1000);
    if (batch.length === 0) return out;
    out.push(...batch);
    from = batch[batch.length - 1]!.position;
  }
}

describe('rehash on login when the argon2 parameters changed', () => {
  let app: TestApp;
  let hasher: IdentityServices['hasher'];

  beforeAll(async () => {
    app = await startTestApp();
    hasher = app.app.get(IdentityServices).hasher;
  });
  afterAll(async () => {
    await app.stop();
  });

  const meta = () => ({ correlationId: randomUUID(), causationId: 'test:legacy-import', actor: 'system:test' });

  /** A user as the app stores one (email reservation + registration in one append), with the given hash. */
  async function registerWithHash(passwordHash: string): Promise<{ userId: string; email: string }> {
    const email = normaliseEmail(`legacy-${randomUUID().slice(0, 8)}@example.test`);
    const userId = randomUUID();
    const now = new Date();
    const emailEvents = emailReservationDecider.decide(
      { type: 'ReserveEmail', data: { email, userId, now } },
      emailReservationDecider.initialState,
    );
    const userEvents = userDecider.decide(
      { type: 'RegisterUser', data: { userId, email, name: 'Legacy User', passwordHash, now } },
      initialUserState,
    );
    await app.platform.store.appendMulti([
      {
        streamId: emailStreamId(email),
        expected: 'no_stream',
        events: emailEvents.map((e) => ({ ...e, id: randomUUID(), metadata: meta() })),
      },
      {
        streamId: userStreamId(userId),
        expected: 'no_stream',
        events: userEvents.map((e) => ({ ...e, id: randomUUID(), metadata: meta() })),
      },
    ]);
    return { userId, email };
  }

  async function expectRehashedOnLogin(userId: string, email: string, oldHash: string): Promise<void> {
    expect(hasher.needsRehash(oldHash)).toBe(true);
    const before = await app.platform.store.readStream(userStreamId(userId));

    const login = await app.http('POST', '/auth/login', { email, password });
    expect(login.status).toBe(200);
    expect((await app.http('GET', '/users/me', undefined, bearer(login.body.accessToken))).body).toMatchObject({
      userId,
      email,
    });

    const after = await app.platform.store.readStream(userStreamId(userId));
    const added = after.slice(before.length);
    expect(added.map((e) => e.type)).toEqual(['identity.PasswordRehashed']);
    const newHash = added[0]!.data.passwordHash as string;
    expect(newHash).not.toBe(oldHash);
    expect(newHash).toMatch(
      new RegExp(
        `^\\$argon2id\\$v=19\\$m=${OWASP_ARGON2ID.memoryCost},t=${OWASP_ARGON2ID.timeCost},p=${OWASP_ARGON2ID.parallelism}\\$`,
      ),
    );
    expect(hasher.needsRehash(newHash)).toBe(false);
    expect(await argon2.verify(newHash, password)).toBe(true);
    expect(added[0]!.data).toEqual({ userId, passwordHash: newHash, at: expect.any(String) });

    // Logging in again changes nothing more; the old password hash is no longer what is checked.
    expect((await app.http('POST', '/auth/login', { email, password })).status).toBe(200);
    expect(await app.platform.store.readStream(userStreamId(userId))).toHaveLength(after.length);
    expect((await app.http('POST', '/auth/login', { email, password: `${password}!` })).status).toBe(401);

    // The plaintext is in no event, anywhere in the store.
    const everything = JSON.stringify(await allEvents(app));
    expect(everything).toContain(newHash);
    expect(everything).not.toContain(password);
  }

  it.each([
    ['less memory', { memoryCost: 4096, timeCost: 3, parallelism: 1 }],
    ['fewer iterations', { memoryCost: 47_104, timeCost: 1, parallelism: 1 }],
    ['other parallelism', { memoryCost: OWASP_ARGON2ID.memoryCost, timeCost: OWASP_ARGON2ID.timeCost, parallelism: 2 }],
  ])('a user registered with a hash using %s logs in and is rehashed to the current parameters', async (_, params) => {
    const oldHash = await argon2.hash(password, { type: argon2.argon2id, ...params });
    const { userId, email } = await registerWithHash(oldHash);
    await expectRehashedOnLogin(userId, email, oldHash);
  });

  it('a user whose latest identity.PasswordRehashed holds an older-parameter hash is rehashed again', async () => {
    const signup = await app.http('POST', '/auth/signup', {
      email: `re-${randomUUID().slice(0, 8)}@example.test`,
      password,
      name: 'Re Hash',
    });
    expect(signup.status).toBe(201);
    const { userId, email } = signup.body as { userId: string; email: string };
    const oldHash = await argon2.hash(password, {
      type: argon2.argon2id,
      memoryCost: 8192,
      timeCost: 2,
      parallelism: 1,
    });
    const stream = userStreamId(userId);
    const [registered] = await app.platform.store.readStream(stream);
    await app.platform.store.append(
      stream,
      [
        {
          id: randomUUID(),
          type: 'identity.PasswordRehashed',
          data: { userId, passwordHash: oldHash, at: new Date().toISOString() },
          metadata: meta(),
        },
      ],
      registered!.revision,
    );
    await expectRehashedOnLogin(userId, email, oldHash);
  });
});

// ---- a dedicated redis-server, so the shared one keeps running --------------

async function until(check: () => Promise<boolean>, what: string, attempts = 300): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never happened: ${what}`);
}

interface RedisProcess {
  readonly url: string;
  readonly child: ChildProcess;
  readonly exited: Promise<unknown>;
}

async function startRedis(port: number, dir: string, password: string): Promise<RedisProcess> {
  // As startLocalRedis runs it, without persistence: this server holds nothing worth keeping.
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
      '--requirepass',
      password,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise((r) => child.once('exit', r));
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    return portOpen(port);
  }, `redis-server listening on ${port}`);
  return { url: `redis://:${password}@127.0.0.1:${port}`, child, exited };
}

async function kill(r: RedisProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!r || r.child.exitCode !== null || r.child.signalCode !== null) return;
  r.child.kill(signal);
  await r.exited;
}

describe('fail closed over HTTP when Redis becomes unreachable', () => {
  let dir: string;
  let port: number;
  const redisPassword = randomUUID();
  let redis: RedisProcess | undefined;
  let app: TestApp | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'identity-resilience-redis-'));
    port = await pickPort(); // below the ephemeral range: no outgoing connection takes it while Redis is down
    redis = await startRedis(port, dir, redisPassword);
    app = await startTestApp({ env: { REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    try {
      // Shutting down waits on Redis clients (BullMQ): give them their server back if a test left it dead.
      if (redis && (redis.child.exitCode !== null || redis.child.signalCode !== null))
        redis = await startRedis(port, dir, redisPassword);
      await app?.stop();
    } finally {
      await kill(redis, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses authenticated requests and logins with 503 (never 200) while Redis is gone, and recovers when it is back', async () => {
    const a = app!;
    const session = await a.login(a.admin.email, a.admin.password);
    const me = () => a.http('GET', '/users/me', undefined, { authorization: session.authorization });
    expect((await me()).status).toBe(200);
    expect((await a.http('GET', '/health')).body.components.redis.status).toBe('ok');

    await kill(redis, 'SIGKILL');
    expect(await portOpen(port)).toBe(false);

    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await me();
      statuses.push(r.status);
      expect(r.status).toBe(503);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(r.body).toMatchObject({
        status: 503,
        code: 'AUTH.REVOCATION_UNAVAILABLE',
        type: 'urn:problem:AUTH.REVOCATION_UNAVAILABLE',
      });
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    // Other authenticated routes, and an admin route, refuse the same way.
    for (const [method, path] of [
      ['GET', '/admin/users'],
      ['GET', '/devices'],
      ['POST', '/auth/logout'],
    ] as const) {
      const r = await a.http(method, path, method === 'POST' ? {} : undefined, {
        authorization: session.authorization,
      });
      statuses.push(r.status);
      expect(r).toMatchObject({ status: 503, body: { code: 'AUTH.REVOCATION_UNAVAILABLE' } });
    }
    // Concurrent requests: not one slips through.
    const burst = await Promise.all(Array.from({ length: 20 }, () => me()));
    statuses.push(...burst.map((r) => r.status));
    expect(statuses.every((s) => s === 503)).toBe(true);

    // The login limiter fails closed too: no password check without the attempt counters.
    const login = await a.http('POST', '/auth/login', { email: a.admin.email, password: a.admin.password });
    expect(login.status).toBe(503);
    expect(login.headers.get('content-type')).toContain('application/problem+json');
    expect(login.body).toMatchObject({ code: 'AUTH.LOGIN_LIMITER_UNAVAILABLE' });
    expect(Number(login.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(login.body.accessToken).toBeUndefined();

    // Public routes that do not need Redis still answer; a bad token is still a 401.
    expect((await a.http('GET', '/.well-known/jwks.json')).status).toBe(200);
    expect((await a.http('GET', '/users/me', undefined, { authorization: 'Bearer not.a.jwt' })).status).toBe(401);

    // Redis back on the same address: the same token works again, without a restart.
    redis = await startRedis(port, dir, redisPassword);
    await until(async () => (await me()).status === 200, 'GET /users/me answers 200 again');
    expect((await a.http('POST', '/auth/login', { email: a.admin.email, password: a.admin.password })).status).toBe(
      200,
    );
    expect((await a.http('GET', '/health')).body.components.redis.status).toBe('ok');
  });

  // Each health check is bounded (src/platform/platform.http.ts timed()): a Redis that does not answer is down, not a hung /health.
  it('GET /health answers 503 with redis down while Redis is gone', async () => {
    const a = app!;
    await kill(redis, 'SIGKILL');
    try {
      const res = await fetch(`${a.url}/health`, { signal: AbortSignal.timeout(5000) });
      const body = (await res.json()) as { status: string; components: { redis: { status: string } } };
      expect(res.status).toBe(503);
      expect(body.status).toBe('down');
      expect(body.components.redis.status).toBe('down');
    } finally {
      // Back up, so the app shuts down cleanly.
      redis = await startRedis(port, dir, redisPassword);
      await until(async () => (await a.http('GET', '/health')).status === 200, 'GET /health answers 200 again');
    }
  });
});
