import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import * as argon2 from 'argon2';
import { Redis, type RedisOptions } from 'ioredis';
import { LoginLimiter, SignupLimiter, normaliseAddress } from '../../src/identity/auth/login-limiter';
import { PasswordHasher } from '../../src/identity/auth/passwords';
import { authRedisOptions } from '../../src/identity/auth/redis-call';
import { RefreshTokenStore } from '../../src/identity/auth/refresh-tokens';
import { RevocationList } from '../../src/identity/auth/revocation';
import { SigningKeys } from '../../src/identity/auth/signing-keys';
import { TokenService } from '../../src/identity/auth/tokens';
import { createTestDatabase, testRedisUrl, type TestDatabase } from '../support/services';

/**
 * The state behind authentication, on real PostgreSQL and Redis: refresh
 * token rotation and reuse detection, the revocation list, the login limiter
 * (both failing closed without Redis) and the password hasher.
 */
const PREFIX = `test:identity-auth-state:${randomBytes(4).toString('hex')}:`;
const TTL = 3600;

async function expectDomainError(p: Promise<unknown>, kind: string, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ name: 'DomainError', kind, code });
}

async function outcomes<T>(ps: Promise<T>[]): Promise<{ ok: T[]; failed: { code?: string }[] }> {
  const settled = await Promise.allSettled(ps);
  return {
    ok: settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : [])),
    failed: settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as { code?: string }] : [])),
  };
}

