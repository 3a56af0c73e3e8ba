import { Injectable } from '@nestjs/common';
import { fold, type Decider, type Event } from '../../domain/shared/event';
import { inventoryDecider, type InventoryCommand, type InventoryState } from '../../domain/sales/inventory.decider';
import { orderDecider, type OrderCommand, type OrderState } from '../../domain/sales/order.decider';
import { paymentDecider, type PaymentCommand, type PaymentState } from '../../domain/sales/payment.decider';
import { productDecider, type ProductState } from '../../domain/sales/product.decider';
import { emptyHistory, evolveSaga, sagaStreamId, type SagaHistory, type SagaStepRecorded } from '../../domain/sales/order-fulfilment.saga';
import { inventoryStreamId } from '../../domain/sales/inventory.events';
import { orderStreamId } from '../../domain/sales/order.events';
import { paymentStreamId } from '../../domain/sales/payment.events';
import { productStreamId } from '../../domain/sales/product.events';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { handleCommand, StateCache } from '../platform/commands/command-handling';
import { Platform } from '../platform/platform';

/**
 * The sales streams as the use cases (src/sales/<use-case>.ts), the saga and
 * the jobs share them: loads, and commands on the inventory, order and payment
 * streams decided from cached folds (the saga writes them step after step).
 */
@Injectable()
export class SalesServices {
  constructor(readonly platform: Platform) {}

  private get store() { return this.platform.store; }

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

  inventory(productId: string, command: InventoryCommand, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES, fromSaga = false): Promise<CommandResult> {
    return handleCommand({ store: this.store, decider: inventoryDecider, streamId: inventoryStreamId(productId), command, ctx, retries, cache: this.caches.inventory, lookupKey: !fromSaga });
  }

  order(orderId: string, command: OrderCommand, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES, fromSaga = false): Promise<CommandResult> {
    return handleCommand({ store: this.store, decider: orderDecider, streamId: orderStreamId(orderId), command, ctx, retries, cache: this.caches.order, lookupKey: !fromSaga });
  }

  payment(orderId: string, command: PaymentCommand, ctx: CommandContext, retries = this.platform.config.COMMAND_RETRIES, fromSaga = false): Promise<CommandResult> {
    return handleCommand({ store: this.store, decider: paymentDecider, streamId: paymentStreamId(orderId), command, ctx, retries, cache: this.caches.payment, lookupKey: !fromSaga });
  }
}
