import type { Pool } from 'pg';
import {
  emptyHistory,
  evolveSaga,
  react,
  SAGA_TRIGGER_TYPES,
  orderIdOf,
  sagaStreamId,
  type SagaCommand,
  type SagaHistory,
  type SagaOptions,
  type SagaStepRecorded,
  type SagaTrigger,
  type SagaTriggerEvent,
} from '../../domain/sales/order-fulfilment.saga';
import type { CommandContext } from '../platform/commands/command-context';
import { eventId, StateCache } from '../platform/commands/command-handling';
import { ConcurrencyError, type RecordedEvent } from '../platform/event-store/event-store';
import type { Logger } from '../platform/logger';
import {
  findParkedKey,
  keyOperatorLog,
  listParkedKeys,
  resolveParkedKey,
  type ParkedKey,
  type ParkedKeyStatus,
} from '../platform/processing/parked-keys';
import type { HandlerContext, PipelinedProcessor } from '../platform/processing/processor';
import { ProcessorRunner } from '../platform/processing/processor-runner';
import type { PaymentPort } from './payment-port';
import type { SalesJobs } from './sales-jobs';
import type { SalesServices, Sent } from './sales.services';
import { inventoryStreamId } from '../../domain/sales/inventory.events';
import { paymentStreamId } from '../../domain/sales/payment.events';

/**
 * The order-fulfilment saga (domain/sales/order-fulfilment.saga.ts) as a
 * processor on the runtime (src/platform/processing/): a checkpointed
 * subscription to the trigger event types, one active runner across
 * instances (advisory lock; a standby takes over), backoff and metrics from
 * the runtime. Never driven by projection rebuilds: those read the store on
 * their own, and this processor's checkpoint is its own.
 *
 * For each trigger: load the saga's stream, react, send the commands (ids
 * derived from the trigger, so a resend is recognised), then record the step
 * at the expected revision. Pipelined (processor.ts): each order is a key,
 * its triggers run in order, different orders at once (SAGA_CONCURRENCY), and
 * the checkpoint is the lowest trigger not finished, so a slow order never
 * holds the others back and a crash resends exactly what was not finished
 * (every step already recorded is skipped). A trigger that fails
 * SAGA_MAX_ATTEMPTS times parks its order alone (GET /admin/sagas/:orderId,
 * retry and skip), while every other order keeps flowing.
 */
const NAME = 'order-fulfilment';
const ACTOR = 'system:order-saga';
/** Reservations of many orders meet on one inventory stream: retry conflicts generously. */
const COMMAND_RETRIES = 30;
const FROM_SAGA = { retries: COMMAND_RETRIES, fromSaga: true } as const;
/** A provider that does not answer fails the batch (retried from the checkpoint) instead of stalling the saga and shutdown. */
const PROVIDER_TIMEOUT_MS = 15_000;
/** A failing trigger is tried again after 400 ms, doubling up to 30 s: a provider that is down is not asked in a tight loop. */
const SAGA_BACKOFF = { initialMs: 400, maxMs: 30_000 };

