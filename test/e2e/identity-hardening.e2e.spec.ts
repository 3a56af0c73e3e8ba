import { randomUUID } from 'node:crypto';
import { startTestApp, type HttpResult, type TestApp } from '../support/app';

/**
 * Issue 9, identity and input limits, tried as a hostile client would: over HTTP against the
 * real app (PostgreSQL, Redis, argon2). The app trusts X-Forwarded-For from loopback
 * (TRUST_PROXY), so each test can speak from its own client addresses, as clients behind a
 * balancer do; the last describe checks that without TRUST_PROXY the header changes nothing.
 */
let app: TestApp;
const password = 'a perfectly long passphrase 9';
const email = () => `h-${randomUUID().slice(0, 8)}@example.test`;
let nextAddress = 1;
/** A fresh client address (TEST-NET-2/3 and benchmarking ranges), one per call. */
const address = () => {
  const n = nextAddress++;
  return `198.18.${Math.floor(n / 250)}.${(n % 250) + 1}`;
};
const from = (ip: string, headers: Record<string, string> = {}) => ({ 'x-forwarded-for': ip, ...headers });
const fields = (r: HttpResult) => (r.body?.errors ?? []) as { field: string; rule: string }[];

beforeAll(async () => {
  app = await startTestApp({
    env: {
      TRUST_PROXY: 'loopback',
      LOGIN_MAX_PER_ACCOUNT_ADDRESS: '5',
      LOGIN_MAX_PER_ADDRESS: '30',
      LOGIN_MAX_PER_ACCOUNT: '12',
      SIGNUP_MAX_PER_ADDRESS: '3',
      DEVICES_MAX_PER_USER: '3',
    },
  });
});
afterAll(async () => {
  await app.stop();
});

async function signup(e = email(), headers: Record<string, string> = {}) {
  const r = await app.http(
    'POST',
    '/auth/signup',
    { email: e, password, name: 'Ada Lovelace' },
    { ...from(address()), ...headers },
  );
  expect(r.status).toBe(201);
  return { email: e, userId: r.body.userId as string };
}

async function loginFrom(ip: string, e: string, p = password) {
  return app.http('POST', '/auth/login', { email: e, password: p }, from(ip));
}

describe('a hostile password cannot freeze the event loop', () => {
  // "a" + "!"×200,000 + "b" took 22 s to refuse, /health waiting meanwhile. Limits come first now:
  // /auth/signup refuses such a body as it streams in, and the generic route's schema refuses the
  // password before the policy reads it. The 30 s bound only makes the old code fail, not hang.
  it('refuses 200 kB passwords naming the field and the length rule, while /health answers', async () => {
    const hostile = ['a' + '!'.repeat(200_000) + 'b', 'a' + '1 '.repeat(100_000) + 'b'];
    const [health, ...answers] = await Promise.all([
      app.http('GET', '/health'),
      ...hostile.map((p) =>
        app.http('POST', '/commands/RegisterUser', { email: email(), password: p, name: 'Mallory' }, from(address())),
      ),
    ]);
    expect(health.status).toBe(200);
    for (const r of answers) {
      expect(r.status).toBe(400);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(fields(r)).toEqual([{ field: 'password', rule: 'must be at most 128 characters' }]);
    }
    expect((await app.http('GET', '/health')).status).toBe(200);
  }, 30_000);

  it('a 1 MB password: the generic route names the password, /auth/signup refuses the body as it streams in', async () => {
    const hostile = 'a' + '!'.repeat(1_000_000) + 'b';
    const [health, generic, resource] = await Promise.all([
      app.http('GET', '/health'),
      app.http(
        'POST',
        '/commands/RegisterUser',
        { email: email(), password: hostile, name: 'Mallory' },
        from(address()),
      ),
      app.http('POST', '/auth/signup', { email: email(), password: hostile, name: 'Mallory' }, from(address())),
    ]);
    expect(health.status).toBe(200);
    expect(fields(generic)).toEqual([{ field: 'password', rule: 'must be at most 128 characters' }]);
    expect(resource).toMatchObject({ status: 413, body: { code: 'PLATFORM.BODY_TOO_LARGE' } });
    expect(fields(resource)).toEqual([{ field: '(body)', rule: 'must be at most 16384 bytes' }]);
  }, 30_000);

  it('a password of 129 code points that fits the schema is refused by the policy with the same rule', async () => {
    const r = await app.http(
      'POST',
      '/auth/signup',
      { email: email(), password: 'p'.repeat(129), name: 'Mallory' },
      from(address()),
    );
    expect(fields(r)).toEqual([{ field: 'password', rule: 'must be at most 128 characters' }]);
  });
});

