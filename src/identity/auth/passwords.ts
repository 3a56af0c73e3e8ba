import { randomBytes } from 'node:crypto';
import * as argon2 from 'argon2';
import type { Config } from '../../config';
import { DomainError } from '../../../domain/shared/errors';
import { AuthErrorCode } from '../../platform/http/auth-errors';
import { HasherProcess } from './hasher-process';

/**
 * Password hashing with argon2id.
 *
 * Parameters: the OWASP Password Storage Cheat Sheet's first argon2id
 * configuration, m = 19456 KiB (19 MiB), t = 2, p = 1 (32-byte hash, 16-byte
 * salt). Weaker settings are refused; stronger ones may be passed, and hashes
 * made with other settings report `needsRehash` (re-hash on the next login).
 *
 * Hashes are computed off this process: in a child process at the lowest CPU
 * priority with a thread pool of its own (hasher-process.ts), so a login storm
 * takes only CPU the app leaves idle and never holds up this process's libuv pool.
 *
 * At most `concurrency` (ARGON2_CONCURRENCY) hashes run at once, in two
 * lanes, so a sign-up flood cannot turn logins into 503s: 'verify' (logins,
 * device tokens) and 'create' (new credentials: sign-ups, devices) queue
 * separately, each bounded (then 503 AUTH.BUSY); a freed slot goes to a
 * waiting verification first; and 'create' may hold at most half the slots
 * (at least one), so with two or more slots a verification never waits for
 * a sign-up. `verifyAgainstDummy` does the same work as `verify` against a
 * hash nobody can match, so a login for an unknown account costs the same
 * time as one with a wrong password.
 */
export const OWASP_ARGON2ID = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export interface PasswordHasherOptions {
  readonly concurrency: number;
  readonly memoryCost?: number | undefined;
  readonly timeCost?: number | undefined;
  readonly parallelism?: number | undefined;
  /** Verifications (logins, device tokens) allowed to wait for a slot; more get 503 AUTH.BUSY. Default 100. */
  readonly maxQueue?: number | undefined;
  /** New hashes (sign-ups, device registrations) allowed to wait; more get 503 AUTH.BUSY. Default 50. */
  readonly maxSignupQueue?: number | undefined;
  /** Nice value of the hashing process; default 19 (lowest priority). */
  readonly priority?: number | undefined;
  readonly log?: { warn(obj: Record<string, unknown>, msg: string): void } | undefined;
}

/** `verify`: checking a credential (login, device token). `create`: hashing a new one (sign-up, device registration). */
export type HashLane = 'verify' | 'create';

/**
 * A counting semaphore with two lanes: a freed slot goes to the `verify`
 * lane first, and `create` may hold at most `createSlots` at once. A caller
 * takes a slot synchronously when one is free for its lane.
 */
class LanedSemaphore {
  private active = 0;
  private activeCreate = 0;
  private readonly queues: Record<HashLane, (() => void)[]> = { verify: [], create: [] };

  constructor(
    private readonly slots: number,
    private readonly createSlots: number,
    private readonly maxQueue: Record<HashLane, number>,
  ) {}

  get running(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queues.verify.length + this.queues.create.length;
  }

  async run<T>(lane: HashLane, work: () => Promise<T>): Promise<T> {
    if (this.queues[lane].length === 0 && this.free(lane)) {
      this.take(lane);
    } else {
      if (this.queues[lane].length >= this.maxQueue[lane]) {
        const what = lane === 'verify' ? 'logins' : 'sign-ups';
        throw new DomainError('unavailable', AuthErrorCode.BUSY, `too many ${what} at once; try again shortly`, [], {
          retryAfterSeconds: 1,
        });
      }
      // `dispatch` takes the slot on this caller's behalf before waking it.
      await new Promise<void>((resolve) => this.queues[lane].push(resolve));
    }
    try {
      return await work();
    } finally {
      this.active--;
      if (lane === 'create') this.activeCreate--;
      this.dispatch();
    }
  }

  private free(lane: HashLane): boolean {
    return this.active < this.slots && (lane === 'verify' || this.activeCreate < this.createSlots);
  }

  private take(lane: HashLane): void {
    this.active++;
    if (lane === 'create') this.activeCreate++;
  }

  private dispatch(): void {
    for (const lane of ['verify', 'create'] as const) {
      while (this.queues[lane].length > 0 && this.free(lane)) {
        this.take(lane);
        this.queues[lane].shift()!();
      }
    }
  }
}

export class PasswordHasher {
  private readonly params: { memoryCost: number; timeCost: number; parallelism: number };
  private readonly semaphore: LanedSemaphore;
  private readonly worker: HasherProcess;
  private dummy: Promise<string> | undefined;

