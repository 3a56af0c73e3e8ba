import type { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  Aedes,
  type AedesPublishPacket,
  type AuthenticateError,
  type Client,
  type ConnectPacket,
  type PublishPacket,
} from 'aedes';
import memoryPersistence from 'aedes-persistence';
import { writeToStream } from 'mqtt-packet';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../platform/logger';
import { PerAddressConnections, refusalReporter } from '../platform/connection-limits';
import type { Principal } from '../platform/http/access';
import { handleReadingsMessage, readingsTopic, type MessageSinks } from './mqtt-ingest';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';

/**
 * The broker embedded in the app (aedes 1.x, in-process) when no MQTT_URL is set.
 * Device auth is enforced here:
 * - CONNECT: username = device id, password = a device token (its audience,
 *   kind, expiry and revocation checked by identity), client id = the device id
 *   (one session per device: a second connection of the same device replaces the
 *   first, MQTT-3.1.4-2; another device cannot take it over). The session is
 *   watched by identity (`watchSession`) and closed when access is withdrawn.
 * - PUBLISH only to devices/<own id>/readings; SUBSCRIBE only within devices/<own id>/#,
 *   and only that is ever forwarded to the device.
 * - QoS 1: the PUBACK is written only once the message's readings are stored
 *   (or it is dead-lettered), in arrival order per connection; a failure to
 *   store closes the connection without PUBACK and the device resends.
 *
 * Hostile clients: every limit applies before the work it protects (connections,
 * packet size before and after CONNECT, CONNECT timeout, in-flight QoS 2,
 * subscriptions, retained bytes); the broker keeps no session state past a
 * connection (see `preConnect`); and an error while handling one client's packet
 * closes that connection, is logged with the client id and counted in
 * `mqtt_client_errors_total{reason}`, never more.
 */

export interface EmbeddedBrokerLimits {
  /** Largest MQTT packet (remaining length) once the device is authenticated; a larger one closes the connection. */
  readonly maxPacketBytes: number;
  /** Largest packet before the CONNECT is accepted (the CONNECT itself included). */
  readonly maxConnectPacketBytes: number;
  /** Open connections at most; more are closed as they arrive. */
  readonly maxConnections: number;
  /** A connection that has not sent CONNECT by then is closed. */
  readonly connectTimeoutMs: number;
  /** Connections one peer address may hold before their CONNECT is accepted (0: no limit). */
  readonly maxPendingPerAddress: number;
  /** QoS 2 PUBLISHes per connection awaiting their PUBREL; one more closes the connection. */
  readonly maxInflightQos2: number;
  /** Topic filters one connection may hold; more get SUBACK 0x80. */
  readonly maxSubscriptions: number;
  /** Payload bytes of retained messages kept, all topics together; 0 ignores the retain flag. */
  readonly maxRetainedBytes: number;
  /** Bytes of messages being stored at once, all connections together, each its payload plus PER_MESSAGE_OVERHEAD_BYTES. */
  readonly maxInFlightBytes: number;
}

export interface EmbeddedBrokerOptions extends EmbeddedBrokerLimits {
  readonly host: string;
  readonly port: number;
  readonly log: Logger;
  readonly sinks: MessageSinks;
  /** Where the broker's metrics go (GET /metrics); none: not exported. */
  readonly registry?: Registry;
  /** Verifies a device token; throws when it is not a valid device token. */
  authenticate(token: string): Promise<Principal>;
  /** Whether the device exists and is not revoked. */
  deviceActive(deviceId: string): Promise<boolean>;
  /** Calls `end` once when the session's access is withdrawn; returns "stop watching". */
  watchSession(principal: Principal, end: (reason: string) => void): () => void;
}