describe('Idempotency-Key on sign-up: strangers never share an account', () => {
  it('two strangers sending the same key get two accounts, each their own id', async () => {
    const key = `signup-${randomUUID()}`;
    const a = await app.http(
      'POST',
      '/auth/signup',
      { email: email(), password, name: 'Alice' },
      from(address(), { 'idempotency-key': key }),
    );
    const bEmail = email();
    const b = await app.http(
      'POST',
      '/auth/signup',
      { email: bEmail, password: 'another long passphrase 7', name: 'Bob' },
      from(address(), { 'idempotency-key': key }),
    );
    expect(a).toMatchObject({ status: 201, body: { duplicate: false } });
    expect(b).toMatchObject({ status: 201, body: { duplicate: false, email: bEmail } });
    expect(b.body.userId).not.toBe(a.body.userId);
    expect((await app.login(bEmail, 'another long passphrase 7')).accessToken).toEqual(expect.any(String));
    // The same through the generic route.
    const key2 = `signup-${randomUUID()}`;
    const c = await app.http(
      'POST',
      '/commands/RegisterUser',
      { email: email(), password, name: 'Carol' },
      from(address(), { 'idempotency-key': key2 }),
    );
    const d = await app.http(
      'POST',
      '/commands/RegisterUser',
      { email: email(), password, name: 'Dave' },
      from(address(), { 'idempotency-key': key2 }),
    );
    expect([c.status, d.status]).toEqual([201, 201]);
    expect(d.body.userId).not.toBe(c.body.userId);
  });

  it('the same request sent again answers the original result; the same key with a different request is 409 naming the header', async () => {
    const key = `signup-${randomUUID()}`;
    const body = { email: email(), password, name: 'Alice' };
    const first = await app.http('POST', '/auth/signup', body, from(address(), { 'idempotency-key': key }));
    const again = await app.http(
      'POST',
      '/auth/signup',
      { ...body, email: `  ${body.email.toUpperCase()} ` },
      from(address(), { 'idempotency-key': key }),
    );
    expect(first.status).toBe(201);
    expect(again).toMatchObject({
      status: 200,
      body: { userId: first.body.userId, duplicate: true, position: first.body.position },
    });
    for (const other of [
      { ...body, password: 'not the same passphrase 1' },
      { ...body, name: 'Mallory' },
    ]) {
      const r = await app.http('POST', '/auth/signup', other, from(address(), { 'idempotency-key': key }));
      expect(r).toMatchObject({ status: 409, body: { code: 'PLATFORM.IDEMPOTENCY_KEY_REUSED' } });
      expect(fields(r)).toEqual([{ field: 'Idempotency-Key', rule: 'must not be reused with a different request' }]);
      expect(JSON.stringify(r.body)).not.toContain(first.body.userId);
    }
  });

  it('five concurrent copies of one keyed sign-up: one account, one 201, the rest the same result as duplicates', async () => {
    const key = `signup-${randomUUID()}`;
    const body = { email: email(), password, name: 'Alice' };
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        app.http('POST', '/auth/signup', body, from(address(), { 'idempotency-key': key })),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.body.userId as string)).size).toBe(1);
  });
});

