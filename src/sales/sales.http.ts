import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Put, Query, Req } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { conflict, notFound } from '../../domain/shared/errors';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import { catalogueProjection } from '../../projections/catalogue.projection';
import { findProductView, listCatalogue, stockOf } from '../../projections/catalogue.queries';
import { ordersProjection } from '../../projections/orders.projection';
import { findOrderView, listOrders } from '../../projections/orders.queries';
import type { CommandContext } from '../platform/commands/command-context';
import type { Caller } from '../platform/commands/command-registry';
import { actorOf, Ctx, MinPosition } from '../platform/http/request';
import { parseInput } from '../platform/http/validation';
import { Platform } from '../platform/platform';
import { Roles, principalOf } from '../platform/http/access';
import { CancelOrder, cancelOrderSchema } from './cancel-order';
import { ChangeProduct, changeProductSchema } from './change-product';
import { PlaceOrder, placeOrderSchema } from './place-order';
import { ReceiveStock, stockReceiptSchema } from './receive-stock';
import { RegisterProduct, registerProductSchema } from './register-product';
import { code, uuid } from './sales-input';
import { SalesRuntime } from './sales.runtime';
import { SalesServices } from './sales.services';

/**
 * The HTTP routes of sales: each write route parses its input with its use
 * case's schema and sends the use case's command on the bus (the handler is in
 * src/sales/<use-case>.ts); the read routes query the read models.
 */

// ---- query schemas ----

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
const orderIdParam = (id: string) => parseInput(z.object({ orderId: uuid }), { orderId: id }).orderId;
const sagasQuery = z.object({
  state: z.enum(['parked', 'resuming']).default('parked'),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  after: uuid.optional(),
});

const caller = (req: FastifyRequest): Caller => {
  const p = principalOf(req);
  return { kind: p.kind, id: p.id, roles: p.roles };
};

// ---- controllers ----

@Controller('products')
export class ProductsController {
  constructor(
    private readonly bus: CommandBus,
    private readonly platform: Platform,
  ) {}

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
      channel: q.channel,
      today: new Date(),
      ...(q.q ? { q: q.q } : {}),
      ...(q.limit ? { limit: q.limit } : {}),
      ...(q.after ? { after: q.after } : {}),
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
  constructor(
    private readonly bus: CommandBus,
    private readonly platform: Platform,
  ) {}

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
      ...(q.status ? { status: q.status } : {}),
      ...(q.limit ? { limit: q.limit } : {}),
      ...(q.after ? { after: q.after } : {}),
    });
  }

  /** The owner or an admin; anyone else gets 404, as if the order did not exist. */
  @Get(':id')
  async get(@Param('id') id: string, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const orderId = idParam(id);
    const who = caller(req);
    await this.platform.readAfter(ordersProjection.name, minPosition);
    const view = await findOrderView(this.platform.pool, orderId);
    if (!view || (view.customerId !== who.id && !who.roles.includes('admin')))
      throw notFound(SalesErrorCode.ORDER_NOT_FOUND, `no order ${orderId}`);
    return view;
  }

  /** Until the order ships: the saga refunds, releases the stock and cancels. */
  @Post(':id/cancel')
  @HttpCode(202)
  cancel(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(
      new CancelOrder(idParam(id), parseInput(cancelOrderSchema, body ?? {}).reason, caller(req), ctx),
    );
  }
}

@Roles('admin')
@Controller('admin')
export class SalesAdminController {
  constructor(
    private readonly sales: SalesServices,
    private readonly runtime: SalesRuntime,
  ) {}

  /** Parked sagas (or those an operator resumed, not finished yet), in order id order: `?state=parked&limit=50&after=<orderId>`. */
  @Get('sagas')
  async sagas(@Query() query: unknown) {
    const q = parseInput(sagasQuery, query ?? {});
    const items = await this.runtime.saga.listParked({
      status: q.state,
      limit: q.limit,
      ...(q.after ? { after: q.after } : {}),
    });
    return { items, next: items.length === q.limit ? items[items.length - 1]!.key : null };
  }

  /**
   * The saga of one order as it stands in the store: state, pending deadline, every event it handled
   * and what it sent; when it is parked, on which trigger, why, and what operators did about it.
   */
  @Get('sagas/:orderId')
  async saga(@Param('orderId') id: string) {
    const orderId = orderIdParam(id);
    const [{ history, revision, steps }, parked, operatorLog] = await Promise.all([
      this.sales.loadSaga(orderId),
      this.runtime.saga.parked(orderId),
      this.runtime.saga.operatorLog(orderId),
    ]);
    if (revision < 0 && !parked && operatorLog.length === 0)
      throw notFound(SalesErrorCode.SAGA_NOT_FOUND, `no saga for order ${orderId} (yet)`);
    const deadline = await this.runtime.jobs.deadline(orderId);
    return {
      orderId,
      revision,
      state: history.state,
      pendingDeadline: history.state.deadlineDueAt ? { dueAt: history.state.deadlineDueAt, job: deadline } : null,
      deadlineJob: deadline,
      processedEvents: steps.map((s) => ({
        ...s.data.trigger,
        commands: s.data.commands,
        statusAfter: s.data.state.status,
        recordedAt: s.recordedAt,
      })),
      runner: { checkpoint: this.runtime.saga.position },
      parked: parked ?? null,
      operatorLog,
    };
  }

  /** Handles the trigger the order's saga is parked on again, then the ones held behind it. Recorded. */
  @Post('sagas/:orderId/retry')
  @HttpCode(200)
  retrySaga(@Param('orderId') id: string, @Req() req: FastifyRequest) {
    return this.resolveSaga(orderIdParam(id), 'retry', req);
  }

  /** Drops the trigger the order's saga is parked on, then handles the ones held behind it. Recorded. */
  @Post('sagas/:orderId/skip')
  @HttpCode(200)
  skipSaga(@Param('orderId') id: string, @Req() req: FastifyRequest) {
    return this.resolveSaga(orderIdParam(id), 'skip', req);
  }

  private async resolveSaga(orderId: string, action: 'retry' | 'skip', req: FastifyRequest) {
    const row = await this.runtime.saga.resolve(orderId, action, actorOf(req));
    if (!row) throw conflict(SalesErrorCode.SAGA_NOT_PARKED, `the saga of order ${orderId} is not parked`);
    return { orderId, action, parked: row };
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

  /** Sandbox provider only: charges and refunds of this order fail (503 from the provider) until the outage is deleted. */
  @Put('sandbox/payments/:orderId/outage')
  @HttpCode(200)
  async sandboxOutageOn(@Param('orderId') id: string) {
    return { orderId: id, outage: true, wasOn: await this.switchOutage(orderIdParam(id), true) };
  }

  @Delete('sandbox/payments/:orderId/outage')
  @HttpCode(200)
  async sandboxOutageOff(@Param('orderId') id: string) {
    return { orderId: id, outage: false, wasOn: await this.switchOutage(orderIdParam(id), false) };
  }

  private async switchOutage(orderId: string, on: boolean): Promise<boolean> {
    const setOutage = this.runtime.payments.setOutage;
    if (!setOutage) throw notFound(SalesErrorCode.PAYMENT_NOT_FOUND, 'the payment provider is not the sandbox');
    return setOutage.call(this.runtime.payments, orderId, on);
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