// MQTT 3.1.1 §3.2.2.3 CONNACK return codes.
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const WILDCARDS = /[+#/]/;
/** Longest topic filter a device may subscribe to: its namespace is short, so this is generous. */
const MAX_FILTER_LENGTH = 256;

const deviceOf = new WeakMap<Client, string>();
/**
 * What one message in flight costs beyond its payload (packet, parsed readings, promises, ack
 * ticket), counted against the same budget so a flood of tiny messages is bounded too.
 */
const PER_MESSAGE_OVERHEAD_BYTES = 2048;
const EMPTY = Buffer.alloc(0);

/** aedes internals this file reaches into, each for a reason given where it is used. */
interface ClientInternals {
  conn: Socket;
  connected: boolean;
  closed: boolean;
  subscriptions: Record<string, unknown>;
  /** Message ids of QoS 2 PUBLISHes awaiting PUBREL (aedes 1.x). */
  _inboundInflight: Set<number>;
  _parser: { parse(buf: Buffer): unknown };
}
const internals = (c: Client) => c as unknown as ClientInternals;

/** The part of aedes-persistence's memory store this file wraps (promise form, as aedes 1.x calls it). */
interface MemoryStore {
  storeRetained(packet: { topic: string; payload: Buffer }): Promise<void>;
  incomingStorePacket(client: Client, packet: PublishPacket): Promise<void>;
}

interface AckTicket {
  readonly client: Client;
  /** What acknowledges the message: our PUBACK (QoS 1), or aedes's own flow resumed (its PUBREC for QoS 2). */
  ack: () => void;
  ready: boolean;
}

/**
 * Acknowledgements in the order the PUBLISHes arrived, per connection
 * (MQTT-4.6.0-2 PUBACK, MQTT-4.6.0-3 PUBREC), each given once its message is
 * stored: a message stored early waits for the ones before it.
 */
class AckQueue {
  private readonly queues = new WeakMap<Client, AckTicket[]>();

  enqueue(client: Client, ack: () => void): AckTicket {
    const q = this.queues.get(client) ?? [];
    this.queues.set(client, q);
    const t = { client, ack, ready: false };
    q.push(t);
    return t;
  }

  /** Marks `t` stored (or, with `instead`, answered otherwise) and gives every acknowledgement now due, in order. */
  complete(t: AckTicket, instead?: () => void): void {
    if (instead) t.ack = instead;
    t.ready = true;
    const q = this.queues.get(t.client);
    if (!q) return;
    while (q.length > 0 && q[0]!.ready) q.shift()!.ack();
  }
}

function writePuback(client: Client, messageId: number): void {
  const c = internals(client);
  // A closed connection gets no PUBACK: the device resends, and the resend is stored once.
  if (c.connected && !c.closed) writeToStream({ cmd: 'puback', messageId }, c.conn);
}

function authError(code: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}

/**
 * A bounded set of reasons for `mqtt_client_errors_total` (a label must not take
 * whatever text an error carries), from the messages aedes and mqtt-packet use.
 */
const ERROR_REASONS: [RegExp, string][] = [
  [/too many levels|too many words/i, 'topic_levels'],
  [/maxInflightInbound/i, 'inflight_qos2'],
  [/connect did not arrive/i, 'connect_timeout'],
  [/keep ?alive/i, 'keepalive_timeout'],
  [/queue limit/i, 'queue_limit'],
  [/drain timeout/i, 'slow_reader'],
  [/dead-letter rate/i, 'dead_letter_rate'],
  [/shutting down/i, 'shutting_down'],
  [/publish to .* is not allowed/i, 'publish_refused'],
  [/identifier rejected|client id/i, 'client_id_refused'],
  [/username|password|token|revoked|not authorized|unavailable/i, 'connect_refused'],
  [/ECONNRESET|EPIPE|ETIMEDOUT|write after end|socket|connection closed/i, 'socket'],
  [
    /invalid|malformed|unknown|not allowed|only allowed|not supported|too short|impossible|protocol|wrong|cannot parse|header|length|qos|reserved|flag|topic|utf|payload|property|string/i,
    'protocol',
  ],
];
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return ERROR_REASONS.find(([re]) => re.test(message))?.[1] ?? 'other';
}

export class EmbeddedBroker {
  private readonly aedes: Aedes;
  private readonly server: Server;
  private readonly unwatch = new Map<Client, () => void>();
  private inFlight = 0;
  private idle: (() => void)[] = [];
  private closing = false;
  private readonly acks = new AckQueue();
  /** Bytes of the messages being stored, each its payload plus PER_MESSAGE_OVERHEAD_BYTES. */
  private inFlightBytes = 0;
  private readonly waiting: (() => void)[] = [];
  /** Bytes of the messages being stored now, as counted against maxInFlightBytes. */
  get bytesInFlight(): number {
    return this.inFlightBytes;
  }
  private readonly retainedSizes = new Map<string, number>();
  private retainedBytes = 0;
  private readonly clientErrors: Counter<'reason'>;
  private readonly refusedConnections: Counter<'reason'>;
  private readonly pending: PerAddressConnections;

