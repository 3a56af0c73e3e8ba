import { Client, type Pool } from 'pg';
import { emptyHistory, evolveSaga, react, SAGA_TRIGGER_TYPES, orderIdOf, sagaStreamId, type SagaCommand, type SagaHistory, type SagaOptions, type SagaStepRecorded, type SagaTrigger } from '../../domain/sales/order-fulfilment.saga';
import type { CommandContext } from '../platform/commands/command-context';
import { eventId, StateCache } from '../platform/commands/command-handling';
import { ConcurrencyError, type RecordedEvent, type Subscription } from '../platform/event-store/event-store';
import { ADVISORY_LOCKS } from '../platform/locks';
import type { Logger } from '../platform/logger';
import type { PaymentPort } from './payment-port';
import type { SalesJobs } from './sales-jobs';
import type { SalesServices } from './sales.services';

/**
 * Runs the order-fulfilment saga (domain/sales/order-fulfilment.saga.ts) off
 * the event store: a checkpointed subscription to the trigger event types,
 * one active runner across instances (advisory lock; a standby takes over),
 * never driven by projection rebuilds.
 *
 * For each trigger: load the saga's stream, react, send the commands (ids
 * derived from the trigger, so a resend is recognised), then record the step
 * at the expected revision. The checkpoint moves after a batch; a crash
 * anywhere replays the batch and every step already recorded is skipped.
 * Triggers of different orders in one batch run concurrently, those of one
 * order in order.
 */
const SAGA_LOCK = ADVISORY_LOCKS.sagaRunner;
const NAME = 'order-fulfilment';
const ACTOR = 'system:order-saga';
/** Reservations of many orders meet on one inventory stream: retry conflicts generously. */
const COMMAND_RETRIES = 30;
/** A provider that does not answer fails the batch (retried from the checkpoint) instead of stalling the saga and shutdown. */
const PROVIDER_TIMEOUT_MS = 15_000;

