import { Queue, Worker, type Job } from 'bullmq';

interface DeadlineData {
  orderId: string;
  dueAt: string;
}
import { Redis } from 'ioredis';
import type { Logger } from '../platform/logger';
import { listConfirmedOrderIds } from '../../projections/orders.queries';
import type { SalesServices } from './sales.services';
import { eventId } from '../platform/commands/command-handling';
import { closeWorker } from '../platform/jobs/close-worker';

/**
 * The two kinds of timed work of sales, as BullMQ jobs (so any instance runs
 * them and a killed worker's job is picked up again):
 *
 * - payment deadlines: one delayed job per order (`deadline-<orderId>`); when
 *   it fires before the payment was answered, the payment stream records
 *   `PaymentDeadlineExpired` and the saga compensates. A deadline that fires
 *   after the answer changes nothing (the payment decider ignores it).
 * - the shipping batch: a repeatable job every SHIPPING_INTERVAL_MS that
 *   dispatches confirmed orders. Two instances may run it at once; the order
 *   decider and an idempotency key per order make each shipment happen once.
 */
export const DEADLINE_QUEUE = 'sales-payment-deadlines';
export const SHIPPING_QUEUE = 'sales-shipping';

export interface DeadlineView {
  readonly jobId: string;
  readonly state: string;
  readonly dueAt: string | null;
}

export class SalesJobs {
  private readonly deadlines: Queue<DeadlineData>;
  private readonly shipping: Queue;
  private readonly workers: Worker[] = [];
  private readonly connections: Redis[] = [];

  constructor(
    redisUrl: string,
    private readonly prefix: string,
    private readonly services: SalesServices,
    private readonly log: Logger,
    private readonly options: { shippingIntervalMs: number; shippingBatchSize: number },
  ) {
    const connection = () => {
      const r = new Redis(redisUrl, { maxRetriesPerRequest: null });
      r.on('error', () => undefined);
      this.connections.push(r);
      return r;
    };
    this.connection = connection;
    this.deadlines = new Queue<DeadlineData>(DEADLINE_QUEUE, { connection: connection(), prefix });
    this.shipping = new Queue(SHIPPING_QUEUE, { connection: connection(), prefix });
    this.deadlines.on('error', () => undefined);
    this.shipping.on('error', () => undefined);
  }

  private readonly connection: () => Redis;

  /** Idempotent: the job id is the order's, so a saga step repeated after a crash schedules nothing new. */
  async scheduleDeadline(orderId: string, dueAt: string): Promise<void> {
    const delay = Math.max(0, Date.parse(dueAt) - Date.now());
    await this.deadlines.add(
      'expire',
      { orderId, dueAt },
      {
        jobId: deadlineJobId(orderId),
        delay,
        attempts: 1000,
        backoff: { type: 'fixed', delay: 2000 },
        removeOnComplete: { age: 7 * 86_400 },
        removeOnFail: { age: 30 * 86_400 },
      },
    );
  }

  /** Best effort: a deadline that fires anyway finds the payment answered and changes nothing. */
  async cancelDeadline(orderId: string): Promise<void> {
    const job: Job<DeadlineData> | undefined = await this.deadlines.getJob(deadlineJobId(orderId));
    if (job && (await job.isDelayed())) await job.remove().catch(() => undefined);
  }

  async deadline(orderId: string): Promise<DeadlineView | null> {
    const job: Job<DeadlineData> | undefined = await this.deadlines.getJob(deadlineJobId(orderId));
    if (!job) return null;
    return { jobId: job.id ?? deadlineJobId(orderId), state: await job.getState(), dueAt: job.data.dueAt };
  }

  async startWorkers(): Promise<void> {
    this.workers.push(
      new Worker(
        DEADLINE_QUEUE,
        async (job: Job<DeadlineData>) => {
          const { orderId, dueAt } = job.data;
          // A deadline never expires a payment not asked for yet (the saga may still be sending it after a
          // crash): fail, and BullMQ tries again with backoff, so the deadline is not spent on nothing.
          if ((await this.services.loadPayment(orderId)).status === 'none')
            throw new Error(`payment of order ${orderId} not requested yet`);
          await this.services.payment(
            orderId,
            { type: 'ExpirePaymentDeadline', data: { orderId, dueAt, now: new Date() } },
            systemContext('payment-deadline', `deadline-${orderId}`),
          );
        },
        { connection: this.connection(), prefix: this.prefix, concurrency: 8 },
      ),
    );
    this.workers.push(
      new Worker(SHIPPING_QUEUE, async () => this.shipBatch(), {
        connection: this.connection(),
        prefix: this.prefix,
        concurrency: 1,
      }),
    );
    for (const w of this.workers) w.on('error', (e) => this.log.warn({ err: e }, 'sales job worker error'));
    await this.shipping.upsertJobScheduler(
      'shipping-batch',
      { every: this.options.shippingIntervalMs },
      {
        name: 'ship-batch',
        opts: { removeOnComplete: 100, removeOnFail: 100 },
      },
    );
  }

  /** Dispatches every confirmed order (up to the batch size). Returns how many were shipped by this call. */
  async shipBatch(): Promise<{ shipped: number }> {
    const orderIds = await listConfirmedOrderIds(this.services.platform.pool, this.options.shippingBatchSize);
    let shipped = 0;
    for (const orderId of orderIds) {
      const shipmentId = eventId('system:shipping', orderId, 'shipment', 0);
      const r = await this.services.order(
        orderId,
        { type: 'DispatchShipment', data: { orderId, shipmentId, now: new Date() } },
        systemContext('shipping', `ship-${orderId}`),
        { retries: 20 },
      );
      if (!r.duplicate && r.position > 0) shipped++;
    }
    if (shipped) this.log.info({ shipped }, 'shipping batch dispatched orders');
    return { shipped };
  }

  async ping(): Promise<void> {
    await this.deadlines.getJobCounts('delayed');
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map((w) =>
        closeWorker(w, () =>
          this.log.warn({ queue: w.name }, 'sales job worker did not close in time: connections dropped'),
        ),
      ),
    );
    await Promise.all([this.deadlines.close(), this.shipping.close()]);
    for (const c of this.connections) c.disconnect();
  }
}

const deadlineJobId = (orderId: string) => `deadline-${orderId}`;

/** The context of a command the platform sends itself (jobs, the saga, webhooks). */
export function systemContext(
  component: string,
  idempotencyKey: string,
  correlationId = idempotencyKey,
  causationId = idempotencyKey,
) {
  return { actor: `system:${component}`, idempotencyKey, correlationId, causationId, now: new Date() };
}
