/**
 * The one backoff of the platform: how long to wait after the n-th failure in
 * a row before trying again. Exponential from `initialMs`, capped at `maxMs`,
 * so a database that is down for minutes is asked once every `maxMs`, not in a
 * tight loop, and one that blips is asked again almost at once.
 *
 * Used by the processor runtime (a processor that keeps failing; a poison
 * event retried before it is parked) and by the event store's subscriptions
 * (a read that failed).
 */
export interface BackoffPolicy {
  /** Wait after the first failure. */
  readonly initialMs: number;
  /** Never wait longer than this. */
  readonly maxMs: number;
}

/** `failures` counts from 1 (the failure just seen). */
export function backoffMs(failures: number, policy: BackoffPolicy): number {
  // The exponent is bounded so the product stays a finite number for any count.
  const exponent = Math.min(Math.max(failures, 1) - 1, 30);
  return Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
}
