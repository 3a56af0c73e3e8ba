import { createServer, type AddressInfo, type Server } from 'node:net';
import Aedes, { type AuthenticateError, type Client } from 'aedes';
import { writeToStream } from 'mqtt-packet';
import type { Logger } from '../platform/logger';
import type { Principal } from '../identity/auth-guard';
import { handleReadingsMessage, readingsTopic, type MessageSinks } from './mqtt-ingest';

/**
 * The broker embedded in the app (aedes, in-process) when no MQTT_URL is set.
 * Device auth is enforced here:
 * - CONNECT: username = device id, password = a device token (its audience,
 *   kind, expiry and revocation checked by identity); client ids and
 *   usernames with + # / are refused. The session ends when the token expires.
 * - PUBLISH only to devices/<own id>/readings; SUBSCRIBE only within devices/<own id>/#.
 * - QoS 1: the PUBACK is written only once the message's readings are stored
 *   (or it is dead-lettered), in arrival order per connection; a failure to
 *   store closes the connection without PUBACK and the device resends.
 */

export interface EmbeddedBrokerOptions {
  readonly host: string;
  readonly port: number;
  /** Largest MQTT packet (remaining length) read from a connection; a larger one closes it. */
  readonly maxPacketBytes: number;
  readonly log: Logger;
  readonly sinks: MessageSinks;
  /** Verifies a device token; throws when it is not a valid device token. */
  authenticate(token: string): Promise<Principal>;
  /** Whether the device exists and is not revoked. */
  deviceActive(deviceId: string): Promise<boolean>;
}

