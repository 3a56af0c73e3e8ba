import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt from 'mqtt';
import type { IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { IdentityServices } from '../../src/identity/identity.services';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { startMosquitto, type Mosquitto } from '../support/mosquitto';
import { metric, RawMqtt } from '../support/mqtt-raw';
import { connectDevice, ownerWithDevice, publishAcked, type OwnedDevice } from '../support/telemetry';

/**
 * The embedded broker (and dead letters in both modes) against devices that
 * do not play by the rules: each test is one attack from issue 9, made over
 * the wire against the real app, with what an operator or another device
 * would see afterwards.
 */
setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

const topic = (id: string) => `devices/${id}/readings`;
const reading = (i: number | string) => JSON.stringify({ metric: 'm', value: 1, id: `r-${i}` });
const INFLIGHT_QOS2 = 40;
const publish = (t: string, qos: 0 | 1 | 2, payload: string, messageId?: number): IPublishPacket => ({
  cmd: 'publish',
  topic: t,
  qos,
  payload,
  dup: false,
  retain: false,
  ...(messageId !== undefined ? { messageId } : {}),
});

let app: TestApp;
let port: number;

beforeAll(async () => {
  app = await startTestApp({
    env: {
      MQTT_MAX_INFLIGHT_QOS2: String(INFLIGHT_QOS2),
      MQTT_MAX_RETAINED_BYTES: '1000',
      MQTT_MAX_SUBSCRIPTIONS: '4',
      MQTT_CONNECT_TIMEOUT_MS: '1000',
      TELEMETRY_DEAD_LETTERS_PER_DEVICE: '5',
      TELEMETRY_DEAD_LETTER_WINDOW_S: '3600',
    },
  });
  port = app.app.get(TelemetryServices).mqttPort;
});
afterAll(async () => {
  await app.stop();
});

const metrics = async () => (await app.http('GET', '/metrics')).body as string;
const deadLetterCodes = async (deviceId: string | null) =>
  (
    await app.db.pool.query<{ code: string }>(
      'SELECT code FROM telemetry_dead_letters WHERE device_id IS NOT DISTINCT FROM $1 ORDER BY id',
      [deviceId],
    )
  ).rows.map((r) => r.code);
const eventsOf = async (deviceId: string) =>
  (
    await app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE stream_id = $1', [
      `telemetry-${deviceId}`,
    ])
  ).rows[0]!.n;

describe('one client cannot end the process', () => {
  it('a SUBSCRIBE 100+ levels deep (GHSA-xxqp-5qx8-gj5q) closes that connection only; it is logged and counted', async () => {
    const d = await ownerWithDevice(app.http);
    const bystander = await ownerWithDevice(app.http);
    const other = await connectDevice(port, bystander.deviceId, bystander.token);
    try {
      for (const filter of [
        `devices/${d.deviceId}/${'a/'.repeat(101)}b`,
        `devices/${d.deviceId}/${'+/'.repeat(120)}#`,
      ]) {
        const { c, returnCode } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token);
        expect(returnCode).toBe(0);
        c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] });
        await c.closedByBroker('too many levels');
      }
      // The same depth in a PUBLISH topic.
      const { c } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token);
      c.send(publish(`devices/${d.deviceId}/${'x/'.repeat(150)}readings`, 1, reading(0), 2));
      await c.closedByBroker('too many levels in PUBLISH');
      expect((await app.http('GET', '/health')).status).toBe(200);
      // Everyone else goes on: another device's open connection, and the same device anew.
      await publishAcked(other, topic(bystander.deviceId), reading(1));
      const again = await connectDevice(port, d.deviceId, d.token);
      await publishAcked(again, topic(d.deviceId), reading(2));
      again.end(true);
      expect(await eventsOf(d.deviceId)).toBe(1);
      expect(metric(await metrics(), 'mqtt_client_errors_total', 'reason="topic_levels"')).toBeGreaterThanOrEqual(3);
    } finally {
      other.end(true);
    }
  });
});

