import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DomainError, notFound } from '../../domain/shared/errors';
import { fold, type Command, type Decider, type Event } from '../../domain/shared/event';
import type { ChannelTerms } from '../../domain/sales/product.events';
import { inventoryDecider, type InventoryCommand, type InventoryState } from '../../domain/sales/inventory.decider';
import { orderDecider, type OrderCommand, type OrderState } from '../../domain/sales/order.decider';
import { paymentDecider, type PaymentCommand, type PaymentState } from '../../domain/sales/payment.decider';
import { initialProductState, productDecider, type ChannelPatch, type ProductState } from '../../domain/sales/product.decider';
import { emptyHistory, evolveSaga, type SagaHistory, type SagaStepRecorded } from '../../domain/sales/order-fulfilment.saga';
import { inventoryStreamId } from '../../domain/sales/inventory.events';
import { orderStreamId } from '../../domain/sales/order.events';
import { paymentStreamId } from '../../domain/sales/payment.events';
import { productStreamId, skuStreamId } from '../../domain/sales/product.events';
import { sagaStreamId } from '../../domain/sales/order-fulfilment.saga';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import type { Caller } from '../platform/commands/command-registry';
import { eventId, handleCommand, StateCache } from '../platform/commands/command-handling';
import { ConcurrencyError } from '../platform/event-store/event-store';
import { Platform } from '../platform/platform';

/**
 * The write side of sales: each operation loads a stream, decides, appends.
 * Controllers, the saga and the jobs all come through here.
 */
@Injectable()
export class SalesServices {
  constructor(readonly platform: Platform) {}

  private get store() { return this.platform.store; }

