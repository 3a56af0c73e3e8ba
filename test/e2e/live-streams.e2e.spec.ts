import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { endOf, openStream, type SseClient } from '../support/sse';
import { connectDevice, ownerWithDevice, publishAcked, type OwnedDevice } from '../support/telemetry';
import { IdentityServices } from '../../src/identity/identity.services';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';

/**
 * Live SSE streams (GET /devices/:id/metrics/:metric/stream) as a hostile or
 * careless client meets them (issue 9): a stream lasts only as long as the
 * access it was opened with, a principal holds a bounded number of them, and a
 * client that never reads cannot make the server buffer a device's history.
 *
 * The periodic re-check is set to an hour here, so every stream that ends in
 * this file was ended by a revocation notice or the token's expiry timer (the
 * re-check is tested in live-streams-instances.e2e.spec.ts).
 */

const PASSWORD = 'a perfectly long passphrase 9';
const MAX_STREAMS = 2;
/** Server-side bytes a never-reading client may leave buffered: a socket high-water mark and an event, with room to spare. */
const BUFFER_BOUND = 256 * 1024;

let app: TestApp;
const streams: SseClient[] = [];

beforeAll(async () => {
  app = await startTestApp({
    env: {
      STREAMS_MAX_PER_PRINCIPAL: String(MAX_STREAMS),
      STREAM_STALL_TIMEOUT_MS: '3000',
      SESSION_RECHECK_INTERVAL_S: '3600',
      PROJECTION_BATCH_SIZE: '5000',
    },
  });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await app.stop();
});

const streamPath = (deviceId: string, metric = 'temp') => `/devices/${deviceId}/metrics/${metric}/stream`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function open(deviceId: string, headers: Record<string, string>, metric = 'temp'): Promise<SseClient> {
  const s = await openStream(app.url + streamPath(deviceId, metric), headers);
  streams.push(s);
  return s;
}

/** Opens a stream and proves it live: a reading posted now arrives on it. */
async function openLive(owned: OwnedDevice, headers: Record<string, string>): Promise<SseClient> {
  const s = await open(owned.deviceId, headers);
  expect(s.status).toBe(200);
  const value = Math.random();
  const r = await app.http('POST', `/devices/${owned.deviceId}/readings`, { metric: 'temp', value }, owned.owner);
  expect(r.status).toBe(202);
  await s.next(
    (e) => e.event === 'reading' && (JSON.parse(e.data) as { value: number }).value === value,
    'the live reading',
  );
  return s;
}

async function endReason(s: SseClient): Promise<string | undefined> {
  await endOf(s);
  const end = s.events.find((e) => e.event === 'end');
  return end ? (JSON.parse(end.data) as { reason: string }).reason : undefined;
}

async function signUp(): Promise<{ userId: string; email: string }> {
  const email = `streams-${randomUUID().slice(0, 8)}@example.test`;
  const r = await app.http('POST', '/auth/signup', { email, password: PASSWORD, name: 'Streamer' });
  expect(r.status).toBe(201);
  return { userId: r.body.userId as string, email };
}

