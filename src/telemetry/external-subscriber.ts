import mqtt, { type MqttClient, type Packet } from 'mqtt';
import type { Logger } from '../platform/logger';
import { handleReadingsMessage, type MessageSinks } from './mqtt-ingest';

/**
 * External-broker mode (MQTT_URL): the app is a client of Mosquitto/EMQX with
 * a persistent session (clean = false, a stable client id per instance) and a
 * shared subscription `$share/<group>/devices/+/readings` at QoS 1, so several
 * instances split the load. Device auth is the broker's job.
 *
 * Pipelined: up to `maxInFlight` messages are being stored at once (the
 * ingestor group-commits them, as it does the embedded broker's), and each
 * PUBACK goes out only once its message is stored or dead-lettered, in the
 * order the messages arrived (MQTT-4.6.0-2), so a PUBACK never covers a
 * message that is not kept. Past `maxInFlight`, no further packet is read
 * from the broker until the oldest is done (TCP backpressure: the broker holds
 * the rest in the session). When storing fails, the connection is dropped:
 * the failed message and every later one not yet acknowledged are redelivered
 * to the session on reconnect (or to another member of the group) and stored
 * once (event ids derive from the message).
 *
 * How: MQTT.js reads the next packet only once its handler has called back,
 * and that callback writes the PUBACK. So the callback is called at once (up
 * to the bound), and the PUBACK it writes is held here until its message is
 * stored. This relies on MQTT.js (5.x) writing the PUBACK through the client's
 * `_sendPacket`; `start()` checks that it exists and fails loudly otherwise,
 * and test/integration/external-subscriber.spec.ts checks, against a real
 * mosquitto, that several messages are stored at once up to the bound, and that
 * no PUBACK goes out before its message and every earlier one are stored.
 */

export interface ExternalSubscriberOptions {
  readonly url: string;
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  readonly group: string;
  readonly log: Logger;
  readonly sinks: MessageSinks;
  /** Messages being stored at once (default 256). */
  readonly maxInFlight?: number;
}

type SendPacket = (packet: Packet, cb?: (err?: Error) => void, cbStorePut?: () => void, noStore?: boolean) => void;

/** A QoS 1 message between its arrival and its PUBACK. */
interface Pending {
  readonly messageId: number;
  /** The connection it came on: a PUBACK is never sent on another one. */
  readonly connection: number;
  stored: boolean;
  /** The PUBACK MQTT.js wrote, held until `stored` and every earlier message is acknowledged. */
  puback?: Packet;
}

export class ExternalSubscriber {
  private client: MqttClient | undefined;
  private closing = false;
  /** QoS 1 messages of the current connection, in arrival order. */
  private queue: Pending[] = [];
  private inFlight = 0;
  private readonly work = new Set<Promise<unknown>>();
  /** Handler callbacks waiting for room under maxInFlight (the next packet is read after each), with their connection. */
  private waiting: { readonly connection: number; readonly callback: () => void }[] = [];
  private connection = 0;
  private send: SendPacket | undefined;

  constructor(private readonly options: ExternalSubscriberOptions) {}

  get topic(): string {
    return `$share/${this.options.group}/devices/+/readings`;
  }

