import {
  createHash,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  randomBytes,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  type BigIntStats,
} from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../../config';
import { secretPath } from '../../platform/local/secrets';

/**
 * The keys access tokens are signed and verified with.
 *
 * ES256 (default): P-256 key pairs, each with a `kid` (its RFC 7638
 * thumbprint). Unless a key set is configured they are generated at first
 * start into DATA_DIR/secrets/jwt-keys.json (mode 600). Several keys may be
 * present: the newest signs, all verify. `rotate()` adds a new signing key;
 * `prune()` drops keys that stopped signing more than the longest token life
 * ago, so tokens they signed have all expired. `jwks()` serves only the
 * public halves.
 *
 * Rotation in a running deployment (`npm run cli -- keys:rotate`, i.e.
 * `rotateSigningKeys`): another process writes the key file; running
 * processes pick the change up without a restart:
 *   - verification: a token whose `kid` we do not know makes
 *     `findVerificationKey` look at the file (one stat) and re-read it when it
 *     changed, at most once per `unknownKidReloadIntervalMs` (default 5 s);
 *   - signing: with `reloadIntervalMs` (the app: every 60 s) a timer (unref'd,
 *     stopped by `close()`) re-reads a changed file, so every instance starts
 *     signing with the new key within that interval;
 *   - the JWKS: `jwks()` re-reads a changed file first, so it publishes a new
 *     key as soon as it is on disk.
 * Since other instances may sign with the previous key for up to their reload
 * interval after a rotation, `prune()` keeps a retired key that much longer
 * (`retiredKeySigningLagS`; `fromConfig` sets it to the app's interval).
 *
 * HS256 (JWT_ALG=HS256): one shared secret (>= 32 bytes) with kid "hs256";
 * the JWKS is empty because nothing in it may be published.
 *
 * Key file format (also accepted as `configuredKeys`):
 *   { "version": 1, "keys": [ { "kid": "<thumbprint>", "alg": "ES256",
 *     "createdAt": "<ISO 8601>", "jwk": { "kty": "EC", "crv": "P-256", "x", "y", "d" } } ] }
 */
export type SigningAlg = 'ES256' | 'HS256';

/** A key a token is signed with: a private EC key or the HS256 secret. */
export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
}

/** A key a token is verified with; `alg` is the only algorithm it accepts. */
export interface VerificationKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
}

export interface PublicJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
  readonly kid: string;
  readonly alg: 'ES256';
  readonly use: 'sig';
}

export interface SigningKeysOptions {
  readonly alg: SigningAlg;
  /** Required with HS256; at least 32 bytes. */
  readonly hs256Secret?: string | undefined;
  /** ES256: keys live in DATA_DIR/secrets/jwt-keys.json unless `configuredKeys` is given. */
  readonly dataDir?: string | undefined;
  /** ES256: a key set (key file format) from configuration; nothing is written, `rotate()` refuses. */
  readonly configuredKeys?: string | undefined;
  /** The longest life of any token these keys sign (seconds); bounds `prune()`. */
  readonly maxTokenLifeS: number;
  /** Extra seconds a retired key is kept beyond `maxTokenLifeS` (verifiers' clock tolerance). */
  readonly clockToleranceS?: number | undefined;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now?: (() => number) | undefined;
  /**
   * Key file only: re-read the file every this many milliseconds when it changed (unref'd timer,
   * stopped by `close()`), so this process signs with a key rotated by another one. Default: no timer.
   */
  readonly reloadIntervalMs?: number | undefined;
  /** Key file only: at most one re-read per this many milliseconds for tokens with an unknown kid; default 5000. */
  readonly unknownKidReloadIntervalMs?: number | undefined;
  /**
   * Seconds other processes may go on signing with a key after it was retired (their reload
   * interval); `prune()` keeps retired keys that much longer. Default 0 (`fromConfig`: the app's interval).
   */
  readonly retiredKeySigningLagS?: number | undefined;
  /** A background re-read failed (the keys in memory stay in use). */
  readonly onReloadError?: ((error: unknown) => void) | undefined;
}

