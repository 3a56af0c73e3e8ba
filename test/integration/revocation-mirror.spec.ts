import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { RevocationList } from '../../src/identity/auth/revocation';
import { RevocationMirror } from '../../src/identity/auth/revocation-mirror';
import { eventually } from '../support/events';
import { testRedisUrl } from '../support/services';

/**
 * The revocation list mirrored in memory (src/identity/auth/revocation-mirror.ts),
 * against a real Redis: the first load, notices applied as they come, a missed
 * notice found by the numbers (a gap, or a heartbeat ahead of the mirror) and
 * repaired by a load, and failing closed while it cannot vouch for its list.
 */
const PREFIX = `test:revocation-mirror:${randomBytes(4).toString('hex')}:`;
const MAX_LIFE_S = 900;
const log = { info: () => undefined, warn: () => undefined };

let redis: Redis;
let list: RevocationList;
const mirrors: RevocationMirror[] = [];

async function mirror(options: { maxStalenessMs?: number; redisUrl?: string } = {}): Promise<RevocationMirror> {
  const m = new RevocationMirror({
    list,
    redisUrl: options.redisUrl ?? testRedisUrl(),
    maxStalenessMs: options.maxStalenessMs ?? 1000,
    log,
  });
  mirrors.push(m);
  await m.start();
  return m;
}

const nowS = () => Date.now() / 1000;
const claims = (over: Partial<{ sub: string; jti: string; sid: string; iat: number; iatMs: number }> = {}) => ({
  sub: `user-${randomUUID()}`,
  jti: randomUUID(),
  iat: Math.floor(nowS()) - 10,
  ...over,
});

beforeAll(() => {
  redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: 2 });
  list = new RevocationList(redis, { keyPrefix: PREFIX, maxTokenLifeS: MAX_LIFE_S });
});

afterAll(async () => {
  for (const m of mirrors) m.close();
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 500);
    if (found.length) await redis.del(...found);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
});