  constructor(private readonly options: EmbeddedBrokerOptions) {
    const log = options.log;
    const registers = options.registry ? [options.registry] : [];
    this.clientErrors = new Counter({
      name: 'mqtt_client_errors_total',
      help: 'MQTT connections closed by an error in handling them, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.refusedConnections = new Counter({
      name: 'mqtt_connections_refused_total',
      help: 'MQTT connections closed on arrival: MQTT_MAX_CONNECTIONS (max) or MQTT_MAX_PENDING_PER_ADDRESS (pending_per_address) reached',
      labelNames: ['reason'],
      registers,
    });
    const retainedRefused = new Counter({
      name: 'mqtt_retained_refused_total',
      help: 'Retained PUBLISHes not kept: MQTT_MAX_RETAINED_BYTES reached',
      registers,
    });
    const persistence = memoryPersistence() as unknown as MemoryStore;
    this.boundPersistence(persistence, () => retainedRefused.inc());
    this.aedes = new Aedes({
      persistence,
      connectTimeout: options.connectTimeoutMs,
      maxInflightInbound: options.maxInflightQos2,
      // A device id (the only accepted client id) is 36 characters; the MQTT 3.1 default is 23.
      maxClientsIdLength: 64,
      preConnect: (_client, packet: ConnectPacket, done) => {
        // No session state outlives a connection: the broker never stores subscriptions,
        // offline queues or unreleased QoS 2 ids for later (CONNACK session present = 0,
        // MQTT-3.2.2-1). A device is the only publisher to its own topics and has one
        // connection, so a queue kept for it while away would only ever hold its own
        // echoes, while every kept session would be memory a client can claim for ever.
        packet.clean = true;
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        this.authenticate(client, username, password).then(
          () => done(null, true),
          (e: unknown) => {
            if ((e as Partial<AuthenticateError>).returnCode === undefined)
              log.error({ err: e, clientId: client.id }, 'mqtt: authentication failed unexpectedly');
            done(e as AuthenticateError, false);
          },
        );
      },
      authorizePublish: (client, packet, done) => {
        try {
          this.authorizePublish(client, packet, done);
        } catch (e) {
          if (client) this.failed(client, e, 'authorizePublish');
          done(new Error('internal error'));
        }
      },
      authorizeSubscribe: (client, sub, done) => {
        try {
          const deviceId = deviceOf.get(client);
          const own = deviceId ? `devices/${deviceId}` : undefined;
          const inOwnNamespace =
            own !== undefined &&
            sub.topic.length <= MAX_FILTER_LENGTH &&
            (sub.topic === own || sub.topic.startsWith(`${own}/`));
          // aedes adds each granted filter to client.subscriptions before it authorizes the next one of the packet.
          const held = internals(client).subscriptions;
          const room = sub.topic in held || Object.keys(held).length < options.maxSubscriptions;
          if (inOwnNamespace && room) return done(null, sub);
          log.info(
            {
              clientId: client.id,
              topic: sub.topic.slice(0, 300),
              reason: inOwnNamespace ? 'too many subscriptions' : 'outside devices/<own id>/#',
            },
            'mqtt: subscription refused',
          );
          done(null, null); // SUBACK 0x80 for this filter
        } catch (e) {
          this.failed(client, e, 'authorizeSubscribe');
          done(new Error('internal error'));
        }
      },
      // Checked again on every delivery: only the device's own topics ever reach it.
      authorizeForward: (client, packet: AedesPublishPacket) => {
        try {
          const deviceId = deviceOf.get(client);
          if (deviceId && packet.topic.startsWith(`devices/${deviceId}/`)) return packet;
          return null;
        } catch (e) {
          this.failed(client, e, 'authorizeForward');
          return null;
        }
      },
    });
    this.aedes.on('clientError', (client, err) => this.countError(client, err));
    this.aedes.on('connectionError', (client, err) => this.countError(client, err));
    // aedes reports what it cannot attribute to a client on itself; unheard, an 'error' event would end the process.
    (this.aedes as EventEmitter).on('error', (err: unknown) => {
      this.clientErrors.inc({ reason: 'broker' });
      log.error({ err }, 'mqtt: broker error');
    });
    this.server = createServer((socket) => this.accept(socket));
    this.server.maxConnections = options.maxConnections;
    const refused = refusalReporter(log, this.refusedConnections, {
      max: 'mqtt: connection refused (MQTT_MAX_CONNECTIONS reached)',
      pending_per_address:
        'mqtt: connection refused (MQTT_MAX_PENDING_PER_ADDRESS reached: too many unauthenticated connections from this address)',
    });
    this.server.on('drop', (data) => refused('max', data?.remoteAddress));
    this.pending = new PerAddressConnections(options.maxPendingPerAddress, (address) =>
      refused('pending_per_address', address),
    );
    const connections = () => this.connections();
    new Gauge({
      name: 'mqtt_connections',
      help: 'Open MQTT connections to the embedded broker',
      registers,
      async collect() {
        this.set(await connections());
      },
    });
  }

