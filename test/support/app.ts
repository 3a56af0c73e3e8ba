import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Type } from '@nestjs/common';
import type { Projection } from '../../projections/projection';
import { createApp, type RunningApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/platform/logger';
import { createTestDatabase, testRedisUrl, type TestDatabase } from './services';

export interface HttpResult {
  status: number;
  headers: Headers;
  body: any;
}

export interface TestApp extends RunningApp {
  readonly db: TestDatabase;
  readonly admin: { email: string; password: string };
  /** fetch against the app, JSON in and out. */
  http(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResult>;
  /** Logs in and returns `{ authorization: 'Bearer …' }` plus the session. */
  login(email: string, password: string): Promise<{ authorization: string; accessToken: string; refreshToken: string }>;
  /** The bootstrap admin's auth header (ADMIN_EMAIL / ADMIN_PASSWORD). */
  adminAuth(): Promise<{ authorization: string }>;
  stop(): Promise<void>;
}

/**
 * The real application (Fastify, PostgreSQL, Redis, BullMQ) on a random port, with its own database, queue prefix and data dir.
 * With `sharing`, a second instance of that app: same database, Redis keys and signing keys (its stop() leaves the database).
 */
export async function startTestApp(
  options: { modules?: Type[]; projections?: Projection[]; env?: Record<string, string>; sharing?: TestApp } = {},
): Promise<TestApp> {
  const shared = options.sharing;
  const db = shared?.db ?? (await createTestDatabase('app'));
  const admin = shared?.admin ?? {
    email: `admin-${db.name}@example.test`,
    password: 'correct horse battery staple 42',
  };
  const config = loadConfig({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl(),
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: shared?.platform.config.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'platform-test-')),
    QUEUE_PREFIX: `test-${db.name}`,
    ADMIN_EMAIL: admin.email,
    ADMIN_PASSWORD: admin.password,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // A free port for the embedded MQTT broker: parallel test files must not share 1883.
    MQTT_PORT: '0',
    // Every test signs its users up from 127.0.0.1; tests of the sign-up limit set their own.
    SIGNUP_MAX_PER_ADDRESS: '1000000',
    // Tests stamp readings on fixed dates (2026-01-01 onwards) that must stay valid as the years pass;
    // the default limit has its own test (telemetry.e2e).
    TELEMETRY_MAX_PAST_DAYS: '36500',
    ...options.env,
  });
  const running = await createApp(config, createLogger(config.LOG_LEVEL), {
    ...(options.modules ? { modules: options.modules } : {}),
    ...(options.projections ? { projections: options.projections } : {}),
  });
  const http: TestApp['http'] = async (method, path, body, headers = {}) => {
    const res = await fetch(running.url + path, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON (e.g. /metrics) */
    }
    return { status: res.status, headers: res.headers, body: parsed };
  };
  const login: TestApp['login'] = async (email, password) => {
    const r = await http('POST', '/auth/login', { email, password });
    if (r.status !== 200) throw new Error(`login of ${email} failed: ${r.status} ${JSON.stringify(r.body)}`);
    return {
      authorization: `Bearer ${r.body.accessToken}`,
      accessToken: r.body.accessToken,
      refreshToken: r.body.refreshToken,
    };
  };
  let adminHeader: { authorization: string } | undefined;
  return {
    ...running,
    db,
    admin,
    http,
    login,
    async adminAuth() {
      adminHeader ??= { authorization: (await login(admin.email, admin.password)).authorization };
      return adminHeader;
    },
    async stop() {
      await running.close();
      if (!shared) await db.drop();
    },
  };
}