describe("a device's session is its own", () => {
  it('another device cannot connect with its client id (CONNACK 2), clean session or not; the owner stays connected', async () => {
    const a = await ownerWithDevice(app.http);
    const b = await ownerWithDevice(app.http);
    const ca = await connectDevice(port, a.deviceId, a.token, { clean: false });
    let aClosed = false;
    ca.on('close', () => {
      aClosed = true;
    });
    try {
      for (const clean of [true, false]) {
        await expect(connectDevice(port, b.deviceId, b.token, { clientId: a.deviceId, clean })).rejects.toThrow(
          /Identifier rejected/i,
        );
        await expect(connectDevice(port, a.deviceId, b.token, { clientId: a.deviceId, clean })).rejects.toThrow(
          /Bad username or password/i,
        );
      }
      // Any client id other than the device's own is refused, an empty one too (no id assigned by the server).
      for (const clientId of ['greenhouse-1', `${b.deviceId}-x`, '']) {
        await expect(connectDevice(port, b.deviceId, b.token, { clientId })).rejects.toThrow(/Identifier rejected/i);
      }
      await publishAcked(ca, topic(a.deviceId), reading('still-here'));
      expect(aClosed).toBe(false);
      expect(await eventsOf(a.deviceId)).toBe(1);
    } finally {
      ca.end(true);
    }
  });

  it("access withdrawn (identity's watchSession calls end) closes the session", async () => {
    const d = await ownerWithDevice(app.http);
    const identity = app.app.get(IdentityServices);
    const real = IdentityServices.prototype.watchSession;
    let watched: { principalId: string; end: (reason: string) => void } | undefined;
    identity.watchSession = function (principal, end) {
      watched = { principalId: principal.id, end };
      return real.call(this, principal, end);
    };
    try {
      const c = await connectDevice(port, d.deviceId, d.token);
      const closed = new Promise<void>((res) => c.once('close', () => res()));
      expect(watched?.principalId).toBe(d.deviceId);
      watched!.end('device revoked');
      await closed;
      c.end(true);
    } finally {
      delete (identity as Partial<IdentityServices>).watchSession;
    }
  });
});

