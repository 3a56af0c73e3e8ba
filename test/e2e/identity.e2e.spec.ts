import { randomUUID } from 'node:crypto';
import { startTestApp, type TestApp } from '../support/app';

/** The identity HTTP contract (issue: sign-up, JWT login, rotating refresh tokens, logout, roles, devices), as a client uses it. */
let app: TestApp;
const password = 'a perfectly long passphrase 9';
const email = () => `u-${randomUUID().slice(0, 8)}@example.test`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(async () => {
  app = await startTestApp({ env: { LOGIN_MAX_PER_ACCOUNT: '5', LOGIN_MAX_PER_ADDRESS: '1000' } });
});
afterAll(async () => {
  await app.stop();
});

async function signup(e = email(), name = 'Ada Lovelace') {
  const r = await app.http('POST', '/auth/signup', { email: e, password, name });
  expect(r.status).toBe(201);
  return { email: e, userId: r.body.userId as string, position: r.body.position as number };
}

describe('sign-up', () => {
  it('creates an account: 201 {userId, email, position}; the email is normalised', async () => {
    const raw = `  MiXeD-${randomUUID().slice(0, 6)}@Example.TEST `;
    const r = await app.http('POST', '/auth/signup', { email: raw, password, name: 'Grace' });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      userId: expect.any(String),
      email: raw.trim().toLowerCase(),
      position: expect.any(Number),
      revision: 0,
      duplicate: false,
    });
  });

  it('a taken email is 409, also differently cased', async () => {
    const u = await signup();
    const again = await app.http('POST', '/auth/signup', { email: u.email.toUpperCase(), password, name: 'X' });
    expect(again).toMatchObject({ status: 409, body: { code: 'IDENTITY.EMAIL_TAKEN' } });
  });

  it.each([
    ['email', { email: 'not-an-email', password, name: 'A' }],
    ['password', { email: email(), password: 'short', name: 'A' }],
    ['password', { email: email(), password: 'x'.repeat(129), name: 'A' }],
    ['password', { email: email(), password: 'password1234', name: 'A' }],
    ['name', { email: email(), password, name: '' }],
  ])('invalid %s is 400 naming the field', async (field, body) => {
    const r = await app.http('POST', '/auth/signup', body);
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });

  it('20 concurrent sign-ups with one email: exactly one succeeds', async () => {
    const e = email();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => app.http('POST', '/auth/signup', { email: e, password, name: `N${i}` })),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(19);
  });

  it('never stores or returns the password', async () => {
    const u = await signup();
    const events = await app.platform.store.readStream(`user-${u.userId}`);
    expect(JSON.stringify(events)).not.toContain(password);
    expect(String(events[0]?.data.passwordHash)).toMatch(/^\$argon2id\$/);
  });
});