async function withTimeout<T>(ms: number, what: string, call: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([call(), new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

export interface SagaRunnerOptions extends SagaOptions {
  readonly connectionString: string;
  readonly concurrency: number;
  readonly batchSize: number;
  /** Observability hooks (Prometheus counters in the app). */
  readonly observe?: {
    step(triggerType: string, commands: readonly SagaCommand[]): void;
    failure(): void;
    active(isActive: boolean): void;
    checkpoint(position: number): void;
  };
}

export class SagaRunner {
  private stopped = true;
  private loop: Promise<void> | undefined;
  private subscription: Subscription | undefined;
  private lock: Client | undefined;
  /** Settles when the current lock connection fails (set up with the connection, before the lock is taken). */
  private lockLost: Promise<unknown> = new Promise<unknown>(() => undefined);
  private wake: (() => void) | undefined;
  private stopping: (() => void) | undefined;
  private stopSignal: Promise<void> = Promise.resolve();
  /** Position of the last batch fully handled (for /admin and tests). */
  position = 0;
  /** Failures since the last batch that went through: the retry backoff grows with them. */
  private failures = 0;
  /** Folded saga streams of recent orders (this runner is their only writer while it holds the lock). */
  private readonly histories = new StateCache<SagaHistory>();

  constructor(
    private readonly pool: Pool,
    private readonly services: SalesServices,
    private readonly payments: PaymentPort,
    private readonly jobs: SalesJobs,
    private readonly log: Logger,
    private readonly options: SagaRunnerOptions,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.stopSignal = new Promise<void>((res) => { this.stopping = res; });
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping?.();
    this.wake?.();
    await this.subscription?.stop();
    await this.loop;
    await this.lock?.end().catch(() => undefined);
    this.lock = undefined;
    this.options.observe?.active(false);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(done, ms);
      function done() { clearTimeout(t); res(); }
      this.wake = done;
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (!(await this.acquireLock())) {
          await this.sleep(1000);
          continue;
        }
        await this.pool.query('INSERT INTO saga_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING', [NAME]);
        const row = await this.pool.query<{ position: string }>('SELECT position FROM saga_checkpoints WHERE name = $1', [NAME]);
        this.position = Number(row.rows[0]!.position);
        const lost = this.lockLost;
        this.subscription = this.services.platform.store.subscribe(
          { fromPosition: this.position, eventTypes: SAGA_TRIGGER_TYPES, batchSize: this.options.batchSize },
          (events) => this.handleBatch(events),
        );
        const reason = await Promise.race([this.subscription.failed, lost, this.stopSignal]);
        await this.subscription.stop();
        this.subscription = undefined;
        if (this.stopped) break;
        // Give the lock up (a lost connection holds none any more; a failed batch re-reads the checkpoint under a fresh one).
        await this.lock?.end().catch(() => undefined);
        this.lock = undefined;
        this.options.observe?.active(false);
        this.failures++;
        this.options.observe?.failure();
        this.log.error({ err: reason, saga: NAME, position: this.position }, 'saga runner failed; retrying from its checkpoint');
        await this.sleep(Math.min(30_000, 200 * 2 ** Math.min(this.failures, 8)));
      } catch (e) {
        if (this.stopped) break;
        this.failures++;
        this.options.observe?.failure();
        this.log.error({ err: e, saga: NAME }, 'saga runner error; retrying');
        await this.lock?.end().catch(() => undefined);
        this.lock = undefined;
        this.options.observe?.active(false);
        await this.sleep(Math.min(30_000, 200 * 2 ** Math.min(this.failures, 8)));
      }
    }
  }

  private async acquireLock(): Promise<boolean> {
    if (this.lock) return true;
    const client = new Client({ connectionString: this.options.connectionString, application_name: `saga:${NAME}` });
    // Settled by an error at any time from here on, so a lock lost before the runner follows is not missed.
    this.lockLost = new Promise<unknown>((res) => client.once('error', res));
    client.on('error', () => undefined);
    await client.connect();
    const res = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [SAGA_LOCK, NAME]);
    if (res.rows[0]?.ok && !this.stopped) {
      this.lock = client;
      this.options.observe?.active(true);
      this.log.info({ saga: NAME }, 'saga runner active in this process');
      return true;
    }
    await client.end().catch(() => undefined);
    return false;
  }

  private async handleBatch(events: readonly RecordedEvent[]): Promise<void> {
    const byOrder = new Map<string, RecordedEvent[]>();
    for (const e of events) {
      const orderId = orderIdOf(e);
      if (!orderId) continue;
      const list = byOrder.get(orderId);
      if (list) list.push(e);
      else byOrder.set(orderId, [e]);
    }
    const groups = [...byOrder.entries()];
    let next = 0;
    const worker = async () => {
      while (next < groups.length && !this.stopped) {
        const [orderId, list] = groups[next++]!;
        for (const e of list) await this.handle(orderId, e);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, groups.length) }, worker));
    if (this.stopped) throw new Error('stopping');
    const to = events[events.length - 1]!.position;
    await this.pool.query('UPDATE saga_checkpoints SET position = $2, updated_at = now() WHERE name = $1 AND position < $2', [NAME, to]);
    this.position = to;
    this.failures = 0;
    this.options.observe?.checkpoint(to);
  }

  /** The saga's stream folded: from the cache plus newer events (a takeover elsewhere is read, never missed). */
  private async history(orderId: string): Promise<{ history: SagaHistory; revision: number }> {
    const cached = this.histories.get(orderId);
    const events = (await this.services.platform.store.readStream(sagaStreamId(orderId), cached ? cached.revision + 1 : 0)) as unknown as (SagaStepRecorded & { revision: number })[];
    const history = events.reduce(evolveSaga, cached?.state ?? emptyHistory);
    const revision = events.length ? events[events.length - 1]!.revision : cached?.revision ?? -1;
    this.histories.set(orderId, revision, history);
    return { history, revision };
  }

  /** One trigger: react, send, record. Safe to repeat at any point. */
  async handle(orderId: string, e: RecordedEvent): Promise<void> {
    const trigger = { id: e.id, type: e.type, data: e.data, streamId: e.streamId, position: e.position, at: e.recordedAt.toISOString() } as unknown as SagaTrigger;
    const streamId = sagaStreamId(orderId);
    for (let attempt = 0; ; attempt++) {
      const { history, revision } = await this.history(orderId);
      if (history.processed.has(e.id)) return;
      const { state, commands } = react(history, trigger, this.options);
      for (const [i, command] of commands.entries()) {
        await this.send(orderId, command, {
          actor: ACTOR, idempotencyKey: `${e.id}:${i}`, correlationId: String(e.metadata.correlationId ?? e.id), causationId: e.id, now: new Date(),
        });
      }
      const step: SagaStepRecorded = {
        type: 'sales.SagaStepRecorded',
        data: { orderId, trigger: { id: e.id, type: trigger.type, streamId: e.streamId, position: e.position, at: trigger.at }, commands, state },
      };
      try {
        await this.services.platform.store.append(streamId, [{
          id: eventId(ACTOR, e.id, streamId, 0), type: step.type, data: step.data as unknown as Record<string, unknown>,
          metadata: { correlationId: String(e.metadata.correlationId ?? e.id), causationId: e.id, actor: ACTOR },
        }], revision === -1 ? 'no_stream' : revision);
        this.histories.set(orderId, revision + 1, evolveSaga(history, step));
        this.options.observe?.step(trigger.type, commands);
        return;
      } catch (err) {
        // Another runner (a takeover) recorded a step first: reload, and this trigger is either done or decided again.
        if (err instanceof ConcurrencyError && attempt < COMMAND_RETRIES) continue;
        throw err;
      }
    }
  }

  private async send(orderId: string, c: SagaCommand, ctx: CommandContext): Promise<void> {
    const s = this.services;
    const now = ctx.now;
    const sub = (suffix: string): CommandContext => ({ ...ctx, idempotencyKey: `${ctx.idempotencyKey}:${suffix}` });
    switch (c.kind) {
      case 'ReserveStock':
        await s.inventory(c.productId, { type: 'ReserveStock', data: { productId: c.productId, orderId, quantity: c.quantity, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'ReleaseStock':
        await s.inventory(c.productId, { type: 'ReleaseStock', data: { productId: c.productId, orderId, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'ShipStock':
        await s.inventory(c.productId, { type: 'ShipStock', data: { productId: c.productId, orderId, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'MarkOrderReserved':
        await s.order(orderId, { type: 'MarkOrderReserved', data: { orderId, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'ConfirmOrder':
        await s.order(orderId, { type: 'ConfirmOrder', data: { orderId, paymentRef: c.paymentRef, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'RejectOrder':
        await s.order(orderId, { type: 'RejectOrder', data: { orderId, reason: c.reason, detail: c.detail, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'CancelOrder':
        await s.order(orderId, { type: 'CancelOrder', data: { orderId, reason: c.reason, detail: c.detail, now } }, ctx, COMMAND_RETRIES, true);
        return;
      case 'ScheduleDeadline':
        await this.jobs.scheduleDeadline(orderId, c.dueAt);
        return;
      case 'CancelDeadline':
        await this.jobs.cancelDeadline(orderId);
        return;
      case 'RequestPayment': {
        // The provider's idempotency key is per order and step: a resend after a crash charges once.
        const idempotencyKey = `${orderId}:charge`;
        await s.payment(orderId, { type: 'RequestPayment', data: { orderId, amountCents: c.amountCents, currency: c.currency, method: c.method, idempotencyKey, now } }, sub('request'), COMMAND_RETRIES, true);
        const outcome = await withTimeout(PROVIDER_TIMEOUT_MS, 'payment provider charge', () => this.payments.charge({ orderId, amountCents: c.amountCents, currency: c.currency, method: c.method, idempotencyKey }));
        if (outcome.status === 'captured') {
          await s.payment(orderId, { type: 'RecordCapture', data: { orderId, providerRef: outcome.providerRef, now } }, sub('answer'), COMMAND_RETRIES, true);
        } else if (outcome.status === 'declined') {
          await s.payment(orderId, { type: 'RecordDecline', data: { orderId, reason: outcome.reason, now } }, sub('answer'), COMMAND_RETRIES, true);
        }
        return;
      }
      case 'RefundPayment': {
        const payment = await s.loadPayment(orderId);
        if (payment.status !== 'captured') return;
        const refund = await withTimeout(PROVIDER_TIMEOUT_MS, 'payment provider refund', () => this.payments.refund({
          orderId, providerRef: payment.providerRef, amountCents: payment.amountCents, currency: payment.currency, idempotencyKey: `${orderId}:refund`,
        }));
        await s.payment(orderId, { type: 'RecordRefund', data: { orderId, providerRef: refund.providerRef, reason: c.reason, now } }, ctx, COMMAND_RETRIES, true);
        return;
      }
      default: {
        const never: never = c;
        throw new Error(`unknown saga command ${JSON.stringify(never)}`);
      }
    }
  }
}