describe('a stranger cannot lock the owner out; guessing stays throttled', () => {
  it('wrong passwords from one address lock that address out of that account, not the owner elsewhere', async () => {
    const owner = await signup();
    const stranger = address();
    const tries = [];
    for (let i = 0; i < 15; i++) tries.push(await loginFrom(stranger, owner.email, `wrong guess number ${i}`));
    expect(tries.slice(0, 5).map((r) => r.status)).toEqual([401, 401, 401, 401, 401]);
    expect(tries.slice(5).every((r) => r.status === 429 && r.body.code === 'AUTH.TOO_MANY_ATTEMPTS')).toBe(true);
    expect(Number(tries[5]!.headers.get('retry-after'))).toBeGreaterThan(0);
    // The stranger stays refused even with the right password; the owner, from home, is not.
    expect((await loginFrom(stranger, owner.email)).status).toBe(429);
    expect((await loginFrom(address(), owner.email)).status).toBe(200);
  });

  it('wrong device secrets from one address do not stop the device from getting tokens elsewhere', async () => {
    const owner = await signup();
    const auth = await app.login(owner.email, password);
    const dev = await app.http('POST', '/devices', { name: 'press-7' }, { authorization: auth.authorization });
    expect(dev.status).toBe(201);
    const stranger = address();
    const tries = [];
    for (let i = 0; i < 15; i++)
      tries.push(
        await app.http('POST', `/devices/${dev.body.deviceId}/tokens`, { secret: `guess-${i}` }, from(stranger)),
      );
    expect(tries.slice(0, 5).every((r) => r.status === 401)).toBe(true);
    expect(tries.slice(5).every((r) => r.status === 429)).toBe(true);
    expect(
      (await app.http('POST', `/devices/${dev.body.deviceId}/tokens`, { secret: dev.body.secret }, from(address())))
        .status,
    ).toBe(200);
  });

  it("a guesser spread over many addresses hits the account-wide cap: new addresses get 429, the owner's known address does not", async () => {
    const owner = await signup();
    const home = address();
    expect((await loginFrom(home, owner.email)).status).toBe(200);
    for (let i = 0; i < 12; i++)
      expect((await loginFrom(address(), owner.email, `spread guess ${i}`)).status).toBe(401);
    const fresh = await loginFrom(address(), owner.email);
    expect(fresh).toMatchObject({ status: 429, body: { code: 'AUTH.TOO_MANY_ATTEMPTS' } });
    expect((await loginFrom(home, owner.email)).status).toBe(200);
  });

  it('one address guessing across many accounts is refused at the address limit, for every account', async () => {
    const guesser = address();
    for (let i = 0; i < 30; i++) expect((await loginFrom(guesser, email(), 'wrong wrong wrong 1')).status).toBe(401);
    const owner = await signup();
    expect((await loginFrom(guesser, owner.email)).status).toBe(429);
    expect((await loginFrom(address(), owner.email)).status).toBe(200);
  });
});

describe('sign-up limits', () => {
  it('counts every sign-up attempt per address (either route): over the limit, 429 with Retry-After before any work', async () => {
    const ip = address();
    const taken = await signup();
    const results = [
      await app.http('POST', '/auth/signup', { email: email(), password, name: 'One' }, from(ip)),
      await app.http('POST', '/auth/signup', { email: taken.email, password, name: 'Two' }, from(ip)), // taken: still counts
      await app.http('POST', '/commands/RegisterUser', { email: email(), password, name: 'Three' }, from(ip)),
      await app.http('POST', '/auth/signup', { email: email(), password, name: 'Four' }, from(ip)),
      await app.http('POST', '/commands/RegisterUser', { email: email(), password, name: 'Five' }, from(ip)),
    ];
    expect(results.map((r) => r.status)).toEqual([201, 409, 201, 429, 429]);
    expect(results[3]!.body.code).toBe('AUTH.TOO_MANY_SIGNUPS');
    expect(Number(results[3]!.headers.get('retry-after'))).toBeGreaterThan(0);
    // Other addresses are not affected.
    expect(
      (await app.http('POST', '/auth/signup', { email: email(), password, name: 'Six' }, from(address()))).status,
    ).toBe(201);
  });
});