  /**
   * Bounds what aedes keeps in memory on a client's behalf:
   * - an unreleased QoS 2 PUBLISH is kept only to answer its resends and PUBREL
   *   (aedes 1.x publishes on arrival), and its readings are stored by then: keep it
   *   without payload, so MQTT_MAX_INFLIGHT_QOS2 entries cost bytes, not megabytes;
   * - retained payloads count against one budget, beyond which retain is ignored.
   */
  private boundPersistence(store: MemoryStore, refused: () => void): void {
    const storeIncoming = store.incomingStorePacket.bind(store);
    store.incomingStorePacket = (client, packet) => storeIncoming(client, { ...packet, payload: EMPTY });
    const storeRetained = store.storeRetained.bind(store);
    store.storeRetained = async (packet) => {
      const old = this.retainedSizes.get(packet.topic) ?? 0;
      const size = packet.payload.length;
      if (size > 0 && this.retainedBytes - old + size > this.options.maxRetainedBytes) {
        refused();
        this.options.log.info(
          { topic: packet.topic, size, maxRetainedBytes: this.options.maxRetainedBytes },
          'mqtt: retained message not kept (MQTT_MAX_RETAINED_BYTES)',
        );
        return;
      }
      await storeRetained(packet);
      this.retainedBytes += size - old;
      if (size > 0) this.retainedSizes.set(packet.topic, size);
      else this.retainedSizes.delete(packet.topic);
    };
  }

  private accept(socket: Socket): void {
    // Until its CONNECT is accepted, a connection counts against its address (see authenticate).
    if (!this.pending.admit(socket)) return;
    let client: Client;
    try {
      client = this.aedes.handle(socket);
    } catch (e) {
      this.clientErrors.inc({ reason: 'internal' });
      this.options.log.error({ err: e }, 'mqtt: could not take a connection');
      socket.destroy();
      return;
    }
    // Every packet of this connection is parsed and handled (synchronously as far as aedes
    // goes) from here: whatever throws ends this connection, never the process.
    const parser = internals(client)._parser;
    const parse = parser.parse.bind(parser);
    parser.parse = (buf: Buffer) => {
      try {
        return parse(buf);
      } catch (e) {
        this.failed(client, e, 'packet');
        return 0;
      }
    };
    socket.once('close', () => this.forget(client));
    // aedes buffers a whole packet whatever its size: watch the framing and cut an oversized one short.
    watchPacketSizes(
      socket,
      () => (deviceOf.has(client) ? this.options.maxPacketBytes : this.options.maxConnectPacketBytes),
      (size, limit) => {
        const deviceId = deviceOf.get(client) ?? null;
        this.clientErrors.inc({ reason: deviceId ? 'packet_too_large' : 'connect_packet_too_large' });
        this.options.log.warn(
          { clientId: client.id, deviceId, size, limit },
          'mqtt: packet too large; closing the connection',
        );
        socket.destroy();
        // Only an authenticated device leaves a dead letter (rate limited per device); before
        // CONNECT is accepted nothing is written anywhere but the log and the metric.
        if (!deviceId) return;
        void this.options.sinks
          .deadLetter(
            deviceId,
            '(unread: packet too large)',
            EMPTY,
            TelemetryErrorCode.PACKET_TOO_LARGE,
            `an MQTT packet of ${size} bytes exceeds the limit of ${limit} bytes; the connection was closed`,
          )
          .catch((e: unknown) => this.options.log.warn({ err: e }, 'mqtt: could not dead-letter an oversized packet'));
      },
    );
  }

