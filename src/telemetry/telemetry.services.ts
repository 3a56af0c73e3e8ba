import { Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { DomainError, notFound } from '../../domain/shared/errors';
import { dropReadingsBefore } from '../../projections/telemetry.queries';
import type { Caller } from '../platform/commands/command-registry';
import { Platform } from '../platform/platform';
import { IdentityServices } from '../identity/identity.services';
import { DeadLetterRate, deleteDeadLettersBefore, storeDeadLetter } from './dead-letters';
import { EmbeddedBroker } from './embedded-broker';
import { ExternalSubscriber } from './external-subscriber';
import { ReadingIngestor } from './ingest';
import type { MessageSinks } from './mqtt-ingest';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';

const RETENTION_CHUNK = 10_000;
/** Device owners remembered for read checks (oldest forgotten first). */
const OWNER_CACHE_SIZE = 100_000;

/**
 * Telemetry's running parts: the ingestor (group commit) that the use case
 * (ingest-reading.ts) and MQTT messages share,
 * the MQTT side (embedded broker or external subscription), dead letters,
 * retention of raw readings, live streams.
 *
 * Shutdown order (onModuleDestroy, before the HTTP server closes): MQTT stops
 * taking messages and finishes those being stored (their PUBACKs go out),
 * the ingestor drains, live streams end; then the rest of the app closes.
 */
@Injectable()
export class TelemetryServices implements OnApplicationBootstrap, OnModuleDestroy {
  readonly ingestor: ReadingIngestor;
  readonly sinks: MessageSinks;
  private broker: EmbeddedBroker | undefined;
  private subscriber: ExternalSubscriber | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private retentionRun: Promise<void> = Promise.resolve();
  private readonly streams = new Set<() => void>();
  private readonly owners = new Map<string, string>();
  readonly deadLetters: Counter<'code'>;
  readonly deadLettersRateLimited: Counter<'code'>;
  readonly stored: Counter;
  readonly duplicates: Counter;

  constructor(
    private readonly platform: Platform,
    private readonly identity: IdentityServices,
  ) {
    const c = platform.config;
    const registers = [platform.metrics.registry];
    this.deadLetters = new Counter({
      name: 'telemetry_dead_letters_total',
      help: 'MQTT messages dead-lettered, by reason code',
      labelNames: ['code'],
      registers,
    });
    this.stored = new Counter({
      name: 'telemetry_readings_stored_total',
      help: 'Readings appended (in telemetry.ReadingsRecorded events)',
      registers,
    });
    this.duplicates = new Counter({
      name: 'telemetry_readings_duplicate_total',
      help: 'Readings received again and stored once',
      registers,
    });
    this.deadLettersRateLimited = new Counter({
      name: 'telemetry_dead_letters_rate_limited_total',
      help: 'Dead letters not stored: their device was past TELEMETRY_DEAD_LETTERS_PER_DEVICE',
      labelNames: ['code'],
      registers,
    });
    const batches = new Counter({
      name: 'telemetry_ingest_batches_total',
      help: 'Group-commit appends of readings',
      registers,
    });
    this.ingestor = new ReadingIngestor(platform.pool, platform.store, {
      maxBatch: c.TELEMETRY_BATCH_MAX_READINGS,
      maxPending: c.TELEMETRY_MAX_PENDING_READINGS,
      onBatch: (readings, stored) => {
        batches.inc();
        this.stored.inc(stored);
        this.duplicates.inc(readings - stored);
      },
    });
    const ingestor = this.ingestor;
    new Gauge({
      name: 'telemetry_ingest_pending_readings',
      help: 'Readings waiting for or in an append',
      registers,
      collect() {
        this.set(ingestor.inFlight);
      },
    });
    const rate = new DeadLetterRate(c.TELEMETRY_DEAD_LETTERS_PER_DEVICE, c.TELEMETRY_DEAD_LETTER_WINDOW_S * 1000);
    this.sinks = {
      maxPayloadBytes: c.TELEMETRY_MAX_PAYLOAD_BYTES,
      maxPastDays: c.TELEMETRY_MAX_PAST_DAYS,
      // A message's correlation id is its event's id (derived from the message), so the console finds
      // its events by the event id index (migrations/0029), and a resend correlates as the original.
      ingest: (deviceId, readings) =>
        this.ingestor.ingest(deviceId, readings, (eventId) => ({
          correlationId: eventId,
          causationId: `mqtt:${eventId}`,
          actor: `device:${deviceId}`,
        })),
      deadLetter: async (deviceId, topic, payload, code, reason) => {
        // A device that keeps sending what cannot be stored must not fill the disk: past its
        // rate, one row says so (with the message that crossed it) and the rest are not
        // stored; every one is still logged and counted, and the caller decides about the connection.
        const verdict = rate.take(deviceId ?? '(no device)');
        if (verdict === 'over') {
          this.deadLettersRateLimited.inc({ code });
          platform.log.warn(
            { deviceId, topic: topic.slice(0, 300), code, bytes: payload.length },
            'mqtt: dead letter not stored (device past TELEMETRY_DEAD_LETTERS_PER_DEVICE)',
          );
          return 'rate-limited';
        }
        const stored =
          verdict === 'within'
            ? { code, reason }
            : {
                code: TelemetryErrorCode.DEAD_LETTER_RATE_EXCEEDED,
                reason:
                  `${code}: ${reason} -- and more than ${c.TELEMETRY_DEAD_LETTERS_PER_DEVICE} dead letters from this device within ` +
                  `${c.TELEMETRY_DEAD_LETTER_WINDOW_S} s: the next ones in this window are not stored (logged, counted in telemetry_dead_letters_rate_limited_total)`,
              };
        await storeDeadLetter(platform.pool, { deviceId, topic, payload, ...stored });
        this.deadLetters.inc({ code: stored.code });
        platform.log.info(
          {
            deviceId,
            topic: topic.slice(0, 300),
            code: stored.code,
            reason: stored.reason.slice(0, 300),
            bytes: payload.length,
          },
          'mqtt: message dead-lettered',
        );
        return 'stored';
      },
    };
  }

  /** The embedded broker's port (0 when none runs). */
  get mqttPort(): number {
    return this.broker?.port ?? 0;
  }

  /** Bytes of the messages the embedded broker is storing now, against TELEMETRY_MAX_IN_FLIGHT_BYTES (0 when none runs). */
  get mqttBytesInFlight(): number {
    return this.broker?.bytesInFlight ?? 0;
  }

  async onApplicationBootstrap(): Promise<void> {
    const c = this.platform.config;
    const log = this.platform.log;
    if (c.MQTT_ENABLED && c.MQTT_URL) {
      this.subscriber = new ExternalSubscriber({
        url: c.MQTT_URL,
        clientId: c.MQTT_CLIENT_ID,
        group: c.MQTT_SHARE_GROUP,
        maxInFlight: c.MQTT_EXTERNAL_MAX_INFLIGHT,
        log,
        sinks: this.sinks,
        ...(c.MQTT_USERNAME ? { username: c.MQTT_USERNAME } : {}),
        ...(c.MQTT_PASSWORD ? { password: c.MQTT_PASSWORD } : {}),
      });
      await this.subscriber.start();
    } else if (c.MQTT_ENABLED) {
      this.broker = new EmbeddedBroker({
        host: c.MQTT_HOST,
        port: c.MQTT_PORT,
        log,
        sinks: this.sinks,
        registry: this.platform.metrics.registry,
        maxPacketBytes: c.TELEMETRY_MAX_PACKET_BYTES,
        maxConnectPacketBytes: c.MQTT_MAX_CONNECT_PACKET_BYTES,
        maxConnections: c.MQTT_MAX_CONNECTIONS,
        connectTimeoutMs: c.MQTT_CONNECT_TIMEOUT_MS,
        maxPendingPerAddress: c.MQTT_MAX_PENDING_PER_ADDRESS,
        maxInflightQos2: c.MQTT_MAX_INFLIGHT_QOS2,
        maxSubscriptions: c.MQTT_MAX_SUBSCRIPTIONS,
        maxRetainedBytes: c.MQTT_MAX_RETAINED_BYTES,
        maxInFlightBytes: c.TELEMETRY_MAX_IN_FLIGHT_BYTES,
        authenticate: (token) => this.identity.authenticate(`Bearer ${token}`, 'device'),
        deviceActive: (id) => this.identity.deviceMayConnect(id),
        watchSession: (principal, end) => this.identity.watchSession(principal, end),
      });
      const port = await this.broker.start();
      log.info({ mqttPort: port }, 'mqtt: embedded broker listening');
    }
    if (c.RUN_PROJECTIONS && (c.TELEMETRY_RETENTION_DAYS > 0 || c.TELEMETRY_DEAD_LETTER_RETENTION_DAYS > 0)) {
      const run = () => {
        this.retentionRun = this.applyRetention().then(
          () => undefined,
          (e: unknown) => log.warn({ err: e }, 'telemetry: retention failed'),
        );
      };
      this.retentionTimer = setInterval(run, c.TELEMETRY_RETENTION_INTERVAL_S * 1000);
      this.retentionTimer.unref();
      run();
    }
  }

  async onModuleDestroy(): Promise<void> {
    await this.broker?.stop();
    await this.subscriber?.stop();
    await this.ingestor.drain();
    for (const end of [...this.streams]) end();
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    await this.retentionRun;
  }

  /**
   * Drops the day partitions of raw readings older than TELEMETRY_RETENTION_DAYS (whole UTC
   * days: a day goes once all of it is older), forgets their reading ids in bounded chunks, and
   * drops dead letters older than TELEMETRY_DEAD_LETTER_RETENTION_DAYS. Returns the days dropped.
   */
  async applyRetention(now = new Date()): Promise<string[]> {
    await this.applyDeadLetterRetention(now);
    const days = this.platform.config.TELEMETRY_RETENTION_DAYS;
    if (days <= 0) return [];
    const before = new Date(now.getTime() - days * 86_400_000);
    const dropped: string[] = [];
    for (;;) {
      const r = await dropReadingsBefore(this.platform.pool, before, RETENTION_CHUNK);
      dropped.push(...r.days);
      if (r.ids < RETENTION_CHUNK) return dropped;
    }
  }

  /** Drops dead letters older than TELEMETRY_DEAD_LETTER_RETENTION_DAYS, in bounded chunks. Returns how many. */
  async applyDeadLetterRetention(now = new Date()): Promise<number> {
    const days = this.platform.config.TELEMETRY_DEAD_LETTER_RETENTION_DAYS;
    if (days <= 0) return 0;
    const before = new Date(now.getTime() - days * 86_400_000);
    let total = 0;
    for (;;) {
      const n = await deleteDeadLettersBefore(this.platform.pool, before, RETENTION_CHUNK);
      total += n;
      if (n < RETENTION_CHUNK) return total;
    }
  }

  /** Owners and the device itself see its data, admins see all; to others the device does not exist. */
  async ensureMayRead(deviceId: string, by: Caller): Promise<void> {
    if (by.kind === 'device') {
      if (by.id !== deviceId) throw notFound(TelemetryErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
      return;
    }
    if (by.roles.includes('admin')) return;
    if ((await this.ownerOf(deviceId)) !== by.id)
      throw notFound(TelemetryErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
  }

  /**
   * A device's owner, or undefined when there is no such device. Cached: a
   * device's owner is set when it is registered and never changes (a revoked
   * device keeps its owner and its history), so a history read by its owner
   * costs no event-stream read. Unknown ids are not cached.
   */
  private async ownerOf(deviceId: string): Promise<string | undefined> {
    const known = this.owners.get(deviceId);
    if (known !== undefined) return known;
    const device = await this.identity.loadDevice(deviceId);
    if (device.status === 'none') return undefined;
    if (this.owners.size >= OWNER_CACHE_SIZE) this.owners.delete(this.owners.keys().next().value!);
    this.owners.set(deviceId, device.ownerId);
    return device.ownerId;
  }

  /** Registers a live stream's "end now", for shutdown. Returns the unregister function. */
  trackStream(end: () => void): () => void {
    this.streams.add(end);
    return () => this.streams.delete(end);
  }

  assertAccepting(): void {
    if (!this.platform.accepting)
      throw new DomainError('unavailable', TelemetryErrorCode.SHUTTING_DOWN, 'the platform is shutting down', [], {
        retryAfterSeconds: 1,
      });
  }
}