// MQTT 3.1.1 §3.2.2.3 CONNACK return codes.
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const WILDCARDS = /[+#/]/;

const deviceOf = new WeakMap<Client, string>();
/** Payload bytes being stored at once, across connections, before aedes is made to wait. */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/**
 * What one message in flight costs beyond its payload (packet, parsed readings, promises, ack
 * ticket), counted against the same budget so a flood of tiny messages is bounded too.
 */
const PER_MESSAGE_OVERHEAD_BYTES = 2048;

interface AckTicket {
  readonly client: Client;
  readonly messageId: number;
  ready: boolean;
}

/**
 * PUBACKs in the order the PUBLISHes arrived, per connection (MQTT-4.6.0-2),
 * each written once its message is stored: a message stored early waits for
 * the ones before it.
 */
class PubackQueue {
  private readonly queues = new WeakMap<Client, AckTicket[]>();

  enqueue(client: Client, messageId: number): AckTicket {
    const q = this.queues.get(client) ?? [];
    this.queues.set(client, q);
    const t = { client, messageId, ready: false };
    q.push(t);
    return t;
  }

  complete(t: AckTicket): void {
    t.ready = true;
    const q = this.queues.get(t.client);
    if (!q) return;
    while (q.length > 0 && q[0]!.ready) {
      const { messageId } = q.shift()!;
      const c = t.client as unknown as { conn: NodeJS.WritableStream; connected: boolean; closed: boolean };
      // A closed connection gets no PUBACK: the device resends, and the resend is stored once.
      if (c.connected && !c.closed) writeToStream({ cmd: 'puback', messageId }, c.conn);
    }
  }
}

function authError(code: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}

export class EmbeddedBroker {
  private readonly aedes: Aedes;
  private readonly server: Server;
  private readonly expiryTimers = new Map<Client, NodeJS.Timeout>();
  private inFlight = 0;
  private idle: (() => void)[] = [];
  private closing = false;
  private readonly acks = new PubackQueue();
  /** Payload bytes of messages being stored. */
  private inFlightBytes = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly options: EmbeddedBrokerOptions) {
    const log = options.log;
    this.aedes = new Aedes({
      authenticate: (client, username, password, done) => {
        void this.authenticate(client, username, password).then(() => done(null, true), (e: AuthenticateError) => done(e, false));
      },
      authorizePublish: (client, packet, done) => {
        if (!client) return done(null); // the broker's own messages ($SYS)
        const deviceId = deviceOf.get(client);
        if (!deviceId || packet.topic !== readingsTopic(deviceId)) {
          log.info({ clientId: client.id, topic: packet.topic }, 'mqtt: publish refused (not the device\'s readings topic)');
          return done(new Error(`publish to ${packet.topic} is not allowed`));
        }
        if (this.closing) return done(new Error('shutting down')); // no PUBACK: the device resends to the next instance
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        void this.admit(payload.length + PER_MESSAGE_OVERHEAD_BYTES).then(() => {
          if (this.closing) {
            this.release(payload.length + PER_MESSAGE_OVERHEAD_BYTES);
            return done(new Error('shutting down'));
          }
          // QoS 1 (MQTT-4.3.2): we send the PUBACK ourselves once the readings are stored, so aedes
          // must not send one now; handing it on as QoS 0 lets aedes read the connection's next
          // messages meanwhile (they are stored together: group commit). Memory stays bounded by
          // admit() (payload bytes) and the ingestor (readings): past those, this callback waits
          // and aedes reads no more from the connection. QoS 0 and 2 keep aedes's own flow.
          const ackLater = packet.qos === 1;
          const ticket = ackLater ? this.acks.enqueue(client, packet.messageId!) : undefined;
          if (ackLater) packet.qos = 0;
          this.inFlight++;
          const stored = handleReadingsMessage(options.sinks, packet.topic, payload, new Date());
          if (ackLater) done(null);
          stored.then(
            () => {
              if (ticket) this.acks.complete(ticket);
              else done(null);
            },
            (e: unknown) => {
              log.warn({ err: e, clientId: client.id }, 'mqtt: could not store a message; closing the connection without PUBACK');
              if (ackLater) client.close();
              else done(e instanceof Error ? e : new Error(String(e)));
            },
          ).finally(() => {
            this.release(payload.length + PER_MESSAGE_OVERHEAD_BYTES);
            this.inFlight--;
            if (this.inFlight === 0) for (const r of this.idle.splice(0)) r();
          });
        });
      },
      authorizeSubscribe: (client, sub, done) => {
        const deviceId = deviceOf.get(client);
        const own = deviceId ? `devices/${deviceId}` : undefined;
        if (own && (sub.topic === own || sub.topic.startsWith(`${own}/`))) return done(null, sub);
        log.info({ clientId: client.id, topic: sub.topic }, 'mqtt: subscription refused');
        done(null, null); // SUBACK 0x80 for this topic
      },
    });
    this.aedes.on('clientDisconnect', (client) => this.forget(client));
    this.aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'mqtt: client error'));
    this.aedes.on('connectionError', (_client, err) => log.debug({ err: err.message }, 'mqtt: connection error'));
    this.server = createServer((socket) => {
      const client = this.aedes.handle(socket);
      // aedes 0.51 buffers a whole packet whatever its size: watch the framing and cut an oversized one short.
      watchPacketSizes(socket, options.maxPacketBytes, (size) => {
        const deviceId = deviceOf.get(client) ?? null;
        log.warn({ clientId: client.id, deviceId, size }, 'mqtt: packet too large; closing the connection');
        socket.destroy();
        void options.sinks.deadLetter(deviceId, '(unread: packet too large)', Buffer.alloc(0), 'TELEMETRY.PACKET_TOO_LARGE',
          `an MQTT packet of ${size} bytes exceeds the limit of ${options.maxPacketBytes} bytes; the connection was closed`)
          .catch((e: unknown) => log.warn({ err: e }, 'mqtt: could not dead-letter an oversized packet'));
      });
    });
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    if (!client.id || WILDCARDS.test(client.id)) throw authError(IDENTIFIER_REJECTED, 'client id must not contain + # /');
    if (!username || !password || WILDCARDS.test(username)) throw authError(BAD_USERNAME_OR_PASSWORD, 'username must be the device id, password a device token');
    let principal: Principal;
    try {
      principal = await this.options.authenticate(password.toString('utf8'));
    } catch (e) {
      const kind = (e as { kind?: string }).kind;
      if (kind === 'unavailable') throw authError(SERVER_UNAVAILABLE, 'authentication is unavailable');
      throw authError(BAD_USERNAME_OR_PASSWORD, 'invalid device token');
    }
    if (principal.kind !== 'device' || principal.id !== username) throw authError(BAD_USERNAME_OR_PASSWORD, 'the token is not this device\'s');
    // Verification allows a few seconds of clock skew past exp; a session would end at once anyway.
    if (principal.exp * 1000 <= Date.now()) throw authError(BAD_USERNAME_OR_PASSWORD, 'the device token has expired');
    if (!(await this.options.deviceActive(username))) throw authError(BAD_USERNAME_OR_PASSWORD, 'unknown or revoked device');
    deviceOf.set(client, username);
    // The session lasts as long as the token.
    const ms = Math.max(0, principal.exp * 1000 - Date.now());
    const timer = setTimeout(() => {
      this.options.log.info({ clientId: client.id }, 'mqtt: device token expired; ending the session');
      client.close();
    }, Math.min(ms, 2_147_000_000));
    timer.unref();
    this.forget(client);
    this.expiryTimers.set(client, timer);
  }

  /** Waits until the payloads in flight leave room for `bytes` (one message always goes alone). */
  private async admit(bytes: number): Promise<void> {
    while (!this.closing && this.inFlightBytes > 0 && this.inFlightBytes + bytes > MAX_IN_FLIGHT_BYTES) {
      await new Promise<void>((res) => this.waiting.push(res));
    }
    this.inFlightBytes += bytes;
  }

  private release(bytes: number): void {
    this.inFlightBytes -= bytes;
    for (const w of this.waiting.splice(0)) w();
  }

  private forget(client: Client): void {
    const t = this.expiryTimers.get(client);
    if (t) clearTimeout(t);
    this.expiryTimers.delete(client);
  }

  async start(): Promise<number> {
    await new Promise<void>((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(this.options.port, this.options.host, () => { this.server.off('error', rej); res(); });
    });
    return (this.server.address() as AddressInfo).port;
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Stops accepting connections and publishes, waits for the messages being stored (their PUBACKs go out), then closes every client. */
  async stop(): Promise<void> {
    this.closing = true;
    for (const w of this.waiting.splice(0)) w();
    const closed = new Promise<void>((res) => this.server.close(() => res()));
    if (this.inFlight > 0) await new Promise<void>((res) => this.idle.push(res));
    for (const t of this.expiryTimers.values()) clearTimeout(t);
    this.expiryTimers.clear();
    await new Promise<void>((res) => this.aedes.close(() => res()));
    await closed;
  }
}

