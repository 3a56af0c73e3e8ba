import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { notFound } from '../../domain/shared/errors';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import type { CommandContext } from '../platform/commands/command-context';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { created, uuid, type Created } from './sales-input';
import { SalesServices } from './sales.services';

/**
 * Cancel an order, until it ships: recorded on the order (202); the saga
 * releases the stock, refunds and cancels. The owner or an admin only.
 */

export const cancelOrderSchema = z
  .object({
    reason: z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
  })
  .strict();

export class CancelOrder extends Command<Created<'orderId'>> {
  constructor(
    readonly orderId: string,
    readonly reason: string | undefined,
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(CancelOrder)
export class CancelOrderHandler implements ICommandHandler<CancelOrder> {
  constructor(private readonly sales: SalesServices) {}

  async execute({ orderId, reason, by, ctx }: CancelOrder): Promise<Created<'orderId'>> {
    // Anyone but the owner or an admin is told the order does not exist.
    const order = await this.sales.loadOrder(orderId);
    if (order.status === 'none' || (order.customerId !== by.id && !by.roles.includes('admin'))) {
      throw notFound(SalesErrorCode.ORDER_NOT_FOUND, `no order ${orderId}`);
    }
    const r = await this.sales.order(
      orderId,
      {
        type: 'RequestCancellation',
        data: { orderId, by: `${by.kind}:${by.id}`, reason: reason ?? 'cancelled by the customer', now: ctx.now },
      },
      ctx,
    );
    return created('orderId', orderId, r);
  }
}

/** POST /commands/CancelOrder (the resource route is POST /orders/:id/cancel). */
export const cancelOrderCommand = defineCommand({
  name: 'CancelOrder',
  schema: cancelOrderSchema.extend({ orderId: uuid }),
  access: 'authenticated',
  create: ({ orderId, reason }, ctx, by) => new CancelOrder(orderId, reason, by!, ctx),
});
