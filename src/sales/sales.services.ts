import { Injectable } from '@nestjs/common';
import { fold, type Decider, type Event } from '../../domain/shared/event';
import {
  inventoryDecider,
  inventorySnapshotSpacing,
  inventoryStateFromJson,
  type InventoryCommand,
  type InventoryState,
} from '../../domain/sales/inventory.decider';
import { orderDecider, type OrderCommand, type OrderState } from '../../domain/sales/order.decider';
import { paymentDecider, type PaymentCommand, type PaymentState } from '../../domain/sales/payment.decider';
import { productDecider, type ProductState } from '../../domain/sales/product.decider';
import {
  emptyHistory,
  evolveSaga,
  sagaStreamId,
  type SagaHistory,
  type SagaStepRecorded,
} from '../../domain/sales/order-fulfilment.saga';
import { inventoryStreamId, type InventoryEvent } from '../../domain/sales/inventory.events';
import { StreamSnapshots, type SnapshotOptions } from '../platform/commands/snapshots';
import { orderStreamId } from '../../domain/sales/order.events';
import { paymentStreamId } from '../../domain/sales/payment.events';
import { productStreamId } from '../../domain/sales/product.events';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { handleCommand, handleCommandBatch, StateCache } from '../platform/commands/command-handling';
import type { RecordedEvent } from '../platform/event-store/event-store';
import { Platform } from '../platform/platform';

/** The shape of InventoryState in snapshots: bump it when the state changes (older snapshots are then ignored). */
const INVENTORY_STATE_VERSION = 2;

/** How inventory states are snapshotted (the app's, and the benchmark's cold decisions). */
export const inventorySnapshotOptions = (every: number): SnapshotOptions<InventoryState> => ({
  version: INVENTORY_STATE_VERSION,
  every,
  revive: inventoryStateFromJson,
  spacing: inventorySnapshotSpacing,
});

/** A saga command on a product's inventory waiting for the next batch. */
interface WaitingInventory {
  readonly command: InventoryCommand;
  readonly ctx: CommandContext;
  readonly resolve: (sent: Sent) => void;
  readonly reject: (e: unknown) => void;
}

/** What a command stored: its result and the events it decided (none for a repeat). */
export type Sent = CommandResult & { readonly events: readonly Event[] };

/** How a command is sent to one of the sales streams. */
export interface SendOptions {
  /** Attempts on a concurrency conflict; default COMMAND_RETRIES from the configuration. */
  readonly retries?: number;
  /**
   * Sent by the saga, whose idempotency keys are derived per step and whose deciders
   * answer a repeated step with nothing: the key lookup before deciding is skipped.
   */
  readonly fromSaga?: boolean;
  /**
   * The stream is new as far as the sender knows (a fresh order's stream, an order's first payment
   * command): decide on the empty state without reading it first (handleCommand's `assumeNew`; a
   * stream that exists after all is read and decided again).
   */
  readonly newStream?: boolean;
}

/**
 * The saga decides on its cached folds without a read (it wrote those streams step after step; the
 * append's expected revision proves the fold current, else it reads and decides again).
 */
const guesses = (o: SendOptions) => ({ trustCache: o.fromSaga === true, assumeNew: o.newStream === true });

/**
 * The sales streams as the use cases (src/sales/<use-case>.ts), the saga and
 * the jobs share them: loads, and commands on the inventory, order and payment
 * streams decided from cached folds (the saga writes them step after step).
 */

@Injectable()
export class SalesServices {
  constructor(readonly platform: Platform) {
    this.inventorySnapshots = new StreamSnapshots(
      platform.pool,
      inventorySnapshotOptions(platform.config.STREAM_SNAPSHOT_EVERY),
    );
  }

  private get store() {
    return this.platform.store;
  }

  /**
   * Order, payment and inventory streams are written step after step by the saga: decide from
   * cached folds. `fromSaga` skips the idempotency-key lookup (the saga needs no original result,
   * and these deciders answer a repeated step with nothing).
   */
  private readonly caches = {
    inventory: new StateCache<InventoryState>(),
    order: new StateCache<OrderState>(),
    payment: new StateCache<PaymentState>(),
  };
  /** A product's inventory stream takes every order's answer: snapshotted every STREAM_SNAPSHOT_EVERY events. */
  private readonly inventorySnapshots: StreamSnapshots<InventoryState>;

  private async load<E extends Event, S>(
    decider: Pick<Decider<never, E, S>, 'initialState' | 'evolve'>,
    streamId: string,
  ): Promise<{ state: S; revision: number }> {
    const events = await this.store.readStream<E>(streamId);
    return { state: fold(decider, events), revision: events.length - 1 };
  }

