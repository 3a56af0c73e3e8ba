import { randomUUID, sign as cryptoSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import passport from 'passport';
import { startTestApp, type HttpResult, type TestApp } from '../support/app';
import { ownerWithDevice, type OwnedDevice } from '../support/telemetry';
import { IdentityServices } from '../../src/identity/identity.services';
import { AccessTokenStrategy } from '../../src/identity/auth/access-token-strategy';
import { DeviceJwtStrategy, UserJwtStrategy } from '../../src/identity/jwt.strategies';

/**
 * HTTP authentication goes through @nestjs/passport and passport-jwt. passport-jwt
 * (jsonwebtoken) verifies the signature, algorithm, iss, aud and exp/nbf when present;
 * it does NOT refuse: unknown header parameters, a missing or wrong `typ`, a token
 * without `exp`, a non-object payload, an `aud` list holding ours, an `iat` in the
 * future, a user token whose `kind` says device. The strategy does; each case here is a
 * token forged with the app's own signing key (so only the one property is wrong),
 * sent over HTTP, next to a control token built the same way that IS accepted.
 */
let app: TestApp;
let identity: IdentityServices;
let signingKey: { kid: string; key: KeyObject };
let user: { userId: string; authorization: string };
let device: OwnedDevice;

const password = 'a perfectly long passphrase 9';
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** A compact JWS with our ES256 key (or `sign: false`: no signature); header and payload as JSON (a string payload is a JSON string). */
function forge(header: Record<string, unknown>, payload: unknown, sign = true): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = sign
    ? cryptoSign('sha256', Buffer.from(input), { key: signingKey.key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
    : '';
  return `${input}.${sig}`;
}
const now = () => Math.floor(Date.now() / 1000);
const header = (over: Record<string, unknown> = {}) => ({ alg: 'ES256', kid: signingKey.kid, typ: 'at+jwt', ...over });
function claims(over: Record<string, unknown> = {}, kind: 'user' | 'device' = 'user'): Record<string, unknown> {
  const c = app.platform.config;
  return {
    iss: c.JWT_ISSUER,
    aud: kind === 'user' ? c.JWT_AUDIENCE : c.JWT_DEVICE_AUDIENCE,
    sub: kind === 'user' ? user.userId : device.deviceId,
    jti: randomUUID(),
    iat: now() - 5,
    exp: now() + 300,
    kind,
    roles: [],
    ...over,
  };
}
const without = (name: string, kind: 'user' | 'device' = 'user') => {
  const c = claims({}, kind);
  delete c[name];
  return c;
};
const me = (token: string) => app.http('GET', '/users/me', undefined, { authorization: `Bearer ${token}` });
const deviceMe = (token: string) =>
  app.http('GET', '/devices/me/identity', undefined, { authorization: `Bearer ${token}` });

function expectRefused(r: HttpResult, code = 'AUTH.INVALID_TOKEN'): void {
  expect({ status: r.status, code: r.body?.code, type: r.body?.type }).toEqual({
    status: 401,
    code,
    type: `urn:problem:${code}`,
  });
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.headers.get('www-authenticate')).toBe('Bearer');
}

beforeAll(async () => {
  app = await startTestApp();
  identity = app.app.get(IdentityServices);
  const k = identity.keys.signingKey();
  signingKey = { kid: k.kid, key: k.key };
  const email = `passport-${randomUUID().slice(0, 8)}@example.test`;
  const s = await app.http('POST', '/auth/signup', { email, password, name: 'Pass Port' });
  expect(s.status).toBe(201);
  user = { userId: s.body.userId, authorization: (await app.login(email, password)).authorization };
  device = await ownerWithDevice(app.http);
});
afterAll(async () => {
  await app?.stop();
});

describe('the strategies', () => {
  it('passport knows jwt and device-jwt: passport-jwt strategies of this app', () => {
    const registry = passport as unknown as { _strategy(name: string): unknown };
    expect(registry._strategy('jwt')).toBeInstanceOf(UserJwtStrategy);
    expect(registry._strategy('device-jwt')).toBeInstanceOf(DeviceJwtStrategy);
    expect(identity.strategies.user).toBeInstanceOf(AccessTokenStrategy);
    expect(identity.strategies.user.name).toBe('jwt');
    expect(identity.strategies.device.name).toBe('device-jwt');
  });
});

describe('controls: forged with our key, every property right, accepted', () => {
  it('a user token on GET /users/me and a device token on GET /devices/me/identity', async () => {
    const u = await me(forge(header(), claims()));
    expect(u.status).toBe(200);
    expect(u.body.userId).toBe(user.userId);
    const d = await deviceMe(forge(header(), claims({}, 'device')));
    expect(d.status).toBe(200);
    expect(d.body).toEqual({ deviceId: device.deviceId, kind: 'device' });
  });
});

describe('what passport-jwt leaves to the strategy, refused over HTTP', () => {
  it('a protected header with anything but alg, kid and typ (embedded key, key URL, crit, b64, zip)', async () => {
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    for (const extra of [
      { jwk: attacker },
      { jku: 'https://attacker.example/jwks.json' },
      { x5u: 'https://attacker.example/cert.pem' },
      { x5c: ['MIIB'] },
      { crit: ['exp'] },
      { crit: ['b64'], b64: false },
      { zip: 'DEF' },
      { cty: 'JWT' },
    ]) {
      expectRefused(await me(forge(header(extra), claims())));
    }
  });

  it('typ missing or other than at+jwt', async () => {
    const noTyp: Record<string, unknown> = header();
    delete noTyp.typ;
    expectRefused(await me(forge(noTyp, claims())));
    for (const typ of ['JWT', 'jwt', 'at+JWT', 'application/at+jwt', ''])
      expectRefused(await me(forge(header({ typ }), claims())));
  });

  it('a token without exp (jsonwebtoken accepts it), or with a fractional exp', async () => {
    expectRefused(await me(forge(header(), without('exp'))));
    expectRefused(await deviceMe(forge(header(), without('exp', 'device'))));
    expectRefused(await me(forge(header(), claims({ exp: now() + 300.5 }))));
  });

  it('a token without iat, or with iat in the future', async () => {
    expectRefused(await me(forge(header(), without('iat'))));
    expectRefused(await me(forge(header(), claims({ iat: now() + 60 }))));
  });

  it('a payload that is not a JSON object (a list holding valid claims, a string, a number, null)', async () => {
    for (const payload of [[claims()], JSON.stringify(claims()), 42, null, true])
      expectRefused(await me(forge(header(), payload)));
  });

  it('an aud list holding ours (jsonwebtoken accepts any match)', async () => {
    const c = app.platform.config;
    expectRefused(await me(forge(header(), claims({ aud: [c.JWT_AUDIENCE] }))));
    expectRefused(await me(forge(header(), claims({ aud: [c.JWT_AUDIENCE, c.JWT_DEVICE_AUDIENCE] }))));
  });

  it('kind, sub, jti and roles missing or of the wrong type', async () => {
    for (const name of ['kind', 'sub', 'jti', 'roles']) expectRefused(await me(forge(header(), without(name))));
    for (const over of [{ kind: 'device' }, { kind: 'refresh' }, { sub: '' }, { jti: 7 }, { roles: 'admin' }])
      expectRefused(await me(forge(header(), claims(over))));
  });

  it('user and device tokens stay apart: audience and kind must both be the route’s', async () => {
    const c = app.platform.config;
    expectRefused(await me(forge(header(), claims({}, 'device'))));
    expectRefused(await deviceMe(forge(header(), claims())));
    // aud of one kind, kind of the other: refused on both routes.
    expectRefused(await me(forge(header(), claims({ kind: 'device' }))));
    expectRefused(await deviceMe(forge(header(), claims({ aud: c.JWT_AUDIENCE }, 'device'))));
    // Real tokens too.
    expectRefused(await deviceMe(user.authorization.slice(7)));
    expectRefused(await me(device.token));
  });
});

describe('what passport-jwt checks with the options the platform pins', () => {
  it('the key comes from our key set by kid: unknown, missing or foreign kid, a foreign key', async () => {
    for (const kid of ['unknown', '', 'hs256', 42]) expectRefused(await me(forge(header({ kid }), claims())));
    const noKid: Record<string, unknown> = header();
    delete noKid.kid;
    expectRefused(await me(forge(noKid, claims())));
    const foreign = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const input = `${b64(header())}.${b64(claims())}`;
    const sig = cryptoSign('sha256', Buffer.from(input), { key: foreign, dsaEncoding: 'ieee-p1363' });
    expectRefused(await me(`${input}.${sig.toString('base64url')}`));
  });

  it('the algorithm is pinned: alg none (signed or not) and HS256 are refused', async () => {
    for (const alg of ['none', 'HS256', 'ES384']) {
      expectRefused(await me(forge(header({ alg }), claims(), false)));
      expectRefused(await me(forge(header({ alg }), claims())));
    }
  });

  it('issuer and audience are pinned; exp and nbf are enforced (expiry as AUTH.TOKEN_EXPIRED)', async () => {
    expectRefused(await me(forge(header(), claims({ iss: 'someone-else' }))));
    expectRefused(await me(forge(header(), claims({ aud: 'another-api' }))));
    expectRefused(await me(forge(header(), claims({ nbf: now() + 120 }))));
    expectRefused(await me(forge(header(), claims({ iat: now() - 400, exp: now() - 60 }))), 'AUTH.TOKEN_EXPIRED');
    // Older than the lifetime we issue tokens with, whatever its exp says.
    const ttl = app.platform.config.ACCESS_TOKEN_TTL_S;
    expectRefused(
      await me(forge(header(), claims({ iat: now() - ttl - 60, exp: now() + 3600 }))),
      'AUTH.TOKEN_EXPIRED',
    );
  });

  it('a tampered payload under a genuine signature', async () => {
    const [h, p, s] = user.authorization.slice(7).split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    expectRefused(await me(`${h}.${b64({ ...payload, roles: ['admin'] })}.${s}`));
  });
});

describe('the header, before any token is parsed', () => {
  it('missing, another scheme, or not one token: 401 AUTH.MISSING_TOKEN', async () => {
    const token = forge(header(), claims());
    for (const authorization of [
      undefined,
      `Basic ${token}`,
      `bearer ${token}`,
      `Bearer  ${token}`,
      `Bearer ${token} x`,
    ])
      expectRefused(
        await app.http('GET', '/users/me', undefined, authorization === undefined ? {} : { authorization }),
        'AUTH.MISSING_TOKEN',
      );
  });

  it('an oversized Authorization header is a 400 naming the header', async () => {
    const r = await app.http('GET', '/users/me', undefined, { authorization: `Bearer ${'a'.repeat(5000)}` });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'PLATFORM.INVALID_HEADER', errors: [{ field: 'Authorization' }] });
  });
});

