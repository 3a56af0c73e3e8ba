import { Client } from 'pg';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { connectDevice, ownerWithDevice, publishAcked } from '../support/telemetry';

/**
 * The embedded broker's byte bound (TELEMETRY_MAX_IN_FLIGHT_BYTES): while the store is held (a
 * transaction of the test locks the events table against writes), the broker reads messages only
 * until the bytes being stored reach the bound; the rest wait in the socket, unacknowledged. Once the
 * store is free again, every message is acknowledged and stored. The readings bound
 * (TELEMETRY_MAX_PENDING_READINGS) is far away here: only bytes hold the messages back.
 */
const BOUND = 65_536;
/** A message of about 20 KiB: 200 readings with long ids; each costs its payload plus 2 KiB. */
const READINGS_PER_MESSAGE = 200;
const MESSAGES = 12;
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp({ env: { TELEMETRY_MAX_IN_FLIGHT_BYTES: String(BOUND) } });
});
afterAll(async () => {
  await app.stop();
});

it('while the store is held, the bytes being stored stay within the bound and the other messages wait; then all are stored', async () => {
  const telemetry = app.app.get(TelemetryServices);
  const d = await ownerWithDevice(app.http);
  const payload = (m: number) =>
    JSON.stringify(
      Array.from({ length: READINGS_PER_MESSAGE }, (_, k) => ({
        metric: 'm',
        value: k,
        id: `message-${m}-reading-${k}-${'x'.repeat(60)}`,
      })),
    );
  expect(Buffer.byteLength(payload(0))).toBeGreaterThan(16_384);
  expect(3 * (Buffer.byteLength(payload(0)) + 2048)).toBeGreaterThan(BOUND);

  const holder = new Client({ connectionString: app.db.url });
  await holder.connect();
  let maxBytes = 0;
  const sampler = setInterval(() => {
    maxBytes = Math.max(maxBytes, telemetry.mqttBytesInFlight);
  }, 0);
  const c = await connectDevice(telemetry.mqttPort, d.deviceId, d.token);
  c.setMaxListeners(0);
  try {
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE events IN SHARE MODE');
    let acked = 0;
    const published = Array.from({ length: MESSAGES }, (_, m) =>
      publishAcked(c, `devices/${d.deviceId}/readings`, payload(m)).then(() => acked++),
    );
    await eventually(() => telemetry.mqttBytesInFlight > 0, 'the broker storing a message');
    await new Promise((r) => setTimeout(r, 500));
    // Held: nothing acknowledged, at most as many messages taken as the bound allows.
    expect(acked).toBe(0);
    expect(telemetry.ingestor.inFlight).toBeLessThanOrEqual(2 * READINGS_PER_MESSAGE);
    expect(maxBytes).toBeLessThanOrEqual(BOUND);

    await holder.query('COMMIT');
    await Promise.all(published);
    expect(acked).toBe(MESSAGES);
  } finally {
    clearInterval(sampler);
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end();
    c.end(true);
  }
  expect(maxBytes).toBeGreaterThan(0);
  expect(maxBytes).toBeLessThanOrEqual(BOUND);
  const stored = await app.db.pool.query<{ n: number }>(
    `SELECT sum(jsonb_array_length(data->'readings'))::int AS n FROM events WHERE stream_id = $1`,
    [`telemetry-${d.deviceId}`],
  );
  expect(stored.rows[0]!.n).toBe(MESSAGES * READINGS_PER_MESSAGE);
});
