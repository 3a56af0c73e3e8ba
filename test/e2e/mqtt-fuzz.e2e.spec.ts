import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { metric } from '../support/mqtt-raw';
import { connectDevice, ownerWithDevice, publishAcked, type OwnedDevice } from '../support/telemetry';

/**
 * Fuzz: at least 20,000 random and mutated MQTT packets (CONNECT, PUBLISH at
 * every QoS, SUBSCRIBE/UNSUBSCRIBE with random filters, PUBREL/PUBREC/PUBCOMP/
 * PUBACK out of order, PINGREQ, DISCONNECT; then bytes flipped, cut, spliced)
 * from several connections at once against the embedded broker of the real
 * app: some authenticated as real devices, some never. Deterministic: every
 * packet comes from one seeded PRNG per connection (only the interleaving
 * with the broker's answers varies). Afterwards the app answers /health, a
 * device stores a normal reading, and resident memory is back within 50 MB.
 */
const SEED = Number(process.env.MQTT_FUZZ_SEED ?? 20260901);
const PACKETS = Number(process.env.MQTT_FUZZ_PACKETS ?? 24_000);
const DEVICE_CONNECTIONS = 3;
const STRANGER_CONNECTIONS = 3;

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }
  text(n: number): string {
    return String.fromCharCode(...Array.from({ length: n }, () => 32 + this.int(95)));
  }
}

function topicFor(g: Gen, own: string | undefined, others: string[]): string {
  const id = own ?? g.pick(others);
  switch (g.int(12)) {
    case 0:
      return `devices/${id}/readings`;
    case 1:
      return `devices/${g.pick(others)}/readings`;
    case 2:
      return `devices/${id}/${'a/'.repeat(95 + g.int(20))}z`;
    case 3:
      return `$SYS/${g.text(8)}`;
    case 4:
      return g.text(1 + g.int(40));
    case 5:
      return `devices/${id}/${g.text(g.int(300))}`;
    case 6:
      return '/'.repeat(g.int(130));
    case 7:
      return `devices/+/readings`;
    case 8:
      return `devices/${id}/#`;
    case 9:
      return '#';
    case 10:
      return `devices/${id}/readings/${g.int(10)}`;
    default:
      return `devices/${id}/readings`;
  }
}

function payloadFor(g: Gen): Buffer | string {
  switch (g.int(8)) {
    case 0:
      return JSON.stringify({
        metric: g.pick(['temp', 'hum', 'Bad!', '']),
        value: g.pick([1, -2.5, 'x', null, 1e308]),
        id: `f-${g.int(1e6)}`,
      });
    case 1:
      return JSON.stringify(
        Array.from({ length: g.int(20) }, (_, i) => ({ metric: 'fuzz', value: i, id: `a-${g.int(1e6)}` })),
      );
    case 2:
      return '{'.repeat(g.int(50));
    case 3:
      return g.bytes(g.int(2000));
    case 4:
      return '['.repeat(g.int(5000)) + ']'.repeat(g.int(5000));
    case 5:
      return '{"__proto__":{"x":1},"metric":"m","value":1}';
    case 6:
      return '';
    default:
      return g.bytes(g.int(64));
  }
}