describe('what the broker keeps for a client is bounded', () => {
  it('unreleased QoS 2 PUBLISHes: stored without their payloads, at most MQTT_MAX_INFLIGHT_QOS2, freed when the client goes', async () => {
    const d = await ownerWithDevice(app.http);
    const pad = ' '.repeat(1_000_000); // valid JSON: a reading and whitespace, 1 MB
    const measure = () => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const { c } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token);
    const before = measure();
    for (let i = 1; i <= INFLIGHT_QOS2; i++) {
      c.send(publish(topic(d.deviceId), 2, reading(i) + pad, i));
    }
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === INFLIGHT_QOS2, 'the last PUBREC');
    // In the order the PUBLISHes arrived (MQTT-4.6.0-3), whatever order they were stored in.
    expect(c.received.filter((p) => p.cmd === 'pubrec').map((p) => (p as { messageId?: number }).messageId)).toEqual(
      Array.from({ length: INFLIGHT_QOS2 }, (_, i) => i + 1),
    );
    // 40 MB were sent and none released: what stays is bytes per message, not megabytes.
    const held = measure() - before;
    expect(held).toBeLessThan(15 * 1024 * 1024);
    // One more without a PUBREL closes the connection, before its readings are stored.
    c.send(publish(topic(d.deviceId), 2, reading('over'), INFLIGHT_QOS2 + 1));
    await c.closedByBroker('in-flight QoS 2 bound');
    expect(metric(await metrics(), 'mqtt_client_errors_total', 'reason="inflight_qos2"')).toBeGreaterThanOrEqual(1);
    // The device comes back: its old message ids are forgotten (a new PUBLISH with id 1 is new), and the flow completes.
    const { c: again } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token);
    again.send(publish(topic(d.deviceId), 2, reading('after'), 1));
    await again.next((p) => p.cmd === 'pubrec', 'PUBREC');
    again.send({ cmd: 'pubrel', messageId: 1 });
    await again.next((p) => p.cmd === 'pubcomp', 'PUBCOMP');
    again.end();
    expect(await eventsOf(d.deviceId)).toBe(INFLIGHT_QOS2 + 1);
  });

  it('a SUBSCRIBE mixing allowed and refused filters keeps none of the refused; no session outlives the connection; nothing foreign is forwarded', async () => {
    const a = await ownerWithDevice(app.http);
    const b = await ownerWithDevice(app.http);
    const { c: a1, returnCode } = await RawMqtt.connectAs(port, a.deviceId, a.deviceId, a.token, { clean: false });
    expect(returnCode).toBe(0);
    a1.send({
      cmd: 'subscribe',
      messageId: 7,
      subscriptions: [
        { topic: `devices/${a.deviceId}/#`, qos: 2 },
        { topic: topic(b.deviceId), qos: 2 },
        { topic: '#', qos: 2 },
        { topic: 'devices/+/readings', qos: 2 },
      ],
    });
    const suback = (await a1.next((p) => p.cmd === 'suback', 'SUBACK')) as ISubackPacket;
    expect(suback.granted).toEqual([2, 128, 128, 128]);
    a1.end();
    await a1.whenClosed;
    // While a is away, b publishes at QoS 2 on its own topic.
    const { c: b1 } = await RawMqtt.connectAs(port, b.deviceId, b.deviceId, b.token);
    b1.send(publish(topic(b.deviceId), 2, JSON.stringify({ metric: 'secret', value: 42 }), 1));
    await b1.next((p) => p.cmd === 'pubrec', 'PUBREC');
    b1.send({ cmd: 'pubrel', messageId: 1 });
    await b1.next((p) => p.cmd === 'pubcomp', 'PUBCOMP');
    b1.end();
    // a returns asking for its session: there is none, and nothing of b's arrives before a's own marker.
    const { c: a2, sessionPresent } = await RawMqtt.connectAs(port, a.deviceId, a.deviceId, a.token, { clean: false });
    expect(sessionPresent).toBe(false);
    a2.send({ cmd: 'subscribe', messageId: 8, subscriptions: [{ topic: topic(a.deviceId), qos: 0 }] });
    await a2.next((p) => p.cmd === 'suback', 'SUBACK');
    a2.send(publish(topic(a.deviceId), 0, reading('marker')));
    await a2.next((p) => p.cmd === 'publish' && p.topic === topic(a.deviceId), 'its own marker');
    expect(a2.received.filter((p) => p.cmd === 'publish' && p.topic !== topic(a.deviceId))).toEqual([]);
    a2.end();
  });

  it('at most MQTT_MAX_SUBSCRIPTIONS filters per connection (the rest SUBACK 0x80); filters stay short', async () => {
    const d = await ownerWithDevice(app.http);
    const { c } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token);
    c.send({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: Array.from({ length: 6 }, (_, i) => ({ topic: `devices/${d.deviceId}/s${i}`, qos: 0 as const })),
    });
    expect(((await c.next((p) => p.cmd === 'suback', 'SUBACK')) as ISubackPacket).granted).toEqual([
      0, 0, 0, 0, 128, 128,
    ]);
    c.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: [`devices/${d.deviceId}/s0`] });
    await c.next((p) => p.cmd === 'unsuback', 'UNSUBACK');
    c.send({
      cmd: 'subscribe',
      messageId: 3,
      subscriptions: [
        { topic: `devices/${d.deviceId}/s9`, qos: 0 },
        { topic: `devices/${d.deviceId}/${'x'.repeat(300)}`, qos: 0 },
      ],
    });
    expect(((await c.next((p) => p.cmd === 'suback' && p.messageId === 3, 'SUBACK')) as ISubackPacket).granted).toEqual(
      [0, 128],
    );
    c.end();
  });

  it('retained messages: kept within MQTT_MAX_RETAINED_BYTES (all devices together), the rest not retained but still stored', async () => {
    const [d1, d2] = [await ownerWithDevice(app.http), await ownerWithDevice(app.http)] as [OwnedDevice, OwnedDevice];
    const payload = (i: string) => reading(i) + ' '.repeat(600);
    const refusedBefore = metric(await metrics(), 'mqtt_retained_refused_total');
    for (const d of [d1, d2]) {
      const c = await connectDevice(port, d.deviceId, d.token);
      await c.publishAsync(topic(d.deviceId), payload(d.deviceId), { qos: 1, retain: true });
      c.end(true);
    }
    expect(metric(await metrics(), 'mqtt_retained_refused_total')).toBe(refusedBefore + 1);
    const retainedFor = async (d: OwnedDevice) => {
      const { c } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token);
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: topic(d.deviceId), qos: 0 }] });
      await c.next((p) => p.cmd === 'suback', 'SUBACK');
      c.send(publish(topic(d.deviceId), 0, reading('marker')));
      await c.next((p) => p.cmd === 'publish' && !p.retain, 'the marker');
      c.end();
      return c.received.filter((p) => p.cmd === 'publish' && p.retain).length;
    };
    expect(await retainedFor(d1)).toBe(1);
    expect(await retainedFor(d2)).toBe(0);
    expect(await eventsOf(d2.deviceId)).toBe(2); // its retained-flagged reading and its marker
  });
});

