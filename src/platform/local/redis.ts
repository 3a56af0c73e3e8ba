import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generatedSecret } from './secrets';
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
 * The local Redis: Debian's `redis-server`, run by us with its data in
 * DATA_DIR/redis. Its settings, the password among them, are in a config file
 * of mode 600 (on the command line the password showed in `ps` to every user).
 */

const START_TIMEOUT_MS = 60_000;

/** redis.conf string syntax: double quotes, backslash escapes (paths may hold spaces). */
const quote = (s: string) => JSON.stringify(s);

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The port in the config file the running server was started with. */
function configuredPort(conf: string): number | undefined {
  try {
    const m = /^port (\d+)$/m.exec(readFileSync(conf, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export async function startLocalRedis(dataDir: string, port: number, log: Log): Promise<LocalService> {
  const dir = join(resolve(dataDir), 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const password = generatedSecret(dataDir, 'redis-password');
  const url = (p: number) => `redis://:${password}@127.0.0.1:${p}`;
  const pidFile = join(dir, 'redis.pid');
  const ownerFile = join(dir, 'redis.owner');
  const conf = join(dir, 'redis.conf');
  const logFile = join(dir, 'redis.log');

  const pid = readPid(pidFile);
  if (pid !== undefined && processState(pid).alive) {
    const running = configuredPort(conf);
    if (isOrphan(pid, readPid(ownerFile)) || running === undefined) {
      log(`stopping Redis (pid ${pid}) left running for ${dir} by a process that ended`);
      if (!(await stopOrphan(pid, 'SIGTERM', 30_000)))
        throw new LocalServiceError(`Redis (pid ${pid}) for ${dir} does not stop: stop it, then start again`);
    } else if (
      (await waitUntil(
        () => portOpen(running),
        () => processState(pid).alive,
        START_TIMEOUT_MS,
      )) === 'ready'
    ) {
      // Started by another live process (the app, while a CLI command runs): shared, and left to it to stop.
      log(`reusing Redis already running for ${dir} (pid ${pid}, port ${running})`);
      return { url: url(running), stop: () => Promise.resolve() };
    }
  }
  if (port && (await portOpen(port))) {
    throw new LocalServiceError(
      `port ${port} is taken by something other than the Redis of ${dir}: set EMBEDDED_REDIS_PORT to a free port (0: any free port), or REDIS_URL`,
    );
  }
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new LocalServiceError(
      'redis-server is not installed: run scripts/setup.sh (it installs the Debian package) or set REDIS_URL',
    );
  }

  let server: ServerProcess | undefined;
  let chosen = port;
  for (let attempt = 1; !server; attempt++) {
    chosen = port || (await pickPort());
    // BullMQ needs noeviction; appendonly keeps queued jobs across a restart.
    const settings = [
      `port ${chosen}`,
      'bind 127.0.0.1',
      `dir ${quote(dir)}`,
      'daemonize no',
      'logfile ""',
      `pidfile ${quote(pidFile)}`,
      `requirepass ${quote(password)}`,
      'appendonly yes',
      'appendfsync everysec',
      'save ""',
      'maxmemory-policy noeviction',
    ];
    // Written whole with mode 600 before it exists under its name: the password is never readable by others.
    writeFileSync(`${conf}.tmp`, settings.join('\n') + '\n', { mode: 0o600 });
    renameSync(`${conf}.tmp`, conf);
    const from = fileSize(logFile);
    const started = spawnServer('redis-server', [conf], { logFile, parentDeathSignal: 'SIGTERM' });
    writeFileSync(ownerFile, `${process.pid}\n`);
    const outcome = await waitUntil(
      async () => readPid(pidFile) === started.pid && (await portOpen(chosen)),
      started.running,
      START_TIMEOUT_MS,
    );
    if (outcome === 'ready') {
      server = started;
      break;
    }
    if (outcome === 'timeout') await stopServer(started, 'SIGKILL');
    const how =
      outcome === 'timeout' ? `was not ready after ${START_TIMEOUT_MS / 1000} s` : `exited (${await started.exited})`;
    const tail = logTail(logFile, from);
    if (!port && attempt < 5 && /already in use|could not create server tcp/i.test(tail)) continue;
    throw new LocalServiceError(`redis-server ${how} on port ${chosen}; ${logFile} ends with:\n${tail || '(nothing)'}`);
  }

  const owned = server;
  let stopping = false;
  void owned.exited.then((how) => {
    if (!stopping) log(`the local Redis (pid ${owned.pid}) ended unexpectedly (${how}); see ${logFile}`);
  });
  log(`Redis started on 127.0.0.1:${chosen} (pid ${owned.pid}, data in ${dir})`);
  return {
    url: url(chosen),
    stop: async () => {
      stopping = true;
      await stopServer(owned, 'SIGTERM');
      rmSync(ownerFile, { force: true });
      if (existsSync(pidFile) && readPid(pidFile) === owned.pid) rmSync(pidFile, { force: true });
    },
  };
}
