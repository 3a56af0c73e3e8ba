import { randomUUID } from 'node:crypto';
import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import type { CommandContext } from '../platform/commands/command-context';
import { eventId } from '../platform/commands/command-handling';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { code, created, uuid, type Created } from './sales-input';
import { SalesServices } from './sales.services';

/**
 * Place an order: priced from the products' current terms in the channel and
 * recorded (202); the saga (saga-runner.ts) reserves, charges and confirms, or
 * compensates.
 */

export const placeOrderSchema = z
  .object({
    channel: code,
    paymentMethod: code,
    items: z
      .array(
        z
          .object({
            productId: uuid,
            quantity: z
              .number('must be a number')
              .int('must be a whole number')
              .min(1, 'must be at least 1')
              .max(1000, 'must be at most 1000'),
          })
          .strict(),
      )
      .min(1, 'must list at least one product')
      .max(50, 'must list at most 50 products'),
  })
  .strict();

export class PlaceOrder extends Command<Created<'orderId'>> {
  constructor(
    readonly input: z.infer<typeof placeOrderSchema>,
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(PlaceOrder)
export class PlaceOrderHandler implements ICommandHandler<PlaceOrder> {
  constructor(private readonly sales: SalesServices) {}

  async execute({ input, by, ctx }: PlaceOrder): Promise<Created<'orderId'>> {
    const key = ctx.idempotencyKey;
    const orderId = key ? eventId(ctx.actor, key, 'order', 0) : randomUUID();
    const ids = [...new Set(input.items.map((i) => i.productId))];
    const states = await Promise.all(ids.map((id) => this.sales.loadProduct(id)));
    const products = Object.fromEntries(ids.map((id, i) => [id, states[i]!]));
    const r = await this.sales.order(
      orderId,
      { type: 'PlaceOrder', data: { orderId, customerId: by.id, ...input, products, now: ctx.now } },
      ctx,
      // A fresh id: decided on the empty stream without reading it (a key used before was found above).
      { newStream: true },
    );
    return created('orderId', orderId, r);
  }
}

/** POST /commands/PlaceOrder (the resource route is POST /orders). */
export const placeOrderCommand = defineCommand({
  name: 'PlaceOrder',
  schema: placeOrderSchema,
  access: 'authenticated',
  create: (i, ctx, by) => new PlaceOrder(i, by!, ctx),
});
