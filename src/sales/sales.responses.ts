import { z } from 'zod';
import { commandResultSchema } from '../platform/http/openapi';

/** Response schemas of sales' routes (sales.http.ts), for GET /openapi.json. */

const created = (key: string) => commandResultSchema.extend({ [key]: z.string() }).strict();
export const productCreatedSchema = created('productId');
export const orderCreatedSchema = created('orderId');

const nextAfter = z.string().nullable().meta({ description: 'Pass as `after` for the next page; null on the last.' });
const money = z.number().meta({ description: 'An amount in the currency, to the cent.' });

const channelTerms = {
  channel: z.string(),
  price: money.meta({ description: "What a unit costs after the channel's discount." }),
  listPrice: money,
  discountPct: z.number(),
  currency: z.string(),
  paymentMethods: z.array(z.string()),
  delivery: z.object({
    method: z.string(),
    days: z.number().int(),
    estimatedDate: z.string().meta({ description: 'YYYY-MM-DD if ordered today.' }),
  }),
};

export const catalogueItemSchema = z
  .object({
    productId: z.string(),
    sku: z.string(),
    name: z.string(),
    unit: z.string(),
    ...channelTerms,
    available: z.number().int(),
  })
  .meta({ id: 'CatalogueItem' });

export const cataloguePageSchema = z.object({ items: z.array(catalogueItemSchema), nextAfter });

export const productSchema = z
  .object({
    productId: z.string(),
    sku: z.string(),
    name: z.string(),
    unit: z.string(),
    available: z.number().int(),
    channels: z.array(z.object(channelTerms)),
  })
  .meta({ id: 'Product' });

export const stockSchema = z
  .object({
    productId: z.string(),
    onHand: z.number().int(),
    reserved: z.number().int(),
    available: z.number().int(),
    shipped: z.number().int(),
    movements: z.array(
      z.object({
        at: z.date(),
        kind: z.string(),
        quantity: z.number().int(),
        orderId: z.string().nullable(),
        reference: z.string().nullable(),
        position: z.number().int(),
      }),
    ),
  })
  .meta({ id: 'Stock' });

const orderSummaryShape = {
  orderId: z.string(),
  customerId: z.string(),
  channel: z.string(),
  paymentMethod: z.string(),
  status: z.enum(['placed', 'reserved', 'paid', 'confirmed', 'shipped', 'rejected', 'cancelled']),
  items: z.array(
    z.object({
      productId: z.string(),
      sku: z.string(),
      name: z.string(),
      unit: z.string(),
      quantity: z.number().int(),
      listPrice: money,
      discountPct: z.number(),
      unitPrice: money,
      lineTotal: money,
    }),
  ),
  totals: z.object({ currency: z.string(), total: money, quantity: z.number().int() }),
  expectedDelivery: z.string(),
  payment: z.string().nullable(),
  cancellationRequested: z.boolean(),
  reason: z.string().nullable(),
  shipmentId: z.string().nullable(),
  placedAt: z.date(),
  updatedAt: z.date(),
  shippedAt: z.date().nullable(),
};

export const orderSummarySchema = z.object(orderSummaryShape).meta({ id: 'OrderSummary' });
export const orderPageSchema = z.object({ items: z.array(orderSummarySchema), nextAfter });

export const orderSchema = z
  .object({
    ...orderSummaryShape,
    timeline: z
      .array(
        z.object({
          at: z.date(),
          step: z.string(),
          compensation: z.boolean(),
          reason: z.string().nullable(),
          detail: z.unknown(),
          position: z.number().int(),
        }),
      )
      .meta({ description: 'Every saga step and compensation, in the order they happened.' }),
  })
  .meta({ id: 'Order' });

export const parkedSagaSchema = z
  .looseObject({
    key: z.string().meta({ description: 'The order id.' }),
    status: z.enum(['parked', 'resuming']),
    position: z.number(),
    eventId: z.string(),
    eventType: z.string(),
    error: z.string(),
    attempts: z.number().int(),
    heldEvents: z.number().int().meta({ description: 'Triggers waiting: the failing one and the later ones.' }),
  })
  .meta({ id: 'ParkedSaga' });

export const sagaSchema = z
  .looseObject({
    orderId: z.string(),
    revision: z.number().int(),
    state: z.looseObject({}).meta({ description: "The saga's state as it stands in the store." }),
    pendingDeadline: z.looseObject({ dueAt: z.unknown() }).nullable(),
    deadlineJob: z.unknown(),
    processedEvents: z
      .array(z.looseObject({}))
      .meta({ description: 'Each event the saga handled, the commands it sent and its status after.' }),
    runner: z.object({ checkpoint: z.number().int() }),
    parked: parkedSagaSchema.nullable().meta({ description: 'Null unless the saga is parked (or being resumed).' }),
    operatorLog: z
      .array(z.looseObject({ action: z.string(), actor: z.string() }))
      .meta({ description: 'Parks, retries and skips of this saga, newest first.' }),
  })
  .meta({ id: 'Saga' });

export const parkedSagaPageSchema = z.object({
  items: z.array(parkedSagaSchema),
  next: z.string().nullable().meta({ description: 'The `after` of the next page; null on the last.' }),
});
export const sagaResolvedSchema = z.object({
  orderId: z.string(),
  action: z.enum(['retry', 'skip']),
  parked: parkedSagaSchema,
});
export const outageSchema = z.object({ orderId: z.string(), outage: z.boolean(), wasOn: z.boolean() });

export const shippedSchema = z.object({ shipped: z.number().int() });
export const capturedSchema = z.object({ orderId: z.string(), captured: z.literal(true) });
export const paymentBooksSchema = z.object({
  charges: z.array(z.looseObject({})),
  refunds: z.array(z.looseObject({})),
});