function randomPacket(g: Gen, own: string | undefined, others: string[], device?: OwnedDevice): Packet {
  const messageId = 1 + g.int(g.chance(0.2) ? 65535 : 20);
  const qos = g.pick([0, 1, 2] as const);
  switch (g.int(11)) {
    case 0: {
      const will = g.chance(0.3)
        ? { will: { topic: topicFor(g, own, others), payload: Buffer.from(payloadFor(g)), qos, retain: g.chance(0.5) } }
        : {};
      const auth =
        device && g.chance(0.5)
          ? { username: device.deviceId, password: Buffer.from(device.token) }
          : g.chance(0.5)
            ? { username: g.text(g.int(50)), password: g.bytes(g.int(100)) }
            : {};
      return {
        cmd: 'connect',
        protocolId: g.pick(['MQTT', 'MQIsdp', 'XX']),
        protocolVersion: g.pick([3, 4, 4, 5, 9]) as 4,
        clean: g.chance(0.6),
        keepalive: g.pick([0, 1, 60, 65535]),
        clientId: g.pick([device?.deviceId ?? '', g.text(g.int(30)), '', `${g.pick(others)}`]),
        ...auth,
        ...will,
      } as Packet;
    }
    case 1:
    case 2:
    case 3:
      return {
        cmd: 'publish',
        topic: topicFor(g, own, others),
        payload: payloadFor(g),
        qos,
        retain: g.chance(0.2),
        dup: g.chance(0.1),
        ...(qos > 0 ? { messageId } : {}),
      };
    case 4:
      return {
        cmd: 'subscribe',
        messageId,
        subscriptions: Array.from({ length: 1 + g.int(6) }, () => ({
          topic: topicFor(g, own, others),
          qos: g.pick([0, 1, 2] as const),
        })),
      };
    case 5:
      return {
        cmd: 'unsubscribe',
        messageId,
        unsubscriptions: Array.from({ length: 1 + g.int(3) }, () => topicFor(g, own, others)),
      };
    case 6:
      return { cmd: 'pubrel', messageId };
    case 7:
      return { cmd: 'pubrec', messageId };
    case 8:
      return { cmd: g.pick(['pubcomp', 'puback'] as const), messageId };
    case 9:
      return { cmd: 'pingreq' };
    default:
      return g.chance(0.1) ? { cmd: 'disconnect' } : { cmd: 'pingreq' };
  }
}

/** A valid encoding, or one with bytes flipped, cut, doubled or spliced in. */
function encode(g: Gen, p: Packet): Buffer {
  let b: Buffer;
  try {
    b = mqttPacket.generate(p);
  } catch {
    return g.bytes(1 + g.int(16));
  }
  if (g.chance(0.6)) return b;
  switch (g.int(6)) {
    case 0: {
      const c = Buffer.from(b);
      for (let i = 0; i < 1 + g.int(4); i++) c[g.int(c.length)] = g.int(256);
      return c;
    }
    case 1:
      return b.subarray(0, g.int(b.length));
    case 2:
      return Buffer.concat([b, b]);
    case 3: {
      const at = g.int(b.length);
      return Buffer.concat([b.subarray(0, at), g.bytes(1 + g.int(32)), b.subarray(at)]);
    }
    case 4: {
      const c = Buffer.from(b);
      c[0] = g.int(256);
      return c;
    }
    default:
      return Buffer.concat([Buffer.from([g.int(256)]), Buffer.from([0xff, 0xff, 0xff, g.int(128)])]);
  }
}

let app: TestApp;
let port: number;
let devices: OwnedDevice[];

beforeAll(async () => {
  app = await startTestApp({ env: { MQTT_CONNECT_TIMEOUT_MS: '2000', DEVICE_TOKEN_TTL_S: '3600' } });
  port = app.app.get(TelemetryServices).mqttPort;
  devices = await Promise.all(Array.from({ length: DEVICE_CONNECTIONS + 1 }, () => ownerWithDevice(app.http)));
});
afterAll(async () => {
  await app.stop();
});

const rss = () => {
  gc();
  gc();
  return process.memoryUsage().rss;
};

interface Conn {
  socket: Socket;
  closed: Promise<void>;
  isClosed: () => boolean;
}

function open(): Promise<Conn> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let closed = false;
    const whenClosed = new Promise<void>((res) =>
      socket.once('close', () => {
        closed = true;
        res();
      }),
    );
    socket.on('error', () => undefined);
    socket.resume(); // the broker's answers are read and dropped: a fuzzer that never reads would only test backpressure
    socket.once('connect', () => resolve({ socket, closed: whenClosed, isClosed: () => closed }));
    socket.once('error', () => resolve({ socket, closed: whenClosed, isClosed: () => true }));
  });
}

async function send(c: Conn, bytes: Buffer): Promise<boolean> {
  if (c.isClosed() || c.socket.destroyed) return false;
  if (!c.socket.write(bytes)) await Promise.race([new Promise((res) => c.socket.once('drain', res)), c.closed]);
  return !c.isClosed();
}