  constructor(options: PasswordHasherOptions) {
    this.params = {
      memoryCost: options.memoryCost ?? OWASP_ARGON2ID.memoryCost,
      timeCost: options.timeCost ?? OWASP_ARGON2ID.timeCost,
      parallelism: options.parallelism ?? OWASP_ARGON2ID.parallelism,
    };
    const { memoryCost, timeCost, parallelism } = this.params;
    if (
      !Number.isInteger(memoryCost) ||
      !Number.isInteger(timeCost) ||
      !Number.isInteger(parallelism) ||
      parallelism < 1
    ) {
      throw new Error('argon2 parameters must be positive integers');
    }
    if (memoryCost < OWASP_ARGON2ID.memoryCost || timeCost < OWASP_ARGON2ID.timeCost) {
      throw new Error(
        `argon2id parameters below OWASP's (m=${OWASP_ARGON2ID.memoryCost} KiB, t=${OWASP_ARGON2ID.timeCost}) are refused`,
      );
    }
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1)
      throw new Error('concurrency must be a positive integer');
    this.semaphore = new LanedSemaphore(options.concurrency, Math.max(1, Math.floor(options.concurrency / 2)), {
      verify: options.maxQueue ?? 100,
      create: options.maxSignupQueue ?? 50,
    });
    this.worker = new HasherProcess({ threads: options.concurrency, priority: options.priority, log: options.log });
  }

  static fromConfig(
    config: Pick<Config, 'ARGON2_CONCURRENCY' | 'ARGON2_SIGNUP_MAX_QUEUE' | 'ARGON2_MAX_QUEUE'>,
    extra: Pick<PasswordHasherOptions, 'log'> = {},
  ): PasswordHasher {
    return new PasswordHasher({
      concurrency: config.ARGON2_CONCURRENCY,
      maxQueue: config.ARGON2_MAX_QUEUE,
      maxSignupQueue: config.ARGON2_SIGNUP_MAX_QUEUE,
      ...extra,
    });
  }

  /** The hashing process's id while it runs. */
  get processId(): number | undefined {
    return this.worker.pid;
  }

  /** Stops the hashing process; hashes waiting or running fail with 503 AUTH.BUSY. */
  close(): void {
    this.worker.close();
  }

  /** The parameters new hashes are made with. */
  get parameters(): { readonly memoryCost: number; readonly timeCost: number; readonly parallelism: number } {
    return { ...this.params };
  }

  /** Hashes running now / callers waiting for a slot. */
  get running(): number {
    return this.semaphore.running;
  }

  get waiting(): number {
    return this.semaphore.waiting;
  }

  /** Computes the dummy hash now (call at start-up, so the first unknown-account login is not slower). */
  async init(): Promise<void> {
    await this.worker.start();
    await this.dummyHash();
  }

  /** A new hash; `lane` 'verify' for re-hashing a password that just verified (it is part of a login). */
  async hash(plain: string, lane: HashLane = 'create'): Promise<string> {
    if (typeof plain !== 'string') throw new TypeError('password must be a string');
    const request = { op: 'hash', plain, options: { type: argon2.argon2id, ...this.params } } as const;
    return this.semaphore.run(lane, async () => (await this.worker.run(request)) as string);
  }

  /** True when `plain` matches `hash`. A malformed stored hash is an error, not a mismatch. */
  async verify(hash: string, plain: string, lane: HashLane = 'verify'): Promise<boolean> {
    if (typeof plain !== 'string') return false;
    if (typeof hash !== 'string' || !hash.startsWith('$argon2'))
      throw new Error('stored password hash is not an argon2 hash');
    return this.semaphore.run(lane, async () => (await this.worker.run({ op: 'verify', hash, plain })) === true);
  }

  /** True when the hash was made with other parameters (or another argon2 variant / another scheme). */
  needsRehash(hash: string): boolean {
    if (typeof hash !== 'string' || !hash.startsWith('$argon2id$')) return true;
    try {
      return argon2.needsRehash(hash, { ...this.params, version: 0x13 });
    } catch {
      return true;
    }
  }

  /** The same work as `verify` for an account that does not exist; always false. */
  async verifyAgainstDummy(plain: string): Promise<false> {
    const dummy = await this.dummyHash();
    await this.verify(dummy, typeof plain === 'string' ? plain : '');
    return false;
  }

  /** The hash unknown accounts are verified against: made with the current parameters, so it costs what a real one costs. */
  dummyHash(): Promise<string> {
    if (!this.dummy) {
      // A random password nobody knows; only its cost matters.
      // In the verify lane: logins wait on it, and a sign-up flood must not hold it up.
      const attempt = this.hash(randomBytes(32).toString('base64url'), 'verify');
      this.dummy = attempt;
      attempt.catch(() => {
        if (this.dummy === attempt) this.dummy = undefined;
      });
    }
    return this.dummy;
  }
}
