import type { Redis } from 'ioredis';
import { DomainError } from '../../../domain/shared/errors';
import type { AccessTokenClaims } from './tokens';
import { DEFAULT_REDIS_TIMEOUT_MS, redisCall } from './redis-call';
import { AuthErrorCode } from '../../platform/http/auth-errors';

/**
 * Revoked access tokens, in Redis.
 *
 *   <prefix>jti:<jti>  "1"          one token (logout); TTL = its remaining life + tolerance
 *   <prefix>sub:<sub>  <epoch s>    every token of the subject issued at or before that
 *                                   second (disable user, revoke device, logout everywhere);
 *                                   TTL = cutoff + max token life - now
 *   <prefix>sid:<sid>  "1"          every access token of one refresh family (logout, refresh
 *                                   token reuse): the family mints no more, so no cutoff is
 *                                   needed; TTL = max token life
 *
 * `check` fails CLOSED: if Redis does not answer within the timeout the request
 * is refused with 503 AUTH.REVOCATION_UNAVAILABLE, never let through.
 *
 * Every revocation is also published on `<prefix>notices` (one JSON notice, in
 * the same script as the write), so that each instance can end the long-lived
 * sessions (SSE streams, MQTT connections) it holds for that token at once
 * (src/identity/session-watch.ts). Pub/sub is fire and forget: the key is the
 * truth, the notice only makes it fast.
 *
 * The same script also numbers the revocation and records it where one read
 * finds them all, so that each instance can keep the whole list in memory
 * (RevocationMirror, revocation-mirror.ts) and check requests without a round trip:
 *
 *   <prefix>seq      counter       +1 per revocation; the notice carries it (`seq`), so a
 *                                  listener that misses one sees the gap
 *   <prefix>entries  hash          'jti:<jti>' / 'sid:<sid>' -> "<until>", 'sub:<sub>' ->
 *                                  "<cutoff> <until>" (until: epoch s the entry is needed to)
 *   <prefix>expiry   sorted set    the same fields scored by `until`: expired ones are pruned
 *                                  by the next writes and loads
 *
 * All keys of one list are written by one script, so they must live on one Redis (the
 * platform runs one Redis, or one primary; not a Redis Cluster).
 */
export interface RevocationListOptions {
  /** Key prefix; default "auth:revoked:". Tests use their own. */
  readonly keyPrefix?: string | undefined;
  /** Longest life of any access token, clock tolerance included (TokenService.maxTokenLifeS). */
  readonly maxTokenLifeS: number;
  /** Extra seconds entries outlive their tokens (verifiers' clock tolerance); default 5. */
  readonly clockToleranceS?: number | undefined;
  /** Per-call bound; default 500 ms. */
  readonly timeoutMs?: number | undefined;
  readonly now?: (() => number) | undefined;
}

const UNAVAILABLE = AuthErrorCode.REVOCATION_UNAVAILABLE;
/** Tokens per MGET in whyRevoked: keeps one Redis command (and its reply) small. */
const MAX_TOKENS_PER_CHECK = 500;

/** What a revocation notice says: one token (`jti`), one refresh family (`sid`), or a subject's tokens issued at or before `at` (epoch s). */
export type RevocationNotice =
  | { readonly kind: 'jti'; readonly id: string }
  | { readonly kind: 'sid'; readonly id: string }
  | { readonly kind: 'sub'; readonly id: string; readonly at: number };

/**
 * A notice as the mirror reads it: the revocation, how long it must be kept (`until`, epoch s)
 * and its number (`seq`; undefined from a writer that does not number them: the mirror reloads).
 */
export interface RevocationEntry {
  readonly notice: RevocationNotice;
  readonly until: number;
  readonly seq: number | undefined;
}

/** Parses a notice from the channel; undefined for anything malformed (the channel is not trusted to be tidy). */
export function parseRevocationNotice(message: string): RevocationNotice | undefined {
  return parseRevocationEntry(message)?.notice;
}

/** Parses a notice with its number and lifetime; `until` defaults to "keep for the longest token life" (`fallbackUntil`). */
export function parseRevocationEntry(message: string, fallbackUntil = Infinity): RevocationEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { kind, id, at, seq, until } = v as Record<string, unknown>;
  if (typeof id !== 'string' || !id || id.length > 200) return undefined;
  let notice: RevocationNotice;
  if (kind === 'jti' || kind === 'sid') notice = { kind, id };
  else if (kind === 'sub' && typeof at === 'number' && Number.isFinite(at)) notice = { kind, id, at };
  else return undefined;
  return {
    notice,
    until: typeof until === 'number' && Number.isFinite(until) ? until : fallbackUntil,
    seq: typeof seq === 'number' && Number.isSafeInteger(seq) ? seq : undefined,
  };
}

