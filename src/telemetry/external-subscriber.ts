import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from '../platform/logger';
import { handleReadingsMessage, type MessageSinks } from './mqtt-ingest';

/**
 * External-broker mode (MQTT_URL): the app is a client of Mosquitto/EMQX with
 * a persistent session (clean = false, a stable client id per instance) and a
 * shared subscription `$share/<group>/devices/+/readings` at QoS 1, so several
 * instances split the load. Device auth is the broker's job.
 *
 * MQTT.js sends the PUBACK of a QoS 1 message only after `handleMessage`
 * calls back (MQTT-4.3.2), and we call back only once the readings are
 * appended or the message dead-lettered. When storing fails, the connection
 * is dropped without PUBACK: the broker redelivers to the session on
 * reconnect (or to another member of the group).
 *
 * Known limit: MQTT.js handles one incoming message at a time (the next
 * packet waits for the previous PUBACK), so one instance appends one message
 * per round trip here; batch readings in arrays and add instances to scale.
 */

export interface ExternalSubscriberOptions {
  readonly url: string;
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  readonly group: string;
  readonly log: Logger;
  readonly sinks: MessageSinks;
}

export class ExternalSubscriber {
  private client: MqttClient | undefined;
  private inFlight: Promise<unknown> = Promise.resolve();
  private closing = false;

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
    client.handleMessage = (packet, callback) => {
      if (packet.cmd !== 'publish') return callback();
      if (this.closing) return; // no PUBACK: redelivered to the session when it reconnects
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      // Stored, dead-lettered, or past its device's dead-letter rate (logged and counted by the
      // sinks): acknowledged either way. Withholding the PUBACK of one device's flood would stall
      // every device behind it, since MQTT.js takes one message at a time.
      const work = handleReadingsMessage(o.sinks, packet.topic, payload, new Date()).then(
        () => callback(),
        (e: unknown) => {
          o.log.warn({ err: e, topic: packet.topic }, 'mqtt: could not store a message; reconnecting without PUBACK');
          client.stream?.destroy();
        },
      );
      this.inFlight = work;
    };
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

  /**
   * Takes no further message, lets the one being stored finish (its PUBACK goes out), then
   * disconnects; the session keeps the rest. The end is forced: a message that arrived after
   * `closing` is never called back, and a graceful end would wait for it forever. Unacknowledged,
   * the broker redelivers it (and a PUBACK lost in the cut only means a resend, stored once).
   */
  async stop(): Promise<void> {
    this.closing = true;
    await this.inFlight.catch(() => undefined);
    await this.client?.endAsync(true).catch(() => undefined);
  }
}
