import type { RedisOptions } from 'ioredis';
import { DomainError } from '../../../domain/shared/errors';

/**
 * Redis answers auth questions (is this token revoked? may this address try
 * again?). When it does not answer, the answer is "no": every call is bounded
 * by a short timeout of its own, whatever the client's options (a client with
 * `maxRetriesPerRequest: null` would otherwise queue a command for as long as
 * Redis is down), and any failure becomes a 503 DomainError.
 */
export const DEFAULT_REDIS_TIMEOUT_MS = 500;

/** Options for a Redis client dedicated to auth: fail fast instead of queueing while Redis is down. */
export function authRedisOptions(timeoutMs = DEFAULT_REDIS_TIMEOUT_MS): RedisOptions {
  return { commandTimeout: timeoutMs, maxRetriesPerRequest: 1, connectTimeout: Math.max(timeoutMs, 1000) };
}

export async function redisCall<T>(op: () => Promise<T>, timeoutMs: number, code: string, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const unavailable = () =>
    new DomainError('unavailable', code, `${what} is unavailable; try again shortly`, [], { retryAfterSeconds: 1 });
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable()), timeoutMs);
  });
  try {
    // `race` also consumes a late rejection of the abandoned command.
    return await Promise.race([Promise.resolve().then(op), timeout]);
  } catch (e) {
    if (e instanceof DomainError) throw e;
    throw unavailable();
  } finally {
    clearTimeout(timer);
  }
}
