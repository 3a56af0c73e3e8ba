import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { productDecider, type ChannelPatch } from '../../domain/sales/product.decider';
import { productStreamId } from '../../domain/sales/product.events';
import type { CommandContext } from '../platform/commands/command-context';
import { handleCommand } from '../platform/commands/command-handling';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { Platform } from '../platform/platform';
import {
  cents,
  code,
  created,
  currency,
  delivery,
  discountPct,
  paymentMethods,
  price,
  productName,
  uuid,
  type Created,
} from './sales-input';

/** Change a product: rename it, or change (or add) a channel's price, discount, payment methods or delivery. Admins only. */

const channelPatchSchema = z
  .object({
    channel: code,
    price: price.optional(),
    currency: currency.optional(),
    paymentMethods: paymentMethods.optional(),
    discountPct: discountPct.optional(),
    delivery: delivery.optional(),
  })
  .strict();

export const changeProductSchema = z
  .object({
    name: productName.optional(),
    channels: z
      .array(channelPatchSchema)
      .min(1, 'must list at least one channel')
      .max(20, 'must list at most 20 channels')
      .optional(),
  })
  .strict()
  .refine((v) => v.name !== undefined || v.channels !== undefined, {
    message: 'must change name or channels',
    path: [],
  });

type ChangeProductInput = z.infer<typeof changeProductSchema>;

const toPatch = (c: z.infer<typeof channelPatchSchema>): ChannelPatch => ({
  channel: c.channel,
  ...(c.price !== undefined ? { priceCents: cents(c.price) } : {}),
  ...(c.currency !== undefined ? { currency: c.currency } : {}),
  ...(c.discountPct !== undefined ? { discountPct: c.discountPct } : {}),
  ...(c.paymentMethods !== undefined ? { paymentMethods: c.paymentMethods } : {}),
  ...(c.delivery !== undefined ? { delivery: c.delivery } : {}),
});

export class ChangeProduct extends Command<Created<'productId'>> {
  constructor(
    readonly productId: string,
    readonly input: ChangeProductInput,
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(ChangeProduct)
export class ChangeProductHandler implements ICommandHandler<ChangeProduct> {
  constructor(private readonly platform: Platform) {}

  async execute({ productId, input, by, ctx }: ChangeProduct): Promise<Created<'productId'>> {
    const patch = {
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(input.channels ? { channels: input.channels.map(toPatch) } : {}),
    };
    const r = await handleCommand({
      store: this.platform.store,
      decider: productDecider,
      streamId: productStreamId(productId),
      command: { type: 'ChangeProduct', data: { productId, ...patch, by: by.id, now: ctx.now } },
      ctx,
      retries: this.platform.config.COMMAND_RETRIES,
    });
    return created('productId', productId, r);
  }
}

/** POST /commands/ChangeProduct (the resource route is PATCH /products/:id). */
export const changeProductCommand = defineCommand({
  name: 'ChangeProduct',
  schema: z
    .object({
      productId: uuid,
      name: productName.optional(),
      channels: z.array(channelPatchSchema).min(1).max(20).optional(),
    })
    .strict(),
  access: 'admin',
  create: ({ productId, ...patch }, ctx, by) => new ChangeProduct(productId, patch, by!, ctx),
});
