import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { IdentityServices } from '../../src/identity/identity.services';
import { RevocationList } from '../../src/identity/auth/revocation';
import { startTestApp, type HttpResult, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { testRedisUrl } from '../support/services';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { ownerWithDevice } from '../support/telemetry';

/**
 * Each instance checks tokens against its own in-memory mirror of the Redis
 * revocation list (src/identity/auth/revocation-mirror.ts). Two instances share
 * PostgreSQL and Redis; B reaches Redis through a proxy the test can freeze or
 * cut. What must hold:
 *
 * - a token, user or device revoked on one instance is refused on the other: at
 *   the latest by B's first request after B's mirror was confirmed complete at a
 *   moment after the revocation (ordering, not speed), and eventually over HTTP;
 * - an instance whose mirror cannot vouch for being current (link frozen
 *   silently, link cut, subscription killed) answers 503
 *   AUTH.REVOCATION_UNAVAILABLE, never 200 from a stale list, and recovers when
 *   Redis is reachable again, refusing what was revoked meanwhile.
 */
const BOUND_MS = 1000;
const password = 'a perfectly long passphrase 9';
let a: TestApp;
let b: TestApp;
let proxy: TcpProxy;

const mirrorOf = (app: TestApp) => app.app.get(IdentityServices).revocationMirror;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const me = (app: TestApp, token: string) => app.http('GET', '/users/me', undefined, bearer(token));
const deviceMe = (app: TestApp, token: string) => app.http('GET', '/devices/me/identity', undefined, bearer(token));

/** Resolves once `app`'s mirror has been confirmed complete as of a moment after `t` (performance.now()). */
async function confirmedAfter(app: TestApp, t: number): Promise<void> {
  await eventually(() => mirrorOf(app).status.freshAt > t, 'the mirror confirmed after the revocation', 15_000);
}

function expectStatus(r: HttpResult, status: number, code?: string): void {
  expect({ status: r.status, code: r.body?.code }).toEqual({ status, code: code ?? r.body?.code });
}

async function newUser(app: TestApp): Promise<{ userId: string; email: string; token: string }> {
  const email = `rev-${randomUUID().slice(0, 8)}@example.test`;
  const s = await app.http('POST', '/auth/signup', { email, password, name: 'Rev Oked' });
  expect(s.status).toBe(201);
  const { accessToken } = await app.login(email, password);
  return { userId: s.body.userId as string, email, token: accessToken };
}

beforeAll(async () => {
  const redis = new URL(testRedisUrl());
  proxy = await startTcpProxy(redis.hostname, Number(redis.port));
  const env = { REVOCATION_MAX_STALENESS_MS: String(BOUND_MS) };
  a = await startTestApp({ env });
  b = await startTestApp({ sharing: a, env: { ...env, REDIS_URL: proxy.via(testRedisUrl()) } });
});

afterAll(async () => {
  proxy?.thaw();
  proxy?.restore();
  await b?.stop();
  await a?.stop();
  await proxy?.close();
});

describe('a revocation on one instance is refused on the other', () => {
  it('a logged-out token (A) is refused on B once B is confirmed past the logout; A refuses it at once', async () => {
    const u = await newUser(a);
    const other = await newUser(a);
    expectStatus(await me(b, u.token), 200); // verified on B, and remembered as verified
    expectStatus(await me(a, u.token), 200);

    expect((await a.http('POST', '/auth/logout', {}, bearer(u.token))).status).toBe(204);
    const revokedAt = performance.now();
    expectStatus(await me(a, u.token), 401, 'AUTH.TOKEN_REVOKED'); // its own write, before the logout answered

    await confirmedAfter(b, revokedAt);
    expectStatus(await me(b, u.token), 401, 'AUTH.TOKEN_REVOKED');
    expectStatus(await me(b, other.token), 200);
    // Also through the Authenticator port (POST /commands/*) on B.
    const viaCommands = await b.http('POST', '/commands/RegisterDevice', { name: 'x' }, bearer(u.token));
    expectStatus(viaCommands, 401, 'AUTH.TOKEN_REVOKED');
  });

  it('a disabled user (A): their token and their devices’ tokens are refused on B', async () => {
    const owned = await ownerWithDevice((m, p, body, h) => a.http(m, p, body, h));
    const userToken = owned.owner.authorization.slice('Bearer '.length);
    const userId = (await me(a, userToken)).body.userId as string;
    expectStatus(await me(b, userToken), 200);
    expectStatus(await deviceMe(b, owned.token), 200);

    const off = await a.http('POST', `/admin/users/${userId}/disable`, undefined, await a.adminAuth());
    expect(off.status).toBeLessThan(300);
    const revokedAt = performance.now();
    await confirmedAfter(b, revokedAt);
    expectStatus(await me(b, userToken), 401, 'AUTH.TOKEN_REVOKED');
    expectStatus(await deviceMe(b, owned.token), 401, 'AUTH.TOKEN_REVOKED');
  });

  it('a device revoked on B: its token is refused on A', async () => {
    const owned = await ownerWithDevice((m, p, body, h) => b.http(m, p, body, h));
    expectStatus(await deviceMe(a, owned.token), 200);
    const r = await b.http('POST', `/devices/${owned.deviceId}/revoke`, undefined, owned.owner);
    expect(r.status).toBeLessThan(300);
    const revokedAt = performance.now();
    expectStatus(await deviceMe(b, owned.token), 401, 'AUTH.TOKEN_REVOKED');
    await confirmedAfter(a, revokedAt);
    expectStatus(await deviceMe(a, owned.token), 401, 'AUTH.TOKEN_REVOKED');
    // The owner's own token is untouched.
    expectStatus(await me(a, owned.owner.authorization.slice('Bearer '.length)), 200);
  });

  it('within the stated bound: no request B receives later than REVOCATION_MAX_STALENESS_MS after a logout on A is answered 200', async () => {
    const u = await newUser(a);
    expectStatus(await me(b, u.token), 200);
    expect((await a.http('POST', '/auth/logout', {}, bearer(u.token))).status).toBe(204);
    const revokedAt = performance.now();
    // B is asked without pause until twice the bound has passed. Before the bound it may still
    // answer 200 (its list may predate the logout); later, never: 401 once its mirror has the
    // revocation, or 503 if it could not vouch for a list that recent.
    const answers: { sentAt: number; status: number }[] = [];
    while (performance.now() < revokedAt + 2 * BOUND_MS) {
      const sentAt = performance.now();
      answers.push({ sentAt, status: (await me(b, u.token)).status });
    }
    const late = answers.filter((x) => x.sentAt > revokedAt + BOUND_MS);
    expect(late.length).toBeGreaterThan(0);
    expect(late.filter((x) => x.status === 200)).toEqual([]);
    await eventually(async () => (await me(b, u.token)).status === 401, 'B refuses the token as revoked', 15_000);
    expectStatus(await me(b, u.token), 401, 'AUTH.TOKEN_REVOKED');
  });

  it('eventually over HTTP alone: a token logged out on B is refused on A', async () => {
    const u = await newUser(b);
    expectStatus(await me(a, u.token), 200);
    expect((await b.http('POST', '/auth/logout', {}, bearer(u.token))).status).toBe(204);
    await eventually(async () => (await me(a, u.token)).status === 401, 'A refuses the token', 15_000);
  });
});

describe('an instance that cannot vouch for its list answers 503, then recovers', () => {
  it('link frozen (silent partition): B answers 503 rather than 200 from its stale list; after the thaw it refuses what A revoked meanwhile', async () => {
    const u = await newUser(a);
    const other = await newUser(a);
    expectStatus(await me(b, u.token), 200);
    expectStatus(await me(b, other.token), 200);

    proxy.freeze();
    try {
      expect((await a.http('POST', '/auth/logout', {}, bearer(u.token))).status).toBe(204);
      const revokedAt = performance.now();
      // Until B notices (at most the bound after its last confirmation, which predates the freeze),
      // it may still answer from its list; every request sent later than the bound after the
      // logout is refused: 503 while B cannot reach Redis, never 200.
      const answers: { sentAt: number; status: number; code: unknown }[] = [];
      await eventually(
        async () => {
          const sentAt = performance.now();
          const r = await me(b, u.token);
          answers.push({ sentAt, status: r.status, code: r.body?.code });
          return r.status === 503;
        },
        'B answers 503',
        15_000,
      );
      expect(answers.filter((x) => x.sentAt > revokedAt + BOUND_MS && x.status === 200)).toEqual([]);
      expect(answers[answers.length - 1]!.code).toBe('AUTH.REVOCATION_UNAVAILABLE');
      for (let i = 0; i < 3; i++) {
        const r = await me(b, other.token);
        expectStatus(r, 503, 'AUTH.REVOCATION_UNAVAILABLE');
        expect(r.headers.get('content-type')).toContain('application/problem+json');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
        expectStatus(await me(b, u.token), 503, 'AUTH.REVOCATION_UNAVAILABLE');
      }
      // A route without authentication still answers on B; A is unaffected.
      expect((await b.http('GET', '/.well-known/jwks.json')).status).toBe(200);
      expectStatus(await me(a, other.token), 200);
    } finally {
      proxy.thaw();
    }
    await eventually(async () => (await me(b, other.token)).status === 200, 'B answers 200 again', 15_000);
    expectStatus(await me(b, u.token), 401, 'AUTH.TOKEN_REVOKED');
  });

  it('link cut: B answers 503 while it cannot reach Redis; restored, it loads the list again and refuses what A revoked meanwhile', async () => {
    const u = await newUser(a);
    const other = await newUser(a);
    expectStatus(await me(b, u.token), 200);
    const loads = mirrorOf(b).status.loads;

    proxy.cut();
    try {
      await eventually(async () => (await me(b, other.token)).status === 503, 'B answers 503', 15_000);
      expect((await a.http('POST', '/auth/logout', {}, bearer(u.token))).status).toBe(204);
      expectStatus(await me(b, u.token), 503, 'AUTH.REVOCATION_UNAVAILABLE');
      expectStatus(await me(b, other.token), 503, 'AUTH.REVOCATION_UNAVAILABLE');
    } finally {
      proxy.restore();
    }
    await eventually(async () => (await me(b, other.token)).status === 200, 'B answers 200 again', 15_000);
    expectStatus(await me(b, u.token), 401, 'AUTH.TOKEN_REVOKED');
    expect(mirrorOf(b).status.loads).toBeGreaterThan(loads);
  });

  it('subscription killed (CLIENT KILL) with a revocation published right after it: B reconnects, loads, and refuses it', async () => {
    const u = await newUser(a);
    expectStatus(await me(b, u.token), 200);
    const claims = await b.app.get(IdentityServices).tokens.verify(u.token, 'user');
    const loads = mirrorOf(b).status.loads;
    const redis = new Redis(testRedisUrl());
    try {
      const clients = (await redis.client('LIST')) as string;
      const line = clients.split('\n').find((l) => l.includes(` name=${mirrorOf(b).subscriberName} `));
      const id = /\bid=(\d+)/.exec(line ?? '')?.[1];
      expect(id).toBeDefined();
      // One connection, in this order: the kill, then the revocation (its notice cannot reach B's old subscription).
      const list = new RevocationList(redis, {
        keyPrefix: `${a.platform.config.QUEUE_PREFIX}:auth:revoked:`,
        maxTokenLifeS: b.app.get(IdentityServices).tokens.maxTokenLifeS,
      });
      const killed = redis.client('KILL', 'ID', id!);
      const revoked = list.revokeToken(claims.jti, claims.exp);
      expect(await killed).toBe(1);
      await revoked;
    } finally {
      redis.disconnect();
    }
    await eventually(() => mirrorOf(b).status.loads > loads, 'B loaded the list again', 15_000);
    await eventually(async () => (await me(b, u.token)).status !== 503, 'B answers again', 15_000);
    expectStatus(await me(b, u.token), 401, 'AUTH.TOKEN_REVOKED');
  });
});