describe('after verification, on every request (also for a token verified a moment ago)', () => {
  it('revocation: a logged-out token is refused with AUTH.TOKEN_REVOKED although its signature is fine', async () => {
    const email = `revoked-${randomUUID().slice(0, 8)}@example.test`;
    expect((await app.http('POST', '/auth/signup', { email, password, name: 'Rev Oked' })).status).toBe(201);
    const s = await app.login(email, password);
    expect((await me(s.accessToken)).status).toBe(200); // verified, and remembered as verified
    expect((await app.http('POST', '/auth/logout', {}, { authorization: s.authorization })).status).toBe(204);
    expectRefused(await me(s.accessToken), 'AUTH.TOKEN_REVOKED');
  });

  it('a disabled user: the forged-but-valid token of that user is refused', async () => {
    const email = `disabled-${randomUUID().slice(0, 8)}@example.test`;
    const s = await app.http('POST', '/auth/signup', { email, password, name: 'Dis Abled' });
    const token = forge(header(), claims({ sub: s.body.userId, iat: now() - 2 }));
    expect((await me(token)).status).toBe(200);
    const off = await app.http('POST', `/admin/users/${s.body.userId}/disable`, undefined, await app.adminAuth());
    expect(off.status).toBeLessThan(300);
    expectRefused(await me(token), 'AUTH.TOKEN_REVOKED');
  });

  it('roles: a plain user on an admin route gets 403 AUTH.FORBIDDEN', async () => {
    const r = await app.http('GET', '/admin/users', undefined, { authorization: user.authorization });
    expect(r).toMatchObject({ status: 403, body: { code: 'AUTH.FORBIDDEN' } });
  });
});

