import {
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  sign as cryptoSign,
  type KeyObject,
} from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { runStrategy } from '../../src/identity/auth/access-token-strategy';
import { RevocationList } from '../../src/identity/auth/revocation';
import { RevocationMirror } from '../../src/identity/auth/revocation-mirror';
import { KEY_FILE_NAME, SigningKeys } from '../../src/identity/auth/signing-keys';
import { TokenService, type TokenKind } from '../../src/identity/auth/tokens';
import { UserJwtStrategy, recalledPrincipal, type StrategyDeps } from '../../src/identity/jwt.strategies';
import type { Principal } from '../../src/platform/http/access';
import { testRedisUrl } from '../support/services';

/**
 * Access tokens under attack. Every hostile token is built here by hand
 * (base64url + node:crypto), so nothing depends on a JWT library agreeing to
 * produce it. Each family of attacks starts from a hand-built token that IS
 * accepted (the control), then changes exactly one thing.
 */
const ISS = 'ops-platform-test';
const AUD_USER = 'ops-platform-api-test';
const AUD_DEVICE = 'ops-platform-devices-test';
const ACCESS_TTL = 900;
const DEVICE_TTL = 600;
const NOW = Math.floor(Date.now() / 1000);
const clock = () => NOW * 1000;

// RFC 7515 Appendix A.1: the HS256 example JWS, verifiable with the RFC's published key.
const RFC7515_A1 =
  'eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const RFC7515_A1_KEY = Buffer.from(
  'AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow',
  'base64url',
);

const HS_SECRET = 'a-test-hs256-secret-that-is-long-enough-0123456789';

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
type Signer = (input: string) => Buffer;
const es256With =
  (key: KeyObject): Signer =>
  (input) =>
    cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
const hs256With =
  (key: Buffer | string): Signer =>
  (input) =>
    createHmac('sha256', key).update(input).digest();
/** A compact JWS: header and payload as given (a payload string is used verbatim as JSON text). */
function craft(header: Record<string, unknown>, payload: unknown, signer?: Signer, rawPayload = false): string {
  const input = `${b64(header)}.${rawPayload ? b64(payload as string) : b64(payload)}`;
  return `${input}.${signer ? signer(input).toString('base64url') : ''}`;
}

async function expectRejected(p: Promise<unknown>, code = 'AUTH.INVALID_TOKEN'): Promise<void> {
  await expect(p).rejects.toMatchObject({ name: 'DomainError', kind: 'unauthenticated', code });
}