describe('before CONNECT', () => {
  it('a packet over MQTT_MAX_CONNECT_PACKET_BYTES closes the connection at its header, with no database write', async () => {
    const rowsBefore = (await app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_dead_letters'))
      .rows[0]!.n;
    const countBefore = metric(await metrics(), 'mqtt_client_errors_total', 'reason="connect_packet_too_large"');
    // CONNECT announcing 1 MB (far under the 16 MiB packet limit for devices), then a PUBLISH announcing 20 MiB.
    for (const header of [
      [0x10, 0xc0, 0x84, 0x3d],
      [0x30, 0x80, 0x80, 0x80, 0x0a],
    ]) {
      const raw = await RawMqtt.open(port);
      raw.write(Buffer.from(header));
      raw.write(Buffer.alloc(64 * 1024, 1));
      await raw.closedByBroker('oversized packet before CONNECT');
    }
    expect(metric(await metrics(), 'mqtt_client_errors_total', 'reason="connect_packet_too_large"')).toBe(
      countBefore + 2,
    );
    expect(
      (await app.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_dead_letters')).rows[0]!.n,
    ).toBe(rowsBefore);
  });

  it('a connection that sends no CONNECT is closed after MQTT_CONNECT_TIMEOUT_MS', async () => {
    const raw = await RawMqtt.open(port);
    await raw.closedByBroker('connect timeout', 60_000);
    expect(metric(await metrics(), 'mqtt_client_errors_total', 'reason="connect_timeout"')).toBeGreaterThanOrEqual(1);
  });
});

describe('dead letters', () => {
  it('per device at most TELEMETRY_DEAD_LETTERS_PER_DEVICE in a window, then one row saying so; past it no PUBACK and the connection closes', async () => {
    const d = await ownerWithDevice(app.http);
    const bystander = await ownerWithDevice(app.http);
    const c = await connectDevice(port, d.deviceId, d.token);
    try {
      for (let i = 0; i < 6; i++) await publishAcked(c, topic(d.deviceId), '{');
      await expect(publishAcked(c, topic(d.deviceId), '{')).rejects.toThrow(/closed before PUBACK/);
    } finally {
      c.end(true);
    }
    expect(await deadLetterCodes(d.deviceId)).toEqual([
      ...Array<string>(5).fill('TELEMETRY.MALFORMED_JSON'),
      'TELEMETRY.DEAD_LETTER_RATE_EXCEEDED',
    ]);
    const text = await metrics();
    expect(
      metric(text, 'telemetry_dead_letters_rate_limited_total', 'code="TELEMETRY.MALFORMED_JSON"'),
    ).toBeGreaterThanOrEqual(1);
    expect(metric(text, 'mqtt_client_errors_total', 'reason="dead_letter_rate"')).toBeGreaterThanOrEqual(1);
    // Good readings of the same device still go in; another device's bad message is still kept.
    const again = await connectDevice(port, d.deviceId, d.token);
    await publishAcked(again, topic(d.deviceId), reading('good'));
    again.end(true);
    expect(await eventsOf(d.deviceId)).toBe(1);
    const other = await connectDevice(port, bystander.deviceId, bystander.token);
    await publishAcked(other, topic(bystander.deviceId), '{');
    other.end(true);
    expect(await deadLetterCodes(bystander.deviceId)).toEqual(['TELEMETRY.MALFORMED_JSON']);
  });

  it('are deleted after TELEMETRY_DEAD_LETTER_RETENTION_DAYS', async () => {
    const d = await ownerWithDevice(app.http);
    const c = await connectDevice(port, d.deviceId, d.token);
    await publishAcked(c, topic(d.deviceId), '[');
    await publishAcked(c, topic(d.deviceId), '[]');
    c.end(true);
    await app.db.pool.query(
      `UPDATE telemetry_dead_letters SET received_at = now() - interval '31 days'
      WHERE id = (SELECT min(id) FROM telemetry_dead_letters WHERE device_id = $1)`,
      [d.deviceId],
    );
    expect(await app.app.get(TelemetryServices).applyDeadLetterRetention()).toBe(1);
    expect(await deadLetterCodes(d.deviceId)).toEqual(['TELEMETRY.INVALID_READING']);
  });
});

describe('connections', () => {
  let capped: TestApp;
  beforeAll(async () => {
    capped = await startTestApp({ env: { MQTT_MAX_CONNECTIONS: '3', MQTT_CONNECT_TIMEOUT_MS: '120000' } });
  });
  afterAll(async () => {
    await capped.stop();
  });

  it('past MQTT_MAX_CONNECTIONS a new connection is closed on arrival; counted; room again once one goes', async () => {
    const p = capped.app.get(TelemetryServices).mqttPort;
    const open = await Promise.all([RawMqtt.open(p), RawMqtt.open(p), RawMqtt.open(p)]);
    await eventually(
      async () => metric((await capped.http('GET', '/metrics')).body as string, 'mqtt_connections') === 3,
      'three connections open',
    );
    const extra = await RawMqtt.open(p);
    await extra.closedByBroker('connection cap');
    expect(
      metric((await capped.http('GET', '/metrics')).body as string, 'mqtt_connections_refused_total', 'reason="max"'),
    ).toBeGreaterThanOrEqual(1);
    open[0].end();
    const d = await ownerWithDevice(capped.http);
    await eventually(async () => {
      try {
        (await connectDevice(p, d.deviceId, d.token)).end(true);
        return true;
      } catch {
        return false;
      }
    }, 'a device to connect once there is room');
    for (const o of open) o.end();
  });

  it('by default (MQTT_MAX_RETAINED_BYTES=0) the retain flag is ignored: the reading is stored, nothing is retained', async () => {
    const p = capped.app.get(TelemetryServices).mqttPort;
    const d = await ownerWithDevice(capped.http);
    const c = await connectDevice(p, d.deviceId, d.token);
    await c.publishAsync(topic(d.deviceId), reading('retained'), { qos: 1, retain: true });
    c.end(true);
    await eventually(
      async () => metric((await capped.http('GET', '/metrics')).body as string, 'mqtt_connections') === 0,
      'the connection to go',
    );
    const { c: again } = await RawMqtt.connectAs(p, d.deviceId, d.deviceId, d.token);
    again.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: topic(d.deviceId), qos: 0 }] });
    await again.next((x) => x.cmd === 'suback', 'SUBACK');
    again.send(publish(topic(d.deviceId), 0, reading('marker')));
    await again.next((x) => x.cmd === 'publish', 'the marker');
    again.end();
    expect(again.received.filter((x) => x.cmd === 'publish' && x.retain)).toEqual([]);
    expect(
      (
        await capped.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE stream_id = $1', [
          `telemetry-${d.deviceId}`,
        ])
      ).rows[0]!.n,
    ).toBe(2);
  });
});

