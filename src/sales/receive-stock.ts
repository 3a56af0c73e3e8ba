import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { notFound } from '../../domain/shared/errors';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import type { CommandContext } from '../platform/commands/command-context';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { created, uuid, type Created } from './sales-input';
import { SalesServices } from './sales.services';

/** Receive stock: a goods receipt adds to a product's inventory. Admins only. */

export const stockReceiptSchema = z
  .object({
    quantity: z
      .number('must be a number')
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(1_000_000, 'must be at most 1000000'),
    reference: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
  })
  .strict();

export class ReceiveStock extends Command<Created<'productId'>> {
  constructor(
    readonly productId: string,
    readonly input: z.infer<typeof stockReceiptSchema>,
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(ReceiveStock)
export class ReceiveStockHandler implements ICommandHandler<ReceiveStock> {
  constructor(private readonly sales: SalesServices) {}

  async execute({ productId, input, by, ctx }: ReceiveStock): Promise<Created<'productId'>> {
    if (!(await this.sales.loadProduct(productId)).exists)
      throw notFound(SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${productId}`);
    // Through the inventory's cached fold: the saga writes the same stream with every order.
    const r = await this.sales.inventory(
      productId,
      { type: 'ReceiveStock', data: { productId, ...input, by: by.id, now: ctx.now } },
      ctx,
    );
    return created('productId', productId, r);
  }
}

/** POST /commands/ReceiveStock (the resource route is POST /products/:id/stock-receipts). */
export const receiveStockCommand = defineCommand({
  name: 'ReceiveStock',
  schema: stockReceiptSchema.extend({ productId: uuid }),
  access: 'admin',
  create: ({ productId, ...receipt }, ctx, by) => new ReceiveStock(productId, receipt, by!, ctx),
});
