import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config';
import { KEY_FILE_NAME, SigningKeys, rotateSigningKeys } from '../../src/identity/auth/signing-keys';
import { TokenService } from '../../src/identity/auth/tokens';
import { startTestApp, type TestApp } from '../support/app';

/**
 * Key rotation in a running deployment: one process (the CLI, `keys:rotate`)
 * writes a new key into the shared key file; other processes holding the old
 * key set verify the new key's tokens, publish it, and sign with it, while
 * tokens signed before the rotation keep verifying until their key is pruned.
 */
const ISS = 'ops-platform-rotation-test';
const AUD_USER = 'ops-platform-api-rotation';
const AUD_DEVICE = 'ops-platform-devices-rotation';
const ACCESS_TTL = 900;
const DEVICE_TTL = 600;

const kidOf = (token: string): string =>
  (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
const fileKids = (file: string): string[] =>
  (JSON.parse(readFileSync(file, 'utf8')) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

async function expectInvalid(p: Promise<unknown>): Promise<void> {
  await expect(p).rejects.toMatchObject({ name: 'DomainError', kind: 'unauthenticated', code: 'AUTH.INVALID_TOKEN' });
}

/** Polls `check` until true; fails the test (with `what`) if it never becomes true. Asserts nothing about time. */
async function eventually(check: () => boolean, what: string, attempts = 500): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never happened: ${what}`);
}

describe('signing key rotation across processes (shared key file)', () => {
  let root: string;
  const opened: SigningKeys[] = [];
  /** One "process": its own SigningKeys on the data dir, and a TokenService over it. */
  const processOn = (dataDir: string, options: { now?: () => number; reloadIntervalMs?: number } = {}) => {
    const keys = new SigningKeys({ alg: 'ES256', dataDir, maxTokenLifeS: ACCESS_TTL, ...options });
    opened.push(keys);
    const tokens = new TokenService(keys, {
      issuer: ISS,
      userAudience: AUD_USER,
      deviceAudience: AUD_DEVICE,
      accessTokenTtlS: ACCESS_TTL,
      deviceTokenTtlS: DEVICE_TTL,
    });
    return { keys, tokens };
  };

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'identity-key-rotation-'));
  });
  afterAll(() => {
    for (const k of opened) k.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('B verifies tokens of a key A rotated in (reload on unknown kid); tokens signed before keep verifying in both', async () => {
    const dataDir = join(root, 'two-processes');
    const a = processOn(dataDir);
    const b = processOn(dataDir);
    const firstKid = a.keys.signingKey().kid;
    expect(b.keys.signingKey().kid).toBe(firstKid);
    const before = await a.tokens.issueAccessToken({ sub: 'user-1', kind: 'user', roles: ['member'] });
    const beforeDevice = await b.tokens.issueAccessToken({ sub: 'device-1', kind: 'device' });

    const newKid = a.keys.rotate();
    expect(newKid).not.toBe(firstKid);
    // B has not looked at the file yet: it still knows only the first key.
    expect(b.keys.kids()).toEqual([firstKid]);

    const after = await a.tokens.issueAccessToken({ sub: 'user-2', kind: 'user', roles: ['admin'] });
    expect(kidOf(after.token)).toBe(newKid);
    await expect(b.tokens.verify(after.token, 'user')).resolves.toMatchObject({
      sub: 'user-2',
      roles: ['admin'],
      jti: after.jti,
    });
    // The unknown kid made B re-read the file: it knows both keys and signs with the new one.
    expect(b.keys.kids()).toEqual([firstKid, newKid]);
    expect(b.keys.signingKey().kid).toBe(newKid);
    const fromB = await b.tokens.issueAccessToken({ sub: 'user-3', kind: 'user' });
    expect(kidOf(fromB.token)).toBe(newKid);
    await expect(a.tokens.verify(fromB.token, 'user')).resolves.toMatchObject({ sub: 'user-3' });

    // Tokens signed before the rotation verify in both processes.
    for (const p of [a, b]) {
      await expect(p.tokens.verify(before.token, 'user')).resolves.toMatchObject({ sub: 'user-1', jti: before.jti });
      await expect(p.tokens.verify(beforeDevice.token, 'device')).resolves.toMatchObject({ sub: 'device-1' });
      await expect(p.tokens.verify(after.token, 'user')).resolves.toMatchObject({ sub: 'user-2' });
    }
    // Both publish both public keys.
    expect(a.keys.jwks().keys.map((k) => k.kid)).toEqual([firstKid, newKid]);
    expect(b.keys.jwks().keys.map((k) => k.kid)).toEqual([firstKid, newKid]);
  });

  it('a process that did not see a rotation publishes the new key in its JWKS at once', () => {
    const dataDir = join(root, 'jwks');
    const a = processOn(dataDir);
    const b = processOn(dataDir);
    const firstKid = b.keys.signingKey().kid;
    const newKid = a.keys.rotate();
    const jwks = b.keys.jwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([firstKid, newKid]);
    expect(jwks.keys.every((k) => !('d' in k))).toBe(true);
  });

  it('re-reads the file for unknown kids at most once per interval; junk kids against an unchanged file do not use up that allowance', async () => {
    const dataDir = join(root, 'throttle');
    let bNow = 1_000_000;
    const a = processOn(dataDir);
    const b = processOn(dataDir, { now: () => bNow });
    // A token signed by a key nobody has, under a kid nobody knows: the file is unchanged, nothing is re-read.
    const stranger = processOn(join(root, 'stranger'));
    const junk = await stranger.tokens.issueAccessToken({ sub: 'user-x', kind: 'user' });
    for (let i = 0; i < 20; i++) await expectInvalid(b.tokens.verify(junk.token, 'user'));

    // ...so the first rotation afterwards is still picked up at once.
    const k2 = a.keys.rotate();
    const t2 = await a.tokens.issueAccessToken({ sub: 'user-2', kind: 'user' });
    await expect(b.tokens.verify(t2.token, 'user')).resolves.toMatchObject({ sub: 'user-2' });
    expect(b.keys.kids()).toContain(k2);

    // A second rotation within the interval: B does not re-read yet (at most one re-read per interval)...
    bNow += 4_999;
    const k3 = a.keys.rotate();
    const t3 = await a.tokens.issueAccessToken({ sub: 'user-3', kind: 'user' });
    await expectInvalid(b.tokens.verify(t3.token, 'user'));
    expect(b.keys.kids()).not.toContain(k3);
    // ...and does once the interval has passed; the earlier tokens still verify.
    bNow += 1;
    await expect(b.tokens.verify(t3.token, 'user')).resolves.toMatchObject({ sub: 'user-3' });
    expect(b.keys.kids()).toContain(k3);
    await expect(b.tokens.verify(t2.token, 'user')).resolves.toBeDefined();

    // Still our key file only: the stranger's token stays refused after every re-read.
    bNow += 10_000;
    await expectInvalid(b.tokens.verify(junk.token, 'user'));
  });

  it('a process with a reload interval starts signing with a key rotated elsewhere; close() stops it', async () => {
    const dataDir = join(root, 'periodic');
    const a = processOn(dataDir);
    const b = processOn(dataDir, { reloadIntervalMs: 10 });
    const k2 = a.keys.rotate();
    // No token with the new kid reaches B: only its timer can make it switch.
    await eventually(() => b.keys.signingKey().kid === k2, 'B signs with the rotated key');
    const fromB = await b.tokens.issueAccessToken({ sub: 'user-1', kind: 'user' });
    expect(kidOf(fromB.token)).toBe(k2);

    b.keys.close();
    const k3 = a.keys.rotate();
    // Twenty intervals later the stopped timer has re-read nothing.
    await new Promise((r) => setTimeout(r, 200));
    expect(b.keys.signingKey().kid).toBe(k2);
    expect(b.keys.kids()).not.toContain(k3);
  });

  it("keys:rotate (rotateSigningKeys) adds a key, prunes keys past token life + the instances' reload interval, refuses HS256 and configured keys", () => {
    const dataDir = join(root, 'cli');
    const config = loadConfig({ DATA_DIR: dataDir });
    const file = join(dataDir, 'secrets', KEY_FILE_NAME);
    let now = Date.UTC(2030, 0, 1);
    const first = rotateSigningKeys(config, { now: () => now });
    expect(first.file).toBe(file);
    expect(first.pruned).toEqual([]);
    expect(first.kids).toHaveLength(2); // the key made at first start, and the new one
    expect(first.kids[1]).toBe(first.kid);
    expect(fileKids(file)).toEqual(first.kids);
    const [k0, k1] = first.kids;

    // Instances may sign with k0 for up to 60 s after the rotation; its tokens live 900 s (+5 s tolerance).
    const keepS = config.ACCESS_TOKEN_TTL_S + 5 + 60;
    now += (keepS - 1) * 1000;
    const second = rotateSigningKeys(config, { now: () => now });
    expect(second.pruned).toEqual([]);
    expect(second.kids).toEqual([k0, k1, second.kid]);

    now += 2 * 1000;
    const third = rotateSigningKeys(config, { now: () => now });
    expect(third.pruned).toEqual([k0]);
    expect(third.kids).toEqual([k1, second.kid, third.kid]);
    expect(fileKids(file)).toEqual(third.kids);

    expect(() =>
      rotateSigningKeys(loadConfig({ DATA_DIR: dataDir, JWT_ALG: 'HS256', JWT_HS256_SECRET: 'x'.repeat(40) })),
    ).toThrow(/HS256/);
    const configured = readFileSync(file, 'utf8');
    expect(() => rotateSigningKeys(loadConfig({ DATA_DIR: dataDir, JWT_KEYS: configured }))).toThrow(/configured/);
    expect(readFileSync(file, 'utf8')).toBe(configured);
  });

  it('npm run cli -- keys:rotate prints the new kid', async () => {
    const dataDir = join(root, 'cli-process');
    const cli = resolve(__dirname, '../../dist/src/cli.js');
    const { stdout } = await promisify(execFile)(process.execPath, [cli, 'keys:rotate'], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, LOG_LEVEL: 'silent' },
    });
    const kids = fileKids(join(dataDir, 'secrets', KEY_FILE_NAME));
    expect(kids).toHaveLength(2);
    expect(stdout.trim()).toBe(kids[1]);
  });
});

describe('key rotation in a running app (GET /.well-known/jwks.json, GET /users/me)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.stop();
  });

  it("after keys:rotate on its data dir the app verifies the new key's tokens, publishes both kids, and signs with the new key", async () => {
    const before = await app.login(app.admin.email, app.admin.password);
    const jwks0 = await app.http('GET', '/.well-known/jwks.json');
    expect(jwks0.status).toBe(200);
    const oldKids = (jwks0.body.keys as { kid: string }[]).map((k) => k.kid);
    expect(oldKids).toEqual([kidOf(before.accessToken)]);
    const me0 = await app.http('GET', '/users/me', undefined, { authorization: before.authorization });
    expect(me0).toMatchObject({ status: 200, body: { email: app.admin.email } });
    const userId = me0.body.userId as string;

    // The CLI's code path, pointed at the app's data dir (another process, as far as the app knows).
    const { kid: newKid } = rotateSigningKeys(app.platform.config);

    // First thing the app sees: a token another instance signed with the new key (unknown kid -> re-read).
    const c = app.platform.config;
    const other = SigningKeys.fromConfig(c);
    try {
      expect(other.signingKey().kid).toBe(newKid);
      const foreign = await TokenService.fromConfig(c, other).issueAccessToken({
        sub: userId,
        kind: 'user',
        roles: ['user', 'admin'],
      });
      const viaOther = await app.http('GET', '/users/me', undefined, { authorization: `Bearer ${foreign.token}` });
      expect(viaOther).toMatchObject({ status: 200, body: { userId } });
    } finally {
      other.close();
    }

    const jwks1 = await app.http('GET', '/.well-known/jwks.json');
    expect(jwks1.status).toBe(200);
    expect((jwks1.body.keys as { kid: string }[]).map((k) => k.kid)).toEqual([...oldKids, newKid]);
    for (const k of jwks1.body.keys) {
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      expect(k.d).toBeUndefined();
    }

    // A token signed before the rotation still works; new sessions are signed with the new key, and work.
    expect((await app.http('GET', '/users/me', undefined, { authorization: before.authorization })).status).toBe(200);
    const after = await app.login(app.admin.email, app.admin.password);
    expect(kidOf(after.accessToken)).toBe(newKid);
    expect((await app.http('GET', '/users/me', undefined, { authorization: after.authorization })).status).toBe(200);
  });

  it('a rotation the app has not been told about shows in its JWKS at once', async () => {
    const kidsBefore = ((await app.http('GET', '/.well-known/jwks.json')).body.keys as { kid: string }[]).map(
      (k) => k.kid,
    );
    const { kid } = rotateSigningKeys(app.platform.config);
    const kidsAfter = ((await app.http('GET', '/.well-known/jwks.json')).body.keys as { kid: string }[]).map(
      (k) => k.kid,
    );
    expect(kidsAfter).toEqual([...kidsBefore, kid]);
  });
});
