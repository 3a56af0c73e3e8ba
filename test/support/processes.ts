import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pickPort } from '../../src/platform/local/processes';
import type { HttpResult } from './app';
import { eventually } from './events';

/**
 * The real entry point (dist/src/main.js) as separate processes, for tests that
 * kill them or run several side by side. Build first (`npx tsc -p tsconfig.json`;
 * `npm test` does). Every process started here is remembered, so a test's
 * afterAll can end them all with `killAllApps()`, even after a failure.
 */
export const MAIN = join(__dirname, '../../dist/src/main.js');

export interface AppProcess {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** The newest output lines (stdout and stderr), for failure messages. */
  tail(): string;
  /** Every output line matching the `keep` pattern given at spawn, in order. */
  readonly kept: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** fetch against this process, JSON in and out; throws when the process does not answer (refused, reset). */
  http(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResult>;
  /** Waits for GET /health to answer 200; fails at once if the process exits. */
  ready(timeoutMs?: number): Promise<void>;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: AppProcess[] = [];
const TAIL_LINES = 300;

/** A port nobody listens on right now, below the ephemeral range (no outgoing connection takes it before the app binds it). */
export function freePort(): Promise<number> {
  return pickPort();
}

export async function httpJson(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  const res = await fetch(baseUrl + path, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Starts `node dist/src/main.js` with `env` (PORT chosen here unless given) on 127.0.0.1. */
export async function spawnApp(
  name: string,
  env: Record<string, string>,
  options: { keep?: RegExp } = {},
): Promise<AppProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const proc = spawn(process.execPath, [MAIN], {
    env: { ...process.env, HOST: '127.0.0.1', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const kept: string[] = [];
  const onLine = (l: string) => {
    lines.push(l);
    if (lines.length > TAIL_LINES) lines.shift();
    if (options.keep?.test(l)) kept.push(l);
  };
  createInterface({ input: proc.stdout }).on('line', onLine);
  createInterface({ input: proc.stderr }).on('line', onLine);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    proc.once('exit', (code, signal) => res({ code, signal }));
  });
  const url = `http://127.0.0.1:${port}`;
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const app: AppProcess = {
    name,
    proc,
    port,
    url,
    kept,
    exited,
    alive,
    tail: () => lines.join('\n'),
    http: (method, path, body, headers) => httpJson(url, method, path, body, headers),
    async ready(timeoutMs = 60_000) {
      await eventually(
        async () => {
          if (!alive()) throw new Error(`${name} exited before it was ready; its output:\n${lines.join('\n')}`);
          try {
            return (await fetch(`${url}/health`)).status === 200;
          } catch {
            return false;
          }
        },
        `${name} to answer GET /health with 200`,
        timeoutMs,
      );
    },
    async kill() {
      if (alive()) proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (alive()) proc.kill('SIGTERM');
      return exited;
    },
  };
  started.push(app);
  return app;
}

/** Ends every process spawned by this module that still runs (SIGKILL) and waits for each exit. */
export async function killAllApps(): Promise<void> {
  await Promise.all(started.map((a) => a.kill()));
}

/** Logs in over HTTP; returns `{ authorization: 'Bearer …' }`. */
export async function login(
  app: Pick<AppProcess, 'http'>,
  email: string,
  password: string,
): Promise<{ authorization: string }> {
  const r = await app.http('POST', '/auth/login', { email, password });
  if (r.status !== 200) throw new Error(`login of ${email} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { authorization: `Bearer ${r.body.accessToken as string}` };
}

/** Signs a customer up over HTTP and logs in. */
export async function signUp(
  app: Pick<AppProcess, 'http'>,
  email: string,
  password: string,
): Promise<{ userId: string; authorization: string }> {
  const r = await app.http('POST', '/auth/signup', { email, password, name: 'Customer' });
  if (r.status !== 201) throw new Error(`signup of ${email} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { userId: r.body.userId as string, ...(await login(app, email, password)) };
}
