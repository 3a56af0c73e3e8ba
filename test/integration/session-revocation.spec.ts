import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RefreshTokenStore } from '../../src/identity/auth/refresh-tokens';
import { RevocationList, parseRevocationNotice, type RevocationNotice } from '../../src/identity/auth/revocation';
import { SessionWatch, type SessionEndReason } from '../../src/identity/session-watch';
import type { Principal } from '../../src/platform/http/access';
import { eventually } from '../support/events';
import { createTestDatabase, testRedisUrl, type TestDatabase } from '../support/services';

/**
 * Session revocation state on real PostgreSQL and Redis (issue 9): refresh-token
 * reuse revokes its family once, never again; a refresh family's access tokens
 * are revoked together; every revocation is announced on Redis pub/sub, and a
 * SessionWatch ends exactly the sessions a notice concerns.
 */
const PREFIX = `test:session-revocation:${randomBytes(4).toString('hex')}:`;
const MAX_LIFE_S = 900;
const nowS = () => Date.now() / 1000;

let db: TestDatabase;
let redis: Redis;
let revocation: RevocationList;

beforeAll(async () => {
  db = await createTestDatabase('sess_rev');
  redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: 2 });
  revocation = new RevocationList(redis, { keyPrefix: `${PREFIX}revoked:`, maxTokenLifeS: MAX_LIFE_S });
});

afterAll(async () => {
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 500);
    if (found.length) await redis.del(...found);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
  await db.drop();
});

describe('refresh-token reuse', () => {
  it('revokes the family once: replaying its old tokens again, as often as one likes, reports nothing more', async () => {
    const reused: { familyId: string; userId: string }[] = [];
    const store = new RefreshTokenStore(db.pool, { ttlS: 3600, onReuse: (info) => void reused.push(info) });
    const user = randomUUID();
    const first = await store.issue(user);
    const second = await store.rotate(first.token);
    const third = await store.rotate(second.token);
    await expect(store.rotate(first.token)).rejects.toMatchObject({ code: 'AUTH.REFRESH_REUSED' });
    expect(reused).toEqual([{ familyId: first.familyId, userId: user }]);
    for (let i = 0; i < 5; i++) {
      await expect(store.rotate(first.token)).rejects.toMatchObject({ kind: 'unauthenticated' });
      await expect(store.rotate(second.token)).rejects.toMatchObject({ kind: 'unauthenticated' });
      await expect(store.rotate(third.token)).rejects.toMatchObject({ kind: 'unauthenticated' });
    }
    expect(reused).toHaveLength(1);
  });

  it('a rotated token of a family ended by logout reports no reuse', async () => {
    const reused: unknown[] = [];
    const store = new RefreshTokenStore(db.pool, { ttlS: 3600, onReuse: (info) => void reused.push(info) });
    const first = await store.issue(randomUUID());
    await store.rotate(first.token);
    expect(await store.revokeFamily(first.familyId, 'logout')).toBe(true);
    await expect(store.rotate(first.token)).rejects.toMatchObject({ kind: 'unauthenticated' });
    expect(reused).toEqual([]);
  });

  it('names the family of a token for its owner only, and lists ended families', async () => {
    const store = new RefreshTokenStore(db.pool, { ttlS: 3600 });
    const user = randomUUID();
    const a = await store.issue(user);
    const b = await store.issue(user);
    expect(await store.familyOf(a.token, { subject: user })).toBe(a.familyId);
    expect(await store.familyOf(a.token, { subject: randomUUID() })).toBeUndefined();
    expect(await store.familyOf('not-a-token')).toBeUndefined();
    await store.revokeFamily(a.familyId, 'logout');
    const gone = randomUUID();
    expect(await store.endedFamilies([a.familyId, b.familyId, gone])).toEqual(new Set([a.familyId, gone]));
  });
});