describe('external broker (mosquitto)', () => {
  let broker: Mosquitto;
  let ext: TestApp;
  beforeAll(async () => {
    broker = await startMosquitto();
    ext = await startTestApp({
      env: {
        MQTT_URL: broker.url,
        MQTT_CLIENT_ID: 'app-hostile',
        TELEMETRY_DEAD_LETTERS_PER_DEVICE: '3',
        TELEMETRY_DEAD_LETTER_WINDOW_S: '3600',
      },
    });
  });
  afterAll(async () => {
    await ext?.stop();
    await broker?.stop();
  });

  it('the dead-letter rate applies too: past it messages are acknowledged, counted and logged, and the subscription keeps flowing', async () => {
    const d = await ownerWithDevice(ext.http);
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'hostile-publisher', protocolVersion: 4, clean: true });
    try {
      for (let i = 0; i < 8; i++) await pub.publishAsync(topic(d.deviceId), '{', { qos: 1 });
      await pub.publishAsync(topic(d.deviceId), reading('after-flood'), { qos: 1 });
    } finally {
      await pub.endAsync();
    }
    await eventually(
      async () =>
        (
          await ext.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE stream_id = $1', [
            `telemetry-${d.deviceId}`,
          ])
        ).rows[0]!.n === 1,
      'the good reading after the flood',
    );
    // External mode stores up to MQTT_EXTERNAL_MAX_INFLIGHT messages at once: the dead letters are
    // written concurrently (their ids need not follow arrival), and may land after the good reading.
    const codes = async () =>
      (
        await ext.db.pool.query<{ code: string }>(
          'SELECT code FROM telemetry_dead_letters WHERE device_id = $1 ORDER BY code',
          [d.deviceId],
        )
      ).rows.map((r) => r.code);
    await eventually(async () => (await codes()).length >= 4, 'the dead letters of the flood');
    expect(await codes()).toEqual([
      'TELEMETRY.DEAD_LETTER_RATE_EXCEEDED',
      ...Array<string>(3).fill('TELEMETRY.MALFORMED_JSON'),
    ]);
    expect(
      metric(
        (await ext.http('GET', '/metrics')).body as string,
        'telemetry_dead_letters_rate_limited_total',
        'code="TELEMETRY.MALFORMED_JSON"',
      ),
    ).toBe(4);
  });
});
