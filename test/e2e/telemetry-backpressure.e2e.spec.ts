import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { connectDevice, ownerWithDevice, publishAcked } from '../support/telemetry';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';

/**
 * Group commit and backpressure, observed from outside: many QoS 1 messages
 * published at once are appended in far fewer transactions than messages,
 * and with a small bound the readings waiting in the app never exceed it,
 * yet every message is acknowledged and stored. A packet over the size
 * limit closes its connection as soon as its header arrives, and is dead-lettered.
 */
let app: TestApp;
const BOUND = 100;

beforeAll(async () => {
  app = await startTestApp({
    env: {
      TELEMETRY_MAX_PENDING_READINGS: String(BOUND),
      TELEMETRY_BATCH_MAX_READINGS: '50',
      TELEMETRY_MAX_PACKET_BYTES: String(2 * 1024 * 1024),
    },
  });
});
afterAll(async () => {
  await app.stop();
});

it('a burst is appended in few transactions; pending readings stay within the bound; all are stored', async () => {
  const telemetry = app.app.get(TelemetryServices);
  const devices = await Promise.all([ownerWithDevice(app.http), ownerWithDevice(app.http)]);
  let maxPending = 0;
  const sampler = setInterval(() => {
    maxPending = Math.max(maxPending, telemetry.ingestor.inFlight);
  }, 0);
  const messages = 150;
  try {
    await Promise.all(
      devices.map(async (d) => {
        const c = await connectDevice(telemetry.mqttPort, d.deviceId, d.token);
        c.setMaxListeners(0);
        try {
          await Promise.all(
            Array.from({ length: messages }, (_, i) =>
              publishAcked(
                c,
                `devices/${d.deviceId}/readings`,
                JSON.stringify(Array.from({ length: 5 }, (_, k) => ({ metric: 'm', value: k, id: `${i}-${k}` }))),
              ),
            ),
          );
        } finally {
          c.end(true);
        }
      }),
    );
  } finally {
    clearInterval(sampler);
  }
  const res = await app.db.pool.query<{ n: number; txns: number }>(
    `SELECT sum(jsonb_array_length(data->'readings'))::int AS n, count(DISTINCT position >> 16)::int AS txns
       FROM events WHERE type = 'telemetry.ReadingsRecorded'`,
  );
  expect(res.rows[0]!.n).toBe(devices.length * messages * 5);
  // Messages that wait together go together (up to 50 readings, 10 messages, per transaction).
  expect(res.rows[0]!.txns).toBeLessThanOrEqual((devices.length * messages) / 2);
  expect(maxPending).toBeGreaterThan(0);
  expect(maxPending).toBeLessThanOrEqual(BOUND);
});

it('a packet over TELEMETRY_MAX_PACKET_BYTES closes the connection early and is dead-lettered; the device reconnects and goes on', async () => {
  const telemetry = app.app.get(TelemetryServices);
  const d = await ownerWithDevice(app.http);
  const c = await connectDevice(telemetry.mqttPort, d.deviceId, d.token);
  try {
    await expect(
      publishAcked(c, `devices/${d.deviceId}/readings`, Buffer.alloc(20 * 1024 * 1024, 'x')),
    ).rejects.toThrow(/closed/i);
  } finally {
    c.end(true);
  }
  const again = await connectDevice(telemetry.mqttPort, d.deviceId, d.token);
  try {
    await publishAcked(again, `devices/${d.deviceId}/readings`, JSON.stringify({ metric: 'm', value: 1, id: 'after' }));
  } finally {
    again.end(true);
  }
  const admin = await app.adminAuth();
  const mine = async (): Promise<unknown[]> =>
    ((await app.http('GET', '/admin/dead-letters', undefined, admin)).body.items as { deviceId: string }[]).filter(
      (i) => i.deviceId === d.deviceId,
    );
  // Stored as the connection closes (no PUBACK waits on it): wait for it to appear.
  await eventually(async () => (await mine()).length > 0, 'the dead letter');
  expect(await mine()).toEqual([
    expect.objectContaining({
      code: 'TELEMETRY.PACKET_TOO_LARGE',
      payloadSize: 0,
      reason: expect.stringMatching(/exceeds the limit of 2097152 bytes/),
    }),
  ]);
  const stored = await app.db.pool.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [
    `telemetry-${d.deviceId}`,
  ]);
  expect(stored.rows[0].n).toBe(1);
});