describe('identity access tokens (attacks crafted in the test)', () => {
  let root: string;
  let keys: SigningKeys;
  let tokens: TokenService;
  let ourKid: string;
  let ourPrivate: KeyObject;
  let attacker: { privateKey: KeyObject; publicKey: KeyObject; jwk: JWK; kid: string };

  const serviceFor = (k: SigningKeys, now: () => number = clock) =>
    new TokenService(k, {
      issuer: ISS,
      userAudience: AUD_USER,
      deviceAudience: AUD_DEVICE,
      accessTokenTtlS: ACCESS_TTL,
      deviceTokenTtlS: DEVICE_TTL,
      now,
    });
  const header = (over: Record<string, unknown> = {}) => ({ alg: 'ES256', kid: ourKid, typ: 'at+jwt', ...over });
  const claims = (over: Record<string, unknown> = {}, kind: TokenKind = 'user') => ({
    iss: ISS,
    aud: kind === 'user' ? AUD_USER : AUD_DEVICE,
    sub: 'user-1',
    jti: randomUUID(),
    iat: NOW - 10,
    exp: NOW + 300,
    kind,
    roles: ['member'],
    ...over,
  });
  const without = (name: string) => {
    const c: Record<string, unknown> = claims();
    delete c[name];
    return c;
  };
  const ours = () => es256With(ourPrivate);

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'identity-tokens-'));
    keys = new SigningKeys({ alg: 'ES256', dataDir: join(root, 'main'), maxTokenLifeS: ACCESS_TTL });
    tokens = serviceFor(keys);
    const signing = keys.signingKey();
    ourKid = signing.kid;
    ourPrivate = signing.key;
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = pair.publicKey.export({ format: 'jwk' }) as JWK;
    attacker = { ...pair, jwk, kid: 'attacker-key' };
  });

  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  describe('controls: what is accepted', () => {
    it('issues and verifies a user token with typ at+jwt, kid, aud, kind and roles', async () => {
      const issued = await tokens.issueAccessToken({ sub: 'user-1', roles: ['member', 'admin'], kind: 'user' });
      expect(issued.expiresIn).toBe(ACCESS_TTL);
      expect(issued.exp).toBe(NOW + ACCESS_TTL);
      const [h, p] = issued.token
        .split('.')
        .slice(0, 2)
        .map((s): unknown => JSON.parse(Buffer.from(s, 'base64url').toString()));
      expect(h).toEqual({ alg: 'ES256', kid: ourKid, typ: 'at+jwt' });
      expect(p).toMatchObject({
        iss: ISS,
        aud: AUD_USER,
        sub: 'user-1',
        jti: issued.jti,
        kind: 'user',
        roles: ['member', 'admin'],
        iat: NOW,
        exp: NOW + ACCESS_TTL,
      });
      await expect(tokens.verify(issued.token, 'user')).resolves.toEqual({
        sub: 'user-1',
        roles: ['member', 'admin'],
        jti: issued.jti,
        exp: issued.exp,
        iat: NOW,
        iatMs: NOW * 1000,
        kind: 'user',
      });
    });

    it('issues device tokens with their own audience and lifetime', async () => {
      const issued = await tokens.issueAccessToken({ sub: 'device-1', kind: 'device' });
      expect(issued.expiresIn).toBe(DEVICE_TTL);
      const p = JSON.parse(Buffer.from(issued.token.split('.')[1]!, 'base64url').toString());
      expect(p).toMatchObject({ aud: AUD_DEVICE, kind: 'device', sub: 'device-1', roles: [] });
      await expect(tokens.verify(issued.token, 'device')).resolves.toMatchObject({
        sub: 'device-1',
        kind: 'device',
        roles: [],
      });
    });

    it('carries an optional session id (sid)', async () => {
      const issued = await tokens.issueAccessToken({ sub: 'user-1', kind: 'user', sid: 'family-1' });
      await expect(tokens.verify(issued.token, 'user')).resolves.toMatchObject({ sid: 'family-1' });
    });

    it('accepts a token crafted by hand with our key and valid claims (so the attacks below change one thing)', async () => {
      await expect(tokens.verify(craft(header(), claims()), 'user')).rejects.toBeDefined(); // unsigned: sanity
      await expect(tokens.verify(craft(header(), claims(), ours()), 'user')).resolves.toMatchObject({
        sub: 'user-1',
        kind: 'user',
      });
      await expect(tokens.verify(craft(header(), claims({ nbf: NOW - 5 }), ours()), 'user')).resolves.toBeDefined();
      await expect(tokens.verify(craft(header(), claims({}, 'device'), ours()), 'device')).resolves.toBeDefined();
    });

    it('allows at most 5 s of clock skew', async () => {
      await expect(tokens.verify(craft(header(), claims({ exp: NOW - 3 }), ours()), 'user')).resolves.toBeDefined();
      await expectRejected(
        tokens.verify(craft(header(), claims({ exp: NOW - 6 }), ours()), 'user'),
        'AUTH.TOKEN_EXPIRED',
      );
      expect(
        () =>
          new TokenService(keys, {
            issuer: ISS,
            userAudience: AUD_USER,
            deviceAudience: AUD_DEVICE,
            accessTokenTtlS: 1,
            deviceTokenTtlS: 1,
            clockToleranceS: 60,
          }),
      ).toThrow();
    });
  });

  describe('rejected tokens', () => {
    it('rejects the RFC 7515 Appendix A.1 HS256 example token', async () => {
      // It is a genuine, correctly signed JWS under the RFC's key: only our own key set may be trusted.
      const [h, p, s] = RFC7515_A1.split('.');
      expect(createHmac('sha256', RFC7515_A1_KEY).update(`${h}.${p}`).digest('base64url')).toBe(s);
      await expectRejected(tokens.verify(RFC7515_A1, 'user'));
      await expectRejected(tokens.verify(RFC7515_A1, 'device'));
      const hsKeys = new SigningKeys({ alg: 'HS256', hs256Secret: HS_SECRET, maxTokenLifeS: ACCESS_TTL });
      await expectRejected(serviceFor(hsKeys).verify(RFC7515_A1, 'user'));
      // The same RFC key with our claims and our kid is still not our key.
      await expectRejected(
        serviceFor(hsKeys).verify(
          craft({ alg: 'HS256', kid: 'hs256', typ: 'at+jwt' }, claims(), hs256With(RFC7515_A1_KEY)),
          'user',
        ),
      );
    });

    it.each(['none', 'None', 'NONE', 'nOnE'])('rejects alg "%s" with and without a signature', async (alg) => {
      for (const kid of [ourKid, undefined, 'hs256']) {
        const h = { alg, typ: 'at+jwt', ...(kid ? { kid } : {}) };
        await expectRejected(tokens.verify(craft(h, claims()), 'user'));
        await expectRejected(
          tokens.verify(
            craft(h, claims(), () => randomBytes(64)),
            'user',
          ),
        );
        await expectRejected(tokens.verify(craft(h, claims(), ours()), 'user'));
        await expectRejected(tokens.verify(craft(h, claims(), hs256With(HS_SECRET)), 'user'));
      }
      const hsKeys = new SigningKeys({ alg: 'HS256', hs256Secret: HS_SECRET, maxTokenLifeS: ACCESS_TTL });
      await expectRejected(serviceFor(hsKeys).verify(craft({ alg, kid: 'hs256', typ: 'at+jwt' }, claims()), 'user'));
      await expectRejected(
        serviceFor(hsKeys).verify(craft({ alg, kid: 'hs256', typ: 'at+jwt' }, claims(), hs256With(HS_SECRET)), 'user'),
      );
    });

    it('rejects HS256 tokens signed with our ES256 PUBLIC key (key confusion)', async () => {
      const pub = createPublicKey(ourPrivate);
      const jwk = pub.export({ format: 'jwk' });
      const publishedJwk = keys.jwks().keys[0]!;
      const pem = pub.export({ format: 'pem', type: 'spki' }).toString();
      const point = Buffer.concat([
        Buffer.from([4]),
        Buffer.from(jwk.x!, 'base64url'),
        Buffer.from(jwk.y!, 'base64url'),
      ]);
      const secrets: (string | Buffer)[] = [
        pem,
        pem.trim(),
        pub.export({ format: 'der', type: 'spki' }),
        JSON.stringify(jwk),
        JSON.stringify(publishedJwk),
        JSON.stringify(keys.jwks()),
        point,
        point.subarray(1),
        Buffer.from(jwk.x!, 'base64url'),
      ];
      for (const secret of secrets) {
        for (const kid of [ourKid, 'hs256']) {
          await expectRejected(
            tokens.verify(craft({ alg: 'HS256', kid, typ: 'at+jwt' }, claims(), hs256With(secret)), 'user'),
          );
        }
      }
    });

    it('rejects an expired token with AUTH.TOKEN_EXPIRED', async () => {
      await expectRejected(
        tokens.verify(craft(header(), claims({ iat: NOW - 400, exp: NOW - 100 }), ours()), 'user'),
        'AUTH.TOKEN_EXPIRED',
      );
      // A token living longer than we issue them expires at our TTL, whatever its exp says.
      await expectRejected(
        tokens.verify(craft(header(), claims({ iat: NOW - ACCESS_TTL - 60, exp: NOW + 3600 }), ours()), 'user'),
        'AUTH.TOKEN_EXPIRED',
      );
      // An issued token, checked later by a service whose clock has moved on.
      const issued = await tokens.issueAccessToken({ sub: 'user-1', kind: 'user' });
      await expectRejected(
        serviceFor(keys, () => (NOW + ACCESS_TTL + 10) * 1000).verify(issued.token, 'user'),
        'AUTH.TOKEN_EXPIRED',
      );
    });

    it('rejects a not-yet-valid token (nbf) and one issued in the future (iat)', async () => {
      await expectRejected(tokens.verify(craft(header(), claims({ nbf: NOW + 60 }), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header(), claims({ iat: NOW + 60, exp: NOW + 600 }), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header(), claims({ nbf: 'soon' }), ours()), 'user'));
    });

    it('rejects a wrong issuer', async () => {
      for (const iss of ['joe', `${ISS} `, ISS.toUpperCase(), 42, [ISS]]) {
        await expectRejected(tokens.verify(craft(header(), claims({ iss }), ours()), 'user'));
      }
    });

    it('rejects a wrong audience', async () => {
      for (const aud of ['other-api', AUD_DEVICE, [AUD_USER, AUD_DEVICE], [AUD_USER], [], 7]) {
        await expectRejected(tokens.verify(craft(header(), claims({ aud }), ours()), 'user'));
      }
    });

    it.each(['exp', 'sub', 'jti', 'iat', 'iss', 'aud', 'kind', 'roles'])('rejects a token without %s', async (name) => {
      await expectRejected(tokens.verify(craft(header(), without(name), ours()), 'user'));
    });

    it('rejects claims of the wrong type', async () => {
      for (const over of [
        { sub: '' },
        { sub: 12 },
        { jti: '' },
        { exp: String(NOW + 300) },
        { iat: NOW - 10.5 },
        { roles: 'admin' },
        { roles: [1] },
        { sid: 5 },
      ]) {
        await expectRejected(tokens.verify(craft(header(), claims(over), ours()), 'user'));
      }
    });

    it('rejects a tampered payload that keeps the original signature', async () => {
      const issued = await tokens.issueAccessToken({ sub: 'user-1', roles: ['member'], kind: 'user' });
      const [h, p, s] = issued.token.split('.');
      const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
      for (const change of [
        { roles: ['member', 'admin'] },
        { sub: 'user-2' },
        { exp: payload.exp + 3600 },
        { kind: 'device', aud: AUD_DEVICE },
      ]) {
        const forged = `${h}.${b64({ ...payload, ...change })}.${s}`;
        await expectRejected(tokens.verify(forged, 'user'));
        await expectRejected(tokens.verify(forged, 'device'));
      }
      // Flipping one signature bit is also fatal.
      const sig = Buffer.from(s!, 'base64url');
      sig[10] = sig[10]! ^ 1;
      await expectRejected(tokens.verify(`${h}.${p}.${sig.toString('base64url')}`, 'user'));
    });

    it('rejects embedded jwk, jku, x5u and x5c headers (attacker key embedded, and even with our own signature)', async () => {
      const evil = es256With(attacker.privateKey);
      const embeds: Record<string, unknown>[] = [
        { jwk: attacker.jwk },
        { jku: 'https://attacker.example/jwks.json' },
        { x5u: 'https://attacker.example/cert.pem' },
        { x5c: [randomBytes(300).toString('base64')] },
        { x5t: randomBytes(20).toString('base64url') },
      ];
      for (const embed of embeds) {
        await expectRejected(tokens.verify(craft(header({ ...embed, kid: attacker.kid }), claims(), evil), 'user'));
        await expectRejected(
          tokens.verify(
            craft(header({ ...embed, kid: await calculateJwkThumbprint(attacker.jwk) }), claims(), evil),
            'user',
          ),
        );
        await expectRejected(tokens.verify(craft(header(embed), claims(), evil), 'user'));
        const noKid: Record<string, unknown> = header(embed);
        delete noKid.kid;
        await expectRejected(tokens.verify(craft(noKid, claims(), evil), 'user'));
        // The header itself is refused: a genuine signature does not save it.
        await expectRejected(tokens.verify(craft(header(embed), claims(), ours()), 'user'));
      }
      // Our own public key embedded, our own signature: still refused.
      await expectRejected(tokens.verify(craft(header({ jwk: keys.jwks().keys[0] }), claims(), ours()), 'user'));
    });

    it('rejects a crit header and other unknown header parameters', async () => {
      await expectRejected(tokens.verify(craft(header({ crit: ['exp'] }), claims(), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header({ crit: ['b64'], b64: false }), claims(), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header({ crit: [] }), claims(), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header({ zip: 'DEF' }), claims(), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header({ typ: 'JWT' }), claims(), ours()), 'user'));
      const noTyp: Record<string, unknown> = header();
      delete noTyp.typ;
      await expectRejected(tokens.verify(craft(noTyp, claims(), ours()), 'user'));
    });

    it('rejects an unknown or missing kid', async () => {
      await expectRejected(
        tokens.verify(craft(header({ kid: attacker.kid }), claims(), es256With(attacker.privateKey)), 'user'),
      );
      for (const kid of [
        'unknown',
        '',
        '__proto__',
        'constructor',
        'hs256',
        42,
        null,
        ourKid.toLowerCase() === ourKid ? `${ourKid}x` : ourKid.toLowerCase(),
      ]) {
        await expectRejected(tokens.verify(craft(header({ kid }), claims(), ours()), 'user'));
      }
      const noKid: Record<string, unknown> = header();
      delete noKid.kid;
      await expectRejected(tokens.verify(craft(noKid, claims(), ours()), 'user'));
    });

    it('rejects a payload that is a JSON array, string, number or null', async () => {
      for (const raw of ['[1,2,3]', JSON.stringify([claims()]), '"user-1"', '42', 'null', 'true', '{"sub":']) {
        await expectRejected(tokens.verify(craft(header(), raw, ours(), true), 'user'));
      }
    });

    it('rejects a device token where a user token is expected, and vice versa', async () => {
      const device = await tokens.issueAccessToken({ sub: 'device-1', kind: 'device' });
      const user = await tokens.issueAccessToken({ sub: 'user-1', kind: 'user', roles: ['admin'] });
      await expectRejected(tokens.verify(device.token, 'user'));
      await expectRejected(tokens.verify(user.token, 'device'));
      // kind and audience must agree with each other and with what is expected.
      await expectRejected(tokens.verify(craft(header(), claims({ kind: 'device' }), ours()), 'user'));
      await expectRejected(tokens.verify(craft(header(), claims({ aud: AUD_USER }, 'device'), ours()), 'device'));
      await expectRejected(tokens.verify(craft(header(), claims({ kind: 'refresh' }), ours()), 'user'));
    });

    it('rejects a refresh token and other non-JWT strings', async () => {
      const refreshLike = randomBytes(32).toString('base64url');
      const issued = await tokens.issueAccessToken({ sub: 'user-1', kind: 'user' });
      const parts = issued.token.split('.');
      for (const t of [
        refreshLike,
        '',
        'a.b',
        'a.b.c',
        `${issued.token}.x.y`,
        `${parts[0]}..${parts[2]}`,
        ` ${issued.token}`,
        `${issued.token}=`,
        'x'.repeat(10_000),
        `${issued.token}${'A'.repeat(9000)}`,
      ]) {
        await expectRejected(tokens.verify(t, 'user'));
      }
      await expectRejected(tokens.verify(undefined as unknown as string, 'user'));
      await expectRejected(tokens.verify(issued.token, 'admin' as TokenKind));
    });
  });

  describe('signing keys, rotation and the JWKS', () => {
    it('generates the key file at first start, mode 600 in a private secrets dir, and reuses it', () => {
      const dataDir = join(root, 'first-start');
      const file = join(dataDir, 'secrets', KEY_FILE_NAME);
      expect(existsSync(file)).toBe(false);
      const a = new SigningKeys({ alg: 'ES256', dataDir, maxTokenLifeS: ACCESS_TTL });
      expect(a.file).toBe(file);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
      const stored = JSON.parse(readFileSync(file, 'utf8'));
      expect(stored.version).toBe(1);
      expect(stored.keys).toHaveLength(1);
      expect(stored.keys[0]).toMatchObject({ kid: a.signingKey().kid, alg: 'ES256', jwk: { kty: 'EC', crv: 'P-256' } });
      expect(typeof stored.keys[0].jwk.d).toBe('string');
      const b = new SigningKeys({ alg: 'ES256', dataDir, maxTokenLifeS: ACCESS_TTL });
      expect(b.signingKey().kid).toBe(a.signingKey().kid);
    });

    it('serves only public keys in the JWKS, with the RFC 7638 thumbprint as kid, usable by any verifier', async () => {
      const jwks = keys.jwks();
      expect(jwks.keys).toHaveLength(1);
      const [k] = jwks.keys;
      expect(Object.keys(k!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: ourKid });
      expect(k).not.toHaveProperty('d');
      const privateD = ourPrivate.export({ format: 'jwk' }).d!;
      expect(JSON.stringify(jwks)).not.toContain(privateD);
      expect(await calculateJwkThumbprint({ kty: k!.kty, crv: k!.crv, x: k!.x, y: k!.y })).toBe(ourKid);
      // Another service verifies with nothing but the JWKS.
      const issued = await tokens.issueAccessToken({ sub: 'user-1', kind: 'user' });
      const { payload } = await jwtVerify(issued.token, createLocalJWKSet(jwks), {
        issuer: ISS,
        audience: AUD_USER,
        algorithms: ['ES256'],
        currentDate: new Date(clock()),
      });
      expect(payload.sub).toBe('user-1');
    });

    it('remembers a verified token only while it is valid: not past exp, not as the other kind', async () => {
      let now = NOW * 1000;
      const svc = serviceFor(keys, () => now);
      const issued = await svc.issueAccessToken({ sub: 'user-1', kind: 'user' });
      await expect(svc.verify(issued.token, 'user')).resolves.toMatchObject({ jti: issued.jti });
      await expect(svc.verify(issued.token, 'user')).resolves.toMatchObject({ jti: issued.jti });
      await expectRejected(svc.verify(issued.token, 'device'));
      now = (issued.exp + 10) * 1000;
      await expectRejected(svc.verify(issued.token, 'user'), 'AUTH.TOKEN_EXPIRED');
    });

    it('keeps verifying tokens of a rotated key until it is pruned; a pruned key verifies nothing', async () => {
      const dataDir = join(root, 'rotation');
      let now = NOW * 1000;
      const k = new SigningKeys({ alg: 'ES256', dataDir, maxTokenLifeS: ACCESS_TTL, now: () => now });
      const svc = serviceFor(k);
      const oldKid = k.signingKey().kid;
      const oldToken = await svc.issueAccessToken({ sub: 'user-1', kind: 'user' });

      now += 1000;
      const newKid = k.rotate();
      expect(newKid).not.toBe(oldKid);
      expect(k.signingKey().kid).toBe(newKid);
      expect(k.jwks().keys.map((j) => j.kid)).toEqual([oldKid, newKid]);
      expect(k.jwks().keys.every((j) => !('d' in j))).toBe(true);
      const newToken = await svc.issueAccessToken({ sub: 'user-1', kind: 'user' });
      expect(JSON.parse(Buffer.from(newToken.token.split('.')[0]!, 'base64url').toString()).kid).toBe(newKid);
      await expect(svc.verify(oldToken.token, 'user')).resolves.toMatchObject({ jti: oldToken.jti });
      await expect(svc.verify(newToken.token, 'user')).resolves.toMatchObject({ jti: newToken.jti });

      // Another process reading the same key file sees both keys.
      const other = serviceFor(new SigningKeys({ alg: 'ES256', dataDir, maxTokenLifeS: ACCESS_TTL }));
      await expect(other.verify(oldToken.token, 'user')).resolves.toBeDefined();
      await expect(other.verify(newToken.token, 'user')).resolves.toBeDefined();

      // Too early to prune: tokens of the old key may still be alive.
      expect(k.prune(now + (ACCESS_TTL - 1) * 1000)).toEqual([]);
      await expect(svc.verify(oldToken.token, 'user')).resolves.toBeDefined();

      // After the longest token life (+ tolerance) the old key goes, from memory and from the file.
      expect(k.prune(now + (ACCESS_TTL + 10) * 1000)).toEqual([oldKid]);
      expect(k.kids()).toEqual([newKid]);
      await expectRejected(svc.verify(oldToken.token, 'user'));
      await expect(svc.verify(newToken.token, 'user')).resolves.toBeDefined();
      const file = join(dataDir, 'secrets', KEY_FILE_NAME);
      expect(JSON.parse(readFileSync(file, 'utf8')).keys.map((x: { kid: string }) => x.kid)).toEqual([newKid]);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const reloaded = serviceFor(new SigningKeys({ alg: 'ES256', dataDir, maxTokenLifeS: ACCESS_TTL }));
      await expectRejected(reloaded.verify(oldToken.token, 'user'));
      // The signing key itself is never pruned.
      expect(k.prune(now + 365 * 86_400_000)).toEqual([]);
    });

    it('uses a configured key set without writing anything, and refuses to rotate it', async () => {
      const keyFile = readFileSync(keys.file!, 'utf8');
      const configured = new SigningKeys({ alg: 'ES256', configuredKeys: keyFile, maxTokenLifeS: ACCESS_TTL });
      expect(configured.file).toBeUndefined();
      expect(configured.signingKey().kid).toBe(ourKid);
      const issued = await serviceFor(configured).issueAccessToken({ sub: 'user-1', kind: 'user' });
      await expect(tokens.verify(issued.token, 'user')).resolves.toBeDefined();
      expect(() => configured.rotate()).toThrow(/configured/);
      // A key set whose public half does not match its private key is refused.
      const broken = JSON.parse(keyFile);
      broken.keys[0].jwk.x = attacker.jwk.x;
      expect(
        () => new SigningKeys({ alg: 'ES256', configuredKeys: JSON.stringify(broken), maxTokenLifeS: ACCESS_TTL }),
      ).toThrow();
      expect(
        () => new SigningKeys({ alg: 'ES256', configuredKeys: '{"version":1,"keys":[]}', maxTokenLifeS: ACCESS_TTL }),
      ).toThrow();
    });
  });

  describe('the verified-token cache (the HTTP strategies, a real revocation mirror)', () => {
    const prefix = `test:identity-tokens:${randomBytes(4).toString('hex')}:`;
    let redis: Redis;
    let list: RevocationList;
    let mirror: RevocationMirror;

    beforeAll(async () => {
      redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: 2 });
      list = new RevocationList(redis, { keyPrefix: prefix, maxTokenLifeS: ACCESS_TTL });
      mirror = new RevocationMirror({
        list,
        redisUrl: testRedisUrl(),
        maxStalenessMs: 1000,
        log: { info: () => undefined, warn: () => undefined },
      });
      await mirror.start();
    });

    afterAll(async () => {
      mirror.close();
      const found = await redis.keys(`${prefix}*`);
      if (found.length) await redis.del(...found);
      await redis.quit();
    });

    /** An app instance's user strategy with its own token cache, and what the guard calls. */
    const app = () => {
      const deps: StrategyDeps = { tokens: serviceFor(keys, Date.now), revocationMirror: mirror };
      const strategy = new UserJwtStrategy(deps);
      // A new header string per request, as the HTTP parser makes one.
      const request = (authorization: string) => ({ headers: { authorization: [authorization].join('') } });
      return {
        deps,
        /** What the AccessGuard does: the recalled principal at once, else the strategy. */
        async authenticate(authorization: string): Promise<Principal> {
          const req = request(authorization);
          const known = recalledPrincipal(deps, req, 'user');
          if (known) return known;
          const outcome = await runStrategy<Principal>(strategy, req);
          if ('failure' in outcome) throw outcome.failure;
          return outcome.user;
        },
        recalled: (authorization: string) => recalledPrincipal(deps, request(authorization), 'user'),
      };
    };

    it('verifies in full, and refuses, a token that ends with the same 24 characters as a remembered one', async () => {
      const a = app();
      const issued = await a.deps.tokens.issueAccessToken({ sub: 'user-1', roles: ['member'], kind: 'user' });
      await expect(a.authenticate(`Bearer ${issued.token}`)).resolves.toMatchObject({ id: 'user-1' });
      expect(a.recalled(`Bearer ${issued.token}`)).toMatchObject({ id: 'user-1', jti: issued.jti });

      const [h, p, s] = issued.token.split('.');
      const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
      for (const change of [{ roles: ['member', 'admin'] }, { sub: 'user-2' }, { exp: payload.exp + 3600 }]) {
        const forged = `${h}.${b64({ ...payload, ...change })}.${s}`;
        expect(forged.slice(-24)).toBe(issued.token.slice(-24));
        expect(a.recalled(`Bearer ${forged}`)).toBeUndefined();
        await expectRejected(a.authenticate(`Bearer ${forged}`));
        await expectRejected(a.deps.tokens.verify(forged, 'user'));
      }
      // The same token under another scheme or with extra spaces is not the header that was verified.
      for (const header of [`Basic ${issued.token}`, `Bearer  ${issued.token}`, `bearer ${issued.token}`]) {
        expect(a.recalled(header)).toBeUndefined();
        await expectRejected(a.authenticate(header), 'AUTH.MISSING_TOKEN');
      }
      // The genuine token is still remembered, and still answers.
      expect(a.recalled(`Bearer ${issued.token}`)).toMatchObject({ id: 'user-1', roles: ['member'] });
    });

    it('answers a repeated request from the cache (one verification, one frozen principal) and still refuses it once revoked', async () => {
      const a = app();
      const keyLookups = jest.spyOn(a.deps.tokens, 'keyFor');
      const byToken = await a.deps.tokens.issueAccessToken({ sub: `user-${randomUUID()}`, kind: 'user' });
      const bySession = await a.deps.tokens.issueAccessToken({
        sub: `user-${randomUUID()}`,
        kind: 'user',
        sid: randomUUID(),
      });
      const byUser = await a.deps.tokens.issueAccessToken({ sub: `user-${randomUUID()}`, kind: 'user' });
      const all = [byToken, bySession, byUser];

      for (const issued of all) {
        const first = await a.authenticate(`Bearer ${issued.token}`);
        expect(first).toMatchObject({ jti: issued.jti });
        for (let i = 0; i < 3; i++) {
          // The guard's path and the strategy's path give the very same principal, frozen.
          expect(a.recalled(`Bearer ${issued.token}`)).toBe(first);
          await expect(a.authenticate(`Bearer ${issued.token}`)).resolves.toBe(first);
        }
        expect(Object.isFrozen(first)).toBe(true);
        expect(Object.isFrozen(first.roles)).toBe(true);
      }
      // Each token was verified (its key looked up) once.
      expect(keyLookups).toHaveBeenCalledTimes(all.length);

      // Revoked while remembered: the token, its session, its user.
      await list.revokeToken(byToken.jti, byToken.exp);
      const session = a.recalled(`Bearer ${bySession.token}`)!.sid!;
      await list.revokeFamily(session);
      await list.revokeSubject(a.recalled(`Bearer ${byUser.token}`)!.id);
      for (const issued of all) {
        expect(a.recalled(`Bearer ${issued.token}`)).toBeUndefined();
        await expectRejected(a.authenticate(`Bearer ${issued.token}`), 'AUTH.TOKEN_REVOKED');
      }

      // A mirror that cannot vouch for being current: 503, even for a remembered token.
      const fresh = await a.deps.tokens.issueAccessToken({ sub: `user-${randomUUID()}`, kind: 'user' });
      await a.authenticate(`Bearer ${fresh.token}`);
      mirror.close();
      expect(a.recalled(`Bearer ${fresh.token}`)).toBeUndefined();
      await expect(a.authenticate(`Bearer ${fresh.token}`)).rejects.toMatchObject({
        code: 'AUTH.REVOCATION_UNAVAILABLE',
      });
      keyLookups.mockRestore();
    });
  });

  describe('HS256 mode', () => {
    let hsKeys: SigningKeys;
    let hs: TokenService;

    beforeAll(() => {
      hsKeys = new SigningKeys({ alg: 'HS256', hs256Secret: HS_SECRET, maxTokenLifeS: ACCESS_TTL });
      hs = serviceFor(hsKeys);
    });

    it('signs and verifies with kid hs256 and serves an empty JWKS', async () => {
      expect(hsKeys.jwks()).toEqual({ keys: [] });
      const issued = await hs.issueAccessToken({ sub: 'user-1', kind: 'user', roles: ['member'] });
      expect(JSON.parse(Buffer.from(issued.token.split('.')[0]!, 'base64url').toString())).toEqual({
        alg: 'HS256',
        kid: 'hs256',
        typ: 'at+jwt',
      });
      await expect(hs.verify(issued.token, 'user')).resolves.toMatchObject({ sub: 'user-1', roles: ['member'] });
      const device = await hs.issueAccessToken({ sub: 'device-1', kind: 'device' });
      await expect(hs.verify(device.token, 'device')).resolves.toBeDefined();
      await expectRejected(hs.verify(device.token, 'user'));
      expect(() => hsKeys.rotate()).toThrow();
    });

    it('rejects ES256 tokens, and ES256 mode rejects HS256 tokens', async () => {
      const es = await tokens.issueAccessToken({ sub: 'user-1', kind: 'user' });
      await expectRejected(hs.verify(es.token, 'user'));
      // An ES256 signature under the HS key's kid: the algorithm is pinned to the key.
      await expectRejected(hs.verify(craft({ alg: 'ES256', kid: 'hs256', typ: 'at+jwt' }, claims(), ours()), 'user'));
      const hsToken = await hs.issueAccessToken({ sub: 'user-1', kind: 'user' });
      await expectRejected(tokens.verify(hsToken.token, 'user'));
      // Crafted HS256 tokens: with our secret (control) and with another one.
      await expect(
        hs.verify(craft({ alg: 'HS256', kid: 'hs256', typ: 'at+jwt' }, claims(), hs256With(HS_SECRET)), 'user'),
      ).resolves.toBeDefined();
      await expectRejected(
        hs.verify(craft({ alg: 'HS256', kid: 'hs256', typ: 'at+jwt' }, claims(), hs256With(`${HS_SECRET}x`)), 'user'),
      );
      await expectRejected(
        hs.verify(craft({ alg: 'HS384', kid: 'hs256', typ: 'at+jwt' }, claims(), hs256With(HS_SECRET)), 'user'),
      );
      await expectRejected(
        hs.verify(craft({ alg: 'hs256', kid: 'hs256', typ: 'at+jwt' }, claims(), hs256With(HS_SECRET)), 'user'),
      );
    });

    it('refuses a secret shorter than 32 bytes', () => {
      expect(() => new SigningKeys({ alg: 'HS256', hs256Secret: 'x'.repeat(31), maxTokenLifeS: ACCESS_TTL })).toThrow(
        /32 bytes/,
      );
      expect(() => new SigningKeys({ alg: 'HS256', maxTokenLifeS: ACCESS_TTL })).toThrow(/32 bytes/);
    });
  });
});