describe('login, refresh, logout', () => {
  it('login answers a Bearer pair; /users/me shows the account', async () => {
    const u = await signup();
    const r = await app.http('POST', '/auth/login', { email: u.email, password });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      tokenType: 'Bearer',
      accessToken: expect.any(String),
      refreshToken: expect.any(String),
      expiresIn: 900,
    });
    const me = await app.http('GET', '/users/me', undefined, bearer(r.body.accessToken));
    expect(me.body).toMatchObject({ userId: u.userId, email: u.email, name: 'Ada Lovelace', roles: ['user'] });
    expect(JSON.stringify(me.body)).not.toContain('argon2');
  });

  it('unknown email and wrong password give the same 401', async () => {
    const u = await signup();
    const wrong = await app.http('POST', '/auth/login', { email: u.email, password: 'not the password at all' });
    const unknown = await app.http('POST', '/auth/login', { email: email(), password: 'not the password at all' });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    const strip = (b: Record<string, unknown>) => ({ ...b, correlationId: undefined });
    expect(strip(wrong.body)).toEqual(strip(unknown.body));
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('refresh rotates: the old refresh token stops working; reusing it revokes the whole family', async () => {
    const u = await signup();
    const first = (await app.http('POST', '/auth/login', { email: u.email, password })).body;
    const second = await app.http('POST', '/auth/refresh', { refreshToken: first.refreshToken });
    expect(second.status).toBe(200);
    expect(second.body.refreshToken).not.toBe(first.refreshToken);
    const reuse = await app.http('POST', '/auth/refresh', { refreshToken: first.refreshToken });
    expect(reuse).toMatchObject({ status: 401, body: { code: 'AUTH.REFRESH_REUSED' } });
    // The family is gone: the successor no longer works either, nor the access tokens issued before.
    expect((await app.http('POST', '/auth/refresh', { refreshToken: second.body.refreshToken })).status).toBe(401);
    expect((await app.http('GET', '/users/me', undefined, bearer(second.body.accessToken))).status).toBe(401);
  });

  it('two concurrent refreshes with the same token: exactly one succeeds', async () => {
    const u = await signup();
    for (let round = 0; round < 5; round++) {
      const s = (await app.http('POST', '/auth/login', { email: u.email, password })).body;
      const [a, b] = await Promise.all([
        app.http('POST', '/auth/refresh', { refreshToken: s.refreshToken }),
        app.http('POST', '/auth/refresh', { refreshToken: s.refreshToken }),
      ]);
      expect([a.status, b.status].sort()).toEqual([200, 401]);
    }
  });

  it('logout: that access token and its refresh family stop working at once', async () => {
    const u = await signup();
    const s = (await app.http('POST', '/auth/login', { email: u.email, password })).body;
    const other = (await app.http('POST', '/auth/login', { email: u.email, password })).body;
    const out = await app.http('POST', '/auth/logout', {}, bearer(s.accessToken));
    expect(out.status).toBe(204);
    expect((await app.http('GET', '/users/me', undefined, bearer(s.accessToken))).body.code).toBe('AUTH.TOKEN_REVOKED');
    expect((await app.http('POST', '/auth/refresh', { refreshToken: s.refreshToken })).status).toBe(401);
    // Another session of the same user is untouched.
    expect((await app.http('GET', '/users/me', undefined, bearer(other.accessToken))).status).toBe(200);
  });

  it('missing or malformed credentials are 401 with WWW-Authenticate: Bearer', async () => {
    for (const h of [{}, { authorization: 'Basic abc' }, { authorization: 'Bearer not.a.jwt' }]) {
      const r = await app.http('GET', '/users/me', undefined, h);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
  });

  it('login is rate limited per account: 429 with Retry-After', async () => {
    const u = await signup();
    const results = [];
    for (let i = 0; i < 7; i++)
      results.push(await app.http('POST', '/auth/login', { email: u.email, password: 'wrong wrong wrong 1' }));
    const limited = results.find((r) => r.status === 429);
    expect(limited?.body.code).toBe('AUTH.TOO_MANY_ATTEMPTS');
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0);
    // Even the right password is refused while limited.
    expect((await app.http('POST', '/auth/login', { email: u.email, password })).status).toBe(429);
  });

  it('publishes the verification keys as a JWKS without private parts', async () => {
    const r = await app.http('GET', '/.well-known/jwks.json');
    expect(r.status).toBe(200);
    expect(r.body.keys.length).toBeGreaterThan(0);
    for (const k of r.body.keys) {
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: expect.any(String) });
      expect(k.d).toBeUndefined();
    }
  });
});

describe('admin', () => {
  it('pages the users read model and filters by q', async () => {
    const tag = randomUUID().slice(0, 6);
    let last = 0;
    for (let i = 0; i < 3; i++) last = (await signup(`page-${tag}-${i}@example.test`, `Pager ${tag}`)).position;
    const auth = await app.adminAuth();
    const page1 = await app.http('GET', `/admin/users?q=${tag}&limit=2&minPosition=${last}`, undefined, auth);
    expect(page1.status).toBe(200);
    expect(page1.body.items).toHaveLength(2);
    const page2 = await app.http(
      'GET',
      `/admin/users?q=${tag}&limit=2&after=${page1.body.nextAfter ?? page1.body.items[1].userId}`,
      undefined,
      auth,
    );
    expect(page2.body.items).toHaveLength(1);
    expect(JSON.stringify([page1.body, page2.body])).not.toContain('argon2');
    const user = await app.login(`page-${tag}-0@example.test`, password);
    expect((await app.http('GET', '/admin/users', undefined, { authorization: user.authorization })).status).toBe(403);
  });

  it('assigns and revokes roles; a revoked role stops working at once', async () => {
    const u = await signup();
    const auth = await app.adminAuth();
    expect((await app.http('POST', `/admin/users/${u.userId}/roles`, { role: 'admin' }, auth)).status).toBe(201);
    const promoted = await app.login(u.email, password);
    expect(
      (await app.http('GET', '/admin/projections', undefined, { authorization: promoted.authorization })).status,
    ).toBe(200);
    expect((await app.http('DELETE', `/admin/users/${u.userId}/roles/admin`, undefined, auth)).status).toBe(200);
    expect(
      (await app.http('GET', '/admin/projections', undefined, { authorization: promoted.authorization })).status,
    ).toBe(401);
    const fresh = await app.login(u.email, password);
    expect(
      (await app.http('GET', '/admin/projections', undefined, { authorization: fresh.authorization })).status,
    ).toBe(403);
    const bad = await app.http('POST', `/admin/users/${u.userId}/roles`, { role: 'Not A Role!' }, auth);
    expect(bad).toMatchObject({ status: 400 });
  });

  it('disabling a user ends its sessions and refuses login', async () => {
    const u = await signup();
    const s = await app.login(u.email, password);
    const r = await app.http('POST', `/admin/users/${u.userId}/disable`, undefined, await app.adminAuth());
    expect(r.status).toBe(200);
    expect((await app.http('GET', '/users/me', undefined, { authorization: s.authorization })).status).toBe(401);
    expect((await app.http('POST', '/auth/refresh', { refreshToken: s.refreshToken })).status).toBe(401);
    expect((await app.http('POST', '/auth/login', { email: u.email, password })).status).toBe(401);
  });

  it('admin commands through POST /commands/:name need the admin role', async () => {
    const u = await signup();
    const user = await app.login(u.email, password);
    const asUser = await app.http(
      'POST',
      '/commands/AssignRole',
      { userId: u.userId, role: 'ops' },
      { authorization: user.authorization },
    );
    expect(asUser.status).toBe(403);
    const asAdmin = await app.http(
      'POST',
      '/commands/AssignRole',
      { userId: u.userId, role: 'ops' },
      await app.adminAuth(),
    );
    expect(asAdmin.status).toBe(201);
    expect((await app.http('POST', '/commands/AssignRole', { userId: u.userId, role: 'ops' })).status).toBe(401);
  });
});