/** Everything a load found: the number of the last revocation and every entry still needed. */
export interface RevocationSnapshot {
  readonly seq: number;
  readonly entries: readonly RevocationEntry[];
}

// What every write script does after its own key (KEYS[2] seq, KEYS[3] entries, KEYS[4] expiry;
// `field`, `value`, `upto`, `now`, `channel`, `notice` set by the script): number it, record it, prune a few expired
// entries, keep the index as long as its longest entry, and publish the notice with its number.
const RECORD = `
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], field, value)
redis.call('ZADD', KEYS[4], upto, field)
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 64)
if #old > 0 then
  redis.call('HDEL', KEYS[3], unpack(old))
  redis.call('ZREM', KEYS[4], unpack(old))
end
local keep = math.ceil(upto - now) + 1
for _, k in ipairs({KEYS[3], KEYS[4]}) do
  if redis.call('TTL', k) < keep then redis.call('EXPIRE', k, keep) end
end
notice.seq = seq
notice['until'] = upto
local json = cjson.encode(notice)
redis.call('PUBLISH', channel, json)
return json
`;

// Keeps the later of the stored and the new cutoff; TTL runs until every token issued by then has expired.
// The notice carries the cutoff actually stored, so a listener compares with the same number `check` does.
// ARGV: at, max token life (s), now (s), subject, channel.
const REVOKE_SUBJECT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local at = tonumber(ARGV[1])
if cur > at then at = cur end
local now = tonumber(ARGV[3])
local upto = math.ceil(at + tonumber(ARGV[2]))
local ttl = upto - now
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], tostring(at), 'EX', ttl)
local field = 'sub:' .. ARGV[4]
local value = tostring(at) .. ' ' .. tostring(upto)
local channel = ARGV[5]
local notice = {kind = 'sub', id = ARGV[4], at = at}
${RECORD}`;

// One token or one family: the key and its notice in one step. (The channel is an argument,
// not a key: a channel belongs to no key slot.) ARGV: ttl (s), channel, kind, id, now (s).
const REVOKE_ONE = `
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[5])
redis.call('SET', KEYS[1], '1', 'EX', ttl)
local upto = now + ttl
local field = ARGV[3] .. ':' .. ARGV[4]
local value = tostring(upto)
local channel = ARGV[2]
local notice = {kind = ARGV[3], id = ARGV[4]}
${RECORD}`;

// Every entry still needed, and the number of the last revocation, in one atomic read (pruning
// what has expired). KEYS: seq, entries, expiry. ARGV: now (s).
const LOAD = `
local now = tonumber(ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 10000)
if #old > 0 then
  for i = 1, #old, 1000 do
    local chunk = {unpack(old, i, math.min(i + 999, #old))}
    redis.call('HDEL', KEYS[2], unpack(chunk))
    redis.call('ZREM', KEYS[3], unpack(chunk))
  end
end
return {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2])}
`;

// A mirror's heartbeat: the number of the last revocation, published on the mirror's own channel.
// Redis delivers a connection's messages in publish order, so a mirror reading this has read every
// notice numbered up to it. KEYS: seq. ARGV: channel, tick id.
const TICK = `
local seq = redis.call('GET', KEYS[1]) or '0'
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. seq)
return seq
`;

// One revocation stored before the list was indexed (an older release wrote only its own key):
// added to the index unless already there, numbered without a notice (listening mirrors see the
// gap at their next heartbeat and load). KEYS: the revocation's key, seq, entries, expiry.
// ARGV: field, now (s).
const INDEX_ONE = `
local v = redis.call('GET', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if not v or ttl < 0 then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
local now = tonumber(ARGV[2])
local upto = now + ttl
local value = tostring(upto)
if string.sub(ARGV[1], 1, 4) == 'sub:' then value = v .. ' ' .. value end
redis.call('HSET', KEYS[3], ARGV[1], value)
redis.call('ZADD', KEYS[4], upto, ARGV[1])
for _, k in ipairs({KEYS[3], KEYS[4]}) do
  if redis.call('TTL', k) < ttl + 1 then redis.call('EXPIRE', k, ttl + 1) end
end
redis.call('INCR', KEYS[2])
return 1
`;

export class RevocationList {
  private readonly prefix: string;
  private readonly maxTokenLifeS: number;
  private readonly toleranceS: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly listeners = new Set<(entry: RevocationEntry) => void>();

  constructor(
    private readonly redis: Redis,
    options: RevocationListOptions,
  ) {
    this.prefix = options.keyPrefix ?? 'auth:revoked:';
    this.maxTokenLifeS = options.maxTokenLifeS;
    this.toleranceS = options.clockToleranceS ?? 5;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
    if (!(this.maxTokenLifeS > 0)) throw new Error('maxTokenLifeS must be positive');
  }

  jtiKey(jti: string): string {
    return `${this.prefix}jti:${jti}`;
  }

  subjectKey(sub: string): string {
    return `${this.prefix}sub:${sub}`;
  }

  familyKey(sid: string): string {
    return `${this.prefix}sid:${sid}`;
  }

  /** The pub/sub channel every revocation is announced on. */
  get channel(): string {
    return `${this.prefix}notices`;
  }

  /** The number of the last revocation (see the class comment). */
  get seqKey(): string {
    return `${this.prefix}seq`;
  }

  /** Every entry still needed, by field (see the class comment). */
  get entriesKey(): string {
    return `${this.prefix}entries`;
  }

  get expiryKey(): string {
    return `${this.prefix}expiry`;
  }

  /** The longest any entry is kept, in seconds: a token's longest life plus the clock tolerance. */
  get entryLifeS(): number {
    return this.maxTokenLifeS + this.toleranceS;
  }

  /**
   * Calls `listener` with every revocation this list has just stored, before the revoking call
   * returns (the mirror of this instance applies it at once, without waiting for its notice).
   */
  onRevoked(listener: (entry: RevocationEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Revokes one token until it would expire anyway. */
  async revokeToken(jti: string, exp: number): Promise<void> {
    if (typeof jti !== 'string' || !jti) throw new Error('jti must be a non-empty string');
    const nowS = Math.floor(this.now() / 1000);
    const ttl = Math.ceil(exp + this.toleranceS - nowS);
    if (!(ttl > 0)) return; // already expired: verification rejects it without our help
    await this.write(REVOKE_ONE, this.jtiKey(jti), [ttl, this.channel, 'jti', jti, nowS]);
  }

  /**
   * Revokes every access token of one refresh family (`sid` claim): logout, refresh token
   * reuse. The family's refresh tokens are revoked in PostgreSQL, so it mints none after this;
   * the key lives as long as the longest token could.
   */
  async revokeFamily(sid: string): Promise<void> {
    if (typeof sid !== 'string' || !sid) throw new Error('sid must be a non-empty string');
    const ttl = Math.ceil(this.maxTokenLifeS + this.toleranceS);
    await this.write(REVOKE_ONE, this.familyKey(sid), [ttl, this.channel, 'sid', sid, Math.floor(this.now() / 1000)]);
  }

  /**
   * Revokes every token of `sub` issued at or before `atEpochSeconds` (default: now, to the
   * millisecond, so a token issued a moment later in the same second still works).
   */
  async revokeSubject(sub: string, atEpochSeconds: number = this.now() / 1000): Promise<void> {
    if (typeof sub !== 'string' || !sub) throw new Error('sub must be a non-empty string');
    if (!Number.isFinite(atEpochSeconds)) throw new Error('atEpochSeconds must be a number');
    const nowS = Math.floor(this.now() / 1000);
    await this.write(REVOKE_SUBJECT, this.subjectKey(sub), [
      atEpochSeconds,
      this.maxTokenLifeS + this.toleranceS,
      nowS,
      sub,
      this.channel,
    ]);
  }

  /**
   * Every revocation still needed and the number of the last one, read atomically (one script):
   * what a mirror starts from, and reloads after it missed a notice. Throws 503 when Redis does
   * not answer.
   */
  async load(): Promise<RevocationSnapshot> {
    const reply = await this.call(
      () =>
        this.redis.eval(
          LOAD,
          3,
          this.seqKey,
          this.entriesKey,
          this.expiryKey,
          Math.floor(this.now() / 1000),
        ) as Promise<[string, string[]]>,
    );
    const [seq, flat] = reply;
    const entries: RevocationEntry[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const entry = entryFromField(flat[i]!, flat[i + 1]!);
      if (entry) entries.push(entry);
    }
    return { seq: Number(seq), entries };
  }

  /**
   * Adds to the index the revocations an older release stored only as their own keys (once per
   * list: a marker key remembers it is done), so that no mirror misses a revocation made before
   * an upgrade. Returns how many it added.
   */
  async indexExisting(): Promise<number> {
    const marker = `${this.prefix}indexed`;
    if ((await this.call(() => this.redis.exists(marker))) === 1) return 0;
    const escaped = this.prefix.replace(/[.*+?^$()|[\]\\{}]/g, '\\$&');
    const own = new RegExp(`^${escaped}(jti|sid|sub):(.+)$`);
    let added = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.call(() => this.redis.scan(cursor, 'MATCH', `${this.prefix}*`, 'COUNT', 1000));
      cursor = next;
      for (const key of keys) {
        const m = own.exec(key);
        if (!m) continue;
        const field = `${m[1]}:${m[2]}`;
        const now = Math.floor(this.now() / 1000);
        const r = await this.call(() =>
          this.redis.eval(INDEX_ONE, 4, key, this.seqKey, this.entriesKey, this.expiryKey, field, now),
        );
        if (r === 1) added++;
      }
    } while (cursor !== '0');
    await this.call(() => this.redis.set(marker, '1'));
    return added;
  }

  /**
   * Publishes `<tick> <seq>` on `channel` (a mirror's own), seq being the number of the last
   * revocation at that moment (see TICK). Throws 503 when Redis does not answer.
   */
  async tick(channel: string, tick: number): Promise<number> {
    return Number(await this.call(() => this.redis.eval(TICK, 1, this.seqKey, channel, tick) as Promise<string>));
  }

  private async write(script: string, key: string, args: (string | number)[]): Promise<void> {
    const reply = await this.call(() =>
      this.redis.eval(script, 4, key, this.seqKey, this.entriesKey, this.expiryKey, ...args),
    );
    if (typeof reply !== 'string') return; // nothing stored (a cutoff whose tokens have all expired)
    const entry = parseRevocationEntry(reply);
    if (!entry) return;
    for (const listener of this.listeners) listener(entry);
  }

  /** Throws unless the token is still good: 401 AUTH.TOKEN_REVOKED, or 503 when Redis does not answer. */
  async check(claims: RevocableClaims): Promise<void> {
    const [reason] = await this.whyRevoked([claims]);
    if (reason) throw revoked();
  }

  /**
   * For each token, why it is revoked ('token', 'family', 'subject') or undefined when it is
   * still good: one MGET for the lot (the periodic re-check of long-lived sessions). Throws
   * 503 when Redis does not answer.
   */
  async whyRevoked(tokens: readonly RevocableClaims[]): Promise<(RevokedBy | undefined)[]> {
    if (tokens.length > MAX_TOKENS_PER_CHECK) {
      const out: (RevokedBy | undefined)[] = [];
      for (let at = 0; at < tokens.length; at += MAX_TOKENS_PER_CHECK)
        out.push(...(await this.whyRevoked(tokens.slice(at, at + MAX_TOKENS_PER_CHECK))));
      return out;
    }
    if (tokens.length === 0) return [];
    const keys: string[] = [];
    for (const c of tokens)
      keys.push(this.jtiKey(c.jti), this.subjectKey(c.sub), ...(c.sid ? [this.familyKey(c.sid)] : []));
    const values = await this.call(() => this.redis.mget(keys));
    let i = 0;
    return tokens.map((c) => {
      const byJti = values[i++];
      const bySubject = values[i++];
      const byFamily = c.sid ? values[i++] : null;
      if (byJti !== null && byJti !== undefined) return 'token';
      if (byFamily !== null && byFamily !== undefined) return 'family';
      if (bySubject !== null && bySubject !== undefined) {
        const cutoff = Number(bySubject);
        // An unreadable cutoff counts as "everything revoked": fail closed.
        if (!Number.isFinite(cutoff) || issuedAt(c) <= cutoff) return 'subject';
      }
      return undefined;
    });
  }

  private call<T>(op: () => Promise<T>): Promise<T> {
    return redisCall(op, this.timeoutMs, UNAVAILABLE, 'the token revocation list');
  }
}

/** An entry of `<prefix>entries` as a notice (its field names the revocation, its value how long it holds). */
function entryFromField(field: string, value: string): RevocationEntry | undefined {
  const colon = field.indexOf(':');
  const kind = field.slice(0, colon);
  const id = field.slice(colon + 1);
  if (colon < 0 || !id) return undefined;
  if (kind === 'jti' || kind === 'sid') {
    const until = Number(value);
    return Number.isFinite(until) ? { notice: { kind, id }, until, seq: undefined } : undefined;
  }
  if (kind !== 'sub') return undefined;
  const [at, until] = value.split(' ').map(Number);
  // An unreadable cutoff revokes every token of the subject (fail closed), as `whyRevoked` reads it.
  return {
    notice: { kind, id, at: Number.isFinite(at) ? at! : Infinity },
    until: Number.isFinite(until) ? until! : Infinity,
    seq: undefined,
  };
}

export type RevocableClaims = Pick<AccessTokenClaims, 'jti' | 'sub' | 'iat' | 'iatMs' | 'sid'>;
export type RevokedBy = 'token' | 'family' | 'subject';

/** Issue time in seconds, to the millisecond when the token says (`iat_ms`). */
export const issuedAt = (c: Pick<AccessTokenClaims, 'iat' | 'iatMs'>): number =>
  c.iatMs !== undefined ? c.iatMs / 1000 : c.iat;

const revoked = () =>
  new DomainError('unauthenticated', AuthErrorCode.TOKEN_REVOKED, 'the access token has been revoked');