/** How often the app re-reads a changed key file (signing switches to a rotated key within this). */
export const DEFAULT_KEY_RELOAD_INTERVAL_MS = 60_000;
/** Tokens with an unknown kid re-read a changed key file at most this often. */
export const DEFAULT_UNKNOWN_KID_RELOAD_INTERVAL_MS = 5_000;

interface StoredKey {
  readonly kid: string;
  readonly alg: 'ES256';
  readonly createdAt: string;
  readonly jwk: {
    readonly kty: 'EC';
    readonly crv: 'P-256';
    readonly x: string;
    readonly y: string;
    readonly d: string;
  };
}

interface KeyFile {
  readonly version: 1;
  readonly keys: readonly StoredKey[];
}

interface LoadedKey extends VerificationKey {
  readonly createdAtMs: number;
  readonly privateKey: KeyObject;
  readonly publicJwk: PublicJwk;
  readonly stored: StoredKey;
}

export const KEY_FILE_NAME = 'jwt-keys.json';
export const HS256_KID = 'hs256';

const b64u = /^[A-Za-z0-9_-]+$/;

/**
 * What identifies one version of the key file: every write renames a new file into place
 * (new inode, new mtime). Not ctime: the chmod every process does at start changes it.
 */
function fileVersion(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}

/** RFC 7638 JWK thumbprint of a P-256 public key (SHA-256, base64url). */
export function jwkThumbprint(jwk: { crv: string; x: string; y: string }): string {
  // Required members only, in lexicographic order, no whitespace.
  const canonical = JSON.stringify({ crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

function generateStoredKey(nowMs: number): StoredKey {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const { x, y, d } = jwk;
  if (!x || !y || !d) throw new Error('generated EC key has no x/y/d');
  return {
    kid: jwkThumbprint({ crv: 'P-256', x, y }),
    alg: 'ES256',
    createdAt: new Date(nowMs).toISOString(),
    jwk: { kty: 'EC', crv: 'P-256', x, y, d },
  };
}

function parseKeyFile(text: string, source: string): StoredKey[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${source}: not valid JSON`);
  }
  const file = parsed as Partial<KeyFile> | null;
  if (!file || typeof file !== 'object' || file.version !== 1 || !Array.isArray(file.keys) || file.keys.length === 0) {
    throw new Error(`${source}: expected {"version": 1, "keys": [ ... ]} with at least one key`);
  }
  const kids = new Set<string>();
  return file.keys.map((k: Partial<StoredKey> | null, i) => {
    const where = `${source}: keys[${i}]`;
    if (!k || typeof k !== 'object') throw new Error(`${where}: not an object`);
    if (typeof k.kid !== 'string' || !k.kid || k.kid.length > 128)
      throw new Error(`${where}: kid must be a non-empty string`);
    if (k.kid === HS256_KID) throw new Error(`${where}: kid "${HS256_KID}" is reserved`);
    if (kids.has(k.kid)) throw new Error(`${where}: duplicate kid ${k.kid}`);
    kids.add(k.kid);
    if (k.alg !== 'ES256') throw new Error(`${where}: alg must be ES256`);
    if (typeof k.createdAt !== 'string' || Number.isNaN(Date.parse(k.createdAt)))
      throw new Error(`${where}: createdAt must be an ISO date`);
    const jwk = k.jwk;
    if (
      !jwk ||
      jwk.kty !== 'EC' ||
      jwk.crv !== 'P-256' ||
      ![jwk.x, jwk.y, jwk.d].every((v) => typeof v === 'string' && b64u.test(v))
    ) {
      throw new Error(`${where}: jwk must be a private P-256 key (kty EC, crv P-256, x, y, d)`);
    }
    return {
      kid: k.kid,
      alg: 'ES256',
      createdAt: k.createdAt,
      jwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d },
    };
  });
}

function loadKey(stored: StoredKey, source: string): LoadedKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: stored.jwk as JsonWebKey, format: 'jwk' });
  } catch (e) {
    throw new Error(`${source}: key ${stored.kid} cannot be imported: ${e instanceof Error ? e.message : String(e)}`);
  }
  const publicKey = createPublicKey(privateKey);
  const pub = publicKey.export({ format: 'jwk' });
  // The stored x/y must be the public half of d: a mismatch would publish a key that verifies nothing.
  if (pub.x !== stored.jwk.x || pub.y !== stored.jwk.y)
    throw new Error(`${source}: key ${stored.kid}: x/y do not belong to d`);
  return {
    kid: stored.kid,
    alg: 'ES256',
    key: publicKey,
    privateKey,
    createdAtMs: Date.parse(stored.createdAt),
    publicJwk: { kty: 'EC', crv: 'P-256', x: stored.jwk.x, y: stored.jwk.y, kid: stored.kid, alg: 'ES256', use: 'sig' },
    stored,
  };
}

function ensureSecretsDir(file: string): void {
  const dir = dirname(file);
  // As in platform/local/secrets.ts: the data dir stays traversable, the secrets dir is private.
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

function serialise(keys: readonly StoredKey[]): string {
  const file: KeyFile = { version: 1, keys };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export class SigningKeys {
  readonly alg: SigningAlg;
  /** The key file, when keys are kept in DATA_DIR (ES256 without configured keys). */
  readonly file: string | undefined;
  private readonly maxTokenLifeS: number;
  private readonly toleranceS: number;
  private readonly now: () => number;
  private readonly readOnly: boolean;
  private readonly unknownKidReloadIntervalMs: number;
  private readonly signingLagS: number;
  private readonly onReloadError: (error: unknown) => void;
  /** Oldest first; the last one signs. */
  private keys: LoadedKey[] = [];
  private byKid = new Map<string, VerificationKey>();
  private hsKey: SigningKey | undefined;
  /** The version of the key file the keys in memory were read from. */
  private loadedVersion: string | undefined;
  private lastUnknownKidReloadMs = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: SigningKeysOptions) {
    this.alg = options.alg;
    this.maxTokenLifeS = options.maxTokenLifeS;
    this.toleranceS = options.clockToleranceS ?? 5;
    this.now = options.now ?? Date.now;
    this.unknownKidReloadIntervalMs = options.unknownKidReloadIntervalMs ?? DEFAULT_UNKNOWN_KID_RELOAD_INTERVAL_MS;
    this.signingLagS = options.retiredKeySigningLagS ?? 0;
    this.onReloadError = options.onReloadError ?? (() => undefined);
    if (!Number.isFinite(this.maxTokenLifeS) || this.maxTokenLifeS <= 0)
      throw new Error('maxTokenLifeS must be positive');
    if (!(this.unknownKidReloadIntervalMs >= 0)) throw new Error('unknownKidReloadIntervalMs must not be negative');
    if (!(this.signingLagS >= 0)) throw new Error('retiredKeySigningLagS must not be negative');
    if (options.alg === 'HS256') {
      const secret = options.hs256Secret;
      if (!secret || Buffer.byteLength(secret, 'utf8') < 32)
        throw new Error('JWT_HS256_SECRET must be at least 32 bytes with JWT_ALG=HS256');
      this.hsKey = { kid: HS256_KID, alg: 'HS256', key: createSecretKey(Buffer.from(secret, 'utf8')) };
      this.byKid.set(HS256_KID, this.hsKey);
      this.file = undefined;
      this.readOnly = true;
      return;
    }
    if (options.configuredKeys !== undefined) {
      this.file = undefined;
      this.readOnly = true;
      this.install(parseKeyFile(options.configuredKeys, 'configured JWT keys'), 'configured JWT keys');
      return;
    }
    if (!options.dataDir) throw new Error('SigningKeys needs dataDir (or configuredKeys) with ES256');
    this.file = secretPath(options.dataDir, KEY_FILE_NAME);
    this.readOnly = false;
    this.createFileIfMissing();
    this.reload();
    const every = options.reloadIntervalMs;
    if (every !== undefined) {
      if (!Number.isInteger(every) || every <= 0) throw new Error('reloadIntervalMs must be a positive integer');
      this.timer = setInterval(() => {
        try {
          this.reloadIfChanged();
        } catch (e) {
          this.onReloadError(e);
        }
      }, every);
      this.timer.unref();
    }
  }

  /** From the platform configuration: JWT_ALG, JWT_HS256_SECRET, DATA_DIR, token lifetimes. */
  static fromConfig(
    config: Pick<Config, 'JWT_ALG' | 'JWT_HS256_SECRET' | 'DATA_DIR' | 'ACCESS_TOKEN_TTL_S' | 'DEVICE_TOKEN_TTL_S'>,
    extra: {
      configuredKeys?: string | undefined;
      now?: (() => number) | undefined;
      /** Re-read a changed key file this often (the app: DEFAULT_KEY_RELOAD_INTERVAL_MS); default: no timer. */
      reloadIntervalMs?: number | undefined;
      onReloadError?: ((error: unknown) => void) | undefined;
    } = {},
  ): SigningKeys {
    return new SigningKeys({
      alg: config.JWT_ALG,
      hs256Secret: config.JWT_HS256_SECRET,
      dataDir: config.DATA_DIR,
      configuredKeys: extra.configuredKeys,
      maxTokenLifeS: Math.max(config.ACCESS_TOKEN_TTL_S, config.DEVICE_TOKEN_TTL_S),
      now: extra.now,
      reloadIntervalMs: extra.reloadIntervalMs,
      onReloadError: extra.onReloadError,
      // Whoever prunes (the CLI) must allow for running instances that still sign with the retired key.
      retiredKeySigningLagS: Math.ceil(Math.max(extra.reloadIntervalMs ?? 0, DEFAULT_KEY_RELOAD_INTERVAL_MS) / 1000),
    });
  }

  /** The key new tokens are signed with (the newest). */
  signingKey(): SigningKey {
    if (this.hsKey) return this.hsKey;
    const newest = this.keys[this.keys.length - 1];
    if (!newest) throw new Error('no signing key');
    return { kid: newest.kid, alg: newest.alg, key: newest.privateKey };
  }

  /** The verification key with this kid, from our own key set only; undefined for any other kid. */
  verificationKey(kid: string): VerificationKey | undefined {
    return this.byKid.get(kid);
  }

  /**
   * Like `verificationKey`, but an unknown kid may be a key another process has just
   * added: then the key file is looked at (one stat) and re-read if it changed, at most
   * once per `unknownKidReloadIntervalMs`, and the lookup is retried. A failed re-read
   * keeps the keys in memory. Still only ever a key from our own key file.
   */
  findVerificationKey(kid: string): VerificationKey | undefined {
    const known = this.byKid.get(kid);
    if (known || !this.file || typeof kid !== 'string' || !kid || kid.length > 128) return known;
    try {
      // Unchanged file: nothing to re-read (and nothing spent on the throttle).
      if (fileVersion(statSync(this.file, { bigint: true })) === this.loadedVersion) return undefined;
      const nowMs = this.now();
      if (nowMs - this.lastUnknownKidReloadMs < this.unknownKidReloadIntervalMs) return undefined;
      this.lastUnknownKidReloadMs = nowMs;
      this.reload();
    } catch (e) {
      this.onReloadError(e);
      return undefined;
    }
    return this.byKid.get(kid);
  }

  /** The kids that verify, oldest first. */
  kids(): string[] {
    return [...this.byKid.keys()];
  }

  /**
   * The public verification keys (RFC 7517 JWK Set). Never contains `d`; empty with HS256.
   * With a key file, a version of it written by another process (a rotation) is read first,
   * so a new key is published as soon as it exists.
   */
  jwks(): { keys: PublicJwk[] } {
    try {
      this.reloadIfChanged();
    } catch (e) {
      this.onReloadError(e);
    }
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })) };
  }

  /**
   * Adds a new signing key (persisted to the key file) and returns its kid.
   * Older keys keep verifying until `prune()` drops them.
   */
  rotate(): string {
    this.assertWritable('rotate');
    // Start from what is on disk, so a rotation by another process is not lost.
    this.reload();
    const fresh = generateStoredKey(Math.max(this.now(), (this.keys[this.keys.length - 1]?.createdAtMs ?? 0) + 1));
    this.write([...this.keys.map((k) => k.stored), fresh]);
    this.reload();
    return fresh.kid;
  }

  /**
   * Drops keys that stopped signing more than max token life (+ clock
   * tolerance, + `retiredKeySigningLagS` for instances that had not reloaded
   * yet) before `nowMs`: every token they signed has expired. The signing key
   * always stays. Returns the removed kids.
   */
  prune(nowMs: number = this.now()): string[] {
    if (this.alg === 'HS256') return [];
    this.assertWritable('prune');
    this.reload();
    const keepAfterMs = (this.maxTokenLifeS + this.toleranceS + this.signingLagS) * 1000;
    const removed: string[] = [];
    const kept = this.keys.filter((k, i) => {
      const successor = this.keys[i + 1];
      if (!successor) return true;
      // A key stopped signing when its successor was created.
      const stale = nowMs - successor.createdAtMs > keepAfterMs;
      if (stale) removed.push(k.kid);
      return !stale;
    });
    if (removed.length) {
      this.write(kept.map((k) => k.stored));
      this.reload();
    }
    return removed;
  }

  /** Re-reads the key file (e.g. after another process rotated). */
  reload(): void {
    if (!this.file) return;
    // Version and text from the same open file: a rename in between cannot pair new text with an old version.
    const fd = openSync(this.file, 'r');
    let text: string;
    let version: string;
    try {
      version = fileVersion(fstatSync(fd, { bigint: true }));
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
    this.install(parseKeyFile(text, this.file), this.file);
    this.loadedVersion = version;
  }

  /** Re-reads the key file if another process has written it since we read it. True when it did. */
  reloadIfChanged(): boolean {
    if (!this.file) return false;
    if (fileVersion(statSync(this.file, { bigint: true })) === this.loadedVersion) return false;
    this.reload();
    return true;
  }

  /** Stops the reload timer. The keys stay usable. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private install(stored: StoredKey[], source: string): void {
    const loaded = stored.map((s) => loadKey(s, source)).sort((a, b) => a.createdAtMs - b.createdAtMs);
    this.keys = loaded;
    this.byKid = new Map(loaded.map((k) => [k.kid, { kid: k.kid, alg: k.alg, key: k.key }]));
  }

  private assertWritable(what: string): void {
    if (this.alg === 'HS256') throw new Error(`cannot ${what} with JWT_ALG=HS256: change JWT_HS256_SECRET instead`);
    if (this.readOnly || !this.file)
      throw new Error(`cannot ${what} configured JWT keys: change them in the configuration`);
  }

  private createFileIfMissing(): void {
    const file = this.file!;
    ensureSecretsDir(file);
    if (!existsSync(file)) {
      try {
        // 'wx': when two processes start at once, exactly one creates the key; the other reads it.
        writeFileSync(file, serialise([generateStoredKey(this.now())]), { mode: 0o600, flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    chmodSync(file, 0o600);
  }

  private write(keys: readonly StoredKey[]): void {
    const file = this.file!;
    ensureSecretsDir(file);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      writeFileSync(tmp, serialise(keys), { mode: 0o600, flag: 'wx' });
      renameSync(tmp, file);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        /* already renamed or never written */
      }
      throw e;
    }
    chmodSync(file, 0o600);
  }
}

export interface RotationResult {
  /** The new signing key. */
  readonly kid: string;
  /** Keys dropped because every token they signed has expired. */
  readonly pruned: readonly string[];
  /** The keys that verify now, oldest first. */
  readonly kids: readonly string[];
  /** The key file written. */
  readonly file: string;
}

/**
 * `npm run cli -- keys:rotate`: adds a new signing key to DATA_DIR/secrets/jwt-keys.json and
 * drops keys past their life. Running instances verify its tokens at once (unknown kid),
 * publish it in the JWKS at once, and sign with it within DEFAULT_KEY_RELOAD_INTERVAL_MS.
 * Refuses with JWT_ALG=HS256 or JWT_KEYS (keys from configuration are changed there).
 */
export function rotateSigningKeys(
  config: Pick<
    Config,
    'JWT_ALG' | 'JWT_HS256_SECRET' | 'JWT_KEYS' | 'DATA_DIR' | 'ACCESS_TOKEN_TTL_S' | 'DEVICE_TOKEN_TTL_S'
  >,
  extra: { now?: (() => number) | undefined } = {},
): RotationResult {
  const keys = SigningKeys.fromConfig(config, { configuredKeys: config.JWT_KEYS, now: extra.now });
  try {
    const kid = keys.rotate();
    const pruned = keys.prune();
    return { kid, pruned, kids: keys.kids(), file: keys.file! };
  } finally {
    keys.close();
  }
}
