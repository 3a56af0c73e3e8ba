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

export const configSchema = z.object({
  /** HTTP port; 0 picks a free one. */
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATA_DIR: z.string().min(1).default('.data'),
  DATABASE_URL: url(['postgres', 'postgresql']).optional(),
  REDIS_URL: url(['redis', 'rediss']).optional(),
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
  RUN_PROJECTIONS: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
  SHUTDOWN_TIMEOUT_MS: positiveInt.default(10000),
  /** Prefix of BullMQ keys in Redis (lets several deployments or tests share one Redis). */
  QUEUE_PREFIX: z.string().regex(/^[\w:-]{1,64}$/, 'letters, digits, _ : - only').default('platform'),
  /** Largest accepted HTTP body. */
  BODY_LIMIT_BYTES: positiveInt.default(1_048_576),
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
  /** Failed logins allowed per account / per client address in LOGIN_WINDOW_S before 429. */
  LOGIN_MAX_PER_ACCOUNT: positiveInt.default(10),
  LOGIN_MAX_PER_ADDRESS: positiveInt.default(50),
  LOGIN_WINDOW_S: positiveInt.default(900),
  /**
   * Password hashes computed at once; more wait, so a login storm cannot starve other requests.
   * Default: one core less than the machine has (at least 1), and below libuv's thread pool
   * (4 threads unless UV_THREADPOOL_SIZE says more), which JWT signing and verifying share.
   */
  ARGON2_CONCURRENCY: positiveInt.max(64).default(Math.max(1, Math.min(availableParallelism() - 1, Number(process.env.UV_THREADPOOL_SIZE ?? 4) - 1))),
  // Telemetry: MQTT ingestion and the sensor-history read model.
  /** Set to "false" to run an instance without MQTT (no embedded broker, no external subscription). */
  MQTT_ENABLED: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
  /** Port of the embedded broker; 0 picks a free one. Unused when MQTT_URL is set. */
  MQTT_PORT: z.coerce.number().int().min(0).max(65535).default(1883),
  MQTT_HOST: z.string().min(1).default('0.0.0.0'),
  /** An external broker (Mosquitto, EMQX): the app subscribes to it instead of embedding one. */
  MQTT_URL: url(['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss']).optional(),
  /** The app's client id at the external broker: stable per instance, so its persistent session survives restarts. */
  MQTT_CLIENT_ID: z.string().regex(/^[\w.:-]{1,128}$/, 'letters, digits, _ . : - only (1-128)').default(`ops-platform-${hostname().replace(/[^\w.:-]/g, '-').slice(0, 100)}`),
  MQTT_USERNAME: z.string().min(1).optional(),
  MQTT_PASSWORD: z.string().min(1).optional(),
  /** Instances in the same group split the readings of the shared subscription. */
  MQTT_SHARE_GROUP: z.string().regex(/^[\w-]{1,64}$/, 'letters, digits, _ - only').default('ops-platform'),
  /** Larger MQTT payloads are dead-lettered (TELEMETRY.PAYLOAD_TOO_LARGE). */
  TELEMETRY_MAX_PAYLOAD_BYTES: positiveInt.max(64 * 1_048_576).default(1_048_576),
  /** Larger MQTT packets close the connection as soon as their header arrives (and are dead-lettered without payload). */
  TELEMETRY_MAX_PACKET_BYTES: positiveInt.max(268_435_455).default(16 * 1_048_576),
  /** Readings appended per transaction at most (group commit). */
  TELEMETRY_BATCH_MAX_READINGS: positiveInt.max(60_000).default(5000),
  /** Readings waiting or being appended at most; beyond, MQTT messages are not acknowledged until there is room. */
  TELEMETRY_MAX_PENDING_READINGS: positiveInt.default(50_000),
  /** Raw readings older than this many days are dropped from the read model (the events and rollups stay); 0 keeps them. */
  TELEMETRY_RETENTION_DAYS: z.coerce.number().int().min(0).default(90),
  TELEMETRY_RETENTION_INTERVAL_S: positiveInt.default(3600),
  // Sales: the order saga, payment deadlines, the shipping batch.
  /** Set to "false" for an instance that serves HTTP but runs no saga, deadline or shipping work. */
  RUN_SAGAS: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
  /** How long an order waits for the payment provider's answer before it is cancelled and its stock released. */
  PAYMENT_TIMEOUT_MS: positiveInt.max(86_400_000).default(30_000),
  /** How often the shipping batch dispatches confirmed orders. */
  SHIPPING_INTERVAL_MS: positiveInt.min(100).default(60_000),
  /** Orders one shipping batch dispatches at most. */
  SHIPPING_BATCH_SIZE: positiveInt.max(10_000).default(500),
  /** Orders the saga advances at once (triggers of one order always run in order). */
  SAGA_CONCURRENCY: positiveInt.max(64).default(8),
}).superRefine((c, ctx) => {
  if (c.JWT_ALG === 'HS256' && !c.JWT_HS256_SECRET) {
    ctx.addIssue({ code: 'custom', path: ['JWT_HS256_SECRET'], message: 'is required when JWT_ALG=HS256 (at least 32 bytes)' });
  }
});

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
