import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Type } from '@nestjs/common';
import type { Projection } from '../../projections/projection';
import { createApp, type RunningApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/platform/logger';
import { createTestDatabase, testRedisUrl, type TestDatabase } from './services';

export interface TestApp extends RunningApp {
  readonly db: TestDatabase;
  readonly adminToken: string;
  /** fetch against the app, JSON in and out. */
  http(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }>;
  stop(): Promise<void>;
}

/** The real application (Fastify, PostgreSQL, Redis, BullMQ) on a random port, with its own database and queue prefix. */
export async function startTestApp(options: { modules?: Type[]; projections?: Projection[]; env?: Record<string, string> } = {}): Promise<TestApp> {
  const db = await createTestDatabase('app');
  const adminToken = randomBytes(24).toString('hex');
  const config = loadConfig({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl(),
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'platform-test-')),
    QUEUE_PREFIX: `test-${db.name}`,
    ADMIN_TOKEN: adminToken,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...options.env,
  });
  const running = await createApp(config, createLogger(config.LOG_LEVEL), {
    ...(options.modules ? { modules: options.modules } : {}),
    ...(options.projections ? { projections: options.projections } : {}),
  });
  return {
    ...running,
    db,
    adminToken,
    async http(method, path, body, headers = {}) {
      const res = await fetch(running.url + path, {
        method,
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON (e.g. /metrics) */ }
      return { status: res.status, headers: res.headers, body: parsed };
    },
    async stop() {
      await running.close();
      await db.drop();
    },
  };
}