describe('the Authenticator port (POST /commands/*) runs the same strategies', () => {
  it('accepts the control token and refuses the same forgeries', async () => {
    const send = (token: string) =>
      app.http('POST', '/commands/RegisterDevice', { name: 'via commands' }, { authorization: `Bearer ${token}` });
    const ok = await send(forge(header(), claims()));
    expect(ok.status).toBeLessThan(300);
    expectRefused(await send(forge(header(), without('exp'))));
    expectRefused(await send(forge(header({ jku: 'https://attacker.example/' }), claims())));
    expectRefused(await send(forge(header({ typ: 'JWT' }), claims())));
    expectRefused(await send(forge(header(), [claims()])));
    expectRefused(await send(device.token));
  });
});

describe('two app instances in one process (passport has one registry per process)', () => {
  it('each answers with its own key set and Redis', async () => {
    const other = await startTestApp({ env: { JWT_ALG: 'HS256', JWT_HS256_SECRET: 'y'.repeat(40) } });
    try {
      // The other instance registered its strategies last; this one still verifies with its own keys.
      expect((await me(forge(header(), claims()))).status).toBe(200);
      const otherToken = (await other.adminAuth()).authorization;
      expect((await other.http('GET', '/users/me', undefined, { authorization: otherToken })).status).toBe(200);
      expectRefused(await app.http('GET', '/users/me', undefined, { authorization: otherToken }));
      expectRefused(await other.http('GET', '/users/me', undefined, { authorization: user.authorization }));
    } finally {
      await other.stop();
    }
    expect((await me(forge(header(), claims()))).status).toBe(200);
  });
});
