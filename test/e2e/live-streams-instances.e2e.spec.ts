import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { endOf, openStream, type SseClient } from '../support/sse';
import { ownerWithDevice, type OwnedDevice } from '../support/telemetry';
import { IdentityServices, systemContext } from '../../src/identity/identity.services';

/**
 * Live streams across instances, and the safety nets of watchSession (issue 9):
 *
 * - A and B share PostgreSQL and Redis; B runs no projection (RUN_PROJECTIONS=false),
 *   so what it streams was projected by A and announced by NOTIFY. Access withdrawn
 *   through A ends a stream held on B. Their periodic re-check is set to an hour: the
 *   revocation notice on Redis pub/sub is what ends it.
 * - C has short access tokens (ACCESS_TOKEN_TTL_S) and re-checks every second: a
 *   stream ends when its token expires, and when access is withdrawn without any
 *   notice (the event appended, no Redis write), the re-check ends it.
 */

const ACCESS_TTL_S = 15;
const IDLE_STREAMS = 20;
let a: TestApp;
let b: TestApp;
let c: TestApp;
const streams: SseClient[] = [];

beforeAll(async () => {
  a = await startTestApp({ env: { SESSION_RECHECK_INTERVAL_S: '3600' } });
  b = await startTestApp({
    sharing: a,
    env: {
      SESSION_RECHECK_INTERVAL_S: '3600',
      RUN_PROJECTIONS: 'false',
      RUN_SAGAS: 'false',
      MQTT_ENABLED: 'false',
      STREAMS_MAX_PER_PRINCIPAL: String(IDLE_STREAMS),
    },
  });
  c = await startTestApp({
    env: { SESSION_RECHECK_INTERVAL_S: '1', ACCESS_TOKEN_TTL_S: String(ACCESS_TTL_S), MQTT_ENABLED: 'false' },
  });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await b?.stop();
  await a?.stop();
  await c?.stop();
});

const streamUrl = (app: TestApp, deviceId: string, metric = 'temp') =>
  `${app.url}/devices/${deviceId}/metrics/${metric}/stream`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function open(
  app: TestApp,
  deviceId: string,
  headers: Record<string, string>,
  metric = 'temp',
): Promise<SseClient> {
  const s = await openStream(streamUrl(app, deviceId, metric), headers);
  expect(s.status).toBe(200);
  streams.push(s);
  return s;
}

/** Posts a reading through `via` and waits until `s` delivers it. */
async function delivered(via: TestApp, owned: OwnedDevice, s: SseClient): Promise<void> {
  const value = Math.random();
  expect(
    (await via.http('POST', `/devices/${owned.deviceId}/readings`, { metric: 'temp', value }, owned.owner)).status,
  ).toBe(202);
  await s.next(
    (e) => e.event === 'reading' && (JSON.parse(e.data) as { value: number }).value === value,
    'the reading on the stream',
  );
}

async function endReason(s: SseClient): Promise<string | undefined> {
  await endOf(s);
  const end = s.events.find((e) => e.event === 'end');
  return end ? (JSON.parse(end.data) as { reason: string }).reason : undefined;
}

describe('two instances sharing PostgreSQL and Redis', () => {
  it('a stream on B delivers readings A projects, and ends when the user logs out on A', async () => {
    const owned = await ownerWithDevice(a.http);
    const s = await open(b, owned.deviceId, owned.owner);
    await delivered(a, owned, s);
    await delivered(b, owned, s);
    expect((await a.http('POST', '/auth/logout', {}, owned.owner)).status).toBe(204);
    expect(await endReason(s)).toBe('session ended');
  });

  it('revoking the device on A ends the stream its token holds on B', async () => {
    const owned = await ownerWithDevice(a.http);
    const s = await open(b, owned.deviceId, bearer(owned.token));
    await delivered(a, owned, s);
    expect((await a.http('POST', `/devices/${owned.deviceId}/revoke`, undefined, owned.owner)).status).toBe(200);
    expect(await endReason(s)).toBe('access withdrawn');
  });

  it('disabling the user on B ends their stream on A', async () => {
    const owned = await ownerWithDevice(a.http);
    const me = (await a.http('GET', '/users/me', undefined, owned.owner)).body as { userId: string };
    const s = await open(a, owned.deviceId, owned.owner);
    expect((await b.http('POST', `/admin/users/${me.userId}/disable`, undefined, await b.adminAuth())).status).toBe(
      200,
    );
    expect(await endReason(s)).toBe('access withdrawn');
  });

  it('idle streams do not poll PostgreSQL each: B reads checkpoints far less often than once per stream', async () => {
    const owned = await ownerWithDevice(a.http);
    const idle: SseClient[] = [];
    for (let i = 0; i < IDLE_STREAMS; i++) idle.push(await open(b, owned.deviceId, owned.owner, `idle${i}`));
    // Every stream has set up and now waits for new readings.
    await eventually(() => b.platform.projections.waiting >= idle.length, 'the streams to wait for readings');
    const pool = b.platform.pool;
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    let checkpointReads = 0;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const sql = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
      if (sql?.includes('processor_checkpoints')) checkpointReads++;
      return query(...args);
    };
    try {
      // A measurement window, not a wait: 20 streams polling every 50 ms would read ~800 times in it.
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      (pool as unknown as { query: unknown }).query = query;
    }
    expect(checkpointReads).toBeLessThan(idle.length);
    for (const s of idle) s.close();
  });
});

describe('expiry and the periodic re-check', () => {
  it(`a stream ends when its access token expires (ACCESS_TOKEN_TTL_S=${ACCESS_TTL_S})`, async () => {
    const owned = await ownerWithDevice(c.http);
    const s = await open(c, owned.deviceId, owned.owner);
    expect(await endReason(s)).toBe('token expired');
  });

  it('access withdrawn with no notice at all (only the event appended) is found by the re-check, for the user and for their device', async () => {
    const owned = await ownerWithDevice(c.http);
    const me = (await c.http('GET', '/users/me', undefined, owned.owner)).body as { userId: string };
    const asUser = await open(c, owned.deviceId, owned.owner);
    const asDevice = await open(c, owned.deviceId, bearer(owned.token));
    // DisableUser straight into the event store: no revocation key, no notice.
    await c.app
      .get(IdentityServices)
      .userCommand(
        { type: 'DisableUser', data: { userId: me.userId, by: 'test', now: new Date() } },
        systemContext('test'),
      );
    expect(await endReason(asUser)).toBe('user disabled');
    expect(await endReason(asDevice)).toBe('device owner disabled');
  });
});