describe('devices', () => {
  it('register (secret shown once), list own, exchange the secret for a device token, revoke', async () => {
    const owner = await app.login((await signup()).email, password);
    const other = await app.login((await signup()).email, password);
    const reg = await app.http('POST', '/devices', { name: 'press-7' }, { authorization: owner.authorization });
    expect(reg.status).toBe(201);
    expect(reg.body).toMatchObject({
      deviceId: expect.any(String),
      secret: expect.any(String),
      position: expect.any(Number),
    });
    const { deviceId, secret } = reg.body;
    const mine = await app.http('GET', `/devices?minPosition=${reg.body.position}`, undefined, {
      authorization: owner.authorization,
    });
    expect(mine.body.items.map((d: { deviceId: string }) => d.deviceId)).toEqual([deviceId]);
    expect(JSON.stringify(mine.body)).not.toContain(secret);
    const theirs = await app.http('GET', `/devices?minPosition=${reg.body.position}`, undefined, {
      authorization: other.authorization,
    });
    expect(theirs.body.items).toEqual([]);

    expect((await app.http('POST', `/devices/${deviceId}/tokens`, { secret: 'wrong' })).status).toBe(401);
    const tok = await app.http('POST', `/devices/${deviceId}/tokens`, { secret });
    expect(tok.status).toBe(200);
    expect(tok.body).toMatchObject({ accessToken: expect.any(String), expiresIn: 600 });
    const device = bearer(tok.body.accessToken);
    expect((await app.http('GET', '/devices/me/identity', undefined, device)).body).toEqual({
      deviceId,
      kind: 'device',
    });
    // A device token is not a user token, and a user token is not a device token.
    expect((await app.http('GET', '/users/me', undefined, device)).status).toBe(401);
    expect(
      (await app.http('GET', '/devices/me/identity', undefined, { authorization: owner.authorization })).status,
    ).toBe(401);

    expect(
      (await app.http('POST', `/devices/${deviceId}/revoke`, undefined, { authorization: other.authorization })).status,
    ).toBe(403);
    expect(
      (await app.http('POST', `/devices/${deviceId}/revoke`, undefined, { authorization: owner.authorization })).status,
    ).toBe(200);
    expect((await app.http('GET', '/devices/me/identity', undefined, device)).status).toBe(401);
    expect((await app.http('POST', `/devices/${deviceId}/tokens`, { secret })).status).toBe(401);
  });

  it('an admin sees every device', async () => {
    const owner = await app.login((await signup()).email, password);
    const reg = await app.http('POST', '/devices', { name: 'kiosk' }, { authorization: owner.authorization });
    const all = await app.http(
      'GET',
      `/devices?limit=200&minPosition=${reg.body.position}`,
      undefined,
      await app.adminAuth(),
    );
    expect(all.body.items.map((d: { deviceId: string }) => d.deviceId)).toContain(reg.body.deviceId);
  });
});
