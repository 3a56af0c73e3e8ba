import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { pickPort } from '../../src/platform/local/processes';
import { createTestDatabase, testRedisUrl, type TestDatabase } from '../support/services';
import { eventually } from '../support/events';
import { connectDevice, ownerWithDevice, publishAcked } from '../support/telemetry';
import { startMosquitto } from '../support/mosquitto';
import mqtt from 'mqtt';
import type { HttpResult } from '../support/app';

/**
 * QoS 1 end to end across crashes: a device publishes a numbered sequence
 * (several messages in flight), the app (the real dist/src/main.js with its
 * embedded broker) is SIGKILLed mid-stream, restarted, and the device
 * resends what it got no PUBACK for. Every PUBACKed reading must be stored
 * exactly once: no gaps, no duplicates. Several rounds, and a last one with
 * SIGTERM (graceful shutdown mid-stream, exit code 0).
 */
const MAIN = join(__dirname, '../../dist/src/main.js');
const ROUNDS = 4;
const WINDOW = 40;

let db: TestDatabase;
let child: { proc: ChildProcess; exited: Promise<number | null>; out: () => string } | undefined;
// Fixed across the restarts (the device reconnects to the same port), below the ephemeral range so no outgoing connection takes one meanwhile.
let httpPort: number;
let mqttPort: number;
const dataDir = mkdtempSync(join(tmpdir(), 'telemetry-crash-'));

