import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { closeWorker } from '../../src/platform/jobs/close-worker';
import { eventually } from '../support/events';
import { testRedisUrl } from '../support/services';

/**
 * A shutdown never waits on a BullMQ worker for ever: closeWorker gives it a bound, then drops its
 * connections and says so. Here the worker's job never ends, so `close()` alone would never resolve.
 */
it('closeWorker returns after its bound when the worker cannot close, reports it, and closes a free worker at once', async () => {
  const prefix = `close-worker-${randomUUID()}`;
  const connections: Redis[] = [];
  const connection = () => {
    const r = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    r.on('error', () => undefined);
    connections.push(r);
    return r;
  };
  const queue = new Queue('stuck', { connection: connection(), prefix });
  let started = false;
  const stuck = new Worker(
    'stuck',
    async () => {
      started = true;
      await new Promise(() => undefined); // a job that never ends
    },
    { connection: connection(), prefix },
  );
  const free = new Worker('free', () => Promise.resolve(), { connection: connection(), prefix });
  queue.on('error', () => undefined);
  stuck.on('error', () => undefined);
  free.on('error', () => undefined);
  try {
    await queue.add('job', {});
    await eventually(() => started, 'the job is running');

    let late = 0;
    expect(await closeWorker(stuck, () => late++, 300)).toBe(false);
    expect(late).toBe(1);

    expect(await closeWorker(free, () => late++, 5_000)).toBe(true);
    expect(late).toBe(1);
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    for (const c of connections) c.disconnect();
  }
});
