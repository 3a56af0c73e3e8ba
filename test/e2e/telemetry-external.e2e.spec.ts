import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { createApp, type RunningApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/platform/logger';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { startMosquitto, type Mosquitto } from '../support/mosquitto';
import { ownerWithDevice } from '../support/telemetry';

/**
 * External-broker mode against a real mosquitto (the shipped limits): two app
 * instances share `$share/<group>/devices/+/readings`; every reading is stored
 * once, and both instances take part.
 */
let broker: Mosquitto;
let a: TestApp;
let b: RunningApp | undefined;
let configB: ReturnType<typeof loadConfig>;

const storedBy = async (url: string) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^telemetry_readings_stored_total (\d+)/m.exec(text)?.[1] ?? 0);
};

beforeAll(async () => {
  broker = await startMosquitto();
  const common = { MQTT_URL: broker.url, MQTT_SHARE_GROUP: 'platform-test' };
  a = await startTestApp({ env: { ...common, MQTT_CLIENT_ID: 'app-a' } });
  configB = loadConfig({
    DATABASE_URL: a.db.url,
    REDIS_URL: process.env.TEST_REDIS_URL,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'platform-b-')),
    QUEUE_PREFIX: `test-${a.db.name}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...common,
    MQTT_CLIENT_ID: 'app-b',
    // b answers no authenticated request here; HS256 spares generating a key pair.
    JWT_ALG: 'HS256',
    JWT_HS256_SECRET: 'x'.repeat(40),
  });
  b = await createApp(configB, createLogger(configB.LOG_LEVEL));
});
afterAll(async () => {
  await b?.close();
  await a?.stop();
  await broker?.stop();
});

it('two instances share the subscription: every reading is stored once', async () => {
  const devices = await Promise.all([ownerWithDevice(a.http), ownerWithDevice(a.http)]);
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'publisher', protocolVersion: 4, clean: true });
  const perDevice = 1500;
  try {
    const sends: Promise<unknown>[] = [];
    for (const d of devices) {
      for (let i = 0; i < perDevice; i += 5) {
        const batch = Array.from({ length: 5 }, (_, k) => ({ metric: 'seq', value: i + k, id: i + k }));
        sends.push(pub.publishAsync(`devices/${d.deviceId}/readings`, JSON.stringify(batch), { qos: 1 }));
        // A resend of every tenth message: stored once.
        if (i % 50 === 0)
          sends.push(pub.publishAsync(`devices/${d.deviceId}/readings`, JSON.stringify(batch), { qos: 1 }));
      }
    }
    await Promise.all(sends);
  } finally {
    await pub.endAsync();
  }
  const count = async () =>
    (
      await a.db.pool.query<{ n: number; distinct: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT (stream_id, r->>'id'))::int AS distinct
           FROM events, jsonb_array_elements(data->'readings') r WHERE type = 'telemetry.ReadingsRecorded'`,
      )
    ).rows[0]!;
  await eventually(async () => (await count()).n >= devices.length * perDevice, 'every reading stored', 60_000);
  expect(await count()).toEqual({ n: devices.length * perDevice, distinct: devices.length * perDevice });
  // Both instances took part (mosquitto hands shared-subscription messages out in turn).
  expect(await storedBy(a.url)).toBeGreaterThan(0);
  expect(await storedBy(b!.url)).toBeGreaterThan(0);
  expect((await storedBy(a.url)) + (await storedBy(b!.url))).toBe(devices.length * perDevice);
});

it('an instance that stops mid-stream and comes back with its client id loses nothing: its persistent session kept the rest', async () => {
  const d = await ownerWithDevice(a.http);
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'publisher-2', protocolVersion: 4, clean: true });
  const send = (from: number, to: number) =>
    Promise.all(
      Array.from({ length: to - from }, (_, i) =>
        pub.publishAsync(
          `devices/${d.deviceId}/readings`,
          JSON.stringify({ metric: 'seq', value: from + i, id: from + i }),
          { qos: 1 },
        ),
      ),
    );
  const stored = async () =>
    (
      await a.db.pool.query<{ n: number; distinct: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT r->>'id')::int AS distinct
           FROM events, jsonb_array_elements(data->'readings') r WHERE stream_id = $1`,
        [`telemetry-${d.deviceId}`],
      )
    ).rows[0]!;
  try {
    const first = send(0, 400);
    // b leaves while messages are flowing (graceful: what it took is stored and acknowledged first).
    await b!.close();
    b = undefined;
    await first;
    await send(400, 800);
    b = await createApp(configB, createLogger(configB.LOG_LEVEL));
  } finally {
    await pub.endAsync();
  }
  await eventually(async () => (await stored()).n >= 800, 'every reading stored', 60_000);
  expect(await stored()).toEqual({ n: 800, distinct: 800 });
});