  /** An error of ours while handling a client's packet: that connection ends, the broker goes on. */
  private failed(client: Client, err: unknown, where: string): void {
    this.clientErrors.inc({ reason: 'internal' });
    this.options.log.error(
      { err, clientId: client.id, where },
      'mqtt: error while handling a packet; closing the connection',
    );
    try {
      internals(client).conn.destroy();
      client.close();
    } catch (e) {
      this.options.log.error({ err: e, clientId: client.id }, 'mqtt: error while closing a failed connection');
    }
  }

  private countError(client: Client | null, err: Error): void {
    const reason = reasonOf(err);
    this.clientErrors.inc({ reason });
    const level = reason === 'other' ? 'warn' : 'info';
    this.options.log[level](
      {
        clientId: client?.id ?? null,
        deviceId: client ? (deviceOf.get(client) ?? null) : null,
        reason,
        err: err.message.slice(0, 300),
      },
      'mqtt: connection closed by an error',
    );
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    const log = this.options.log;
    if (!client) return done(null); // the broker's own messages ($SYS)
    const deviceId = deviceOf.get(client);
    if (!deviceId || packet.topic !== readingsTopic(deviceId)) {
      log.info(
        { clientId: client.id, topic: packet.topic.slice(0, 300) },
        "mqtt: publish refused (not the device's readings topic)",
      );
      return done(new Error(`publish to ${packet.topic.slice(0, 300)} is not allowed`));
    }
    if (this.closing) return done(new Error('shutting down')); // no PUBACK: the device resends to the next instance
    // aedes refuses a QoS 2 PUBLISH past maxInflightInbound only after this hook: refuse it here, before its readings are stored.
    const inflightQos2 = internals(client)._inboundInflight;
    if (packet.qos === 2 && inflightQos2.size >= this.options.maxInflightQos2 && !inflightQos2.has(packet.messageId!)) {
      return done(
        new Error(
          `maxInflightInbound exceeded: ${this.options.maxInflightQos2} QoS 2 messages already awaiting PUBREL`,
        ),
      );
    }
    // Readings are the record; a retained copy is kept only within MQTT_MAX_RETAINED_BYTES.
    if (packet.retain && this.options.maxRetainedBytes === 0) packet.retain = false;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const cost = payload.length + PER_MESSAGE_OVERHEAD_BYTES;
    void this.admit(cost).then(() => {
      if (this.closing) {
        this.release(cost);
        return done(new Error('shutting down'));
      }
      // QoS 1 (MQTT-4.3.2): we send the PUBACK ourselves once the readings are stored, so aedes
      // must not send one now; handing it on as QoS 0 lets aedes read the connection's next
      // messages meanwhile (they are stored together: group commit). Memory stays bounded by
      // admit() (payload bytes) and the ingestor (readings): past those, this callback waits
      // and aedes reads no more from the connection. QoS 0 and 2 keep aedes's own flow.
      // QoS 0 and 2 resume aedes's own flow (its PUBREC for QoS 2) once stored, also in arrival order.
      const ackLater = packet.qos === 1 && packet.messageId !== undefined;
      const messageId = packet.messageId;
      const ticket = this.acks.enqueue(client, ackLater ? () => writePuback(client, messageId!) : () => done(null));
      if (ackLater) packet.qos = 0;
      this.inFlight++;
      const stored = handleReadingsMessage(this.options.sinks, packet.topic, payload, new Date());
      if (ackLater) done(null);
      stored
        .then(
          (result) => {
            if (result.kind === 'rate-limited') {
              // Past the device's dead-letter rate the message is not kept here: it is not
              // acknowledged either, so the device still holds it, and it loses the connection.
              if (!ackLater) return this.acks.complete(ticket, () => done(new Error('dead-letter rate exceeded')));
              this.countError(client, new Error('dead-letter rate exceeded; closing the connection without PUBACK'));
              client.close();
              return;
            }
            this.acks.complete(ticket);
          },
          (e: unknown) => {
            log.warn(
              { err: e, clientId: client.id },
              'mqtt: could not store a message; closing the connection without PUBACK',
            );
            if (ackLater) {
              this.clientErrors.inc({ reason: 'store_failed' });
              client.close();
            } else this.acks.complete(ticket, () => done(e instanceof Error ? e : new Error(String(e))));
          },
        )
        .finally(() => {
          this.release(cost);
          this.inFlight--;
          if (this.inFlight === 0) for (const r of this.idle.splice(0)) r();
        })
        .catch((e: unknown) => this.failed(client, e, 'publish'));
    });
  }

