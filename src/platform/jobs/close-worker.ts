import type { Worker } from 'bullmq';

/** How long a shutdown waits for a BullMQ worker (its running jobs, its connections) before dropping it. */
export const WORKER_CLOSE_MS = 15_000;

/**
 * Closes a BullMQ worker, waiting at most `ms`. A worker whose blocking connection a Redis
 * outage left reconnecting without a socket never finishes `close()` (bullmq#4585, #4656): a
 * shutdown would hang for good. Past the bound its connections are dropped instead (`onLate`
 * says so), and a job still running is left to BullMQ's stalled-job check: another worker, or
 * the next start, runs it again (every job here is safe to repeat). Resolves true when closed in time.
 */
export async function closeWorker(worker: Worker, onLate: () => void, ms = WORKER_CLOSE_MS): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((res) => {
    timer = setTimeout(() => res(false), ms);
  });
  const closed = await Promise.race([worker.close().then(() => true), late]);
  clearTimeout(timer);
  if (!closed) {
    onLate();
    void worker.disconnect().catch(() => undefined);
  }
  return closed;
}