  async loadProduct(productId: string): Promise<ProductState> {
    return (await this.load(productDecider, productStreamId(productId))).state;
  }
  async loadInventory(productId: string): Promise<InventoryState> {
    const streamId = inventoryStreamId(productId);
    const snapshot = await this.inventorySnapshots.load(streamId);
    const events = await this.store.readStream<InventoryEvent>(streamId, snapshot ? snapshot.revision + 1 : 0);
    return events.reduce((s, e) => inventoryDecider.evolve(s, e), snapshot?.state ?? inventoryDecider.initialState);
  }
  async loadOrder(orderId: string): Promise<OrderState> {
    return (await this.load(orderDecider, orderStreamId(orderId))).state;
  }
  async loadPayment(orderId: string): Promise<PaymentState> {
    return (await this.load(paymentDecider, paymentStreamId(orderId))).state;
  }
  async loadSaga(
    orderId: string,
  ): Promise<{ history: SagaHistory; revision: number; steps: RecordedEvent<SagaStepRecorded>[] }> {
    const events = await this.store.readStream<SagaStepRecorded>(sagaStreamId(orderId));
    return { history: events.reduce(evolveSaga, emptyHistory), revision: events.length - 1, steps: events };
  }

  inventory(
    productId: string,
    command: InventoryCommand,
    ctx: CommandContext,
    options: SendOptions = {},
  ): Promise<Sent> {
    // The saga's commands go in per-product batches; everyone else's (stock receipts) one by one.
    if (options.fromSaga) return this.batchedInventory(productId, command, ctx, options);
    return handleCommand({
      store: this.store,
      decider: inventoryDecider,
      streamId: inventoryStreamId(productId),
      command,
      ctx,
      retries: options.retries ?? this.platform.config.COMMAND_RETRIES,
      cache: this.caches.inventory,
      snapshots: this.inventorySnapshots,
    });
  }

  /**
   * The saga's commands on one product's inventory go one batch at a time: those that arrive while
   * a batch is being written wait, then go together as one append (handleCommandBatch). Every order
   * reserves on the same few streams: one at a time each, they would meet as conflicts, re-read and
   * decide again, more often the more orders are in flight.
   */
  private readonly inventoryQueues = new Map<string, WaitingInventory[]>();

  private batchedInventory(
    productId: string,
    command: InventoryCommand,
    ctx: CommandContext,
    options: SendOptions,
  ): Promise<Sent> {
    return new Promise<Sent>((resolve, reject) => {
      const waiting = { command, ctx, resolve, reject };
      const queue = this.inventoryQueues.get(productId);
      if (queue) queue.push(waiting);
      else {
        this.inventoryQueues.set(productId, [waiting]);
        void this.drainInventory(productId, options.retries ?? this.platform.config.COMMAND_RETRIES);
      }
    });
  }

  private async drainInventory(productId: string, retries: number): Promise<void> {
    for (;;) {
      const batch = this.inventoryQueues.get(productId) ?? [];
      if (batch.length === 0) {
        this.inventoryQueues.delete(productId);
        return;
      }
      this.inventoryQueues.set(productId, []);
      try {
        const outcomes = await handleCommandBatch(
          {
            store: this.store,
            decider: inventoryDecider,
            streamId: inventoryStreamId(productId),
            retries,
            cache: this.caches.inventory,
            snapshots: this.inventorySnapshots,
            lookupKey: false,
            trustCache: true,
          },
          batch,
        );
        outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.sent) : batch[i]!.reject(o.error)));
      } catch (e) {
        for (const w of batch) w.reject(e);
      }
    }
  }

  order(orderId: string, command: OrderCommand, ctx: CommandContext, options: SendOptions = {}): Promise<Sent> {
    return handleCommand({
      store: this.store,
      decider: orderDecider,
      streamId: orderStreamId(orderId),
      command,
      ctx,
      retries: options.retries ?? this.platform.config.COMMAND_RETRIES,
      cache: this.caches.order,
      lookupKey: !options.fromSaga,
      ...guesses(options),
    });
  }

  payment(orderId: string, command: PaymentCommand, ctx: CommandContext, options: SendOptions = {}): Promise<Sent> {
    return handleCommand({
      store: this.store,
      decider: paymentDecider,
      streamId: paymentStreamId(orderId),
      command,
      ctx,
      retries: options.retries ?? this.platform.config.COMMAND_RETRIES,
      cache: this.caches.payment,
      lookupKey: !options.fromSaga,
      ...guesses(options),
    });
  }
}