describe('revocation by refresh family, and notices', () => {
  it('revoking a family rejects every access token of it, and only those', async () => {
    const sid = randomUUID();
    const claims = (s: string | undefined) => ({
      jti: randomUUID(),
      sub: 'user-f',
      iat: Math.floor(nowS()),
      ...(s ? { sid: s } : {}),
    });
    const [one, two, other, none] = [claims(sid), claims(sid), claims(randomUUID()), claims(undefined)];
    await revocation.revokeFamily(sid);
    await expect(revocation.check(one)).rejects.toMatchObject({ code: 'AUTH.TOKEN_REVOKED' });
    await expect(revocation.check(two)).rejects.toMatchObject({ code: 'AUTH.TOKEN_REVOKED' });
    await expect(revocation.check(other)).resolves.toBeUndefined();
    await expect(revocation.check(none)).resolves.toBeUndefined();
    expect(await revocation.whyRevoked([one, other])).toEqual(['family', undefined]);
    const ttl = await redis.ttl(revocation.familyKey(sid));
    expect(ttl).toBeGreaterThan(MAX_LIFE_S - 5);
    expect(ttl).toBeLessThanOrEqual(MAX_LIFE_S + 5);
  });

  it('announces every revocation on the channel, with the cutoff a subject revocation stored', async () => {
    const sub = new Redis(testRedisUrl());
    const heard: RevocationNotice[] = [];
    try {
      sub.on('message', (_c: string, m: string) => {
        const n = parseRevocationNotice(m);
        if (n) heard.push(n);
      });
      await sub.subscribe(revocation.channel);
      const jti = randomUUID();
      const sid = randomUUID();
      const subject = `user-${randomUUID()}`;
      await revocation.revokeToken(jti, Math.floor(nowS()) + 60);
      await revocation.revokeFamily(sid);
      await revocation.revokeSubject(subject, 1_800_000_000.25);
      await revocation.revokeSubject(subject, 1_700_000_000); // earlier: the stored (later) cutoff is announced
      await eventually(() => heard.length === 4, 'four notices');
      expect(heard).toEqual([
        { kind: 'jti', id: jti },
        { kind: 'sid', id: sid },
        { kind: 'sub', id: subject, at: 1_800_000_000.25 },
        { kind: 'sub', id: subject, at: 1_800_000_000.25 },
      ]);
      expect(parseRevocationNotice('{"kind":"sub","id":"x"}')).toBeUndefined();
      expect(parseRevocationNotice('nope')).toBeUndefined();
    } finally {
      sub.disconnect();
    }
  });

  it('a SessionWatch ends exactly the sessions a notice concerns, once each', async () => {
    const log = { info: () => undefined, warn: () => undefined };
    const watch = new SessionWatch({
      redisUrl: testRedisUrl(),
      channel: revocation.channel,
      recheckIntervalMs: 3_600_000,
      recheck: (ps) => Promise.resolve(ps.map(() => undefined)),
      log,
    });
    await watch.start();
    const ended: [string, SessionEndReason][] = [];
    const principal = (over: Partial<Principal>): Principal => ({
      kind: 'user',
      id: randomUUID(),
      roles: ['user'],
      jti: randomUUID(),
      exp: Math.floor(nowS()) + 600,
      iat: nowS(),
      ...over,
    });
    try {
      const sid = randomUUID();
      const userId = randomUUID();
      const beforeRevocation = nowS() - 1;
      const sessions: Record<string, Principal> = {
        byJti: principal({}),
        familyA: principal({ sid }),
        familyB: principal({ sid, id: userId }),
        issuedBefore: principal({ id: userId, iat: nowS() - 10 }),
        issuedAfter: principal({ id: userId, iat: nowS() + 3600 }),
        untouched: principal({}),
      };
      for (const [name, p] of Object.entries(sessions)) watch.watch(p, (reason) => ended.push([name, reason]));
      await revocation.revokeToken(sessions.byJti!.jti, sessions.byJti!.exp);
      await revocation.revokeFamily(sid);
      await revocation.revokeSubject(userId);
      await eventually(() => ended.length >= 4, 'four sessions ended');
      expect(new Map(ended)).toEqual(
        new Map<string, SessionEndReason>([
          ['byJti', 'token revoked'],
          ['familyA', 'session ended'],
          ['familyB', 'session ended'],
          ['issuedBefore', 'access withdrawn'],
        ]),
      );
      // A session registered just after the notice that concerns it (the route was still setting up) ends too.
      const late: SessionEndReason[] = [];
      watch.watch(principal({ id: userId, iat: beforeRevocation }), (r) => late.push(r));
      await eventually(() => late.length === 1, 'the late session ended');
      expect(late).toEqual(['access withdrawn']);
      expect(ended).toHaveLength(4);
      expect(watch.size).toBe(2); // issuedAfter and untouched
    } finally {
      await watch.close();
    }
  });
});
