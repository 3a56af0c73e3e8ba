import { Body, Controller, Get, HttpCode, Injectable, Param, Patch, Post, Query, Req, type OnModuleInit } from '@nestjs/common';
import { Command, CommandBus, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { notFound } from '../../domain/shared/errors';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import type { ChannelTerms } from '../../domain/sales/product.events';
import type { ChannelPatch } from '../../domain/sales/product.decider';
import { catalogueProjection } from '../../projections/catalogue.projection';
import { findProductView, listCatalogue, stockOf } from '../../projections/catalogue.queries';
import { ordersProjection } from '../../projections/orders.projection';
import { findOrderView, listOrders } from '../../projections/orders.queries';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { CommandRegistry, type Caller } from '../platform/commands/command-registry';
import { Ctx, MinPosition } from '../platform/http/request';
import { parseInput } from '../platform/http/validation';
import { Platform } from '../platform/platform';
import { Roles, principalOf } from '../identity/auth-guard';
import { SalesRuntime } from './sales.runtime';
import { SalesServices } from './sales.services';

// ---- input schemas (shared by the resource routes and POST /commands/:name) ----

const uuid = z.string().uuid('must be a UUID');
const code = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,31}$/, 'must be 1-32 characters: lowercase letters, digits, _ . -');
const price = z.number('must be a number').finite().min(0, 'must not be negative').max(10_000_000, 'must be at most 10000000')
  .refine((v) => Math.abs(Math.round(v * 100) - v * 100) < 1e-6, 'must have at most 2 decimals');
const currency = z.string().regex(/^[A-Z]{3}$/, 'must be a 3-letter ISO 4217 code such as EUR');
const discountPct = z.number('must be a number').min(0, 'must be from 0 to 100').max(100, 'must be from 0 to 100');
const paymentMethods = z.array(code).min(1, 'must list at least one payment method').max(10, 'must list at most 10 payment methods');
const delivery = z.object({
  method: z.string().trim().min(1, 'must not be empty').max(50, 'must be at most 50 characters'),
  days: z.number('must be a number').int('must be a whole number of days').min(0, 'must be from 0 to 365').max(365, 'must be from 0 to 365'),
}).strict();
const channelSchema = z.object({ channel: code, price, currency, paymentMethods, discountPct: discountPct.optional(), delivery }).strict();
const channelPatchSchema = z.object({
  channel: code, price: price.optional(), currency: currency.optional(), paymentMethods: paymentMethods.optional(),
  discountPct: discountPct.optional(), delivery: delivery.optional(),
}).strict();
const name = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');
export const registerProductSchema = z.object({
  sku: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 characters: letters, digits, _ . - (starting with a letter or digit)'),
  name,
  unit: z.string().trim().min(1, 'must not be empty').max(20, 'must be at most 20 characters'),
  channels: z.array(channelSchema).min(1, 'must list at least one channel').max(20, 'must list at most 20 channels'),
}).strict();
const changeProductSchema = z.object({
  name: name.optional(),
  channels: z.array(channelPatchSchema).min(1, 'must list at least one channel').max(20, 'must list at most 20 channels').optional(),
}).strict().refine((v) => v.name !== undefined || v.channels !== undefined, { message: 'must change name or channels', path: [] });
const stockReceiptSchema = z.object({
  quantity: z.number('must be a number').int('must be a whole number').min(1, 'must be at least 1').max(1_000_000, 'must be at most 1000000'),
  reference: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
}).strict();
export const placeOrderSchema = z.object({
  channel: code,
  paymentMethod: code,
  items: z.array(z.object({
    productId: uuid,
    quantity: z.number('must be a number').int('must be a whole number').min(1, 'must be at least 1').max(1000, 'must be at most 1000'),
  }).strict()).min(1, 'must list at least one product').max(50, 'must list at most 50 products'),
}).strict();
const cancelSchema = z.object({ reason: z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional() }).strict();
const catalogueQuery = z.object({
  channel: code,
  q: z.string().max(100, 'must be at most 100 characters').optional(),
  limit: z.coerce.number().int().min(1).max(200).optional(),
  after: z.string().max(500, 'must be at most 500 characters').optional(),
  minPosition: z.string().max(32, 'must be at most 32 characters').optional(),
});
const ordersQuery = z.object({
  status: z.string().max(32, 'must be at most 32 characters').optional(),
  limit: z.coerce.number().int().min(1).max(200).optional(),
  after: z.string().max(500, 'must be at most 500 characters').optional(),
  minPosition: z.string().max(32, 'must be at most 32 characters').optional(),
});
const idParam = (id: string) => parseInput(z.object({ id: uuid }), { id }).id;