describe('devices per user', () => {
  it('at DEVICES_MAX_PER_USER a registration is 409 IDENTITY.TOO_MANY_DEVICES; revoking one frees its place', async () => {
    const owner = await signup();
    const auth = { authorization: (await app.login(owner.email, password)).authorization };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await app.http('POST', '/devices', { name: `sensor-${i}` }, auth);
      expect(r.status).toBe(201);
      ids.push(r.body.deviceId as string);
    }
    const over = await app.http('POST', '/devices', { name: 'one too many' }, auth);
    expect(over).toMatchObject({ status: 409, body: { code: 'IDENTITY.TOO_MANY_DEVICES', max: 3 } });
    const generic = await app.http('POST', '/commands/RegisterDevice', { name: 'one too many' }, auth);
    expect(generic).toMatchObject({ status: 409, body: { code: 'IDENTITY.TOO_MANY_DEVICES' } });
    expect((await app.http('POST', `/devices/${ids[0]}/revoke`, undefined, auth)).status).toBe(200);
    expect((await app.http('POST', '/devices', { name: 'replacement' }, auth)).status).toBe(201);
    expect((await app.http('POST', '/devices', { name: 'again one too many' }, auth)).status).toBe(409);
  });

  it('ten concurrent registrations of one user: exactly the cap succeeds', async () => {
    const owner = await signup();
    const auth = { authorization: (await app.login(owner.email, password)).authorization };
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => app.http('POST', '/devices', { name: `burst-${i}` }, auth)),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(3);
    expect(results.filter((r) => r.status === 409 && r.body.code === 'IDENTITY.TOO_MANY_DEVICES')).toHaveLength(7);
    const mine = await app.http(
      'GET',
      `/devices?minPosition=${Math.max(...results.map((r) => Number(r.body.position ?? 0)))}`,
      undefined,
      auth,
    );
    expect(mine.body.items).toHaveLength(3);
  });
});

describe('X-Correlation-Id', () => {
  it('an acceptable one is echoed and lands in the event metadata', async () => {
    const id = `trace-${'x'.repeat(122)}`; // 128 characters
    const e = email();
    const r = await app.http(
      'POST',
      '/auth/signup',
      { email: e, password, name: 'Ada' },
      from(address(), { 'x-correlation-id': id }),
    );
    expect(r.status).toBe(201);
    expect(r.headers.get('x-correlation-id')).toBe(id);
    const [event] = await app.platform.store.readStream(`user-${r.body.userId}`);
    expect(event!.metadata.correlationId).toBe(id);
  });

  it.each([
    ['129 characters', 'c'.repeat(129)],
    ['8 KiB', 'c'.repeat(8192)], // (over 16 KiB of headers, Node itself answers 431)
    ['a space', 'two words'],
    ['non-ASCII', 'caf\u00e9'],
  ])('one with %s is refused: 400 naming the header and its rule, nothing stored', async (_what, id) => {
    const e = email();
    const r = await app.http(
      'POST',
      '/auth/signup',
      { email: e, password, name: 'Ada' },
      from(address(), { 'x-correlation-id': id }),
    );
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('PLATFORM.INVALID_HEADER');
    expect(fields(r)).toEqual([
      { field: 'X-Correlation-Id', rule: 'must be 1-128 printable ASCII characters without spaces' },
    ]);
    expect(r.headers.get('x-correlation-id')).not.toBe(id);
    expect((await app.http('POST', '/auth/login', { email: e, password }, from(address()))).status).toBe(401);
  });
});

