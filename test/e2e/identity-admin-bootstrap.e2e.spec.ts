import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createApp, type RunningApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createTestDatabase, testRedisUrl, type TestDatabase } from '../support/services';

/**
 * Issue 9: ADMIN_EMAIL promoted an existing account with that address without checking
 * ADMIN_PASSWORD, and sign-up never proves who owns an address: whoever registered the
 * operator's address first became admin at the next restart. Each case starts the real app
 * on one database, as an operator restarting it would, and reads the log lines it writes.
 */
const OPS = 'ops@example.test';
const OPERATOR_PASSWORD = 'the operator passphrase 2025';
const MALLORY_PASSWORD = 'mallory was here first 99';

let db: TestDatabase;
let dataDir: string;
beforeAll(async () => {
  db = await createTestDatabase('admin_boot');
  dataDir = mkdtempSync(join(tmpdir(), 'platform-admin-boot-'));
});
afterAll(async () => {
  await db.drop();
});

interface Started {
  app: RunningApp;
  lines: { level: number; msg: string; outcome?: string; adminEmail?: string }[];
  http(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any }>;
}

async function start(env: Record<string, string>): Promise<Started> {
  const lines: Started['lines'] = [];
  const log = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        lines.push(JSON.parse(line));
      },
    },
  );
  const config = loadConfig({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl(),
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    QUEUE_PREFIX: `test-${db.name}`,
    MQTT_ENABLED: 'false',
    RUN_PROJECTIONS: 'false',
    ...env,
  });
  const app = await createApp(config, log);
  const http: Started['http'] = async (method, path, body, headers = {}) => {
    const res = await fetch(app.url + path, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  return { app, lines, http };
}

async function roles(s: Started, email: string, password: string): Promise<string[]> {
  const login = await s.http('POST', '/auth/login', { email, password });
  expect(login.status).toBe(200);
  const me = await s.http('GET', '/users/me', undefined, { authorization: `Bearer ${login.body.accessToken}` });
  return me.body.roles as string[];
}

const adminLines = (s: Started) => s.lines.filter((l) => l.adminEmail !== undefined);

describe('ADMIN_EMAIL / ADMIN_PASSWORD at start-up', () => {
  it("does not promote an account someone else registered with the operator's address; says so in one error line", async () => {
    // Mallory signs up with the operator's address while no admin is configured.
    const before = await start({});
    try {
      expect(
        (await before.http('POST', '/auth/signup', { email: OPS, password: MALLORY_PASSWORD, name: 'Eve' })).status,
      ).toBe(201);
      expect(adminLines(before)).toEqual([]);
    } finally {
      await before.app.close();
    }
    // The operator sets ADMIN_EMAIL / ADMIN_PASSWORD and restarts.
    const after = await start({ ADMIN_EMAIL: OPS, ADMIN_PASSWORD: OPERATOR_PASSWORD });
    try {
      expect(await roles(after, OPS, MALLORY_PASSWORD)).toEqual(['user']);
      const lines = adminLines(after);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 50, adminEmail: OPS });
      expect(lines[0]!.msg).toContain('NOT given the admin role');
      expect(lines[0]!.msg).not.toContain(OPERATOR_PASSWORD);
    } finally {
      await after.app.close();
    }
  });

  it('creates the admin when the address is free, promotes an account whose password is ADMIN_PASSWORD, and confirms it in one info line each start', async () => {
    const created = await start({ ADMIN_EMAIL: 'boss@example.test', ADMIN_PASSWORD: OPERATOR_PASSWORD });
    try {
      expect(adminLines(created)).toEqual([
        expect.objectContaining({ level: 30, outcome: 'created', adminEmail: 'boss@example.test' }),
      ]);
      expect(await roles(created, 'boss@example.test', OPERATOR_PASSWORD)).toEqual(['user', 'admin']);
      // Someone who knows the password registered this one: it may be promoted.
      expect(
        (
          await created.http('POST', '/auth/signup', {
            email: 'deputy@example.test',
            password: OPERATOR_PASSWORD,
            name: 'Deputy',
          })
        ).status,
      ).toBe(201);
    } finally {
      await created.app.close();
    }
    const again = await start({ ADMIN_EMAIL: 'boss@example.test', ADMIN_PASSWORD: OPERATOR_PASSWORD });
    try {
      expect(adminLines(again)).toEqual([expect.objectContaining({ level: 30, outcome: 'already admin' })]);
      expect(adminLines(again)[0]!.msg).toContain('admin account boss@example.test');
    } finally {
      await again.app.close();
    }
    const deputy = await start({ ADMIN_EMAIL: 'Deputy@Example.test', ADMIN_PASSWORD: OPERATOR_PASSWORD });
    try {
      expect(adminLines(deputy)).toEqual([expect.objectContaining({ level: 30, outcome: 'promoted' })]);
      expect(await roles(deputy, 'deputy@example.test', OPERATOR_PASSWORD)).toEqual(['user', 'admin']);
    } finally {
      await deputy.app.close();
    }
  });

  it('ADMIN_EMAIL without ADMIN_PASSWORD changes nothing and says so', async () => {
    const s = await start({ ADMIN_EMAIL: 'nopass@example.test' });
    try {
      expect(adminLines(s)).toEqual([expect.objectContaining({ level: 40 })]);
      expect(
        (await s.http('POST', '/auth/login', { email: 'nopass@example.test', password: OPERATOR_PASSWORD })).status,
      ).toBe(401);
    } finally {
      await s.app.close();
    }
  });
});