function start(extraEnv: Record<string, string> = {}): NonNullable<typeof child> {
  let out = '';
  const proc = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      ...extraEnv,
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl(),
      PORT: String(httpPort),
      HOST: '127.0.0.1',
      MQTT_PORT: String(mqttPort),
      MQTT_HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      QUEUE_PREFIX: `crash-${db.name}`,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout?.on('data', (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  });
  proc.stderr?.on('data', (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  return { proc, exited, out: () => out };
}

async function healthy(): Promise<void> {
  await eventually(
    async () => {
      if (child?.proc.exitCode !== null) throw new Error(`app exited: ${child?.out()}`);
      try {
        return (await fetch(`http://127.0.0.1:${httpPort}/health`)).status === 200;
      } catch {
        return false;
      }
    },
    'the app to be healthy',
    60_000,
  );
}

const http = async (
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult> => {
  const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
};

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx tsc -p tsconfig.json)`);
  db = await createTestDatabase('telecrash');
  httpPort = await pickPort();
  do mqttPort = await pickPort();
  while (mqttPort === httpPort);
});
afterAll(async () => {
  if (child && child.proc.exitCode === null) {
    child.proc.kill('SIGKILL');
    await child.exited;
  }
  await db.drop();
});

it('every PUBACKed reading is stored exactly once across SIGKILLs mid-stream', async () => {
  child = start();
  await healthy();
  const dev = await ownerWithDevice(http);
  const acked = new Set<number>();
  let next = 1;
  const unacked = new Set<number>();

  /** Publishes with WINDOW messages in flight until `stop()` says so or the connection dies; resends first. */
  const stream = async (c: MqttClient, stop: () => boolean, fresh = true) => {
    c.setMaxListeners(WINDOW * 2);
    const queue = [...unacked].sort((a, b) => a - b);
    const one = async (n: number) => {
      unacked.add(n);
      await publishAcked(c, `devices/${dev.deviceId}/readings`, JSON.stringify({ metric: 'seq', value: n, id: n }));
      acked.add(n);
      unacked.delete(n);
    };
    const lane = async () => {
      while (!stop()) {
        const n = queue.shift() ?? (fresh ? next++ : undefined);
        if (n === undefined) return;
        await one(n);
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, lane)).catch(() => undefined);
  };

  // SIGKILL rounds, then one SIGTERM round: a graceful stop mid-stream must lose nothing either
  // (MQTT stops taking messages, those being stored finish and are acknowledged, then the rest closes).
  for (let round = 0; round <= ROUNDS; round++) {
    const signal = round < ROUNDS ? 'SIGKILL' : 'SIGTERM';
    const c = await connectDevice(mqttPort, dev.deviceId, dev.token);
    const target = acked.size + 300 + Math.floor(Math.random() * 300);
    let killed = false;
    const publishing = stream(c, () => killed);
    await eventually(() => acked.size >= target, `${target} PUBACKs`, 60_000);
    // Signalled with messages in flight: some are being appended, some not yet read.
    const running = child;
    running.proc.kill(signal);
    killed = true;
    const code = await running.exited;
    if (signal === 'SIGTERM') expect(code).toBe(0);
    await publishing;
    c.end(true);
    child = start();
    await healthy();
  }
  // The device resends everything it got no PUBACK for; then the app stops cleanly.
  const c = await connectDevice(mqttPort, dev.deviceId, dev.token);
  await stream(c, () => false, false);
  c.end(true);
  expect(unacked.size).toBe(0);

  const rows = await db.pool.query<{ id: string; n: number }>(
    `SELECT r->>'id' AS id, count(*)::int AS n FROM events, jsonb_array_elements(data->'readings') r
      WHERE stream_id = $1 GROUP BY 1`,
    [`telemetry-${dev.deviceId}`],
  );
  const stored = new Map(rows.rows.map((r) => [Number(r.id), r.n]));
  const duplicated = [...stored].filter(([, n]) => n !== 1);
  expect(duplicated).toEqual([]);
  const missing = [...acked].filter((n) => !stored.has(n));
  expect(missing).toEqual([]);
  // No gaps: 1..max, each once (readings published but never acked were resent above).
  const max = Math.max(...stored.keys());
  expect(stored.size).toBe(max);
  expect(acked.size).toBe(max);
  expect(acked.size).toBeGreaterThan((ROUNDS + 1) * 300);
  child.proc.kill('SIGTERM');
  await child.exited;
});

it('external broker mode: every message the broker took is stored exactly once across SIGKILLs of the app mid-stream (no PUBACK to the broker before the store)', async () => {
  const broker = await startMosquitto();
  const external = { MQTT_URL: broker.url, MQTT_CLIENT_ID: 'crash-app', MQTT_SHARE_GROUP: 'crash' };
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'crash-publisher', protocolVersion: 4, clean: true });
  try {
    child = start(external);
    await healthy();
    const dev = await ownerWithDevice(http);
    const stored = async () =>
      (
        await db.pool.query<{ id: string; n: number }>(
          `SELECT r->>'id' AS id, count(*)::int AS n FROM events, jsonb_array_elements(data->'readings') r
            WHERE stream_id = $1 GROUP BY 1`,
          [`telemetry-${dev.deviceId}`],
        )
      ).rows;
    let next = 1;
    let publishing = true;
    // The publisher never stops while the app dies and comes back: the broker keeps the app's session.
    const publisher = (async () => {
      while (publishing) {
        const batch = Array.from({ length: 50 }, () => next++);
        await Promise.all(
          batch.map((n) =>
            pub.publishAsync(`devices/${dev.deviceId}/readings`, JSON.stringify({ metric: 'seq', value: n, id: n }), {
              qos: 1,
            }),
          ),
        );
      }
    })();
    for (let round = 0; round < 3; round++) {
      const target = (await stored()).length + 500;
      await eventually(async () => (await stored()).length >= target, `${target} stored`, 60_000);
      child.proc.kill('SIGKILL');
      await child.exited;
      child = start(external);
      await healthy();
    }
    publishing = false;
    await publisher;
    const published = next - 1;
    await eventually(async () => (await stored()).length >= published, `all ${published} stored`, 120_000);
    const rows = await stored();
    expect(rows.filter((r) => r.n !== 1)).toEqual([]);
    const ids = new Set(rows.map((r) => Number(r.id)));
    expect(ids.size).toBe(published);
    expect([...Array(published).keys()].map((i) => i + 1).filter((n) => !ids.has(n))).toEqual([]);
    expect(published).toBeGreaterThan(1500);
  } finally {
    await pub.endAsync();
    child?.proc.kill('SIGKILL');
    await child?.exited;
    await broker.stop();
  }
});