describe('identity auth state (refresh tokens, revocation, login limiter, passwords)', () => {
  let db: TestDatabase;
  let redis: Redis;

  beforeAll(async () => {
    db = await createTestDatabase('auth_state');
    redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: 2 });
  });

  afterAll(async () => {
    // Leave nothing behind in the shared Redis.
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 500);
      if (found.length) await redis.del(...found);
      cursor = next;
    } while (cursor !== '0');
    await redis.quit();
    await db.drop();
  });

  describe('refresh tokens', () => {
    let store: RefreshTokenStore;
    const reused: { familyId: string; userId: string }[] = [];

    beforeAll(() => {
      store = new RefreshTokenStore(db.pool, { ttlS: TTL, onReuse: (info) => void reused.push(info) });
    });

    it('issues opaque 256-bit tokens stored only as SHA-256 hashes, with their family, subject and expiry', async () => {
      const user = randomUUID();
      const issued = await store.issue(user);
      expect(issued.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(issued.token, 'base64url')).toHaveLength(32);
      expect(issued.familyId).toMatch(/^[0-9a-f-]{36}$/);
      const { rows } = await db.pool.query(
        'SELECT *, extract(epoch FROM expires_at - issued_at)::int AS life FROM refresh_tokens WHERE family_id = $1',
        [issued.familyId],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0].token_hash).toEqual(createHash('sha256').update(issued.token).digest());
      expect(rows[0]).toMatchObject({ subject: user, life: TTL, rotated_at: null, revoked_at: null });
      expect(rows[0].expires_at).toEqual(issued.expiresAt);
      // The token itself is nowhere in the database.
      const all = await db.pool.query(
        `SELECT row_to_json(t)::text AS j FROM refresh_tokens t UNION ALL SELECT row_to_json(f)::text FROM refresh_token_families f`,
      );
      for (const r of all.rows) expect(r.j).not.toContain(issued.token);
    });

    it('rotates: a new token in the same family, and the old one stops working', async () => {
      const user = randomUUID();
      const first = await store.issue(user);
      const second = await store.rotate(first.token);
      expect(second).toMatchObject({ userId: user, familyId: first.familyId });
      expect(second.token).not.toBe(first.token);
      const third = await store.rotate(second.token);
      expect(third.familyId).toBe(first.familyId);
      const { rows } = await db.pool.query(
        'SELECT count(*)::int AS n, count(rotated_at)::int AS rotated FROM refresh_tokens WHERE family_id = $1',
        [first.familyId],
      );
      expect(rows[0]).toEqual({ n: 3, rotated: 2 });
      const old = await db.pool.query('SELECT replaced_by FROM refresh_tokens WHERE token_hash = $1', [
        createHash('sha256').update(first.token).digest(),
      ]);
      expect(old.rows[0].replaced_by).toEqual(createHash('sha256').update(second.token).digest());
    });

    it('presenting a rotated token revokes the whole family: the successor stops working too', async () => {
      const user = randomUUID();
      const first = await store.issue(user);
      const second = await store.rotate(first.token);
      const third = await store.rotate(second.token);
      await expectDomainError(store.rotate(first.token), 'unauthenticated', 'AUTH.REFRESH_REUSED');
      await expectDomainError(store.rotate(third.token), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
      await expectDomainError(store.rotate(second.token), 'unauthenticated', 'AUTH.REFRESH_REUSED');
      expect(reused).toContainEqual({ familyId: first.familyId, userId: user });
      const { rows } = await db.pool.query('SELECT revoke_reason FROM refresh_token_families WHERE family_id = $1', [
        first.familyId,
      ]);
      expect(rows[0].revoke_reason).toBe('reuse');
      const tokens = await db.pool.query(
        'SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL',
        [first.familyId],
      );
      expect(tokens.rows[0].n).toBe(0);
      // Other sessions of the same user are untouched.
      const other = await store.issue(user);
      await expect(store.rotate(other.token)).resolves.toMatchObject({ userId: user });
    });

    it('of two concurrent rotations of one token exactly one succeeds (50 runs)', async () => {
      for (let run = 0; run < 50; run++) {
        const issued = await store.issue(`race-${run}`);
        const { ok, failed } = await outcomes([store.rotate(issued.token), store.rotate(issued.token)]);
        expect(ok).toHaveLength(1);
        expect(failed).toHaveLength(1);
        expect(failed[0]!.code).toBe('AUTH.REFRESH_REUSED');
        const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = $1', [
          issued.familyId,
        ]);
        expect(rows[0].n).toBe(2);
      }
    });

    it('of eight concurrent rotations of one token exactly one succeeds (20 runs)', async () => {
      for (let run = 0; run < 20; run++) {
        const issued = await store.issue(`race8-${run}`);
        const { ok } = await outcomes(Array.from({ length: 8 }, () => store.rotate(issued.token)));
        expect(ok).toHaveLength(1);
        const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = $1', [
          issued.familyId,
        ]);
        expect(rows[0].n).toBe(2);
      }
    });

    it('a rotation racing a family revocation never leaves a working successor (30 runs)', async () => {
      for (let run = 0; run < 30; run++) {
        const issued = await store.issue(`revoke-race-${run}`);
        const [rotated] = await Promise.allSettled([
          store.rotate(issued.token),
          store.revokeFamily(issued.familyId, 'logout'),
        ]);
        if (rotated.status === 'fulfilled') {
          await expectDomainError(store.rotate(rotated.value.token), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
        }
      }
    });

    it('refuses expired, unknown and malformed tokens', async () => {
      const issued = await store.issue(randomUUID());
      await db.pool.query(`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE family_id = $1`, [
        issued.familyId,
      ]);
      await expectDomainError(store.rotate(issued.token), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
      for (const t of [
        randomBytes(32).toString('base64url'),
        'short',
        '',
        `${issued.token}x`,
        'eyJhbGciOiJFUzI1NiJ9.e30.sig',
        undefined as unknown as string,
      ]) {
        await expectDomainError(store.rotate(t), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
      }
    });

    it('revokes a family by token (logout) or by id, optionally only for its own subject', async () => {
      const user = randomUUID();
      const a = await store.issue(user);
      const b = await store.issue(user);
      expect(await store.revokeFamily(a.token, 'logout', { subject: 'someone-else' })).toBe(false);
      expect(await store.revokeFamily(a.token, 'logout', { subject: user })).toBe(true);
      expect(await store.revokeFamily(a.token, 'logout')).toBe(false); // already revoked
      await expectDomainError(store.rotate(a.token), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
      const b2 = await store.rotate(b.token);
      expect(await store.revokeFamily(b.familyId, 'logout')).toBe(true);
      await expectDomainError(store.rotate(b2.token), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
      expect(await store.revokeFamily(randomUUID(), 'logout')).toBe(false);
      expect(await store.revokeFamily('not-a-token', 'logout')).toBe(false);
      const { rows } = await db.pool.query<{ revoke_reason: string }>(
        'SELECT revoke_reason FROM refresh_tokens WHERE family_id = $1',
        [b.familyId],
      );
      expect(rows.map((r) => r.revoke_reason)).toEqual(['logout', 'logout']);
    });

    it("revokeAllForUser ends every session of that user and no one else's", async () => {
      const user = randomUUID();
      const other = randomUUID();
      const [m0, m1, m2] = await Promise.all([store.issue(user), store.issue(user), store.issue(user)]);
      const rotatedMine = await store.rotate(m2.token);
      const theirs = await store.issue(other);
      expect(await store.revokeAllForUser(user, 'disabled')).toBe(3);
      for (const t of [m0.token, m1.token, rotatedMine.token]) {
        await expectDomainError(store.rotate(t), 'unauthenticated', 'AUTH.INVALID_REFRESH_TOKEN');
      }
      await expect(store.rotate(theirs.token)).resolves.toMatchObject({ userId: other });
      expect(await store.revokeAllForUser(user, 'disabled')).toBe(0);
    });

    it('purges families whose tokens expired long ago', async () => {
      const issued = await store.issue(randomUUID());
      await db.pool.query(`UPDATE refresh_tokens SET expires_at = now() - interval '2 days' WHERE family_id = $1`, [
        issued.familyId,
      ]);
      expect(await store.purgeExpired(86_400)).toBeGreaterThanOrEqual(1);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = $1', [
        issued.familyId,
      ]);
      expect(rows[0].n).toBe(0);
    });
  });

  describe('revocation list', () => {
    let tokens: TokenService;
    let revocation: RevocationList;

    beforeAll(() => {
      const keys = new SigningKeys({
        alg: 'HS256',
        hs256Secret: 'revocation-test-secret-0123456789abcdef',
        maxTokenLifeS: 900,
      });
      tokens = new TokenService(keys, {
        issuer: 'iss',
        userAudience: 'api',
        deviceAudience: 'devices',
        accessTokenTtlS: 900,
        deviceTokenTtlS: 600,
      });
      revocation = new RevocationList(redis, { keyPrefix: `${PREFIX}revoked:`, maxTokenLifeS: tokens.maxTokenLifeS });
    });

    it('rejects a revoked jti until the token would have expired, and only that token', async () => {
      const a = await tokens.issueAccessToken({ sub: 'user-r1', kind: 'user' });
      const b = await tokens.issueAccessToken({ sub: 'user-r1', kind: 'user' });
      const claimsA = await tokens.verify(a.token, 'user');
      const claimsB = await tokens.verify(b.token, 'user');
      await expect(revocation.check(claimsA)).resolves.toBeUndefined();
      await revocation.revokeToken(a.jti, a.exp);
      await expectDomainError(revocation.check(claimsA), 'unauthenticated', 'AUTH.TOKEN_REVOKED');
      await expect(revocation.check(claimsB)).resolves.toBeUndefined();
      const ttl = await redis.ttl(revocation.jtiKey(a.jti));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(900 + 5);
    });

    it('does not store a revocation for a token that has already expired', async () => {
      const jti = randomUUID();
      await revocation.revokeToken(jti, Math.floor(Date.now() / 1000) - 3600);
      expect(await redis.exists(revocation.jtiKey(jti))).toBe(0);
    });

    it('subject revocation rejects tokens issued at or before the cutoff, not newer ones or other subjects', async () => {
      const sub = `user-${randomUUID()}`;
      const at = Math.floor(Date.now() / 1000);
      await revocation.revokeSubject(sub, at);
      const claims = (iat: number, s = sub) => ({ sub: s, iat, jti: randomUUID() });
      await expectDomainError(revocation.check(claims(at - 100)), 'unauthenticated', 'AUTH.TOKEN_REVOKED');
      await expectDomainError(revocation.check(claims(at)), 'unauthenticated', 'AUTH.TOKEN_REVOKED');
      await expect(revocation.check(claims(at + 1))).resolves.toBeUndefined();
      await expect(revocation.check(claims(at - 100, `${sub}-other`))).resolves.toBeUndefined();
      // An earlier cutoff never shortens a later one.
      await revocation.revokeSubject(sub, at - 50);
      await expectDomainError(revocation.check(claims(at)), 'unauthenticated', 'AUTH.TOKEN_REVOKED');
      // A later cutoff extends it.
      await revocation.revokeSubject(sub, at + 10);
      await expectDomainError(revocation.check(claims(at + 5)), 'unauthenticated', 'AUTH.TOKEN_REVOKED');
      await expect(revocation.check(claims(at + 11))).resolves.toBeUndefined();
      const ttl = await redis.ttl(revocation.subjectKey(sub));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(tokens.maxTokenLifeS + 5 + 10);
    });

    it('rejects a real token after its subject is revoked (disable user), and accepts one issued later', async () => {
      const sub = `user-${randomUUID()}`;
      const issued = await tokens.issueAccessToken({ sub, kind: 'user' });
      const claims = await tokens.verify(issued.token, 'user');
      await revocation.revokeSubject(sub, claims.iatMs! / 1000);
      await expectDomainError(revocation.check(claims), 'unauthenticated', 'AUTH.TOKEN_REVOKED');
      // Issued one millisecond after the cutoff (same second): still good.
      await expect(
        revocation.check({ sub, jti: randomUUID(), iat: claims.iat, iatMs: claims.iatMs! + 1 }),
      ).resolves.toBeUndefined();
      await expect(revocation.check({ sub, jti: randomUUID(), iat: claims.iat + 1 })).resolves.toBeUndefined();
    });
  });

  describe('login limiter', () => {
    let limiter: LoginLimiter;
    const addr = () =>
      `10.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
    const limited = (p: Promise<unknown>) => expectDomainError(p, 'rate_limited', 'AUTH.TOO_MANY_ATTEMPTS');

    beforeAll(() => {
      limiter = new LoginLimiter(redis, {
        keyPrefix: `${PREFIX}login:`,
        maxPerAccountAddress: 3,
        maxPerAddress: 5,
        maxPerAccount: 8,
        windowS: 120,
        knownAddressTtlS: 600,
      });
    });

    it('counts failures per normalised (account, address) pair and refuses that pair at the limit with retryAfterSeconds', async () => {
      const account = `Alice.${randomUUID()}@Example.com`;
      const address = addr();
      await limiter.check(account, address);
      for (let i = 0; i < 3; i++) await limiter.recordFailure(account, address);
      const attempt = limiter.check(` ${account.toLowerCase()} `, address);
      await limited(attempt);
      const err = (await attempt.catch((e: unknown) => e)) as { extra: { retryAfterSeconds: number } };
      expect(err.extra.retryAfterSeconds).toBeGreaterThan(0);
      expect(err.extra.retryAfterSeconds).toBeLessThanOrEqual(120);
      // No e-mail address in Redis keys.
      for (const key of [
        limiter.accountKey(account),
        limiter.pairKey(account, address),
        limiter.knownKey(account, address),
      ])
        expect(key).not.toContain('@');
    });

    it("a stranger's failures lock only the stranger's pair: the owner, from another address, may still log in", async () => {
      const account = `owner-${randomUUID()}@example.com`;
      const stranger = addr();
      for (let i = 0; i < 3; i++) await limiter.recordFailure(account, stranger);
      await limited(limiter.check(account, stranger));
      await expect(limiter.check(account, addr())).resolves.toBeUndefined();
      // The stranger's other guesses (other accounts) are still possible until the address limit.
      await expect(limiter.check(`other-${randomUUID()}@example.com`, stranger)).resolves.toBeUndefined();
    });

    it('a success clears its pair and nothing else', async () => {
      const account = `clear-${randomUUID()}@example.com`;
      const address = addr();
      for (let i = 0; i < 3; i++) await limiter.recordFailure(account, address);
      await limiter.recordSuccess(account.toUpperCase(), address);
      await expect(limiter.check(account, address)).resolves.toBeUndefined();
      expect(await redis.get(limiter.accountKey(account))).toBe('3');
      expect(await redis.get(limiter.addressKey(address))).toBe('3');
    });

    it('counts failures per client address across accounts; a success does not clear the address', async () => {
      const address = addr();
      for (let i = 0; i < 5; i++) await limiter.recordFailure(`user${i}-${randomUUID()}@example.com`, address);
      await limited(limiter.check(`fresh-${randomUUID()}@example.com`, address));
      await expect(limiter.check(`fresh-${randomUUID()}@example.com`, addr())).resolves.toBeUndefined();
      await limiter.recordSuccess(`user0@example.com`, address);
      await limited(limiter.check(`fresh-${randomUUID()}@example.com`, address));
    });

    it('the account-wide cap (a guesser spread over many addresses) refuses unknown addresses, never one that logged in before', async () => {
      const account = `spread-${randomUUID()}@example.com`;
      const home = addr();
      await limiter.recordSuccess(account, home);
      for (let i = 0; i < 8; i++) await limiter.recordFailure(account, addr());
      await limited(limiter.check(account, addr()));
      await expect(limiter.check(account, home)).resolves.toBeUndefined();
      // Known per account: the same address is a stranger to another account.
      for (let i = 0; i < 8; i++) await limiter.recordFailure(`other-${account}`, addr());
      await limited(limiter.check(`other-${account}`, home));
      expect(await redis.ttl(limiter.knownKey(account, home))).toBeGreaterThan(120);
    });

    it('starts the window at the first failure and does not extend it', async () => {
      const account = `window-${randomUUID()}`;
      const address = addr();
      const first = await limiter.recordFailure(account, address);
      expect(first).toEqual({ pair: 1, address: 1, account: 1 });
      await redis.expire(limiter.pairKey(account, address), 30);
      const second = await limiter.recordFailure(account, address);
      expect(second).toEqual({ pair: 2, address: 2, account: 2 });
      const ttl = await redis.ttl(limiter.pairKey(account, address));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(30);
      expect(await redis.ttl(limiter.addressKey(address))).toBeLessThanOrEqual(120);
      expect(await redis.ttl(limiter.accountKey(account))).toBeLessThanOrEqual(120);
    });

    it('sign-ups: counts every attempt per address and refuses over the limit with retryAfterSeconds', async () => {
      const signups = new SignupLimiter(redis, { keyPrefix: `${PREFIX}signup:`, maxPerAddress: 3, windowS: 120 });
      const address = addr();
      for (let i = 0; i < 3; i++) await signups.take(address);
      const over = signups.take(`::ffff:${address}`);
      await expectDomainError(over, 'rate_limited', 'AUTH.TOO_MANY_SIGNUPS');
      const err = (await over.catch((e: unknown) => e)) as { extra: { retryAfterSeconds: number } };
      expect(err.extra.retryAfterSeconds).toBeGreaterThan(0);
      expect(err.extra.retryAfterSeconds).toBeLessThanOrEqual(120);
      await expect(signups.take(addr())).resolves.toBeUndefined();
    });

    it('normalises addresses: IPv4-mapped IPv6 is IPv4, IPv6 counts per /64', () => {
      expect(normaliseAddress('203.0.113.7')).toBe('203.0.113.7');
      expect(normaliseAddress('::ffff:203.0.113.7')).toBe('203.0.113.7');
      expect(normaliseAddress('::FFFF:cb00:7107')).toBe('203.0.113.7');
      expect(normaliseAddress('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
      expect(normaliseAddress('2001:0DB8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
      expect(normaliseAddress('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
      expect(normaliseAddress('unknown')).toMatch(/^h:[0-9a-f]{32}$/);
    });
  });

  describe('fail closed when Redis does not answer (revocation and limiter)', () => {
    let closedPort: number;
    let silent: Server;
    let silentPort: number;
    const sockets: Socket[] = [];

    beforeAll(async () => {
      const probe = createServer();
      closedPort = await new Promise<number>((resolve) =>
        probe.listen(0, '127.0.0.1', () => resolve((probe.address() as { port: number }).port)),
      );
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      // Accepts connections and never answers: a hung Redis.
      silent = createServer((s) => sockets.push(s));
      silentPort = await new Promise<number>((resolve) =>
        silent.listen(0, '127.0.0.1', () => resolve((silent.address() as { port: number }).port)),
      );
    });

    afterAll(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    });

    const clients: [string, () => number, RedisOptions][] = [
      ['closed port, default client options', () => closedPort, {}],
      [
        'closed port, commands queued forever (maxRetriesPerRequest: null)',
        () => closedPort,
        { maxRetriesPerRequest: null },
      ],
      ['closed port, no offline queue', () => closedPort, { enableOfflineQueue: false }],
      ['closed port, authRedisOptions', () => closedPort, authRedisOptions(200)],
      ['server that never answers', () => silentPort, { maxRetriesPerRequest: null }],
    ];

    it.each(clients)('%s → revocation AUTH.REVOCATION_UNAVAILABLE, limiter 503', async (_name, port, options) => {
      const dead = new Redis({ host: '127.0.0.1', port: port(), ...options, retryStrategy: () => 100 });
      dead.on('error', () => undefined);
      try {
        const revocation = new RevocationList(dead, {
          keyPrefix: `${PREFIX}dead:`,
          maxTokenLifeS: 900,
          timeoutMs: 300,
        });
        const claims = { sub: 'user-1', jti: randomUUID(), iat: Math.floor(Date.now() / 1000) };
        await expectDomainError(revocation.check(claims), 'unavailable', 'AUTH.REVOCATION_UNAVAILABLE');
        await expectDomainError(
          revocation.revokeToken(claims.jti, claims.iat + 900),
          'unavailable',
          'AUTH.REVOCATION_UNAVAILABLE',
        );
        await expectDomainError(revocation.revokeSubject('user-1'), 'unavailable', 'AUTH.REVOCATION_UNAVAILABLE');
        const limiter = new LoginLimiter(dead, {
          keyPrefix: `${PREFIX}dead:`,
          maxPerAccountAddress: 3,
          maxPerAddress: 5,
          maxPerAccount: 8,
          windowS: 60,
          knownAddressTtlS: 600,
          timeoutMs: 300,
        });
        await expectDomainError(
          limiter.check('a@example.com', '10.0.0.1'),
          'unavailable',
          'AUTH.LOGIN_LIMITER_UNAVAILABLE',
        );
        await expectDomainError(
          limiter.recordFailure('a@example.com', '10.0.0.1'),
          'unavailable',
          'AUTH.LOGIN_LIMITER_UNAVAILABLE',
        );
        await expectDomainError(
          limiter.recordSuccess('a@example.com', '10.0.0.1'),
          'unavailable',
          'AUTH.LOGIN_LIMITER_UNAVAILABLE',
        );
        const signups = new SignupLimiter(dead, {
          keyPrefix: `${PREFIX}dead:`,
          maxPerAddress: 3,
          windowS: 60,
          timeoutMs: 300,
        });
        await expectDomainError(signups.take('10.0.0.1'), 'unavailable', 'AUTH.SIGNUP_LIMITER_UNAVAILABLE');
        const err = (await revocation.check(claims).catch((e: unknown) => e)) as {
          extra: { retryAfterSeconds: number };
        };
        expect(err.extra.retryAfterSeconds).toBeGreaterThan(0);
      } finally {
        dead.disconnect();
      }
    });
  });

  describe('password hasher', () => {
    let hasher: PasswordHasher;

    beforeAll(async () => {
      hasher = new PasswordHasher({ concurrency: 2 });
      await hasher.init();
    });

    it('hashes with argon2id at OWASP parameters and verifies', async () => {
      const hash = await hasher.hash('correct horse battery staple');
      expect(hash.startsWith('$argon2id$v=19$m=19456,t=2,p=1$')).toBe(true);
      expect(await hasher.hash('correct horse battery staple')).not.toBe(hash); // salted
      expect(await hasher.verify(hash, 'correct horse battery staple')).toBe(true);
      expect(await hasher.verify(hash, 'correct horse battery stapl')).toBe(false);
      expect(await hasher.verify(hash, '')).toBe(false);
      await expect(hasher.verify('plaintext-in-the-db', 'x')).rejects.toThrow();
    });

    it('needsRehash when parameters or the variant differ', async () => {
      const hash = await hasher.hash('a password of some length');
      expect(hasher.needsRehash(hash)).toBe(false);
      const stronger = new PasswordHasher({ concurrency: 1, timeCost: 3 });
      expect(stronger.needsRehash(hash)).toBe(true);
      expect(new PasswordHasher({ concurrency: 1, memoryCost: 65_536 }).needsRehash(hash)).toBe(true);
      const argon2i = await argon2.hash('a password of some length', {
        type: argon2.argon2i,
        memoryCost: 19_456,
        timeCost: 2,
        parallelism: 1,
      });
      expect(hasher.needsRehash(argon2i)).toBe(true);
      expect(hasher.needsRehash('$2b$12$abcdefghijklmnopqrstuv')).toBe(true);
      expect(hasher.needsRehash('')).toBe(true);
      // Re-hashed with the stronger parameters, the old password still verifies.
      const rehashed = await stronger.hash('a password of some length');
      expect(stronger.needsRehash(rehashed)).toBe(false);
      expect(await hasher.verify(rehashed, 'a password of some length')).toBe(true);
    });

    it('refuses parameters weaker than OWASP', () => {
      expect(() => new PasswordHasher({ concurrency: 1, memoryCost: 4096 })).toThrow(/OWASP/);
      expect(() => new PasswordHasher({ concurrency: 1, timeCost: 1 })).toThrow(/OWASP/);
      expect(() => new PasswordHasher({ concurrency: 0 })).toThrow();
    });

    it('verifyAgainstDummy is always false and does the same work as verify: an argon2id verify with the current parameters, through the same queue', async () => {
      // Equal work rather than measured time (tests never assert on wall-clock time; bench/auth measures it).
      expect(await hasher.verifyAgainstDummy('the real password 123')).toBe(false);
      expect(await hasher.verifyAgainstDummy('')).toBe(false);
      const dummy = await hasher.dummyHash();
      expect(dummy).toMatch(/^\$argon2id\$/);
      expect(hasher.needsRehash(dummy)).toBe(false);
      const one = new PasswordHasher({ concurrency: 1 });
      await one.init();
      const busy = one.hash('keeps the only slot busy');
      const pending = one.verifyAgainstDummy('x');
      await new Promise((r) => setImmediate(r));
      expect(one.running).toBe(1);
      expect(one.waiting).toBe(1); // the dummy verify queues like a real one
      await Promise.all([busy, pending]);
    });

    it('runs at most `concurrency` hashes at once; the rest queue, and a full queue answers 503', async () => {
      const one = new PasswordHasher({ concurrency: 1 });
      const work = Array.from({ length: 5 }, (_, i) => one.hash(`password number ${i}`));
      expect(one.running).toBe(1);
      expect(one.waiting).toBe(4);
      const hashes = await Promise.all(work);
      expect(new Set(hashes).size).toBe(5);
      expect(one.running).toBe(0);
      expect(one.waiting).toBe(0);

      const two = new PasswordHasher({ concurrency: 2 });
      const stored = await two.hash('password number 0');
      const more = Array.from({ length: 5 }, (_, i) => two.verify(stored, `password number ${i}`));
      expect(two.running).toBe(2);
      expect(two.waiting).toBe(3);
      expect(await Promise.all(more)).toEqual([true, false, false, false, false]);

      const tiny = new PasswordHasher({ concurrency: 1, maxQueue: 1, maxSignupQueue: 1 });
      const { ok, failed } = await outcomes([
        tiny.hash('first password'),
        tiny.hash('second password'),
        tiny.hash('third password'),
      ]);
      expect(ok).toHaveLength(2);
      expect(failed).toEqual([expect.objectContaining({ kind: 'unavailable', code: 'AUTH.BUSY' })]);
    });

    // Issue 9: sign-ups and logins shared one FIFO queue, so a sign-up flood turned logins into 503s.
    it('a sign-up flood cannot starve logins: a waiting verification gets the next slot, and sign-ups queue (and overflow) apart', async () => {
      const one = new PasswordHasher({ concurrency: 1, maxQueue: 5, maxSignupQueue: 10 });
      const stored = await one.hash('the right password');
      const done: string[] = [];
      const signups = Array.from({ length: 15 }, (_, i) =>
        one.hash(`sign-up password ${i}`).then(
          () => {
            done.push(`signup ${i}`);
          },
          (e: Error) => {
            done.push(`signup ${i} refused`);
            throw e;
          },
        ),
      );
      const login = one.verify(stored, 'the right password').then((ok) => {
        done.push('login');
        return ok;
      });
      const { failed } = await outcomes(signups);
      expect(await login).toBe(true);
      // One sign-up held the only slot; ten waited; four found their queue full. The login went next.
      expect(failed).toHaveLength(4);
      expect(failed.every((e) => e.code === 'AUTH.BUSY')).toBe(true);
      expect(done.filter((d) => !d.endsWith('refused')).indexOf('login')).toBe(1);
    });

    it('sign-ups hold at most half the slots: with two or more, a login never waits for a sign-up', async () => {
      const four = new PasswordHasher({ concurrency: 4 });
      const stored = await four.hash('the right password');
      const signups = Array.from({ length: 6 }, (_, i) => four.hash(`sign-up password ${i}`));
      expect(four.running).toBe(2);
      const logins = [four.verify(stored, 'the right password'), four.verify(stored, 'wrong')];
      expect(four.running).toBe(4); // both logins started at once
      expect(four.waiting).toBe(4);
      expect(await Promise.all(logins)).toEqual([true, false]);
      await Promise.all(signups);
    });
  });
});
