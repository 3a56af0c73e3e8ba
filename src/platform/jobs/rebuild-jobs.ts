import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { notFound } from '../../../domain/shared/errors';
import type { Projections } from '../processing/projections';
import { PlatformErrorCode } from '../platform-errors';
import { closeWorker } from './close-worker';

/**
 * Projection rebuilds as BullMQ jobs: `POST /admin/projections/:name/rebuild`
 * enqueues one, any instance's worker runs it, `GET /admin/jobs/:id` shows
 * progress. A job left active by a killed worker is picked up again when its
 * lock expires; the rebuild itself starts from zero in a fresh shadow schema.
 */
export const REBUILD_QUEUE = 'projection-rebuild';

export interface RebuildJobData {
  projection: string;
  requestedBy: string;
  correlationId: string;
}

export interface JobView {
  id: string;
  name: string;
  state: string;
  progress: unknown;
  data: unknown;
  result: unknown;
  failedReason: string | null;
  attempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export class RebuildJobs {
  private readonly queue: Queue<RebuildJobData>;
  private worker: Worker<RebuildJobData> | undefined;
  private readonly connections: Redis[] = [];

  constructor(
    private readonly redisUrl: string,
    private readonly prefix: string,
    private readonly engine: Projections,
    private readonly onCloseLate: () => void = () => undefined,
  ) {
    this.queue = new Queue<RebuildJobData>(REBUILD_QUEUE, { connection: this.connection(), prefix });
    // Connection errors surface in /health (jobs: down); without a listener BullMQ prints each one.
    this.queue.on('error', () => undefined);
  }

  private connection(): Redis {
    const r = new Redis(this.redisUrl, { maxRetriesPerRequest: null });
    r.on('error', () => undefined);
    this.connections.push(r);
    return r;
  }

  startWorker(): void {
    this.worker = new Worker<RebuildJobData>(
      REBUILD_QUEUE,
      async (job: Job<RebuildJobData>) => {
        let last = -1;
        return this.engine.rebuild(job.data.projection, job.data.requestedBy, async ({ processed, total }) => {
          const percent = total === 0 ? 100 : Math.floor((processed / total) * 100);
          if (percent !== last) {
            last = percent;
            await job.updateProgress({ processed, total, percent });
          }
        });
      },
      { connection: this.connection(), prefix: this.prefix, concurrency: 1, lockDuration: 60_000 },
    );
    this.worker.on('error', () => undefined);
  }

  async enqueue(projection: string, requestedBy: string, correlationId: string): Promise<string> {
    this.engine.get(projection);
    const job = await this.queue.add(
      'rebuild',
      { projection, requestedBy, correlationId },
      {
        attempts: 3,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 7 * 24 * 3600 },
        removeOnFail: { age: 30 * 24 * 3600 },
      },
    );
    if (!job.id) throw new Error('BullMQ returned a job without id');
    return job.id;
  }

  async get(id: string): Promise<JobView> {
    // State first, then the job: a job read after it says "completed" carries its result.
    const state = await this.queue.getJobState(id);
    const job = await this.queue.getJob(id);
    if (!job || state === 'unknown') throw notFound(PlatformErrorCode.JOB_NOT_FOUND, `no job ${id}`);
    const iso = (t: number | undefined) => (t ? new Date(t).toISOString() : null);
    return {
      id,
      name: job.name,
      state,
      progress: job.progress,
      data: job.data,
      result: job.returnvalue ?? null,
      failedReason: job.failedReason ?? null,
      attempts: job.attemptsMade,
      createdAt: new Date(job.timestamp).toISOString(),
      startedAt: iso(job.processedOn),
      finishedAt: iso(job.finishedOn),
    };
  }

  async ping(): Promise<void> {
    await (await this.queue.client).ping();
  }

  async close(): Promise<void> {
    // Bounded: a rebuild still running past it is run again from the start (BullMQ's stalled-job check).
    if (this.worker) await closeWorker(this.worker, this.onCloseLate);
    await this.queue.close();
    for (const c of this.connections) c.disconnect();
  }
}