describe('the revocation mirror', () => {
  it('loads every revocation still needed when it starts, and answers without a promise while fresh', async () => {
    const token = claims();
    const family = claims({ sid: randomUUID() });
    const subject = claims();
    await list.revokeToken(token.jti, Math.floor(nowS()) + 600);
    await list.revokeFamily(family.sid!);
    await list.revokeSubject(subject.sub);
    const m = await mirror();
    expect(m.status).toMatchObject({ state: 'live' });
    expect(m.verdict(token)).toBe('token');
    expect(m.verdict(family)).toBe('family');
    expect(m.verdict(subject)).toBe('subject');
    const good = claims();
    expect(m.verdict(good)).toBe('ok');
    expect(m.check(good)).toBeUndefined(); // no promise: nothing to wait for
    expect(() => m.check(token)).toThrow(expect.objectContaining({ code: 'AUTH.TOKEN_REVOKED' }));
  });

  it('applies revocations from the channel (another instance) and from its own list at once', async () => {
    const m = await mirror();
    const other = new RevocationList(redis, { keyPrefix: PREFIX, maxTokenLifeS: MAX_LIFE_S }); // another instance's
    const viaChannel = claims();
    const seq = m.status.seq;
    await other.revokeToken(viaChannel.jti, Math.floor(nowS()) + 600);
    await eventually(() => m.status.seq === seq + 1, 'the notice applied');
    expect(m.verdict(viaChannel)).toBe('token');
    // Written through the list the mirror watches: applied before revokeToken returns.
    const own = claims();
    await list.revokeToken(own.jti, Math.floor(nowS()) + 600);
    expect(m.verdict(own)).toBe('token');
  });

  it('a subject cutoff refuses tokens issued at or before it (to the millisecond), not later ones', async () => {
    const m = await mirror();
    const sub = `user-${randomUUID()}`;
    const atMs = Date.now() - 5000;
    await list.revokeSubject(sub, atMs / 1000);
    const at = (ms: number) => claims({ sub, iat: Math.floor(ms / 1000), iatMs: ms });
    expect(m.verdict(at(atMs - 1000))).toBe('subject');
    expect(m.verdict(at(atMs))).toBe('subject');
    expect(m.verdict(at(atMs + 1))).toBe('ok');
    // An earlier cutoff never shortens the stored one.
    await list.revokeSubject(sub, atMs / 1000 - 60);
    expect(m.verdict(at(atMs))).toBe('subject');
  });

  it('a revocation whose notice never arrived is found by the next heartbeat: the mirror loads again and refuses it', async () => {
    const m = await mirror();
    const lost = claims();
    const gaps = m.status.gaps;
    // What a notice lost in transit leaves behind: the entry and its number, no message.
    await redis
      .multi()
      .incr(list.seqKey)
      .hset(list.entriesKey, `jti:${lost.jti}`, String(Math.ceil(nowS()) + 600))
      .zadd(list.expiryKey, Math.ceil(nowS()) + 600, `jti:${lost.jti}`)
      .exec();
    const storedAt = performance.now();
    // Confirmed as of a moment after the write: it cannot vouch for a list without it.
    await eventually(() => m.status.freshAt > storedAt, 'the mirror confirmed after the write', 10_000);
    expect(m.status.gaps).toBeGreaterThan(gaps);
    expect(m.verdict(lost)).toBe('token');
  });

  it('a notice numbered past the next one (one in between was lost) makes it load again', async () => {
    const m = await mirror();
    const before = m.status;
    const skipped = claims();
    await redis.publish(
      list.channel,
      JSON.stringify({ kind: 'jti', id: skipped.jti, seq: before.seq + 2, until: Math.ceil(nowS()) + 600 }),
    );
    await eventually(() => m.status.gaps > before.gaps && m.status.state === 'live', 'the gap repaired');
    expect(m.verdict(skipped)).toBe('token'); // applied all the same: a revocation only ever adds
    expect(m.status.seq).toBe(Number(await redis.get(list.seqKey)));
  });

  it('an entry is kept only as long as its token could live (the expiry index prunes it)', async () => {
    const m = await mirror();
    const c = claims();
    // A token that expires in a second, revoked; its entry outlives it by the clock tolerance (5 s).
    await list.revokeToken(c.jti, Math.floor(nowS()));
    expect(m.verdict(c)).toBe('token');
    const entry = await redis.hget(list.entriesKey, `jti:${c.jti}`);
    expect(Number(entry)).toBeLessThanOrEqual(Math.ceil(nowS()) + 6);
    expect(await redis.zscore(list.expiryKey, `jti:${c.jti}`)).toBe(entry);
  });

  it('after an upgrade: revocations an older release stored only as their own keys are indexed and refused', async () => {
    const prefix = `${PREFIX}legacy-${randomBytes(3).toString('hex')}:`;
    const old = new RevocationList(redis, { keyPrefix: prefix, maxTokenLifeS: MAX_LIFE_S });
    const token = claims();
    const family = claims({ sid: randomUUID() });
    const subject = claims();
    const cutoff = nowS();
    // What the previous release wrote: the key alone, no index, no number.
    await redis.set(old.jtiKey(token.jti), '1', 'EX', 600);
    await redis.set(old.familyKey(family.sid!), '1', 'EX', 600);
    await redis.set(old.subjectKey(subject.sub), String(cutoff), 'EX', 600);
    const m = new RevocationMirror({ list: old, redisUrl: testRedisUrl(), maxStalenessMs: 1000, log });
    mirrors.push(m);
    await m.start();
    expect(m.verdict(token)).toBe('token');
    expect(m.verdict(family)).toBe('family');
    expect(m.verdict(subject)).toBe('subject');
    expect(m.verdict(claims({ sub: subject.sub, iat: Math.floor(cutoff) + 1 }))).toBe('ok');
    expect(await redis.hlen(old.entriesKey)).toBe(3);
    // Once per list: a second start indexes nothing more.
    expect(await old.indexExisting()).toBe(0);
  });

  it('fails closed: with no Redis it never goes live and every check is a 503 AUTH.REVOCATION_UNAVAILABLE', async () => {
    const url = new URL(testRedisUrl());
    url.port = '1'; // nothing listens there
    const m = new RevocationMirror({ list, redisUrl: url.toString(), maxStalenessMs: 200, log });
    mirrors.push(m);
    await m.start(300);
    expect(m.status.state).not.toBe('live');
    expect(m.verdict(claims())).toBe('stale');
    await expect(m.check(claims())).rejects.toMatchObject({
      kind: 'unavailable',
      code: 'AUTH.REVOCATION_UNAVAILABLE',
      extra: { retryAfterSeconds: 1 },
    });
    m.close();
    await expect(m.check(claims())).rejects.toMatchObject({ code: 'AUTH.REVOCATION_UNAVAILABLE' });
  });
});