/** One fuzzing connection after another until `budget` says stop; a device first CONNECTs for real and waits for CONNACK. */
async function fuzzLoop(g: Gen, budget: { left: number }, others: string[], device?: OwnedDevice): Promise<number> {
  let sent = 0;
  while (budget.left > 0) {
    const c = await open();
    if (device) {
      const connack = new Promise<boolean>((res) => {
        c.socket.once('data', (d: Buffer) => res(d[0] === 0x20 && d[3] === 0));
        void c.closed.then(() => res(false));
      });
      await send(
        c,
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: g.chance(0.7),
          keepalive: 0,
          clientId: device.deviceId,
          username: device.deviceId,
          password: Buffer.from(device.token),
        }),
      );
      budget.left--;
      sent++;
      if (!(await connack)) {
        c.socket.destroy();
        continue;
      }
    }
    const burst = 1 + g.int(300);
    for (let i = 0; i < burst && budget.left > 0; i++) {
      const ok = await send(c, encode(g, randomPacket(g, device?.deviceId, others, device)));
      budget.left--;
      sent++;
      if (!ok) break;
      if (i % 25 === 0) await new Promise((res) => setImmediate(res));
    }
    if (g.chance(0.5)) c.socket.end();
    else c.socket.destroy();
    await c.closed;
  }
  return sent;
}

it(`${PACKETS} random and mutated packets from ${DEVICE_CONNECTIONS + STRANGER_CONNECTIONS} connections: the app stays up, stores a normal reading, and its memory comes back`, async () => {
  const others = devices.map((d) => d.deviceId);
  const [probe, ...fuzzers] = devices as [OwnedDevice, ...OwnedDevice[]];
  // Warm the paths a normal device takes, then take the baseline.
  const warm = await connectDevice(port, probe.deviceId, probe.token);
  await publishAcked(warm, `devices/${probe.deviceId}/readings`, JSON.stringify({ metric: 'warm', value: 1 }));
  warm.end(true);
  const before = rss();

  const budget = { left: PACKETS };
  const sent = await Promise.all([
    ...fuzzers.map((d, i) => fuzzLoop(new Gen(prng(SEED + i)), budget, others, d)),
    ...Array.from({ length: STRANGER_CONNECTIONS }, (_, i) => fuzzLoop(new Gen(prng(SEED + 100 + i)), budget, others)),
  ]);
  const total = sent.reduce((a, b) => a + b, 0);
  expect(total).toBeGreaterThanOrEqual(20_000);

  // Every fuzzing connection is gone (ours are closed; the broker lets go of its side).
  await eventually(
    async () => metric((await app.http('GET', '/metrics')).body as string, 'mqtt_connections') === 0,
    'the broker to drop every fuzz connection',
    60_000,
  );
  expect((await app.http('GET', '/health')).status).toBe(200);

  // A normal device does normal work.
  const c = await connectDevice(port, probe.deviceId, probe.token);
  await publishAcked(
    c,
    `devices/${probe.deviceId}/readings`,
    JSON.stringify({ metric: 'after', value: 42, ts: '2026-01-01T00:00:00Z' }),
  );
  c.end(true);
  const latest = await app.http('GET', `/devices/${probe.deviceId}/metrics/after/latest`, undefined, {
    ...probe.owner,
    'x-min-position': String(await app.platform.store.headPosition()),
  });
  expect(latest).toMatchObject({ status: 200, body: { value: 42 } });

  await app.app.get(TelemetryServices).ingestor.drain();
  const after = rss();
  const errors = (
    ((await app.http('GET', '/metrics')).body as string).match(/^mqtt_client_errors_total\{.*$/gm) ?? []
  ).join(', ');
  console.log(
    `mqtt fuzz: seed ${SEED}, ${total} packets; rss ${(before / 1048576).toFixed(0)} MB -> ${(after / 1048576).toFixed(0)} MB; ${errors}`,
  );
  expect(after - before).toBeLessThan(50 * 1024 * 1024);
});
