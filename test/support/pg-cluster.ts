import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { freePort } from './processes';
import { eventually } from './events';

const run = promisify(execFile);

/**
 * A throw-away PostgreSQL cluster of Debian's server binaries (package
 * postgresql-15, installed by scripts/setup.sh), for tests that need what the
 * embedded PostgreSQL does not ship: pg_dump and pg_restore, and a second,
 * independent cluster with its own transaction ids. initdb and postgres refuse
 * to run as root, so as root they run as the `postgres` OS user.
 */
export const PG_BIN = process.env.TEST_PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';

export interface Cluster {
  readonly port: number;
  readonly dataDir: string;
  /** postgres://postgres@127.0.0.1:<port>/<db> (trust authentication, loopback only). */
  url(db: string): string;
  query<T extends Record<string, unknown>>(db: string, sql: string, params?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

export function pgBinaries(): string {
  for (const b of ['initdb', 'postgres', 'pg_dump', 'pg_restore']) {
    if (!existsSync(join(PG_BIN, b))) {
      throw new Error(
        `${join(PG_BIN, b)} is missing: install Debian's postgresql-15 (scripts/setup.sh does) or set TEST_PG_BIN_DIR`,
      );
    }
  }
  return PG_BIN;
}

/** uid/gid to run the server as: the current user, or `postgres` when that is root. */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  return { uid, gid };
}

export async function startCluster(label: string): Promise<Cluster> {
  const bin = pgBinaries();
  const user = await serverUser();
  const dataDir = mkdtempSync(join(tmpdir(), `pg-${label}-`));
  if (user) chownSync(dataDir, user.uid, user.gid);
  const asServer = user ? { uid: user.uid, gid: user.gid } : {};
  // No HOME of root's for the server user to trip over; LC_ALL=C so initdb needs no locale.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' };
  await new Promise<void>((resolve, reject) => {
    const p = spawn(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], {
      ...asServer,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`initdb ${dataDir} failed (${code}): ${err}`)),
    );
  });

  const port = await freePort();
  const server: ChildProcess = spawn(
    join(bin, 'postgres'),
    [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=100',
    ],
    { ...asServer, env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const log: string[] = [];
  server.stderr?.on('data', (d: Buffer) => {
    log.push(d.toString());
    if (log.length > 200) log.shift();
  });
  const exited = new Promise<void>((res) => server.once('exit', () => res()));
  const url = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
  await eventually(
    async () => {
      if (server.exitCode !== null) throw new Error(`postgres (${label}) exited: ${log.join('')}`);
      const c = new Client({ connectionString: url('postgres') });
      try {
        await c.connect();
        return true;
      } catch {
        return false;
      } finally {
        await c.end().catch(() => undefined);
      }
    },
    `PostgreSQL cluster ${label} on port ${port}`,
    60_000,
  );

  return {
    port,
    dataDir,
    url,
    async query<T extends Record<string, unknown>>(db: string, sql: string, params?: unknown[]): Promise<T[]> {
      const c = new Client({ connectionString: url(db) });
      await c.connect();
      try {
        // Without parameters as a simple query: a DO block may then COMMIT.
        const res = params ? await c.query<T>(sql, params) : await c.query<T>(sql);
        return res.rows;
      } finally {
        await c.end();
      }
    },
    async stop() {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGINT'); // fast shutdown
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs one of the cluster's client programs (pg_dump, pg_restore), failing with its stderr. */
export async function pgTool(tool: 'pg_dump' | 'pg_restore', args: string[]): Promise<string> {
  try {
    const { stdout } = await run(join(pgBinaries(), tool), args, {
      env: { ...process.env, PGCONNECT_TIMEOUT: '30' },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${tool} ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
}