async function metric(name: string): Promise<number> {
  const r = await app.http('GET', '/metrics');
  const line = (r.body as string).split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

describe('a live stream ends when its access is withdrawn', () => {
  it('logout ends the stream opened with that access token', async () => {
    const owned = await ownerWithDevice(app.http);
    const s = await openLive(owned, owned.owner);
    expect((await app.http('POST', '/auth/logout', {}, owned.owner)).status).toBe(204);
    expect(await endReason(s)).toBe('session ended');
  });

  it('logout ends every access token of the session, and the streams opened with any of them', async () => {
    const owned = await ownerWithDevice(app.http);
    const me = (await app.http('GET', '/users/me', undefined, owned.owner)).body as { email: string };
    const first = await app.login(me.email, PASSWORD);
    // A refresh keeps the session (the refresh family) and gives a second access token of it.
    const refreshed = await app.http('POST', '/auth/refresh', { refreshToken: first.refreshToken });
    expect(refreshed.status).toBe(200);
    const second = bearer(refreshed.body.accessToken as string);
    const other = await app.login(me.email, PASSWORD); // another session of the same user
    const s = await openLive(owned, { authorization: first.authorization });

    expect((await app.http('POST', '/auth/logout', {}, second)).status).toBe(204);
    // The first access token of that session is dead too, not only the one presented.
    expect((await app.http('GET', '/users/me', undefined, { authorization: first.authorization })).body).toMatchObject({
      status: 401,
      code: 'AUTH.TOKEN_REVOKED',
    });
    expect((await app.http('GET', '/users/me', undefined, second)).status).toBe(401);
    expect(await endReason(s)).toBe('session ended');
    // The user's other session stands.
    expect((await app.http('GET', '/users/me', undefined, { authorization: other.authorization })).status).toBe(200);
  });

  it('disabling the user ends their streams, and the streams of their devices', async () => {
    const owned = await ownerWithDevice(app.http);
    const me = (await app.http('GET', '/users/me', undefined, owned.owner)).body as { userId: string };
    const asUser = await openLive(owned, owned.owner);
    const asDevice = await openLive(owned, bearer(owned.token));
    expect((await app.http('POST', `/admin/users/${me.userId}/disable`, undefined, await app.adminAuth())).status).toBe(
      200,
    );
    expect(await endReason(asUser)).toBe('access withdrawn');
    expect(await endReason(asDevice)).toBe('access withdrawn');
  });

  it('losing a role ends the streams that role allowed', async () => {
    const owned = await ownerWithDevice(app.http);
    const operator = await signUp();
    const admin = await app.adminAuth();
    expect((await app.http('POST', `/admin/users/${operator.userId}/roles`, { role: 'admin' }, admin)).status).toBe(
      201,
    );
    const asAdmin = await app.login(operator.email, PASSWORD);
    // As an admin the operator may watch anyone's device.
    const s = await openLive(owned, { authorization: asAdmin.authorization });
    expect((await app.http('DELETE', `/admin/users/${operator.userId}/roles/admin`, undefined, admin)).status).toBe(
      200,
    );
    expect(await endReason(s)).toBe('access withdrawn');
    // Logging in again gives a token without the role, and the device is no longer theirs to watch.
    const again = await app.login(operator.email, PASSWORD);
    expect((await open(owned.deviceId, { authorization: again.authorization })).status).toBe(404);
  });

  it('revoking the device ends the streams opened with its token', async () => {
    const owned = await ownerWithDevice(app.http);
    const s = await openLive(owned, bearer(owned.token));
    const ownerStream = await openLive(owned, owned.owner);
    expect((await app.http('POST', `/devices/${owned.deviceId}/revoke`, undefined, owned.owner)).status).toBe(200);
    expect(await endReason(s)).toBe('access withdrawn');
    // The owner's own stream is the owner's access, which stands.
    expect(ownerStream.events.some((e) => e.event === 'end')).toBe(false);
    expect(
      (await app.http('GET', `/devices/${owned.deviceId}/metrics/temp/latest`, undefined, owned.owner)).status,
    ).toBe(200);
  });
});

describe('devices of a disabled user', () => {
  it('get no new token, cannot use the ones they hold, cannot connect over MQTT, and their readings are refused', async () => {
    const owned = await ownerWithDevice(app.http);
    const me = (await app.http('GET', '/users/me', undefined, owned.owner)).body as { userId: string };
    const port = app.app.get(TelemetryServices).mqttPort;
    const connected = await connectDevice(port, owned.deviceId, owned.token);
    const heldToken = owned.token;
    const stored = async () =>
      (
        await app.db.pool.query('SELECT count(*)::int AS n FROM events WHERE stream_id = $1', [
          `telemetry-${owned.deviceId}`,
        ])
      ).rows[0].n as number;
    try {
      expect(
        (await app.http('POST', `/admin/users/${me.userId}/disable`, undefined, await app.adminAuth())).status,
      ).toBe(200);
      const before = await stored();

      const minted = await app.http('POST', `/devices/${owned.deviceId}/tokens`, { secret: owned.secret });
      expect(minted.status).toBe(403);
      expect(minted.body).toMatchObject({ code: 'AUTH.DEVICE_OWNER_DISABLED', status: 403 });
      expect(minted.headers.get('content-type')).toMatch(/application\/problem\+json/);

      const posted = await app.http(
        'POST',
        `/devices/${owned.deviceId}/readings`,
        { metric: 'temp', value: 1 },
        bearer(heldToken),
      );
      expect(posted.status).toBe(401);
      await expect(connectDevice(port, owned.deviceId, heldToken)).rejects.toThrow();
      expect(await app.app.get(IdentityServices).deviceMayConnect(owned.deviceId)).toBe(false);

      // A connection opened before the disable: its next message is not stored (dead-lettered, or the session is ended first).
      // (MQTT.js keeps a publish on a closed client queued forever: only publish on a live one.)
      const outcome = connected.connected
        ? await publishAcked(
            connected,
            `devices/${owned.deviceId}/readings`,
            JSON.stringify({ metric: 'temp', value: 2 }),
          ).then(
            () => 'acked',
            () => 'closed',
          )
        : 'closed';
      if (outcome === 'acked') {
        const dead = await app.db.pool.query('SELECT code FROM telemetry_dead_letters WHERE device_id = $1', [
          owned.deviceId,
        ]);
        expect(dead.rows.map((r) => r.code as string)).toContain('TELEMETRY.DEVICE_OWNER_DISABLED');
      }
      expect(await stored()).toBe(before);
    } finally {
      connected.end(true);
    }
  });
});

describe('live streams are bounded', () => {
  it(`a principal holds at most STREAMS_MAX_PER_PRINCIPAL (${MAX_STREAMS}) streams; the next gets 429 with a problem`, async () => {
    const owned = await ownerWithDevice(app.http);
    const held = [await open(owned.deviceId, owned.owner), await open(owned.deviceId, owned.owner, 'hum')];
    expect(held.map((s) => s.status)).toEqual([200, 200]);
    const refused = await open(owned.deviceId, owned.owner);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(refused.body).toMatchObject({ status: 429, code: 'TELEMETRY.TOO_MANY_STREAMS', limit: MAX_STREAMS });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another principal (the device itself) is counted on its own.
    expect((await open(owned.deviceId, bearer(owned.token))).status).toBe(200);
    // Closing one frees its slot.
    held[0]!.close();
    let reopened: SseClient | undefined;
    await eventually(async () => {
      const s = await open(owned.deviceId, owned.owner);
      if (s.status === 200) reopened = s;
      return reopened !== undefined;
    }, 'a stream slot freed by closing a stream');
    expect(reopened!.status).toBe(200);
  });

  it('a client that never reads: the server stops reading the database while the socket is full, buffers at most one window, then drops it', async () => {
    const owned = await ownerWithDevice(app.http);
    const post = async (batches: number, from: number) => {
      let last = 0;
      for (let b = from; b < from + batches; b++) {
        const readings = Array.from({ length: 1000 }, (_, i) => ({
          metric: 'flood',
          value: Math.random(),
          ts: new Date(Date.UTC(2026, 0, 1) + b * 1000 + i).toISOString(),
        }));
        const r = await app.http('POST', `/devices/${owned.deviceId}/readings`, readings, owned.owner);
        expect(r.status).toBe(202);
        last = r.body.position as number;
        sample();
      }
      expect(await app.platform.projections.waitFor('telemetry', last, 120_000)).toBe(true);
    };
    const server = app.app.getHttpServer() as Server;
    const streamSockets = new Set<Socket>();
    const onRequest = (req: IncomingMessage) => {
      if (req.url?.endsWith('/metrics/flood/stream')) streamSockets.add(req.socket);
    };
    let maxBuffered = 0;
    const sample = () => {
      for (const s of streamSockets) maxBuffered = Math.max(maxBuffered, s.writableLength);
    };
    const sampler = setInterval(sample, 5);
    const ctrl = new AbortController();
    const stalled = () => metric('telemetry_streams_ended_total{reason="stalled"}');
    const stalledBefore = await stalled();
    server.on('request', onRequest);
    try {
      // The device's history: 64,000 readings, ~6 MB of events, more than the kernel's socket buffers on both ends take.
      await post(64, 0);
      // Opened from the start of that history, and never read from.
      const res = await fetch(app.url + streamPath(owned.deviceId, 'flood'), {
        headers: { ...owned.owner, 'last-event-id': '0' },
        signal: ctrl.signal,
      });
      expect(res.status).toBe(200);
      expect(streamSockets.size).toBe(1);
      // Either the stream waits for the socket to drain (or has dropped the client already), or it buffered past the bound.
      await eventually(async () => {
        sample();
        return (
          maxBuffered > BUFFER_BOUND ||
          (await metric('telemetry_streams_paused')) > 0 ||
          (await stalled()) > stalledBefore
        );
      }, 'the stream to fill the socket');
      expect(maxBuffered).toBeLessThan(BUFFER_BOUND);
      // More readings arrive while it waits: still nothing more is buffered for it.
      await post(8, 64);
      expect(maxBuffered).toBeLessThan(BUFFER_BOUND);
      // It stays full: the client is dropped (STREAM_STALL_TIMEOUT_MS), and its buffer freed.
      await eventually(async () => (await stalled()) > stalledBefore, 'the stalled client to be dropped');
      await eventually(() => [...streamSockets].every((s) => s.destroyed), 'the stalled socket to be closed');
      sample();
      expect(maxBuffered).toBeLessThan(BUFFER_BOUND);
      expect(await metric('telemetry_streams_paused')).toBe(0);
    } finally {
      clearInterval(sampler);
      server.off('request', onRequest);
      ctrl.abort();
    }
  }, 300_000);
});