  /** Runs a decider command on a stream (optimistic concurrency, idempotency key honoured). */
  run<C extends Command, E extends Event, S>(decider: Decider<C, E, S>, streamId: string, command: C, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES) {
    return handleCommand({ store: this.store, decider, streamId, command, ctx, retries });
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

  private async load<E extends Event, S>(decider: Pick<Decider<never, E, S>, 'initialState' | 'evolve'>, streamId: string): Promise<{ state: S; revision: number }> {
    const events = await this.store.readStream(streamId);
    return { state: fold(decider, events as unknown as E[]), revision: events.length - 1 };
  }

  async loadProduct(productId: string): Promise<ProductState> {
    return (await this.load(productDecider, productStreamId(productId))).state;
  }
  async loadInventory(productId: string): Promise<InventoryState> {
    return (await this.load(inventoryDecider, inventoryStreamId(productId))).state;
  }
  async loadOrder(orderId: string): Promise<OrderState> {
    return (await this.load(orderDecider, orderStreamId(orderId))).state;
  }
  async loadPayment(orderId: string): Promise<PaymentState> {
    return (await this.load(paymentDecider, paymentStreamId(orderId))).state;
  }
  async loadSaga(orderId: string): Promise<{ history: SagaHistory; revision: number; steps: (SagaStepRecorded & { recordedAt: Date })[] }> {
    const events = (await this.store.readStream(sagaStreamId(orderId))) as unknown as (SagaStepRecorded & { recordedAt: Date })[];
    return { history: events.reduce(evolveSaga, emptyHistory), revision: events.length - 1, steps: events };
  }

  // ---- catalogue -----------------------------------------------------------

  /** Registers a product and reserves its SKU in one transaction: one product per SKU, even under concurrency. */
  async registerProduct(
    input: { sku: string; name: string; unit: string; channels: readonly ChannelTerms[] }, by: Caller, ctx: CommandContext,
  ): Promise<CommandResult & { productId: string }> {
    const key = ctx.idempotencyKey;
    const productId = key ? eventId(ctx.actor, key, 'product', 0) : randomUUID();
    const streamId = productStreamId(productId);
    const id = (stream: string, i: number) => (key ? eventId(ctx.actor, key, stream, i) : randomUUID());
    if (key) {
      const original = await this.store.findAppend(streamId, id(streamId, 0));
      if (original) return { productId, position: original.position, revision: original.nextRevision, duplicate: true };
    }
    const events = productDecider.decide({ type: 'RegisterProduct', data: { productId, ...input, by: by.id, now: ctx.now } }, initialProductState);
    const meta = { correlationId: ctx.correlationId, causationId: ctx.causationId, actor: ctx.actor, command: 'RegisterProduct' };
    const sku = skuStreamId(input.sku.toLowerCase());
    try {
      const [, product] = await this.store.appendMulti([
        { streamId: sku, expected: 'no_stream', events: [{ id: id(sku, 0), type: 'sales.SkuReserved', data: { sku: input.sku, productId, at: ctx.now.toISOString() }, metadata: meta }] },
        { streamId, expected: 'no_stream', events: events.map((e, i) => ({ id: id(streamId, i), type: e.type, data: e.data, metadata: meta })) },
      ]);
      return { productId, position: product!.position, revision: product!.nextRevision, duplicate: product!.duplicate };
    } catch (e) {
      if (e instanceof ConcurrencyError && e.streamId === sku) {
        throw new DomainError('conflict', SalesErrorCode.SKU_TAKEN, `a product with sku ${input.sku} exists`,
          [{ field: 'sku', rule: 'must not belong to an existing product' }], { sku: input.sku });
      }
      throw e;
    }
  }

  async changeProduct(productId: string, patch: { name?: string; channels?: readonly ChannelPatch[] }, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    return this.run(productDecider, productStreamId(productId), { type: 'ChangeProduct', data: { productId, ...patch, by: by.id, now: ctx.now } }, ctx);
  }

  async receiveStock(productId: string, input: { quantity: number; reference: string }, by: Caller, ctx: CommandContext): Promise<CommandResult> {
    if (!(await this.loadProduct(productId)).exists) throw notFound(SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${productId}`);
    return this.inventory(productId, { type: 'ReceiveStock', data: { productId, ...input, by: by.id, now: ctx.now } }, ctx);
  }

  inventory(productId: string, command: InventoryCommand, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES, fromSaga = false): Promise<CommandResult> {
    return handleCommand({ store: this.store, decider: inventoryDecider, streamId: inventoryStreamId(productId), command, ctx, retries, cache: this.caches.inventory, lookupKey: !fromSaga });
  }

  // ---- orders ----------------------------------------------------------------

  /** Prices the order from the products' current terms and records it; the saga takes it from there. */
  async placeOrder(
    input: { channel: string; paymentMethod: string; items: readonly { productId: string; quantity: number }[] }, customer: Caller, ctx: CommandContext,
  ): Promise<CommandResult & { orderId: string }> {
    const key = ctx.idempotencyKey;
    const orderId = key ? eventId(ctx.actor, key, 'order', 0) : randomUUID();
    const ids = [...new Set(input.items.map((i) => i.productId))];
    const states = await Promise.all(ids.map((id) => this.loadProduct(id)));
    const products = Object.fromEntries(ids.map((id, i) => [id, states[i]!]));
    const result = await this.order(orderId, { type: 'PlaceOrder', data: { orderId, customerId: customer.id, ...input, products, now: ctx.now } }, ctx);
    return { orderId, ...result };
  }

  order(orderId: string, command: OrderCommand, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES, fromSaga = false): Promise<CommandResult> {
    return handleCommand({ store: this.store, decider: orderDecider, streamId: orderStreamId(orderId), command, ctx, retries, cache: this.caches.order, lookupKey: !fromSaga });
  }

  payment(orderId: string, command: PaymentCommand, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES, fromSaga = false): Promise<CommandResult> {
    return handleCommand({ store: this.store, decider: paymentDecider, streamId: paymentStreamId(orderId), command, ctx, retries, cache: this.caches.payment, lookupKey: !fromSaga });
  }

  /** The order as its owner or an admin may see it; anyone else is told it does not exist. */
  async visibleOrder(orderId: string, caller: Caller): Promise<OrderState> {
    const order = await this.loadOrder(orderId);
    if (order.status === 'none' || (order.customerId !== caller.id && !caller.roles.includes('admin'))) {
      throw notFound(SalesErrorCode.ORDER_NOT_FOUND, `no order ${orderId}`);
    }
    return order;
  }

  /** Customer cancellation: recorded on the order; the saga releases, refunds and cancels. */
  async requestCancellation(orderId: string, caller: Caller, reason: string | undefined, ctx: CommandContext): Promise<CommandResult & { orderId: string }> {
    await this.visibleOrder(orderId, caller);
    const result = await this.order(orderId, {
      type: 'RequestCancellation',
      data: { orderId, by: `${caller.kind}:${caller.id}`, reason: reason ?? 'cancelled by the customer', now: ctx.now },
    }, ctx);
    return { orderId, ...result };
  }
}