async function withTimeout<T>(ms: number, what: string, call: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      call(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface SagaRunnerOptions extends SagaOptions {
  readonly connectionString: string;
  readonly concurrency: number;
  readonly batchSize: number;
  /** Failed attempts at one trigger before its order is parked. */
  readonly maxAttempts: number;
  /** Observability hooks (Prometheus counters in the app). */
  readonly observe?: {
    step(triggerType: string, commands: readonly SagaCommand[]): void;
    failure(): void;
    active(isActive: boolean): void;
    checkpoint(position: number): void;
  };
}

/** The saga on its runner: start, stop and the checkpoint it has reached, for the app and /admin. */
export class SagaRunner {
  private readonly runner: ProcessorRunner;

  constructor(
    private readonly pool: Pool,
    services: SalesServices,
    payments: PaymentPort,
    jobs: SalesJobs,
    log: Logger,
    options: SagaRunnerOptions,
  ) {
    const observe = options.observe;
    this.runner = new ProcessorRunner(
      new OrderFulfilment(services, payments, jobs, options),
      pool,
      services.platform.store,
      {
        connectionString: options.connectionString,
        batchSize: options.batchSize,
        maxAttempts: options.maxAttempts,
        concurrency: options.concurrency,
        backoff: SAGA_BACKOFF,
        keyBackoff: SAGA_BACKOFF,
        log: (level, msg, extra) => log[level]({ saga: NAME, ...extra }, msg),
        ...(observe
          ? {
              observe: {
                active: (on) => observe.active(on),
                failure: () => observe.failure(),
                committed: (position) => observe.checkpoint(position),
              },
            }
          : {}),
      },
    );
  }

  /** The checkpoint: every trigger up to here is handled (or set aside with its parked order). */
  get position(): number {
    return this.runner.position;
  }

  /** The order's saga when it is parked (or being resumed), with the error and the triggers waiting. */
  parked(orderId: string): Promise<ParkedKey | undefined> {
    return findParkedKey(this.pool, NAME, orderId);
  }

  listParked(options: { status?: ParkedKeyStatus; limit: number; after?: string }): Promise<ParkedKey[]> {
    return listParkedKeys(this.pool, NAME, options);
  }

  /** What operators (and the runner) did to this order's saga, newest first. */
  operatorLog(orderId: string): Promise<Record<string, unknown>[]> {
    return keyOperatorLog(this.pool, NAME, orderId);
  }

  /**
   * An operator's retry (handle the failing trigger again, then the ones held behind it) or skip
   * (drop the failing trigger, handle the rest). Undefined when the order's saga is not parked.
   */
  async resolve(orderId: string, action: 'retry' | 'skip', actor: string): Promise<ParkedKey | undefined> {
    const row = await resolveParkedKey(this.pool, NAME, orderId, action, actor);
    if (row) this.runner.wake();
    return row;
  }

  start(): void {
    this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }
}

const TRIGGER_TYPES: ReadonlySet<string> = new Set(SAGA_TRIGGER_TYPES);
/** What one command of a step stored, and where. */
type Stored = { readonly streamId: string; readonly sent: Sent };
/** A run-time check that is also the narrowing: the runtime delivers only these types (eventTypes), so this only guards. */
const isTrigger = (e: RecordedEvent): e is RecordedEvent<SagaTriggerEvent> => TRIGGER_TYPES.has(e.type);

/** The saga's handler: one trigger of one order in, commands sent and the step recorded. */
class OrderFulfilment implements PipelinedProcessor {
  readonly name = NAME;
  readonly kind = 'saga';
  readonly checkpoint = 'pipelined';
  readonly onFailure = 'park';
  readonly eventTypes = SAGA_TRIGGER_TYPES;
  /** Folded saga streams of recent orders (this runner is their only writer while it holds the lock). */
  private readonly histories = new StateCache<SagaHistory>();

  constructor(
    private readonly services: SalesServices,
    private readonly payments: PaymentPort,
    private readonly jobs: SalesJobs,
    private readonly options: SagaRunnerOptions,
  ) {}

  keyOf(e: RecordedEvent): string | undefined {
    return isTrigger(e) ? orderIdOf(e) : undefined;
  }

  async handle(events: readonly RecordedEvent[], { signal, followUp }: HandlerContext): Promise<void> {
    for (const e of events) {
      if (signal.aborted) throw new Error('stopping');
      const orderId = this.keyOf(e);
      if (orderId && isTrigger(e)) await this.handleTrigger(orderId, e, followUp);
    }
  }

  /**
   * The newest position any reader could see when this tenure began (Infinity until known): a
   * runner before this one read only triggers up to it, so an order placed above it has no saga
   * stream unless this runner wrote one.
   */
  private newAbove = Number.POSITIVE_INFINITY;

  /** A new tenure (this runner took the lock): what another runner wrote meanwhile is read, never assumed. */
  async begin(): Promise<void> {
    this.histories.clear();
    this.newAbove = Number.POSITIVE_INFINITY;
    this.newAbove = await this.services.platform.store.headPosition();
  }

  /**
   * The saga's stream folded. Cached: this runner wrote every step of it since it took the lock (a
   * runner elsewhere that wrote too makes the step's append conflict, and then it is read: `fresh`).
   */
  private async history(
    orderId: string,
    fresh: boolean,
    e: RecordedEvent<SagaTriggerEvent>,
  ): Promise<{ history: SagaHistory; revision: number }> {
    const cached = this.histories.get(orderId);
    if (cached && !fresh) return { history: cached.state, revision: cached.revision };
    // An order placed after this tenure began, not handled by this runner yet (nothing cached): its saga
    // stream does not exist. The step's append at 'no_stream' proves it; a conflict reads (`fresh`).
    // (Only OrderPlaced: the other triggers also come as follow-ups, read past the horizon.)
    if (!cached && !fresh && e.type === 'sales.OrderPlaced' && e.position > this.newAbove)
      return { history: emptyHistory, revision: -1 };
    const events = await this.services.platform.store.readStream<SagaStepRecorded>(
      sagaStreamId(orderId),
      cached ? cached.revision + 1 : 0,
    );
    const history = events.reduce(evolveSaga, cached?.state ?? emptyHistory);
    const revision = events.length ? events[events.length - 1]!.revision : (cached?.revision ?? -1);
    this.histories.set(orderId, revision, history);
    return { history, revision };
  }

  /**
   * One trigger: react, send, record. Safe to repeat at any point. The triggers
   * its commands stored (the reservation answered, the capture) go to
   * `followUp`: handled next, without waiting a read horizon for the
   * subscription, which delivers them later (then skipped: processed already).
   */
  private async handleTrigger(
    orderId: string,
    e: RecordedEvent<SagaTriggerEvent>,
    followUp?: (event: RecordedEvent) => void,
  ): Promise<void> {
    const trigger: SagaTrigger = { ...e, at: e.recordedAt.toISOString() };
    const streamId = sagaStreamId(orderId);
    // Handled already as a follow-up (or a moment ago): a cached fold is behind at worst, never wrong, so no read.
    if (this.histories.get(orderId)?.state.processed.has(e.id)) return;
    for (let attempt = 0; ; attempt++) {
      const { history, revision } = await this.history(orderId, attempt > 0, e);
      if (history.processed.has(e.id)) return;
      const { state, commands } = react(history, trigger, this.options);
      // Per command, in the step's order (the follow-ups keep it whatever order the sends finish in).
      const stored: Stored[][] = commands.map(() => []);
      await this.sendAll(commands, (command, i) =>
        this.send(orderId, command, stored[i]!, {
          actor: ACTOR,
          idempotencyKey: `${e.id}:${i}`,
          correlationId: String(e.metadata.correlationId ?? e.id),
          causationId: e.id,
          now: new Date(),
        }),
      );
      const step: SagaStepRecorded = {
        type: 'sales.SagaStepRecorded',
        data: {
          orderId,
          trigger: { id: e.id, type: trigger.type, streamId: e.streamId, position: e.position, at: trigger.at },
          commands,
          state,
        },
      };
      // The triggers the commands stored are read back while the step is written (both only read what
      // is committed); they are handed on only once the step is recorded.
      const next = followUp ? this.followUps(stored.flat()) : Promise.resolve([]);
      next.catch(() => undefined); // awaited below, unless the step's append fails first
      try {
        await this.services.platform.store.append(
          streamId,
          [
            {
              id: eventId(ACTOR, e.id, streamId, 0),
              type: step.type,
              data: step.data,
              metadata: { correlationId: String(e.metadata.correlationId ?? e.id), causationId: e.id, actor: ACTOR },
            },
          ],
          revision === -1 ? 'no_stream' : revision,
        );
        this.histories.set(orderId, revision + 1, evolveSaga(history, step));
        this.options.observe?.step(trigger.type, commands);
        if (followUp) for (const ev of await next) followUp(ev);
        return;
      } catch (err) {
        // Another runner (a takeover) recorded a step first: reload, and this trigger is either done or decided again.
        if (err instanceof ConcurrencyError && attempt < COMMAND_RETRIES) continue;
        throw err;
      }
    }
  }

  /** The triggers the step's commands stored, read back as recorded (id, position, time), in order. */
  private async followUps(stored: readonly Stored[]): Promise<RecordedEvent[]> {
    const reads = stored
      .filter((w) => w.sent.events.some((ev) => TRIGGER_TYPES.has(ev.type)))
      .map((w) =>
        this.services.platform.store.readStream(
          w.streamId,
          w.sent.revision - w.sent.events.length + 1,
          w.sent.events.length,
        ),
      );
    return (await Promise.all(reads)).flat().filter(isTrigger);
  }

  /**
   * A step's commands in their order, except CancelDeadline (a Redis call), which runs alongside the
   * commands after it: the order's events keep the order the saga decided (timelines show it).
   * Every send has ended when this returns, failed or not (a retry of the step never overlaps a
   * send still running); the first failure is thrown.
   */
  private async sendAll(
    commands: readonly SagaCommand[],
    send: (command: SagaCommand, index: number) => Promise<void>,
  ): Promise<void> {
    const aside: Promise<void>[] = [];
    let failure: { reason: unknown } | undefined;
    for (const [i, command] of commands.entries()) {
      if (command.kind === 'CancelDeadline') aside.push(send(command, i));
      else {
        try {
          await send(command, i);
        } catch (e) {
          failure = { reason: e };
          break;
        }
      }
    }
    const failed = (await Promise.allSettled(aside)).find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
    if (failed) throw failed.reason;
  }

  private async send(orderId: string, c: SagaCommand, stored: Stored[], ctx: CommandContext): Promise<void> {
    const s = this.services;
    const keep = (streamId: string) => (sent: Sent) => {
      if (!sent.duplicate && sent.events.length) stored.push({ streamId, sent });
    };
    const now = ctx.now;
    const sub = (suffix: string): CommandContext => ({ ...ctx, idempotencyKey: `${ctx.idempotencyKey}:${suffix}` });
    switch (c.kind) {
      case 'ReserveStock':
        keep(inventoryStreamId(c.productId))(
          await s.inventory(
            c.productId,
            { type: 'ReserveStock', data: { productId: c.productId, orderId, quantity: c.quantity, now } },
            ctx,
            FROM_SAGA,
          ),
        );
        return;
      case 'ReleaseStock':
        keep(inventoryStreamId(c.productId))(
          await s.inventory(
            c.productId,
            { type: 'ReleaseStock', data: { productId: c.productId, orderId, now } },
            ctx,
            FROM_SAGA,
          ),
        );
        return;
      case 'ShipStock':
        keep(inventoryStreamId(c.productId))(
          await s.inventory(
            c.productId,
            { type: 'ShipStock', data: { productId: c.productId, orderId, now } },
            ctx,
            FROM_SAGA,
          ),
        );
        return;
      case 'MarkOrderReserved':
        await s.order(orderId, { type: 'MarkOrderReserved', data: { orderId, now } }, ctx, FROM_SAGA);
        return;
      case 'ConfirmOrder':
        await s.order(
          orderId,
          { type: 'ConfirmOrder', data: { orderId, paymentRef: c.paymentRef, now } },
          ctx,
          FROM_SAGA,
        );
        return;
      case 'RejectOrder':
        await s.order(
          orderId,
          { type: 'RejectOrder', data: { orderId, reason: c.reason, detail: c.detail, now } },
          ctx,
          FROM_SAGA,
        );
        return;
      case 'CancelOrder':
        await s.order(
          orderId,
          { type: 'CancelOrder', data: { orderId, reason: c.reason, detail: c.detail, now } },
          ctx,
          FROM_SAGA,
        );
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
        await s.payment(
          orderId,
          {
            type: 'RequestPayment',
            data: { orderId, amountCents: c.amountCents, currency: c.currency, method: c.method, idempotencyKey, now },
          },
          sub('request'),
          { ...FROM_SAGA, newStream: true },
        );
        const outcome = await withTimeout(PROVIDER_TIMEOUT_MS, 'payment provider charge', () =>
          this.payments.charge({
            orderId,
            amountCents: c.amountCents,
            currency: c.currency,
            method: c.method,
            idempotencyKey,
          }),
        );
        if (outcome.status === 'captured') {
          keep(paymentStreamId(orderId))(
            await s.payment(
              orderId,
              { type: 'RecordCapture', data: { orderId, providerRef: outcome.providerRef, now } },
              sub('answer'),
              FROM_SAGA,
            ),
          );
        } else if (outcome.status === 'declined') {
          keep(paymentStreamId(orderId))(
            await s.payment(
              orderId,
              { type: 'RecordDecline', data: { orderId, reason: outcome.reason, now } },
              sub('answer'),
              FROM_SAGA,
            ),
          );
        }
        return;
      }
      case 'RefundPayment': {
        const payment = await s.loadPayment(orderId);
        if (payment.status !== 'captured') return;
        const refund = await withTimeout(PROVIDER_TIMEOUT_MS, 'payment provider refund', () =>
          this.payments.refund({
            orderId,
            providerRef: payment.providerRef,
            amountCents: payment.amountCents,
            currency: payment.currency,
            idempotencyKey: `${orderId}:refund`,
          }),
        );
        keep(paymentStreamId(orderId))(
          await s.payment(
            orderId,
            { type: 'RecordRefund', data: { orderId, providerRef: refund.providerRef, reason: c.reason, now } },
            ctx,
            FROM_SAGA,
          ),
        );
        return;
      }
      default: {
        const never: never = c;
        throw new Error(`unknown saga command ${JSON.stringify(never)}`);
      }
    }
  }
}