  private async authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
  ): Promise<void> {
    if (!client.id || WILDCARDS.test(client.id))
      throw authError(IDENTIFIER_REJECTED, 'client id must not contain + # /');
    if (!username || !password || WILDCARDS.test(username))
      throw authError(BAD_USERNAME_OR_PASSWORD, 'username must be the device id, password a device token');
    // A device's client id is its own (refused before any token work): no device can take over another's session.
    if (client.id !== username)
      throw authError(IDENTIFIER_REJECTED, 'the client id must be the device id (the username)');
    let principal: Principal;
    try {
      principal = await this.options.authenticate(password.toString('utf8'));
    } catch (e) {
      const kind = (e as { kind?: string }).kind;
      if (kind === 'unavailable') throw authError(SERVER_UNAVAILABLE, 'authentication is unavailable');
      throw authError(BAD_USERNAME_OR_PASSWORD, 'invalid device token');
    }
    if (principal.kind !== 'device' || principal.id !== username)
      throw authError(BAD_USERNAME_OR_PASSWORD, "the token is not this device's");
    // Verification allows a few seconds of clock skew past exp; a session would end at once anyway.
    if (principal.exp * 1000 <= Date.now()) throw authError(BAD_USERNAME_OR_PASSWORD, 'the device token has expired');
    if (!(await this.options.deviceActive(username)))
      throw authError(BAD_USERNAME_OR_PASSWORD, 'unknown or revoked device');
    if (internals(client).closed) return; // gone while we checked: nothing to watch
    deviceOf.set(client, username);
    this.pending.release(internals(client).conn);
    this.forget(client);
    // The session lasts as long as identity says the device may stay (token expiry, revocation …).
    const stop = this.options.watchSession(principal, (reason) => {
      this.options.log.info({ clientId: client.id, reason }, 'mqtt: access withdrawn; ending the session');
      client.close();
    });
    this.unwatch.set(client, stop);
  }

  /** Waits until the payloads in flight leave room for `bytes` (one message always goes alone). */
  private async admit(bytes: number): Promise<void> {
    while (!this.closing && this.inFlightBytes > 0 && this.inFlightBytes + bytes > this.options.maxInFlightBytes) {
      await new Promise<void>((res) => this.waiting.push(res));
    }
    this.inFlightBytes += bytes;
  }

  private release(bytes: number): void {
    this.inFlightBytes -= bytes;
    for (const w of this.waiting.splice(0)) w();
  }

  private forget(client: Client): void {
    const stop = this.unwatch.get(client);
    this.unwatch.delete(client);
    stop?.();
  }

  async start(): Promise<number> {
    await this.aedes.listen();
    await new Promise<void>((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', rej);
        res();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Open connections (authenticated or not). */
  connections(): Promise<number> {
    return new Promise((res, rej) => this.server.getConnections((e, n) => (e ? rej(e) : res(n))));
  }

  /** Stops accepting connections and publishes, waits for the messages being stored (their PUBACKs go out), then closes every client. */
  async stop(): Promise<void> {
    this.closing = true;
    for (const w of this.waiting.splice(0)) w();
    const closed = new Promise<void>((res) => this.server.close(() => res()));
    if (this.inFlight > 0) await new Promise<void>((res) => this.idle.push(res));
    for (const stop of this.unwatch.values()) stop();
    this.unwatch.clear();
    await new Promise<void>((res) => this.aedes.close(() => res()));
    await closed;
  }
}

/**
 * Follows MQTT framing (MQTT-2.2: fixed header byte, then the remaining length
 * as a variable byte integer of at most 4 bytes) on the bytes aedes reads, and
 * calls `tooLarge` as soon as a packet announces more than `max()` bytes (read
 * per packet: the limit rises once the device is authenticated). A 'data'
 * listener next to aedes's 'readable' one sees each chunk aedes reads without
 * changing the flow ('readable' takes precedence).
 */
export function watchPacketSizes(
  socket: NodeJS.EventEmitter,
  max: () => number,
  tooLarge: (size: number, limit: number) => void,
): void {
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
          const limit = max();
          if (value > limit) {
            done = true;
            tooLarge(value, limit);
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
