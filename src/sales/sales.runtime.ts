import { Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { Platform } from '../platform/platform';
import { SandboxPaymentProvider, type PaymentPort } from './payment-port';
import { SagaRunner } from './saga-runner';
import { SalesJobs, systemContext } from './sales-jobs';
import { SalesServices } from './sales.services';

/**
 * The moving parts of sales that outlive a request: the payment provider, the
 * saga runner, and the deadline and shipping jobs. Started after the app is
 * up (when RUN_SAGAS is true) and stopped before the event store closes.
 */
@Injectable()
export class SalesRuntime implements OnApplicationBootstrap, OnModuleDestroy {
  readonly payments: PaymentPort & Partial<Pick<SandboxPaymentProvider, 'capturePending' | 'books' | 'setOutage'>>;
  readonly jobs: SalesJobs;
  readonly saga: SagaRunner;

  constructor(
    private readonly platform: Platform,
    services: SalesServices,
  ) {
    const c = platform.config;
    this.payments = new SandboxPaymentProvider(platform.pool);
    this.jobs = new SalesJobs(platform.redisUrl, c.QUEUE_PREFIX, services, platform.log, {
      shippingIntervalMs: c.SHIPPING_INTERVAL_MS,
      shippingBatchSize: c.SHIPPING_BATCH_SIZE,
    });
    this.saga = new SagaRunner(platform.pool, services, this.payments, this.jobs, platform.log, {
      connectionString: platform.databaseUrl,
      concurrency: c.SAGA_CONCURRENCY,
      maxAttempts: c.SAGA_MAX_ATTEMPTS,
      batchSize: 200,
      paymentTimeoutMs: c.PAYMENT_TIMEOUT_MS,
      observe: sagaMetrics(platform),
    });
    // Answers that arrive later (a provider's webhook; the sandbox's late capture) land on the payment stream.
    this.payments.onResult(async (orderId, outcome) => {
      const ctx = systemContext(
        'payment-webhook',
        outcome.status === 'captured' ? `capture-${outcome.providerRef}` : `decline-${orderId}`,
      );
      const now = new Date();
      if (outcome.status === 'captured')
        await services.payment(
          orderId,
          { type: 'RecordCapture', data: { orderId, providerRef: outcome.providerRef, now } },
          ctx,
          { retries: 30 },
        );
      else
        await services.payment(
          orderId,
          { type: 'RecordDecline', data: { orderId, reason: outcome.reason, now } },
          ctx,
          { retries: 30 },
        );
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.platform.config.RUN_SAGAS) return;
    this.saga.start();
    await this.jobs.startWorkers();
  }

  async onModuleDestroy(): Promise<void> {
    await this.saga.stop();
    await this.jobs.close();
  }
}

/** What an operator watches of the saga on /metrics. */
function sagaMetrics(platform: Platform): NonNullable<ConstructorParameters<typeof SagaRunner>[5]['observe']> {
  const registers = [platform.metrics.registry];
  const steps = new Counter({
    name: 'saga_steps_total',
    help: 'Saga steps recorded, by trigger event type',
    labelNames: ['trigger'],
    registers,
  });
  const commands = new Counter({
    name: 'saga_commands_total',
    help: 'Commands the saga sent, by kind (compensations: ReleaseStock, CancelOrder, RejectOrder, RefundPayment)',
    labelNames: ['kind'],
    registers,
  });
  const failures = new Counter({
    name: 'saga_failures_total',
    help: 'Saga triggers that failed (tried again, or their order parked) and runner restarts',
    registers,
  });
  const active = new Gauge({
    name: 'saga_runner_active',
    help: '1 when this instance runs the saga (advisory lock held)',
    registers,
  });
  const checkpoint = new Gauge({
    name: 'saga_checkpoint_position',
    help: 'Global position the saga has handled',
    registers,
  });
  new Gauge({
    name: 'saga_parked_orders',
    help: 'Orders whose saga is parked on a trigger that kept failing (GET /admin/sagas?state=parked)',
    registers,
    async collect() {
      const res = await platform.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM processor_parked_keys WHERE processor = 'order-fulfilment' AND status = 'parked'",
      );
      this.set(res.rows[0]?.n ?? 0);
    },
  });
  return {
    step(trigger, sent) {
      steps.inc({ trigger });
      for (const c of sent) commands.inc({ kind: c.kind });
    },
    failure: () => failures.inc(),
    active: (on) => active.set(on ? 1 : 0),
    checkpoint: (p) => checkpoint.set(p),
  };
}