const cents = (v: number) => Math.round(v * 100);
const toTerms = (c: z.infer<typeof channelSchema>): ChannelTerms => ({
  channel: c.channel, priceCents: cents(c.price), currency: c.currency, paymentMethods: c.paymentMethods, discountPct: c.discountPct ?? 0, delivery: c.delivery,
});
const toPatch = (c: z.infer<typeof channelPatchSchema>): ChannelPatch => ({
  channel: c.channel,
  ...(c.price !== undefined ? { priceCents: cents(c.price) } : {}),
  ...(c.currency !== undefined ? { currency: c.currency } : {}),
  ...(c.discountPct !== undefined ? { discountPct: c.discountPct } : {}),
  ...(c.paymentMethods !== undefined ? { paymentMethods: c.paymentMethods } : {}),
  ...(c.delivery !== undefined ? { delivery: c.delivery } : {}),
});

// ---- commands on the bus ----

type Created<K extends string> = CommandResult & Record<K, string>;

export class RegisterProduct extends Command<Created<'productId'>> {
  constructor(readonly input: z.infer<typeof registerProductSchema>, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class ChangeProduct extends Command<Created<'productId'>> {
  constructor(readonly productId: string, readonly input: z.infer<typeof changeProductSchema>, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class ReceiveStock extends Command<Created<'productId'>> {
  constructor(readonly productId: string, readonly input: z.infer<typeof stockReceiptSchema>, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class PlaceOrder extends Command<Created<'orderId'>> {
  constructor(readonly input: z.infer<typeof placeOrderSchema>, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}
export class CancelOrder extends Command<Created<'orderId'>> {
  constructor(readonly orderId: string, readonly reason: string | undefined, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}

/** The new resource's id and the command result (position for read-your-writes, revision, duplicate). */
const created = <K extends string>(key: K, id: string, r: CommandResult) => ({ [key]: id, position: r.position, revision: r.revision, duplicate: r.duplicate }) as Created<K>;

@CommandHandler(RegisterProduct)
class RegisterProductHandler implements ICommandHandler<RegisterProduct> {
  constructor(private readonly sales: SalesServices) {}
  async execute(c: RegisterProduct) {
    const r = await this.sales.registerProduct({ ...c.input, channels: c.input.channels.map(toTerms) }, c.by, c.ctx);
    return created('productId', r.productId, r);
  }
}
@CommandHandler(ChangeProduct)
class ChangeProductHandler implements ICommandHandler<ChangeProduct> {
  constructor(private readonly sales: SalesServices) {}
  async execute(c: ChangeProduct) {
    const patch = { ...(c.input.name !== undefined ? { name: c.input.name } : {}), ...(c.input.channels ? { channels: c.input.channels.map(toPatch) } : {}) };
    return created('productId', c.productId, await this.sales.changeProduct(c.productId, patch, c.by, c.ctx));
  }
}
@CommandHandler(ReceiveStock)
class ReceiveStockHandler implements ICommandHandler<ReceiveStock> {
  constructor(private readonly sales: SalesServices) {}
  async execute(c: ReceiveStock) {
    return created('productId', c.productId, await this.sales.receiveStock(c.productId, c.input, c.by, c.ctx));
  }
}
@CommandHandler(PlaceOrder)
class PlaceOrderHandler implements ICommandHandler<PlaceOrder> {
  constructor(private readonly sales: SalesServices) {}
  async execute(c: PlaceOrder) {
    const r = await this.sales.placeOrder(c.input, c.by, c.ctx);
    return created('orderId', r.orderId, r);
  }
}
@CommandHandler(CancelOrder)
class CancelOrderHandler implements ICommandHandler<CancelOrder> {
  constructor(private readonly sales: SalesServices) {}
  async execute(c: CancelOrder) {
    return created('orderId', c.orderId, await this.sales.requestCancellation(c.orderId, c.by, c.reason, c.ctx));
  }
}
export const salesCommandHandlers = [RegisterProductHandler, ChangeProductHandler, ReceiveStockHandler, PlaceOrderHandler, CancelOrderHandler];

@Injectable()
export class SalesCommands implements OnModuleInit {
  constructor(private readonly registry: CommandRegistry) {}
  onModuleInit() {
    const r = this.registry;
    r.register({ name: 'RegisterProduct', schema: registerProductSchema, access: 'admin', create: (i, ctx, by) => new RegisterProduct(i, by!, ctx) });
    r.register({
      name: 'ChangeProduct', schema: z.object({ productId: uuid, name: name.optional(), channels: z.array(channelPatchSchema).min(1).max(20).optional() }).strict(),
      access: 'admin', create: ({ productId, ...patch }, ctx, by) => new ChangeProduct(productId, patch, by!, ctx),
    });
    r.register({
      name: 'ReceiveStock', schema: stockReceiptSchema.extend({ productId: uuid }), access: 'admin',
      create: ({ productId, ...receipt }, ctx, by) => new ReceiveStock(productId, receipt, by!, ctx),
    });
    r.register({ name: 'PlaceOrder', schema: placeOrderSchema, access: 'authenticated', create: (i, ctx, by) => new PlaceOrder(i, by!, ctx) });
    r.register({
      name: 'CancelOrder', schema: cancelSchema.extend({ orderId: uuid }), access: 'authenticated',
      create: ({ orderId, reason }, ctx, by) => new CancelOrder(orderId, reason, by!, ctx),
    });
  }
}

const caller = (req: FastifyRequest): Caller => {
  const p = principalOf(req);
  return { kind: p.kind, id: p.id, roles: p.roles };
};

// ---- controllers ----

@Controller('products')
export class ProductsController {
  constructor(private readonly bus: CommandBus, private readonly platform: Platform) {}

  @Roles('admin')
  @Post()
  register(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new RegisterProduct(parseInput(registerProductSchema, body), caller(req), ctx));
  }

  @Roles('admin')
  @Patch(':id')
  change(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new ChangeProduct(idParam(id), parseInput(changeProductSchema, body), caller(req), ctx));
  }

  @Get()
  async catalogue(@Query() query: unknown, @MinPosition() minPosition: number | undefined) {
    const q = parseInput(catalogueQuery, query ?? {});
    await this.platform.readAfter(catalogueProjection.name, minPosition);
    return listCatalogue(this.platform.pool, {
      channel: q.channel, today: new Date(),
      ...(q.q ? { q: q.q } : {}), ...(q.limit ? { limit: q.limit } : {}), ...(q.after ? { after: q.after } : {}),
    });
  }

  @Get(':id')
  async product(@Param('id') id: string, @MinPosition() minPosition: number | undefined) {
    const productId = idParam(id);
    await this.platform.readAfter(catalogueProjection.name, minPosition);
    const view = await findProductView(this.platform.pool, productId, new Date());
    if (!view) throw notFound(SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${productId}`);
    return view;
  }

  @Roles('admin')
  @Post(':id/stock-receipts')
  receive(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new ReceiveStock(idParam(id), parseInput(stockReceiptSchema, body), caller(req), ctx));
  }

  @Roles('admin')
  @Get(':id/stock')
  async stock(@Param('id') id: string, @MinPosition() minPosition: number | undefined) {
    const productId = idParam(id);
    await this.platform.readAfter(catalogueProjection.name, minPosition);
    const view = await stockOf(this.platform.pool, productId);
    if (!view) throw notFound(SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${productId}`);
    return view;
  }
}

@Controller('orders')
export class OrdersController {
  constructor(private readonly bus: CommandBus, private readonly platform: Platform) {}

  /** 202: the order is recorded; the saga reserves, charges and confirms (or compensates) asynchronously. */
  @Post()
  @HttpCode(202)
  place(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new PlaceOrder(parseInput(placeOrderSchema, body), caller(req), ctx));
  }

  @Get()
  async list(@Query() query: unknown, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const q = parseInput(ordersQuery, query ?? {});
    const who = caller(req);
    await this.platform.readAfter(ordersProjection.name, minPosition);
    return listOrders(this.platform.pool, {
      customerId: who.roles.includes('admin') ? null : who.id,
      ...(q.status ? { status: q.status } : {}), ...(q.limit ? { limit: q.limit } : {}), ...(q.after ? { after: q.after } : {}),
    });
  }

  /** The owner or an admin; anyone else gets 404, as if the order did not exist. */
  @Get(':id')
  async get(@Param('id') id: string, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const orderId = idParam(id);
    const who = caller(req);
    await this.platform.readAfter(ordersProjection.name, minPosition);
    const view = await findOrderView(this.platform.pool, orderId);
    if (!view || (view.customerId !== who.id && !who.roles.includes('admin'))) throw notFound(SalesErrorCode.ORDER_NOT_FOUND, `no order ${orderId}`);
    return view;
  }

  /** Until the order ships: the saga refunds, releases the stock and cancels. */
  @Post(':id/cancel')
  @HttpCode(202)
  cancel(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new CancelOrder(idParam(id), parseInput(cancelSchema, body ?? {}).reason, caller(req), ctx));
  }
}

@Roles('admin')
@Controller('admin')
export class SalesAdminController {
  constructor(private readonly sales: SalesServices, private readonly runtime: SalesRuntime) {}

  /** The saga of one order as it stands in the store: state, pending deadline, every event it handled and what it sent. */
  @Get('sagas/:orderId')
  async saga(@Param('orderId') id: string) {
    const orderId = parseInput(z.object({ orderId: uuid }), { orderId: id }).orderId;
    const { history, revision, steps } = await this.sales.loadSaga(orderId);
    if (revision < 0) throw notFound(SalesErrorCode.SAGA_NOT_FOUND, `no saga for order ${orderId} (yet)`);
    const deadline = await this.runtime.jobs.deadline(orderId);
    return {
      orderId,
      revision,
      state: history.state,
      pendingDeadline: history.state.deadlineDueAt ? { dueAt: history.state.deadlineDueAt, job: deadline } : null,
      deadlineJob: deadline,
      processedEvents: steps.map((s) => ({ ...s.data.trigger, commands: s.data.commands, statusAfter: s.data.state.status, recordedAt: s.recordedAt })),
      runner: { checkpoint: this.runtime.saga.position },
    };
  }

  /** Runs one shipping batch now (it also runs every SHIPPING_INTERVAL_MS). */
  @Post('shipping/run')
  @HttpCode(200)
  ship() {
    return this.runtime.jobs.shipBatch();
  }

  /** Sandbox provider only: answer a `card-no-response` payment with a capture now, as a late webhook would. */
  @Post('sandbox/payments/:orderId/capture')
  @HttpCode(200)
  async sandboxCapture(@Param('orderId') id: string) {
    const orderId = parseInput(z.object({ orderId: uuid }), { orderId: id }).orderId;
    const capture = this.runtime.payments.capturePending;
    if (!capture || !(await capture.call(this.runtime.payments, orderId))) {
      throw notFound(SalesErrorCode.PAYMENT_NOT_FOUND, `no sandbox payment for order ${orderId}`);
    }
    return { orderId, captured: true };
  }

  /** Sandbox provider only: its books for one order (charges and refunds), to compare with the events. */
  @Get('sandbox/payments/:orderId')
  async sandboxBooks(@Param('orderId') id: string) {
    const orderId = parseInput(z.object({ orderId: uuid }), { orderId: id }).orderId;
    const books = this.runtime.payments.books;
    if (!books) throw notFound(SalesErrorCode.PAYMENT_NOT_FOUND, 'the payment provider keeps no local books');
    return books.call(this.runtime.payments, orderId);
  }
}
