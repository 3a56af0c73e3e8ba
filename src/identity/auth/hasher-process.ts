import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DomainError } from '../../../domain/shared/errors';
import { AuthErrorCode } from '../../platform/http/auth-errors';

/**
 * argon2 in a child process of its own, at the lowest CPU priority.
 *
 * argon2's native binding runs on libuv's thread pool, which the app's process
 * shares (fs, dns.lookup, async crypto) and whose threads run at the same
 * priority as the event loop: on a small machine a login storm then takes CPU
 * from every other route. Here the hashing runs in a separate node process with
 * a thread pool of `threads` threads, every thread of it at nice `priority`
 * (19, the lowest, by default), in a session of its own whose autogroup has the
 * same lowest weight, and, where util-linux's `chrt` is installed (Linux), under
 * the SCHED_IDLE policy: a waking app, PostgreSQL or Redis thread preempts it at
 * once rather than after a time slice. The kernel gives it only the CPU the
 * others leave idle. Callers bound how much they send
 * (PasswordHasher's queue); this class runs what it is given.
 *
 * The child is started on first use and again after it dies (a request in
 * flight then fails with 503 AUTH.BUSY); it exits when this process does (its
 * IPC channel closes). Passwords cross only the IPC pipe between the two.
 */
export interface HasherProcessOptions {
  /** Hashes the child computes at once (its UV_THREADPOOL_SIZE). */
  readonly threads: number;
  /** Nice value of the child's threads; default 19 (lowest priority). */
  readonly priority?: number | undefined;
  readonly log?: { warn(obj: Record<string, unknown>, msg: string): void } | undefined;
}

export type HashRequest =
  | {
      readonly op: 'hash';
      readonly plain: string;
      readonly options: { type: number; memoryCost: number; timeCost: number; parallelism: number };
    }
  | { readonly op: 'verify'; readonly hash: string; readonly plain: string };

type Reply = { id: number; ok: true; value: string | boolean } | { id: number; ok: false; error: string };

// Runs with `node -e`: the same code from the TypeScript sources (tests) and from dist/.
// Lowers every thread that exists now; threads started later (the thread pool, on the first
// hash) inherit the priority of the thread that starts them. Linux applies nice per thread;
// elsewhere setPriority(0) sets the whole process.
// With Linux's autogroup scheduling (sched_autogroup_enabled), nice only ranks threads of one
// session against each other, and sessions share the CPU equally: the child runs in a session
// of its own (spawned detached) and gives that session the same lowest weight
// (/proc/self/autogroup), so a storm takes no CPU share from the app's session either.
const CHILD = `
'use strict';
const os = require('node:os');
const fs = require('node:fs');
const priority = Number(process.env.HASHER_PRIORITY);
try { fs.writeFileSync('/proc/self/autogroup', String(priority)); } catch {}
let lowered = false;
try {
  for (const tid of fs.readdirSync('/proc/self/task')) os.setPriority(Number(tid), priority);
  lowered = true;
} catch {}
if (!lowered) try { os.setPriority(0, priority); } catch {}
const argon2 = require(process.env.HASHER_ARGON2);
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  const work = m.op === 'hash' ? argon2.hash(m.plain, m.options) : argon2.verify(m.hash, m.plain);
  work.then(
    (value) => process.send({ id: m.id, ok: true, value }),
    (e) => process.send({ id: m.id, ok: false, error: String((e && e.message) || e) }),
  );
});
process.send({ id: 0, ok: true, value: 'ready' });
`;

/** Where util-linux's chrt lives on Debian and most Linux systems. */
const CHRT = ['/usr/bin/chrt', '/bin/chrt'];

/** How long a child may take to start before the requests waiting for it fail. */
const START_TIMEOUT_MS = 10_000;

export class HasherProcess {
  private child: ChildProcess | undefined;
  private ready: Promise<ChildProcess> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: string | boolean) => void; reject: (e: Error) => void }>();
  private closed = false;
  private readonly priority: number;

  constructor(private readonly options: HasherProcessOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1)
      throw new Error('threads must be a positive integer');
    this.priority = options.priority ?? 19;
  }

  /** The child's process id while it runs (tests look at its priority, or kill it). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the child now (otherwise on first use); resolves once it answers. */
  async start(): Promise<void> {
    await this.spawned();
  }

  async run(request: HashRequest): Promise<string | boolean> {
    const child = await this.spawned();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      child.channel?.ref(); // a caller is waiting: keep this process up for the answer
      child.send({ id, ...request }, (err) => {
        if (err) this.settle(id, undefined, busy('password hashing is restarting'));
      });
    });
  }

  close(): void {
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    this.ready = undefined;
    this.failAll(busy('password hashing has stopped'));
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  private spawned(): Promise<ChildProcess> {
    if (this.closed) return Promise.reject(busy('password hashing has stopped'));
    this.ready ??= this.spawn();
    return this.ready;
  }

  private spawn(): Promise<ChildProcess> {
    // SCHED_IDLE (any user may take it; threads started later inherit it). Without chrt: nice alone.
    const idle = this.priority > 0 ? CHRT.find((path) => existsSync(path)) : undefined;
    const [command, args] = idle
      ? [idle, ['--idle', '0', process.execPath, '-e', CHILD]]
      : [process.execPath, ['-e', CHILD]];
    const child = spawn(command, args, {
      // Nothing of the app's environment (database URLs, secrets): only what the child reads.
      env: {
        UV_THREADPOOL_SIZE: String(this.options.threads),
        HASHER_PRIORITY: String(this.priority),
        HASHER_ARGON2: require.resolve('argon2'),
      },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
      // A session (and so an autogroup) of its own; it still exits with this process (its IPC channel closes).
      detached: true,
    });
    this.child = child;
    child.unref();
    return new Promise<ChildProcess>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(busy('password hashing did not start'));
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      timer.unref();
      child.on('message', (m: Reply) => {
        if (m.id === 0) {
          clearTimeout(timer);
          if (this.pending.size === 0) child.channel?.unref();
          resolve(child);
          return;
        }
        if (m.ok) this.settle(m.id, m.value, undefined);
        else this.settle(m.id, undefined, new Error(m.error));
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(busy('password hashing could not start'));
        if (this.child === child) {
          this.child = undefined;
          this.ready = undefined;
        }
        this.options.log?.warn({ err: e }, 'auth: the password hashing process could not start');
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(busy('password hashing stopped'));
        if (this.child !== child) return;
        this.child = undefined;
        this.ready = undefined; // the next request starts a new one
        if (!this.closed)
          this.options.log?.warn(
            { code, signal, inFlight: this.pending.size },
            'auth: the password hashing process exited; requests in flight get 503, the next one starts it again',
          );
        this.failAll(busy('password hashing was interrupted'));
      });
    });
  }

  private settle(id: number, value: string | boolean | undefined, error: Error | undefined): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.child?.channel?.unref();
    if (error) p.reject(error);
    else p.resolve(value!);
  }

  private failAll(error: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(error);
  }
}

const busy = (why: string) =>
  new DomainError('unavailable', AuthErrorCode.BUSY, `${why}; try again shortly`, [], { retryAfterSeconds: 1 });
