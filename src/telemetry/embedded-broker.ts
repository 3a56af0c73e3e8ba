import { createServer, type AddressInfo, type Server } from 'node:net';
import Aedes, { type AuthenticateError, type Client } from 'aedes';
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
 * - QoS 1: aedes writes the PUBACK only after authorizePublish calls back, so
 *   the reading is stored (or dead-lettered) first; a failure to store calls
 *   back with an error, which closes the connection without PUBACK and the
 *   device resends.
 */

export interface EmbeddedBrokerOptions {
  readonly host: string;
  readonly port: number;
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
        this.inFlight++;
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        handleReadingsMessage(options.sinks, packet.topic, payload, new Date()).then(
          () => done(null),
          (e: unknown) => {
            log.warn({ err: e, clientId: client.id }, 'mqtt: could not store a message; closing the connection without PUBACK');
            done(e instanceof Error ? e : new Error(String(e)));
          },
        ).finally(() => {
          this.inFlight--;
          if (this.inFlight === 0) for (const r of this.idle.splice(0)) r();
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
    this.server = createServer((socket) => this.aedes.handle(socket));
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
    const closed = new Promise<void>((res) => this.server.close(() => res()));
    if (this.inFlight > 0) await new Promise<void>((res) => this.idle.push(res));
    for (const t of this.expiryTimers.values()) clearTimeout(t);
    this.expiryTimers.clear();
    await new Promise<void>((res) => this.aedes.close(() => res()));
    await closed;
  }
}
