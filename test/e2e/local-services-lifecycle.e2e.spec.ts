import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pickPort, portOpen } from '../../src/platform/local/processes';
import { eventually } from '../support/events';
import { removeDataDir } from '../support/services';

/**
 * The real dist/src/main.js with its own PostgreSQL and Redis (no DATABASE_URL,
 * no REDIS_URL), each in a private DATA_DIR (mode 700, as under /root):
 * - SIGKILL leaves no server behind that blocks the next start, even one with
 *   a fresh DATA_DIR on the same ports;
 * - Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops
 *   as cleanly as SIGTERM: exit 0, not one warning or error.
 */
const MAIN = join(__dirname, '../../dist/src/main.js');

interface Started {
  child: ChildProcess;
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url: string;
}

const dataDirs: string[] = [];
const children: ChildProcess[] = [];

async function start(
  ports: { http: number; pg: number; redis: number },
  dataDir: string,
  viaNpm = false,
): Promise<Started> {
  const [command, args] = viaNpm ? ['npm', ['start']] : [process.execPath, [MAIN]];
  const child = spawn(command, args, {
    cwd: join(__dirname, '../..'),
    env: {
      ...process.env,
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(ports.http),
      MQTT_PORT: '0',
      MQTT_HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(ports.pg),
      EMBEDDED_REDIS_PORT: String(ports.redis),
      DATABASE_URL: '',
      REDIS_URL: '',
      QUEUE_PREFIX: 'lifecycle',
    },
    // Its own process group, as a shell gives a foreground job: a signal to the group reaches every process in it.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => lines.push(`stderr: ${l}`));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => res({ code, signal })),
  );
  const url = `http://127.0.0.1:${ports.http}`;
  await eventually(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`exited before it was healthy:\n${lines.join('\n')}`);
      try {
        return (await fetch(`${url}/health`)).status === 200;
      } catch {
        return false;
      }
    },
    'the app to answer /health with 200',
    180_000,
  );
  return { child, lines, exited, url };
}

async function distinctPorts(): Promise<{ http: number; pg: number; redis: number }> {
  const taken = new Set<number>();
  const next = async () => {
    let p: number;
    do p = await pickPort();
    while (taken.has(p));
    taken.add(p);
    return p;
  };
  return { http: await next(), pg: await next(), redis: await next() };
}

function privateDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lifecycle-'));
  dataDirs.push(dir);
  return dir;
}

/** pino lines at warn (40) or above, and anything on stderr (npm's own banner aside). */
function complaints(lines: string[]): string[] {
  return lines.filter((l) => {
    if (l.trim() === '' || l.startsWith('> ')) return false;
    if (l.startsWith('stderr: ')) return true;
    try {
      return (JSON.parse(l) as { level?: number }).level! >= 40;
    } catch {
      return true;
    }
  });
}

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx tsc -p tsconfig.json)`);
});

afterAll(() => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  // Each test waited for its app's exit; a server still stopping on its parent-death signal loses nothing it needs.
  for (const dir of dataDirs) removeDataDir(dir);
});

it('a SIGKILLed app leaves no server behind: the next start, with a fresh DATA_DIR on the same ports, comes up', async () => {
  const ports = await distinctPorts();
  const first = await start(ports, privateDataDir());
  first.child.kill('SIGKILL');
  expect((await first.exited).signal).toBe('SIGKILL');
  // Its PostgreSQL and Redis go with it (before: Redis ran on, detached, and PostgreSQL too).
  await eventually(
    async () => !(await portOpen(ports.pg)) && !(await portOpen(ports.redis)),
    "the killed app's servers to stop",
    60_000,
  );

  const second = await start(ports, privateDataDir());
  expect(second.lines.join('\n')).toContain(`PostgreSQL started on 127.0.0.1:${ports.pg}`);
  expect(second.lines.join('\n')).toContain(`Redis started on 127.0.0.1:${ports.redis}`);
  second.child.kill('SIGTERM');
  expect((await second.exited).code).toBe(0);
  expect(complaints(second.lines)).toEqual([]);
});

it('a SIGKILLed app restarts on the same DATA_DIR at once, even while its servers are still stopping', async () => {
  const ports = await distinctPorts();
  const dir = privateDataDir();
  const first = await start(ports, dir);
  first.child.kill('SIGKILL');
  await first.exited;
  // No waiting for the servers: the new start stops what is left on its data dir, or finds it gone.
  const second = await start(ports, dir);
  second.child.kill('SIGTERM');
  expect((await second.exited).code).toBe(0);
});

it('Ctrl-C (SIGINT to the whole process group) stops as cleanly as SIGTERM: exit 0, no warning, servers stopped last', async () => {
  const ports = await distinctPorts();
  const app = await start(ports, privateDataDir());
  // A request in flight and projections running, as in the terminal where this went wrong.
  const signup = await fetch(`${app.url}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'ctrl-c@example.com', password: 'a long enough passphrase 7', name: 'C' }),
  });
  expect(signup.status).toBe(201);
  process.kill(-app.child.pid!, 'SIGINT');
  const exit = await app.exited;
  expect(exit).toEqual({ code: 0, signal: null });
  expect(complaints(app.lines)).toEqual([]);
  expect(app.lines.join('\n')).toContain('"signal":"SIGINT"');
  expect(await portOpen(ports.pg)).toBe(false);
  expect(await portOpen(ports.redis)).toBe(false);
});

it('Ctrl-C through npm (`npm start`, as `npm run up`: npm, its shell, the app in one group) exits 0 once the app has stopped, no warning', async () => {
  const ports = await distinctPorts();
  const app = await start(ports, privateDataDir(), true);
  process.kill(-app.child.pid!, 'SIGINT');
  // Before: npm's shell died at once (exit 130) and the app went on shutting down behind the prompt.
  expect(await app.exited).toEqual({ code: 0, signal: null });
  expect(complaints(app.lines)).toEqual([]);
  expect(app.lines.join('\n')).toContain('"signal":"SIGINT"');
  expect(await portOpen(ports.http)).toBe(false);
  expect(await portOpen(ports.pg)).toBe(false);
});
