import { startTestApp, type TestApp } from '../support/app';
import { connectDevice, ownerWithDevice, publishAcked } from '../support/telemetry';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';

/**
 * Group commit and backpressure, observed from outside: many QoS 1 messages
 * published at once are appended in far fewer transactions than messages,
 * and with a small bound the readings waiting in the app never exceed it,
 * yet every message is acknowledged and stored.
 */
let app: TestApp;
const BOUND = 100;

beforeAll(async () => {
  app = await startTestApp({ env: { TELEMETRY_MAX_PENDING_READINGS: String(BOUND), TELEMETRY_BATCH_MAX_READINGS: '50' } });
});
afterAll(async () => {
  await app.stop();
});

it('a burst is appended in few transactions; pending readings stay within the bound; all are stored', async () => {
  const telemetry = app.app.get(TelemetryServices);
  const devices = await Promise.all([ownerWithDevice(app.http), ownerWithDevice(app.http)]);
  let maxPending = 0;
  const sampler = setInterval(() => { maxPending = Math.max(maxPending, telemetry.ingestor.inFlight); }, 0);
  const messages = 150;
  try {
    await Promise.all(devices.map(async (d) => {
      const c = await connectDevice(telemetry.mqttPort, d.deviceId, d.token);
      c.setMaxListeners(0);
      try {
        await Promise.all(Array.from({ length: messages }, (_, i) => publishAcked(c, `devices/${d.deviceId}/readings`,
          JSON.stringify(Array.from({ length: 5 }, (_, k) => ({ metric: 'm', value: k, id: `${i}-${k}` }))))));
      } finally {
        c.end(true);
      }
    }));
  } finally {
    clearInterval(sampler);
  }
  const res = await app.db.pool.query<{ n: number; txns: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT position >> 16)::int AS txns FROM events WHERE type = 'telemetry.ReadingRecorded'`);
  expect(res.rows[0]!.n).toBe(devices.length * messages * 5);
  // Messages that wait together go together (up to 50 readings, 10 messages, per transaction).
  expect(res.rows[0]!.txns).toBeLessThanOrEqual(devices.length * messages / 2);
  expect(maxPending).toBeGreaterThan(0);
  expect(maxPending).toBeLessThanOrEqual(BOUND);
});
