import { isIP } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { z } from 'zod';

/**
 * All configuration comes from environment variables, parsed once at start-up.
 * A bad value stops the process with a message naming the variable.
 */
const url = (protocols: string[]) =>
  z
    .string()
    .url()
    .refine((v) => protocols.some((p) => v.startsWith(`${p}:`)), {
      message: `must start with ${protocols.map((p) => `${p}://`).join(' or ')}`,
    });

/** A TCP port; 0 lets the server pick a free one. */
const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();

export const configSchema = z
  .object({
    /** HTTP port; 0 picks a free one. */
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    HOST: z.string().min(1).default('0.0.0.0'),
    DATA_DIR: z.string().min(1).default('.data'),
    DATABASE_URL: url(['postgres', 'postgresql']).optional(),
    REDIS_URL: url(['redis', 'rediss']).optional(),
    /**
     * EventStoreDB/KurrentDB as the event store (unset: PostgreSQL, the default). The full check
     * (hosts, ports) runs when the app connects (src/platform/event-store/kurrentdb-mapping.ts).
     */
    KURRENTDB_URL: z
      .string()
      .regex(
        /^(kurrentdb|esdb)(\+discover)?:\/\/[^/?#\s]+/i,
        'must start with kurrentdb://, kurrentdb+discover://, esdb:// or esdb+discover:// and name a host',
      )
      .optional(),
    /**
     * On a server without atomic multi-stream append (before KurrentDB 25.1): "true" accepts that
     * email/SKU uniqueness and multi-stream writes are not atomic; "false" refuses to start.
     */
    KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM: z
      .enum(['true', 'false'])
      .default('false')
      .transform((v) => v === 'true'),
    /**
     * Ports of the embedded PostgreSQL and local Redis: below Linux's ephemeral range (32768-60999), where an
     * outgoing connection can hold any port at any moment. 0 picks a free one (below that range too) at each start.
     */
    EMBEDDED_PG_PORT: port.default(25432),
    EMBEDDED_REDIS_PORT: port.default(25379),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    PG_POOL_SIZE: positiveInt.default(20),
    /** Optimistic-concurrency retries of a command before it is reported as 409. */
    COMMAND_RETRIES: z.coerce.number().int().min(0).max(50).default(5),
    /** Events a projection applies per transaction. */
    PROJECTION_BATCH_SIZE: positiveInt.max(65536).default(500),
    /** Failed attempts on one event before its projection is parked. */
    PROJECTION_MAX_ATTEMPTS: positiveInt.default(3),
    /** Upper bound for a query waiting on `minPosition` (read-your-writes). */
    READ_WAIT_TIMEOUT_MS: positiveInt.max(60000).default(5000),
    /** Set to "false" to run an instance that serves HTTP but never projects (e.g. a read replica). */
    RUN_PROJECTIONS: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    SHUTDOWN_TIMEOUT_MS: positiveInt.default(10000),
    /** Prefix of BullMQ keys in Redis (lets several deployments or tests share one Redis). */
    QUEUE_PREFIX: z
      .string()
      .regex(/^[\w:-]{1,64}$/, 'letters, digits, _ : - only')
      .default('platform'),
    /** Largest accepted HTTP body. */
    BODY_LIMIT_BYTES: positiveInt.default(1_048_576),
    /**
     * Open HTTP connections at most; more are closed as they arrive. Unset: what the process's
     * open-file limit leaves after MQTT_MAX_CONNECTIONS and 512 for pools and files (at least 64).
     */
    HTTP_MAX_CONNECTIONS: positiveInt.max(1_000_000).optional(),
    /**
     * A request whose headers and body have not all arrived by then gets 408 and its connection
     * is closed (a client trickling a body cannot hold a connection for ever). Streamed answers
     * (live readings) are not limited by it.
     */
    HTTP_REQUEST_TIMEOUT_MS: positiveInt.max(3_600_000).default(60_000),
    /**
     * Open HTTP connections one peer address may hold (the socket's address, not X-Forwarded-For);
     * more are closed as they arrive. 0: no limit (e.g. behind a proxy that is the only peer).
     */
    HTTP_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(0).max(1_000_000).default(256),
    // Identity: tokens, passwords, login limits.
    JWT_ALG: z.enum(['ES256', 'HS256']).default('ES256'),
    /** Required (>= 32 bytes) when JWT_ALG=HS256; a shorter secret stops start-up. */
    JWT_HS256_SECRET: z.string().min(32, 'must be at least 32 bytes').optional(),
    /**
     * ES256 signing keys from configuration (the JSON of DATA_DIR/secrets/jwt-keys.json), so that
     * several instances sign and verify with the same keys. Unset: generated into DATA_DIR at first start.
     */
    JWT_KEYS: z.string().min(1).optional(),
    JWT_ISSUER: z.string().min(1).default('ops-platform'),
    JWT_AUDIENCE: z.string().min(1).default('ops-platform-api'),
    JWT_DEVICE_AUDIENCE: z.string().min(1).default('ops-platform-devices'),
    ACCESS_TOKEN_TTL_S: positiveInt.max(86_400).default(900),
    DEVICE_TOKEN_TTL_S: positiveInt.max(86_400).default(600),
    REFRESH_TOKEN_TTL_S: positiveInt.default(30 * 86_400),
    /** The first admin: created (or granted admin) at start-up when both are set. */
    ADMIN_EMAIL: z.string().email().optional(),
    ADMIN_PASSWORD: z.string().min(12).max(128).optional(),
    /**
     * Failed logins in LOGIN_WINDOW_S: of one account from all addresses (429 only for addresses that
     * have not logged in to it before, see LOGIN_MAX_PER_ACCOUNT_ADDRESS) / from one client address.
     */
    LOGIN_MAX_PER_ACCOUNT: positiveInt.default(100),
    LOGIN_MAX_PER_ADDRESS: positiveInt.default(50),
    LOGIN_WINDOW_S: positiveInt.default(900),
    /**
     * Password hashes computed at once, in a child process of lowest CPU priority (its own thread
     * pool); more wait (ARGON2_MAX_QUEUE), so a login storm cannot starve other requests.
     * Default: one core less than the machine has (at least 1).
     */
    ARGON2_CONCURRENCY: positiveInt.max(64).default(Math.max(1, availableParallelism() - 1)),
    // Identity hardening (issue 9): client addresses behind proxies, lockout, sign-up and device limits.
    /**
     * Whose X-Forwarded-For to believe (Fastify's trustProxy): "false" (default: the socket's address
     * is the client), "true" (any), a hop count, or comma-separated addresses/CIDRs of the proxies
     * (also "loopback", "linklocal", "uniquelocal"). Rate limits count per client address.
     */
    TRUST_PROXY: z
      .string()
      .default('false')
      .transform((v, ctx) => parseTrustProxy(v, ctx)),
    /** Failed logins of one account from one address in LOGIN_WINDOW_S before that pair gets 429. */
    LOGIN_MAX_PER_ACCOUNT_ADDRESS: positiveInt.default(10),
    /** How long an address that logged in to an account stays exempt from LOGIN_MAX_PER_ACCOUNT. */
    LOGIN_KNOWN_ADDRESS_TTL_S: positiveInt.default(30 * 86_400),
    /** Sign-up attempts per client address in SIGNUP_WINDOW_S before 429. */
    SIGNUP_MAX_PER_ADDRESS: positiveInt.default(20),
    SIGNUP_WINDOW_S: positiveInt.default(3600),
    /** Sign-ups (and device registrations) waiting for a hashing slot before 503; logins have their own queue and go first. */
    ARGON2_SIGNUP_MAX_QUEUE: positiveInt.max(10_000).default(50),
    /** Logins (and device-token requests) waiting for a hashing slot; the next one gets 503 AUTH.BUSY with Retry-After. */
    ARGON2_MAX_QUEUE: positiveInt.max(10_000).default(100),
    /**
     * Each instance checks tokens against an in-memory mirror of the Redis revocation list; when the
     * mirror was last confirmed complete longer ago than this (Redis unreachable, notices lost), an
     * authenticated request gets 503 AUTH.REVOCATION_UNAVAILABLE. A revocation made on any instance
     * is refused everywhere within this bound.
     */
    REVOCATION_MAX_STALENESS_MS: positiveInt.min(50).max(60_000).default(1000),
    /** Largest body of the public credential routes (sign-up, login, refresh, device tokens): their fields are small. */
    AUTH_BODY_LIMIT_BYTES: positiveInt.max(1_048_576).default(16_384),
    /** Active devices one user may have registered (revoking one frees its place). */
    DEVICES_MAX_PER_USER: positiveInt.max(1_000_000).default(100),
    // Sessions: long-lived sessions (SSE streams, MQTT connections) and live streams.
    /** How often every long-lived session is re-checked against the authoritative state (the safety net for a missed revocation notice). */
    SESSION_RECHECK_INTERVAL_S: positiveInt.max(3600).default(60),
    /** Live SSE streams one principal (user or device) may hold open at once on one instance; the next gets 429. */
    STREAMS_MAX_PER_PRINCIPAL: positiveInt.max(1000).default(5),
    /** Live SSE streams one instance holds at most; the next gets 429. */
    STREAMS_MAX_TOTAL: positiveInt.default(10_000),
    /** A live stream whose client has not read for this long (its socket buffer stays full) is dropped. */
    STREAM_STALL_TIMEOUT_MS: positiveInt.min(100).max(600_000).default(30_000),
    // Telemetry: MQTT ingestion and the sensor-history read model.
    /** Set to "false" to run an instance without MQTT (no embedded broker, no external subscription). */
    MQTT_ENABLED: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    /** Port of the embedded broker; 0 picks a free one. Unused when MQTT_URL is set. */
    MQTT_PORT: z.coerce.number().int().min(0).max(65535).default(1883),
    MQTT_HOST: z.string().min(1).default('0.0.0.0'),
    /** An external broker (Mosquitto, EMQX): the app subscribes to it instead of embedding one. */
    MQTT_URL: url(['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss']).optional(),
    /** The app's client id at the external broker: stable per instance, so its persistent session survives restarts. */
    MQTT_CLIENT_ID: z
      .string()
      .regex(/^[\w.:-]{1,128}$/, 'letters, digits, _ . : - only (1-128)')
      .default(
        `ops-platform-${hostname()
          .replace(/[^\w.:-]/g, '-')
          .slice(0, 100)}`,
      ),
    MQTT_USERNAME: z.string().min(1).optional(),
    MQTT_PASSWORD: z.string().min(1).optional(),
    /** Instances in the same group split the readings of the shared subscription. */
    MQTT_SHARE_GROUP: z
      .string()
      .regex(/^[\w-]{1,64}$/, 'letters, digits, _ - only')
      .default('ops-platform'),
    /** External broker: messages being stored at once (their PUBACKs wait for the store, in order); keep at or below the broker's max_inflight_messages. */
    MQTT_EXTERNAL_MAX_INFLIGHT: positiveInt.max(65_535).default(256),
    /** Larger MQTT payloads are dead-lettered (TELEMETRY.PAYLOAD_TOO_LARGE). */
    TELEMETRY_MAX_PAYLOAD_BYTES: positiveInt.max(64 * 1_048_576).default(1_048_576),
    /** Once CONNECT is accepted, larger MQTT packets close the connection as soon as their header arrives (and are dead-lettered without payload). */
    TELEMETRY_MAX_PACKET_BYTES: positiveInt.max(268_435_455).default(16 * 1_048_576),
    /** Readings appended per transaction at most (group commit). */
    TELEMETRY_BATCH_MAX_READINGS: positiveInt.max(60_000).default(5000),
    /** Readings waiting or being appended at most; beyond, MQTT messages are not acknowledged until there is room. */
    TELEMETRY_MAX_PENDING_READINGS: positiveInt.default(50_000),
    /**
     * Embedded broker: bytes of the messages being stored at once (each its payload plus 2 KiB), all
     * connections together; beyond, no further message is read until there is room.
     */
    TELEMETRY_MAX_IN_FLIGHT_BYTES: positiveInt.min(65_536).default(64 * 1_048_576),
    /** Raw readings older than this many days are dropped from the read model (the events and rollups stay); 0 keeps them. */
    TELEMETRY_RETENTION_DAYS: z.coerce.number().int().min(0).default(90),
    TELEMETRY_RETENTION_INTERVAL_S: positiveInt.default(3600),
    /**
     * Readings stamped more than this many days before they arrive are refused (field `ts`): one message
     * makes at most this many day partitions of history, so a hostile device cannot flood the catalogue.
     */
    TELEMETRY_MAX_PAST_DAYS: positiveInt.max(36_500).default(366),
    // Telemetry: MQTT limits against hostile clients (embedded broker) and dead letters (both modes).
    /** Open connections to the embedded broker at most; more are closed as they arrive. */
    MQTT_MAX_CONNECTIONS: positiveInt.max(1_000_000).default(1000),
    /** Largest packet before a CONNECT is accepted (the CONNECT itself included): a token and a small will fit. */
    MQTT_MAX_CONNECT_PACKET_BYTES: positiveInt.min(1024).max(268_435_455).default(16_384),
    /**
     * Connections one peer address may hold before their CONNECT is accepted (authenticated devices
     * behind one NAT address do not count); more are closed as they arrive. 0: no limit.
     */
    MQTT_MAX_PENDING_PER_ADDRESS: z.coerce.number().int().min(0).max(1_000_000).default(32),
    /** A connection that sends no CONNECT within this time is closed. */
    MQTT_CONNECT_TIMEOUT_MS: positiveInt.max(300_000).default(10_000),
    /** QoS 2 PUBLISHes per connection awaiting PUBREL; one more closes the connection. */
    MQTT_MAX_INFLIGHT_QOS2: positiveInt.max(65_535).default(100),
    /** Topic filters one connection may hold (all within devices/<own id>/#); more get SUBACK 0x80. */
    MQTT_MAX_SUBSCRIPTIONS: positiveInt.max(10_000).default(16),
    /** Payload bytes of retained messages the embedded broker keeps, all devices together; 0: the retain flag is ignored. */
    MQTT_MAX_RETAINED_BYTES: z.coerce
      .number()
      .int()
      .min(0)
      .max(1024 * 1_048_576)
      .default(0),
    /** Dead letters older than this many days are deleted (with raw-reading retention's interval); 0 keeps them. */
    TELEMETRY_DEAD_LETTER_RETENTION_DAYS: z.coerce.number().int().min(0).default(30),
    /** Dead letters stored per device (per instance) in TELEMETRY_DEAD_LETTER_WINDOW_S; past it, see the README. */
    TELEMETRY_DEAD_LETTERS_PER_DEVICE: positiveInt.max(1_000_000).default(100),
    TELEMETRY_DEAD_LETTER_WINDOW_S: positiveInt.max(86_400).default(60),
    // Sales: the order saga, payment deadlines, the shipping batch.
    /** Set to "false" for an instance that serves HTTP but runs no saga, deadline or shipping work. */
    RUN_SAGAS: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    /** How long an order waits for the payment provider's answer before it is cancelled and its stock released. */
    PAYMENT_TIMEOUT_MS: positiveInt.max(86_400_000).default(30_000),
    /** How often the shipping batch dispatches confirmed orders. */
    SHIPPING_INTERVAL_MS: positiveInt.min(100).default(60_000),
    /** Orders one shipping batch dispatches at most. */
    SHIPPING_BATCH_SIZE: positiveInt.max(10_000).default(500),
    /** Orders the saga advances at once (triggers of one order always run in order). */
    SAGA_CONCURRENCY: positiveInt.max(1024).default(32),
    /** Failed attempts at one trigger before that order's saga is parked (the other orders keep flowing). */
    SAGA_MAX_ATTEMPTS: positiveInt.max(100).default(8),
    /** Events of a long stream (a product's inventory) between two snapshots of its folded state. */
    STREAM_SNAPSHOT_EVERY: positiveInt.max(1_000_000).default(200),
  })
  .superRefine((c, ctx) => {
    if (c.JWT_ALG === 'HS256' && !c.JWT_HS256_SECRET) {
      ctx.addIssue({
        code: 'custom',
        path: ['JWT_HS256_SECRET'],
        message: 'is required when JWT_ALG=HS256 (at least 32 bytes)',
      });
    }
  });

/** Fastify's `trustProxy`: false, true, a hop count, or a list of proxy addresses, CIDRs and proxy-addr's named ranges. */
export type TrustProxy = boolean | number | string[];

const NAMED_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

function parseTrustProxy(raw: string, ctx: z.RefinementCtx): TrustProxy {
  const v = raw.trim().toLowerCase();
  if (v === 'false') return false;
  if (v === 'true') return true;
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    if (hops >= 1 && hops <= 32) return hops;
  }
  const entries = v
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  const bad = entries.filter((e) => !NAMED_RANGES.has(e) && !isAddressOrCidr(e));
  if (entries.length === 0 || bad.length > 0) {
    ctx.addIssue({
      code: 'custom',
      message: `must be false, true, a hop count (1-32) or comma-separated proxy addresses/CIDRs${bad.length ? `; not an address or CIDR: ${bad.join(', ')}` : ''}`,
    });
    return z.NEVER;
  }
  return entries;
}

function isAddressOrCidr(entry: string): boolean {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return false;
  if (slash < 0) return true;
  const bits = entry.slice(slash + 1);
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, so `DATABASE_URL=` in a .env file means "embedded".
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
