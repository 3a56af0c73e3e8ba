import { randomUUID } from 'node:crypto';
import { startTestApp, type TestApp } from '../support/app';

/**
 * Login sessions (refresh families) over HTTP, as an attacker holding old
 * tokens would try them (issue 9): logout ends every access token of the
 * session, and a replayed refresh token ends that one session, once.
 */
const PASSWORD = 'a perfectly long passphrase 9';
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp({ env: { MQTT_ENABLED: 'false' } });
});
afterAll(async () => {
  await app.stop();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const me = async (token: string) => (await app.http('GET', '/users/me', undefined, bearer(token))).status;

interface Tokens {
  accessToken: string;
  refreshToken: string;
}

async function user(): Promise<string> {
  const email = `sessions-${randomUUID().slice(0, 8)}@example.test`;
  expect((await app.http('POST', '/auth/signup', { email, password: PASSWORD, name: 'Session' })).status).toBe(201);
  return email;
}

async function login(email: string): Promise<Tokens> {
  const r = await app.http('POST', '/auth/login', { email, password: PASSWORD });
  expect(r.status).toBe(200);
  return r.body as Tokens;
}

async function refresh(refreshToken: string): Promise<Tokens> {
  const r = await app.http('POST', '/auth/refresh', { refreshToken });
  expect(r.status).toBe(200);
  return r.body as Tokens;
}

describe('logout', () => {
  it('ends every access token of the session (its refresh family), not only the one presented', async () => {
    const email = await user();
    const first = await login(email);
    const second = await refresh(first.refreshToken);
    const third = await refresh(second.refreshToken);
    const other = await login(email);
    expect((await app.http('POST', '/auth/logout', {}, bearer(third.accessToken))).status).toBe(204);
    for (const t of [first, second, third]) {
      expect((await app.http('GET', '/users/me', undefined, bearer(t.accessToken))).body).toMatchObject({
        status: 401,
        code: 'AUTH.TOKEN_REVOKED',
      });
    }
    expect((await app.http('POST', '/auth/refresh', { refreshToken: third.refreshToken })).status).toBe(401);
    expect(await me(other.accessToken)).toBe(200);
  });

  it("with the refresh token of another of the user's sessions, ends that session's access tokens too", async () => {
    const email = await user();
    const here = await login(email);
    const there = await login(email);
    const thereLater = await refresh(there.refreshToken);
    expect(
      (await app.http('POST', '/auth/logout', { refreshToken: thereLater.refreshToken }, bearer(here.accessToken)))
        .status,
    ).toBe(204);
    expect(await me(there.accessToken)).toBe(401);
    expect(await me(thereLater.accessToken)).toBe(401);
    expect((await app.http('POST', '/auth/refresh', { refreshToken: thereLater.refreshToken })).status).toBe(401);
  });
});

describe('refresh-token reuse', () => {
  it("ends the session the reused token belongs to (all its access tokens), and the user's other sessions stand", async () => {
    const email = await user();
    const stolen = await login(email);
    const rotated = await refresh(stolen.refreshToken);
    const elsewhere = await login(email);
    const reuse = await app.http('POST', '/auth/refresh', { refreshToken: stolen.refreshToken });
    expect(reuse).toMatchObject({ status: 401, body: { code: 'AUTH.REFRESH_REUSED' } });
    expect(await me(stolen.accessToken)).toBe(401);
    expect(await me(rotated.accessToken)).toBe(401);
    expect((await app.http('POST', '/auth/refresh', { refreshToken: rotated.refreshToken })).status).toBe(401);
    expect(await me(elsewhere.accessToken)).toBe(200);
  });

  it('replaying old tokens of a session already ended changes nothing more, however often', async () => {
    const email = await user();
    const old = await login(email);
    const next = await refresh(old.refreshToken);
    expect((await app.http('POST', '/auth/refresh', { refreshToken: old.refreshToken })).status).toBe(401); // the one reuse: that session ends
    const fresh = await login(email);
    const freshRotated = await refresh(fresh.refreshToken);
    for (let i = 0; i < 5; i++) {
      for (const rt of [old.refreshToken, next.refreshToken]) {
        expect((await app.http('POST', '/auth/refresh', { refreshToken: rt })).status).toBe(401);
      }
    }
    // The sessions opened after it are untouched: their access tokens and their refresh token still work.
    expect(await me(fresh.accessToken)).toBe(200);
    expect(await me(freshRotated.accessToken)).toBe(200);
    expect((await app.http('POST', '/auth/refresh', { refreshToken: freshRotated.refreshToken })).status).toBe(200);
  });
});