describe('input limits: oversized values get a problem naming the field and the rule', () => {
  let auth: { authorization: string };
  beforeAll(async () => {
    auth = await app.adminAuth();
  });

  it.each([
    [
      '/auth/signup email',
      '/auth/signup',
      { email: `${'a'.repeat(250)}@example.test`, password, name: 'A' },
      'email',
      'must be at most 254 characters',
    ],
    [
      '/auth/signup name',
      '/auth/signup',
      { email: 'n@example.test', password, name: 'n'.repeat(101) },
      'name',
      'must be at most 100 characters',
    ],
    [
      '/auth/login password',
      '/auth/login',
      { email: 'x@example.test', password: 'p'.repeat(1025) },
      'password',
      'must be at most 1024 characters',
    ],
    [
      '/auth/login email',
      '/auth/login',
      { email: 'e'.repeat(300), password },
      'email',
      'must be at most 254 characters',
    ],
    [
      '/auth/refresh token',
      '/auth/refresh',
      { refreshToken: 'r'.repeat(513) },
      'refreshToken',
      'must be at most 512 characters',
    ],
    [
      '/devices/:id/tokens secret',
      `/devices/${randomUUID()}/tokens`,
      { secret: 's'.repeat(257) },
      'secret',
      'must be at most 256 characters',
    ],
    ['/devices/:id/tokens id', '/devices/not-a-device/tokens', { secret: 's' }, 'id', 'must be a UUID'],
  ])('%s', async (_what, path, body, field, rule) => {
    const r = await app.http('POST', path, body, from(address()));
    expect(r.status).toBe(400);
    expect(fields(r)).toContainEqual({ field, rule });
  });

  it('Authorization over 4096 characters is 400 naming the header (before any token parsing)', async () => {
    const r = await app.http('GET', '/users/me', undefined, { authorization: `Bearer ${'a'.repeat(5000)}` });
    expect(r).toMatchObject({ status: 400, body: { code: 'PLATFORM.INVALID_HEADER' } });
    expect(fields(r)).toEqual([{ field: 'Authorization', rule: 'must be at most 4096 characters' }]);
    const generic = await app.http('POST', '/commands/AssignRole', {}, { authorization: `Bearer ${'a'.repeat(5000)}` });
    expect(fields(generic)).toEqual([{ field: 'Authorization', rule: 'must be at most 4096 characters' }]);
  });

  it('Idempotency-Key over 200 characters, and X-Min-Position that is not a position, are 400 naming the header', async () => {
    const key = await app.http('POST', '/devices', { name: 'k' }, { ...auth, 'idempotency-key': 'k'.repeat(201) });
    expect(fields(key)).toEqual([{ field: 'Idempotency-Key', rule: 'must be at most 200 characters' }]);
    const pos = await app.http('GET', '/admin/users', undefined, { ...auth, 'x-min-position': '9'.repeat(400) });
    expect(pos.status).toBe(400);
    expect(fields(pos).map((f) => f.field)).toEqual(['minPosition']);
  });

  it('sales and admin queries: long filters and job ids are refused naming the field', async () => {
    const orders = await app.http('GET', `/orders?status=${'s'.repeat(100)}`, undefined, auth);
    expect(orders.status).toBe(400);
    expect(fields(orders).map((f) => f.field)).toEqual(['status']);
    const catalogue = await app.http('GET', `/products?channel=web&q=${'q'.repeat(101)}`, undefined, auth);
    expect(fields(catalogue)).toEqual([{ field: 'q', rule: 'must be at most 100 characters' }]);
    const job = await app.http('GET', `/admin/jobs/${'j'.repeat(90)}`, undefined, auth);
    expect(job.status).toBe(400);
    expect(fields(job).map((f) => f.field)).toEqual(['id']);
  });

  it('a body over the limit of the public credential routes is 413 naming the body and its limit', async () => {
    const r = await app.http(
      'POST',
      '/auth/login',
      { email: 'x@example.test', password: 'p', pad: 'x'.repeat(20_000) },
      from(address()),
    );
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('PLATFORM.BODY_TOO_LARGE');
    expect(fields(r)).toEqual([{ field: '(body)', rule: 'must be at most 16384 bytes' }]);
  });

  it('deeply nested JSON is refused without hurting the process', async () => {
    const deep = '['.repeat(400_000) + ']'.repeat(400_000);
    const r = await app.http('POST', '/devices', deep, auth);
    expect(r.status).toBe(400);
    expect((await app.http('GET', '/health')).status).toBe(200);
  });
});

describe('without TRUST_PROXY, X-Forwarded-For changes nothing', () => {
  let plain: TestApp;
  beforeAll(async () => {
    plain = await startTestApp({ env: { LOGIN_MAX_PER_ACCOUNT_ADDRESS: '3' } });
  });
  afterAll(async () => {
    await plain.stop();
  });

  it('a client cannot escape its limits by sending a different X-Forwarded-For each time', async () => {
    const tries = [];
    for (let i = 0; i < 5; i++) {
      tries.push(
        await plain.http(
          'POST',
          '/auth/login',
          { email: plain.admin.email, password: `guess ${i} guess guess` },
          { 'x-forwarded-for': address() },
        ),
      );
    }
    expect(tries.map((r) => r.status)).toEqual([401, 401, 401, 429, 429]);
  });
});