/**
 * Follows MQTT framing (MQTT-2.2: fixed header byte, then the remaining length
 * as a variable byte integer of at most 4 bytes) on the bytes aedes reads, and
 * calls `tooLarge` as soon as a packet announces more than `max` bytes. A
 * 'data' listener next to aedes's 'readable' one sees each chunk aedes reads
 * without changing the flow ('readable' takes precedence).
 */
export function watchPacketSizes(socket: NodeJS.EventEmitter, max: number, tooLarge: (size: number) => void): void {
  let state: 'header' | 'length' | 'body' = 'header';
  let value = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let remaining = 0;
  let done = false;
  socket.on('data', (chunk: Buffer) => {
    let i = 0;
    while (i < chunk.length && !done) {
      if (state === 'header') {
        i++;
        state = 'length';
        value = 0;
        multiplier = 1;
        lengthBytes = 0;
      } else if (state === 'length') {
        const b = chunk[i++]!;
        value += (b & 0x7f) * multiplier;
        multiplier *= 128;
        lengthBytes++;
        if ((b & 0x80) === 0) {
          if (value > max) {
            done = true;
            tooLarge(value);
            return;
          }
          remaining = value;
          state = remaining > 0 ? 'body' : 'header';
        } else if (lengthBytes === 4) {
          done = true; // malformed: the MQTT parser reports it
        }
      } else {
        const take = Math.min(remaining, chunk.length - i);
        i += take;
        remaining -= take;
        if (remaining === 0) state = 'header';
      }
    }
  });
}