  start(): Promise<void> {
    const o = this.options;
    const client = mqtt.connect(o.url, {
      clientId: o.clientId,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.username ? { username: o.username } : {}),
      ...(o.password ? { password: o.password } : {}),
    });
    this.client = client;
    this.holdPubacks(client);
    client.handleMessage = (packet, callback) => {
      if (packet.cmd !== 'publish') return callback();
      if (this.closing) return; // no PUBACK: redelivered to the session when it reconnects
      this.take(client, packet, callback);
    };
    client.on('close', () => {
      // PUBACKs held for this connection are never sent, nor are its waiting handlers called back
      // (their PUBACKs would go out on the next connection): the broker redelivers those messages.
      this.connection++;
      this.queue = [];
      this.waiting = [];
    });
    client.on('error', (e) => o.log.warn({ err: e.message }, 'mqtt: external broker error'));
    client.on('offline', () => o.log.warn('mqtt: external broker unreachable; reconnecting'));
    // Start-up waits for the first subscription (bounded): an unreachable broker is retried in the background.
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        o.log.warn('mqtt: external broker not reached yet; still trying');
        resolve();
      }, 10_000);
      t.unref();
      client.on('connect', () => {
        client.subscribe(this.topic, { qos: 1 }, (err, granted) => {
          if (err || granted?.some((g) => g.qos === 128))
            o.log.error({ err, granted }, 'mqtt: shared subscription refused');
          else o.log.info({ topic: this.topic, clientId: o.clientId }, 'mqtt: subscribed at the external broker');
          clearTimeout(t);
          resolve();
        });
      });
    });
  }

  /** Stores one message; calls back (so MQTT.js reads the next packet) at once while there is room. */
  private take(client: MqttClient, packet: mqtt.IPublishPacket, callback: (err?: Error) => void): void {
    const o = this.options;
    const qos1 = packet.qos === 1 && packet.messageId !== undefined;
    const pending: Pending | undefined = qos1
      ? { messageId: packet.messageId!, connection: this.connection, stored: false }
      : undefined;
    if (pending) this.queue.push(pending);
    this.inFlight++;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // Stored, dead-lettered, or past its device's dead-letter rate (logged and counted by the
    // sinks): acknowledged either way. Withholding the PUBACK of one device's flood would stall
    // every device behind it in this in-order stream.
    const work = handleReadingsMessage(o.sinks, packet.topic, payload, new Date()).then(
      () => {
        if (pending) pending.stored = true;
        this.release();
      },
      (e: unknown) => {
        o.log.warn({ err: e, topic: packet.topic }, 'mqtt: could not store a message; reconnecting without PUBACK');
        this.queue = [];
        client.stream?.destroy();
        this.release();
      },
    );
    this.work.add(work);
    void work.finally(() => this.work.delete(work));
    const max = o.maxInFlight ?? 256;
    if (this.inFlight < max) callback();
    else this.waiting.push({ connection: this.connection, callback });
  }

  private release(): void {
    this.inFlight--;
    this.flush();
    const next = this.waiting.shift();
    if (next && next.connection === this.connection && !this.closing) next.callback();
  }

  /** Sends the PUBACKs of the stored messages at the head of the queue, in order. */
  private flush(): void {
    while (this.queue.length > 0 && this.queue[0]!.stored && this.queue[0]!.puback) {
      const p = this.queue.shift()!;
      if (p.connection === this.connection) this.send?.(p.puback!);
    }
  }

  /**
   * Intercepts the PUBACKs MQTT.js writes when a handler calls back: each is held on its
   * message until that message is stored; the handler's `done` runs at once, so the
   * next packet is read meanwhile.
   */
  private holdPubacks(client: MqttClient): void {
    const c = client as unknown as { _sendPacket?: SendPacket };
    if (typeof c._sendPacket !== 'function')
      throw new Error('mqtt: this MQTT.js has no _sendPacket; the pipelined PUBACK cannot be held (pin mqtt 5.x)');
    const original = c._sendPacket.bind(client);
    this.send = (packet) => original(packet);
    c._sendPacket = (packet, cb, cbStorePut, noStore) => {
      if (packet.cmd !== 'puback') return original(packet, cb, cbStorePut, noStore);
      const pending = this.queue.find((p) => p.messageId === packet.messageId && !p.puback);
      // A PUBACK of no message of this connection is never sent (it would acknowledge another message).
      if (pending) pending.puback = packet;
      cb?.();
      this.flush();
    };
  }

  /**
   * Takes no further message, lets those being stored finish (their PUBACKs go out), then
   * disconnects; the session keeps the rest. The end is forced: a message that arrived after
   * `closing` is never called back, and a graceful end would wait for it forever. Unacknowledged,
   * the broker redelivers it (and a PUBACK lost in the cut only means a resend, stored once).
   */
  async stop(): Promise<void> {
    this.closing = true;
    while (this.work.size > 0) await Promise.allSettled([...this.work]);
    await this.client?.endAsync(true).catch(() => undefined);
  }
}
