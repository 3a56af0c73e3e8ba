import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/**
 * How the local servers (PostgreSQL, Redis) run as children of the app:
 *
 * - In their own session and process group (`detached`), so Ctrl-C in the
 *   terminal reaches the app alone; the app stops them itself, last, once its
 *   work is drained (a SIGINT to the terminal's group used to stop PostgreSQL
 *   under the running app).
 * - With a parent-death signal (`setpriv --pdeathsig`, util-linux, on every
 *   Debian), so a SIGKILLed or crashed app takes them down with it instead of
 *   leaving them holding their ports for the next start.
 * - With their output appended to a log file under DATA_DIR, whose newest
 *   lines are quoted when a server fails to start.
 */

export type Log = (msg: string) => void;

let setprivAvailable: boolean | undefined;

/** util-linux `setpriv` with `--pdeathsig` (2.33+); missing elsewhere (macOS, busybox), where an orphan is stopped at the next start instead. */
export function hasSetpriv(): boolean {
  if (setprivAvailable === undefined) {
    const r = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
    setprivAvailable = r.status === 0 && r.stdout.includes('--pdeathsig');
  }
  return setprivAvailable;
}

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  readonly exited: Promise<string>;
  running: () => boolean;
}

export interface SpawnOptions {
  /** Output (stdout and stderr) is appended here. */
  logFile: string;
  /** Signal the server gets when the app dies: the one that shuts it down cleanly. */
  parentDeathSignal: NodeJS.Signals;
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
  /** false for short-lived tools (initdb): they stay in the app's process group. */
  detached?: boolean;
}

export function spawnServer(command: string, args: string[], options: SpawnOptions): ServerProcess {
  const fd = openSync(options.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    const [cmd, argv] = hasSetpriv()
      ? ['setpriv', ['--pdeathsig', options.parentDeathSignal, '--', command, ...args]]
      : [command, args];
    child = spawn(cmd, argv, {
      detached: options.detached ?? true,
      stdio: ['ignore', fd, fd],
      env: options.env ?? process.env,
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
  } finally {
    closeSync(fd);
  }
  // A server must not keep the event loop alive on its own: the app decides when to stop it.
  child.unref();
  const exited = new Promise<string>((res) => {
    child.once('exit', (code, signal) => res(signal ?? `exit code ${String(code)}`));
    child.once('error', (e) => res(e.message));
  });
  if (child.pid === undefined) {
    // spawn failed synchronously (ENOENT, EACCES): the 'error' event carries the reason.
    return { child, pid: -1, exited, running: () => false };
  }
  return { child, pid: child.pid, exited, running: () => child.exitCode === null && child.signalCode === null };
}

/** Sends `signal` and waits for the exit; escalates to SIGKILL after `graceMs`. */
export async function stopServer(server: ServerProcess, signal: NodeJS.Signals, graceMs = 60_000): Promise<void> {
  if (!server.running()) return;
  server.child.ref();
  server.child.kill(signal);
  const timer = setTimeout(() => server.child.kill('SIGKILL'), graceMs);
  try {
    await server.exited;
  } finally {
    clearTimeout(timer);
  }
}

export interface ProcessState {
  alive: boolean;
  /** Parent pid; undefined where /proc is not available. */
  ppid?: number;
}

/** Whether `pid` runs (a zombie does not), and its parent (Linux /proc). */
export function processState(pid: number): ProcessState {
  if (!Number.isInteger(pid) || pid <= 0) return { alive: false };
  const statFile = `/proc/${pid}/stat`;
  if (existsSync('/proc/self/stat')) {
    let stat: string;
    try {
      stat = readFileSync(statFile, 'utf8');
    } catch {
      return { alive: false };
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { alive: fields[0] !== 'Z' && fields[0] !== 'X', ppid: Number(fields[1]) };
  }
  try {
    process.kill(pid, 0);
    return { alive: true };
  } catch (e) {
    return { alive: (e as NodeJS.ErrnoException).code === 'EPERM' };
  }
}

/**
 * A server found running on our data dir belongs to a live process when its
 * parent is the owner recorded at its start and that owner still runs (the app
 * while a CLI command reuses its PostgreSQL). Anything else is an orphan left
 * by a process that died (without setpriv, or started by an older version).
 */
export function isOrphan(pid: number, ownerPid: number | undefined): boolean {
  const state = processState(pid);
  if (state.ppid === undefined) return false;
  if (ownerPid !== undefined) return state.ppid !== ownerPid || !processState(ownerPid).alive;
  return state.ppid === 1 || !processState(state.ppid).alive;
}

/** Waits until `pid` is gone; false when it still runs after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (processState(pid).alive) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** Stops a server this process did not start (an orphan): `signal`, then SIGKILL if it lingers. */
export async function stopOrphan(pid: number, signal: NodeJS.Signals, graceMs: number): Promise<boolean> {
  try {
    process.kill(pid, signal);
  } catch {
    return true;
  }
  if (await waitForExit(pid, graceMs)) return true;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return true;
  }
  return waitForExit(pid, 10_000);
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

/** True when this process could bind 127.0.0.1:port right now. */
export function portBindable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const server = createServer();
    server.once('error', () => res(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => res(true)));
  });
}

/**
 * Ports picked for "0" come from below Linux's ephemeral range (32768-60999 by
 * default), where an outgoing connection may hold any port at any moment; the
 * caller retries with another pick if the server still fails to bind.
 */
const PICK_FROM = 10_000;
const PICK_TO = 32_767;

export async function pickPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = PICK_FROM + Math.floor(Math.random() * (PICK_TO - PICK_FROM + 1));
    if (await portBindable(port)) return port;
  }
  throw new Error(`no free port found between ${PICK_FROM} and ${PICK_TO}`);
}

/** Size of a file, 0 when missing: where this run's output starts in an appended log. */
export function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The last `lines` lines written to `path` since byte `from`. */
export function logTail(path: string, from: number, lines = 25): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(path).size;
    const start = Math.max(from, size - 64 * 1024);
    const buf = Buffer.alloc(Math.max(0, size - start));
    readSync(fd, buf, 0, buf.length, start);
    return buf
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-lines)
      .join('\n');
  } finally {
    closeSync(fd);
  }
}

/** Polls `check` while `alive()` holds, up to `timeoutMs`: often at first (a server is usually up within tens of ms), then every 100 ms. */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  alive: () => boolean,
  timeoutMs: number,
): Promise<'ready' | 'exited' | 'timeout'> {
  const until = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if (await check()) return 'ready';
    if (!alive()) return 'exited';
    if (Date.now() > until) return 'timeout';
    await new Promise((r) => setTimeout(r, i < 40 ? 10 : 100));
  }
}
