import { randomUUID } from 'node:crypto';
import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { DomainError } from '../../domain/shared/errors';
import { initialProductState, productDecider } from '../../domain/sales/product.decider';
import { productStreamId, skuStreamId, type ChannelTerms } from '../../domain/sales/product.events';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import type { CommandContext } from '../platform/commands/command-context';
import { eventId } from '../platform/commands/command-handling';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { ConcurrencyError } from '../platform/event-store/event-store';
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
  type Created,
} from './sales-input';

/** Register a product: its SKU, name, unit and the terms of each sales channel. Admins only. */

const channelSchema = z
  .object({ channel: code, price, currency, paymentMethods, discountPct: discountPct.optional(), delivery })
  .strict();

export const registerProductSchema = z
  .object({
    sku: z
      .string()
      .regex(
        /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/,
        'must be 1-64 characters: letters, digits, _ . - (starting with a letter or digit)',
      ),
    name: productName,
    unit: z.string().trim().min(1, 'must not be empty').max(20, 'must be at most 20 characters'),
    channels: z.array(channelSchema).min(1, 'must list at least one channel').max(20, 'must list at most 20 channels'),
  })
  .strict();

const toTerms = (c: z.infer<typeof channelSchema>): ChannelTerms => ({
  channel: c.channel,
  priceCents: cents(c.price),
  currency: c.currency,
  paymentMethods: c.paymentMethods,
  discountPct: c.discountPct ?? 0,
  delivery: c.delivery,
});

export class RegisterProduct extends Command<Created<'productId'>> {
  constructor(
    readonly input: z.infer<typeof registerProductSchema>,
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

/** Registers a product and reserves its SKU in one transaction: one product per SKU, even under concurrency. */
@CommandHandler(RegisterProduct)
export class RegisterProductHandler implements ICommandHandler<RegisterProduct> {
  constructor(private readonly platform: Platform) {}

  async execute({ input, by, ctx }: RegisterProduct): Promise<Created<'productId'>> {
    const store = this.platform.store;
    const key = ctx.idempotencyKey;
    const productId = key ? eventId(ctx.actor, key, 'product', 0) : randomUUID();
    const streamId = productStreamId(productId);
    const id = (stream: string, i: number) => (key ? eventId(ctx.actor, key, stream, i) : randomUUID());
    if (key) {
      const original = await store.findAppend(streamId, id(streamId, 0));
      if (original)
        return created('productId', productId, {
          position: original.position,
          revision: original.nextRevision,
          duplicate: true,
        });
    }
    const events = productDecider.decide(
      {
        type: 'RegisterProduct',
        data: { productId, ...input, channels: input.channels.map(toTerms), by: by.id, now: ctx.now },
      },
      initialProductState,
    );
    const meta = {
      correlationId: ctx.correlationId,
      causationId: ctx.causationId,
      actor: ctx.actor,
      command: 'RegisterProduct',
    };
    const sku = skuStreamId(input.sku.toLowerCase());
    try {
      const [, product] = await store.appendMulti([
        {
          streamId: sku,
          expected: 'no_stream',
          events: [
            {
              id: id(sku, 0),
              type: 'sales.SkuReserved',
              data: { sku: input.sku, productId, at: ctx.now.toISOString() },
              metadata: meta,
            },
          ],
        },
        {
          streamId,
          expected: 'no_stream',
          events: events.map((e, i) => ({ id: id(streamId, i), type: e.type, data: e.data, metadata: meta })),
        },
      ]);
      return created('productId', productId, {
        position: product!.position,
        revision: product!.nextRevision,
        duplicate: product!.duplicate,
      });
    } catch (e) {
      if (e instanceof ConcurrencyError && e.streamId === sku) {
        throw new DomainError(
          'conflict',
          SalesErrorCode.SKU_TAKEN,
          `a product with sku ${input.sku} exists`,
          [{ field: 'sku', rule: 'must not belong to an existing product' }],
          { sku: input.sku },
        );
      }
      throw e;
    }
  }
}

/** POST /commands/RegisterProduct (the resource route is POST /products). */
export const registerProductCommand = defineCommand({
  name: 'RegisterProduct',
  schema: registerProductSchema,
  access: 'admin',
  create: (i, ctx, by) => new RegisterProduct(i, by!, ctx),
});
