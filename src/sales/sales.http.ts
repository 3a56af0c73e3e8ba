import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Put, Query, Req } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { conflict, DomainError, notFound } from '../../domain/shared/errors';
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
import { AuthErrorCode } from '../platform/http/auth-errors';
import { CancelOrder, cancelOrderSchema } from './cancel-order';
import { ChangeProduct, changeProductSchema } from './change-product';
import { PlaceOrder, placeOrderSchema } from './place-order';
import { ReceiveStock, stockReceiptSchema } from './receive-stock';
import { RegisterProduct, registerProductSchema } from './register-product';
import { code, uuid } from './sales-input';
import { SalesRuntime } from './sales.runtime';
import { SalesServices } from './sales.services';
import { ApiDoc } from '../platform/http/openapi';
import {
  capturedSchema,
  cataloguePageSchema,
  outageSchema,
  parkedSagaPageSchema,
  sagaResolvedSchema,
  orderCreatedSchema,
  orderPageSchema,
  orderSchema,
  paymentBooksSchema,
  productCreatedSchema,
  productSchema,
  sagaSchema,
  shippedSchema,
  stockSchema,
} from './sales.responses';

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
  /** Admins: one customer's orders (the console's search by customer); a user always sees only their own. */
  customerId: uuid.optional(),
  limit: z.coerce.number().int().min(1).max(200).optional(),
  after: z.string().max(500, 'must be at most 500 characters').optional(),
  minPosition: z.string().max(32, 'must be at most 32 characters').optional(),
});
const idParams = z.object({ id: uuid });
const idParam = (id: string) => parseInput(idParams, { id }).id;
const orderParams = z.object({ orderId: uuid });
const orderIdParam = (orderId: string) => parseInput(orderParams, { orderId }).orderId;
const PRODUCT_NOT_FOUND = { 404: [SalesErrorCode.PRODUCT_NOT_FOUND] };
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

  @ApiDoc({
    summary: 'Register a product with the terms of each sales channel',
    body: registerProductSchema,
    command: true,
    responses: { 201: productCreatedSchema },
    errors: {
      400: [SalesErrorCode.INVALID_PRODUCT],
      409: [SalesErrorCode.PRODUCT_EXISTS, SalesErrorCode.SKU_TAKEN],
    },
  })
  @Roles('admin')
  @Post()
  register(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new RegisterProduct(parseInput(registerProductSchema, body), caller(req), ctx));
  }

  @ApiDoc({
    summary: "Change a product's name, unit or channel terms",
    params: idParams,
    body: changeProductSchema,
    command: true,
    responses: { 200: productCreatedSchema },
    errors: { 400: [SalesErrorCode.INVALID_PRODUCT], ...PRODUCT_NOT_FOUND },
  })
  @Roles('admin')
  @Patch(':id')
  change(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new ChangeProduct(idParam(id), parseInput(changeProductSchema, body), caller(req), ctx));
  }

  @ApiDoc({
    summary: 'The catalogue of one sales channel: prices after discount, availability, delivery estimate',
    query: catalogueQuery,
    readsModel: true,
    responses: { 200: cataloguePageSchema },
    errors: { 400: [SalesErrorCode.INVALID_QUERY] },
  })
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

  @ApiDoc({
    summary: 'One product with its terms in every channel',
    params: idParams,
    readsModel: true,
    responses: { 200: productSchema },
    errors: PRODUCT_NOT_FOUND,
  })
  @Get(':id')
  async product(@Param('id') id: string, @MinPosition() minPosition: number | undefined) {
    const productId = idParam(id);
    await this.platform.readAfter(catalogueProjection.name, minPosition);
    const view = await findProductView(this.platform.pool, productId, new Date());
    if (!view) throw notFound(SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${productId}`);
    return view;
  }

  @ApiDoc({
    summary: 'Receive stock of a product',
    params: idParams,
    body: stockReceiptSchema,
    command: true,
    responses: { 201: productCreatedSchema },
    errors: { 400: [SalesErrorCode.INVALID_STOCK_RECEIPT], ...PRODUCT_NOT_FOUND },
  })
  @Roles('admin')
  @Post(':id/stock-receipts')
  receive(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new ReceiveStock(idParam(id), parseInput(stockReceiptSchema, body), caller(req), ctx));
  }

  @ApiDoc({
    summary: 'Stock of a product: on hand, reserved, available, shipped, newest movements',
    params: idParams,
    readsModel: true,
    responses: { 200: stockSchema },
    errors: PRODUCT_NOT_FOUND,
  })
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
  @ApiDoc({
    summary: 'Place an order (the saga reserves, charges and confirms, or compensates, asynchronously)',
    body: placeOrderSchema,
    command: true,
    responses: { 202: orderCreatedSchema },
    errors: {
      400: [SalesErrorCode.INVALID_ORDER],
      404: [SalesErrorCode.PRODUCT_NOT_FOUND],
      409: [SalesErrorCode.ORDER_EXISTS],
    },
  })
  @Post()
  @HttpCode(202)
  place(@Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext) {
    return this.bus.execute(new PlaceOrder(parseInput(placeOrderSchema, body), caller(req), ctx));
  }

  @ApiDoc({
    summary: "The caller's orders, newest first (an admin: everyone's, or one customer's with customerId)",
    query: ordersQuery,
    readsModel: true,
    responses: { 200: orderPageSchema },
    errors: { 400: [SalesErrorCode.INVALID_QUERY], 403: [AuthErrorCode.FORBIDDEN] },
  })
  @Get()
  async list(@Query() query: unknown, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const q = parseInput(ordersQuery, query ?? {});
    const who = caller(req);
    await this.platform.readAfter(ordersProjection.name, minPosition);
    const admin = who.roles.includes('admin');
    if (!admin && q.customerId !== undefined && q.customerId !== who.id)
      throw new DomainError(
        'forbidden',
        AuthErrorCode.FORBIDDEN,
        "customerId: only an admin may list another customer's orders",
      );
    return listOrders(this.platform.pool, {
      customerId: admin ? (q.customerId ?? null) : who.id,
      ...(q.status ? { status: q.status } : {}),
      ...(q.limit ? { limit: q.limit } : {}),
      ...(q.after ? { after: q.after } : {}),
    });
  }

  /** The owner or an admin; anyone else gets 404, as if the order did not exist. */
  @ApiDoc({
    summary: 'One order with its timeline of saga steps and compensations',
    params: idParams,
    readsModel: true,
    responses: { 200: orderSchema },
    errors: { 404: [SalesErrorCode.ORDER_NOT_FOUND] },
  })
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
  @ApiDoc({
    summary: 'Cancel an order until it ships (the saga refunds, releases the stock and cancels)',
    params: idParams,
    body: cancelOrderSchema,
    bodyRequired: false,
    command: true,
    responses: { 202: orderCreatedSchema },
    errors: {
      404: [SalesErrorCode.ORDER_NOT_FOUND],
      409: [SalesErrorCode.ORDER_SHIPPED, SalesErrorCode.ORDER_CLOSED],
    },
  })
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
  @ApiDoc({
    summary: 'Sagas parked on a trigger that kept failing (or being resumed), in order id order',
    query: sagasQuery,
    responses: { 200: parkedSagaPageSchema },
  })
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
  @ApiDoc({
    summary: 'The saga of one order: state, pending deadline, every event it handled and what it sent, parked or not',
    params: orderParams,
    responses: { 200: sagaSchema },
    errors: { 404: [SalesErrorCode.SAGA_NOT_FOUND] },
  })
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
  @ApiDoc({
    summary: 'Retry a parked saga: its failing trigger again, then the ones held behind it (recorded)',
    params: orderParams,
    responses: { 200: sagaResolvedSchema },
    errors: { 409: [SalesErrorCode.SAGA_NOT_PARKED] },
  })
  @Post('sagas/:orderId/retry')
  @HttpCode(200)
  retrySaga(@Param('orderId') id: string, @Req() req: FastifyRequest) {
    return this.resolveSaga(orderIdParam(id), 'retry', req);
  }

  /** Drops the trigger the order's saga is parked on, then handles the ones held behind it. Recorded. */
  @ApiDoc({
    summary: 'Skip the trigger a saga is parked on, then handle the ones held behind it (recorded)',
    params: orderParams,
    responses: { 200: sagaResolvedSchema },
    errors: { 409: [SalesErrorCode.SAGA_NOT_PARKED] },
  })
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
  @ApiDoc({ summary: 'Run one shipping batch now', responses: { 200: shippedSchema } })
  @Post('shipping/run')
  @HttpCode(200)
  ship() {
    return this.runtime.jobs.shipBatch();
  }

  /** Sandbox provider only: answer a `card-no-response` payment with a capture now, as a late webhook would. */
  @ApiDoc({
    summary: 'Sandbox payments: capture a payment that never answered, as a late webhook would',
    params: orderParams,
    responses: { 200: capturedSchema },
    errors: { 404: [SalesErrorCode.PAYMENT_NOT_FOUND] },
  })
  @Post('sandbox/payments/:orderId/capture')
  @HttpCode(200)
  async sandboxCapture(@Param('orderId') id: string) {
    const orderId = orderIdParam(id);
    const capture = this.runtime.payments.capturePending;
    if (!capture || !(await capture.call(this.runtime.payments, orderId))) {
      throw notFound(SalesErrorCode.PAYMENT_NOT_FOUND, `no sandbox payment for order ${orderId}`);
    }
    return { orderId, captured: true };
  }

  /** Sandbox provider only: charges and refunds of this order fail (503 from the provider) until the outage is deleted. */
  @ApiDoc({
    summary: 'Sandbox payments: switch an outage on for one order (its charges and refunds fail)',
    params: orderParams,
    responses: { 200: outageSchema },
    errors: { 404: [SalesErrorCode.PAYMENT_NOT_FOUND] },
  })
  @Put('sandbox/payments/:orderId/outage')
  @HttpCode(200)
  async sandboxOutageOn(@Param('orderId') id: string) {
    return { orderId: id, outage: true, wasOn: await this.switchOutage(orderIdParam(id), true) };
  }

  @ApiDoc({
    summary: 'Sandbox payments: switch the outage of one order off',
    params: orderParams,
    responses: { 200: outageSchema },
    errors: { 404: [SalesErrorCode.PAYMENT_NOT_FOUND] },
  })
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
  @ApiDoc({
    summary: "Sandbox payments: the provider's books for one order (charges and refunds)",
    params: orderParams,
    responses: { 200: paymentBooksSchema },
    errors: { 404: [SalesErrorCode.PAYMENT_NOT_FOUND] },
  })
  @Get('sandbox/payments/:orderId')
  async sandboxBooks(@Param('orderId') id: string) {
    const orderId = orderIdParam(id);
    const books = this.runtime.payments.books;
    if (!books) throw notFound(SalesErrorCode.PAYMENT_NOT_FOUND, 'the payment provider keeps no local books');
    return books.call(this.runtime.payments, orderId);
  }
}
