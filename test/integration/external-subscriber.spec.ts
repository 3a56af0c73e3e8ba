import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient, type Packet } from 'mqtt';
import { createLogger } from '../../src/platform/logger';
import type { IngestOutcome } from '../../src/telemetry/ingest';
import { ExternalSubscriber } from '../../src/telemetry/external-subscriber';
import { eventually } from '../support/events';
import { startMosquitto, type Mosquitto } from '../support/mosquitto';

/**
 * External-broker mode's pipeline (MQTT_URL), against a real mosquitto with the shipped limits. The
 * store is the test's: each message's `ingest` waits until the test finishes it, so the test decides
 * when, and in which order, messages are stored. What it shows:
 * - several messages are being stored at once, up to `maxInFlight`; past it, no further message is taken;
 * - a PUBACK leaves only once its message is stored, and in arrival order: a message stored before an
 *   earlier one waits for it.
 * The PUBACKs are seen as the packets the subscriber's MQTT connection writes.
 */
let broker: Mosquitto;
beforeAll(async () => {
  broker = await startMosquitto();
});
afterAll(async () => {
  await broker?.stop();
});

interface Held {
  readonly id: string;
  store(): void;
}

async function pipeline(maxInFlight: number) {
  const held: Held[] = [];
  const subscriber = new ExternalSubscriber({
    url: broker.url,
    clientId: `sub-${randomUUID()}`,
    group: `g-${randomUUID()}`,
    log: createLogger('silent'),
    maxInFlight,
    sinks: {
      maxPayloadBytes: 65_536,
      ingest: (_deviceId, readings) =>
        new Promise<IngestOutcome>((resolve) =>
          held.push({
            id: readings[0]!.id!,
            store: () =>
              resolve({ accepted: readings.length, duplicates: 0, position: 1, revision: 1, duplicate: false }),
          }),
        ),
      deadLetter: () => Promise.reject(new Error('no message of this test is dead-lettered')),
    },
  });
  await subscriber.start();
  const connection = (subscriber as unknown as { client: MqttClient }).client;
  /** Message ids in the order the messages arrived, and of the PUBACKs in the order they were written. */
  const arrived: number[] = [];
  const pubacks: number[] = [];
  connection.on('packetreceive', (p: Packet) => {
    if (p.cmd === 'publish') arrived.push(p.messageId!);
  });
  connection.on('packetsend', (p: Packet) => {
    if (p.cmd === 'puback') pubacks.push(p.messageId!);
  });
  const publisher = await mqtt.connectAsync(broker.url, { clientId: `pub-${randomUUID()}`, protocolVersion: 4 });
  const topic = `devices/${randomUUID()}/readings`;
  const publish = async (n: number) => {
    for (let i = 0; i < n; i++)
      await publisher.publishAsync(topic, JSON.stringify([{ metric: 'temp', value: i, ts: Date.now(), id: `m${i}` }]), {
        qos: 1,
      });
  };
  const byId = (id: string) => held.find((h) => h.id === id)!;
  const stop = async () => {
    held.forEach((h) => h.store());
    await publisher.endAsync();
    await subscriber.stop();
  };
  return { held, arrived, pubacks, publish, byId, stop };
}

/** Long enough for a PUBACK or a delivery that should not happen to show up. */
const settle = () => new Promise((r) => setTimeout(r, 300));

it('several messages are stored at once, and each PUBACK waits for its message and every earlier one', async () => {
  const p = await pipeline(8);
  try {
    await p.publish(5);
    await eventually(() => p.held.length === 5, 'all five messages taken before any is stored');
    expect(p.held.map((h) => h.id)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    await settle();
    expect(p.pubacks).toEqual([]);

    // The second and third are stored first: nothing may be acknowledged while the first is not.
    p.byId('m1').store();
    p.byId('m2').store();
    await settle();
    expect(p.pubacks).toEqual([]);

    p.byId('m0').store();
    await eventually(() => p.pubacks.length === 3, 'the PUBACKs of the first three');
    expect(p.pubacks).toEqual(p.arrived.slice(0, 3));

    p.byId('m4').store();
    await settle();
    expect(p.pubacks).toEqual(p.arrived.slice(0, 3));

    p.byId('m3').store();
    await eventually(() => p.pubacks.length === 5, 'the PUBACKs of the last two');
    expect(p.pubacks).toEqual(p.arrived);
    expect(p.arrived).toHaveLength(5);
  } finally {
    await p.stop();
  }
});

it('past maxInFlight messages being stored, no further message is taken until one is done', async () => {
  const p = await pipeline(2);
  try {
    await p.publish(5);
    await eventually(() => p.held.length === 2, 'two messages taken');
    await settle();
    expect(p.held).toHaveLength(2);

    p.byId('m0').store();
    await eventually(() => p.held.length === 3, 'a third message taken once the first is stored');
    await settle();
    expect(p.held).toHaveLength(3);
    expect(p.pubacks).toEqual(p.arrived.slice(0, 1));

    for (const id of ['m1', 'm2', 'm3', 'm4']) {
      await eventually(() => p.held.some((h) => h.id === id), `message ${id} taken`);
      p.byId(id).store();
    }
    await eventually(() => p.pubacks.length === 5, 'every PUBACK');
    expect(p.pubacks).toEqual(p.arrived);
    expect(p.held.map((h) => h.id)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  } finally {
    await p.stop();
  }
});
