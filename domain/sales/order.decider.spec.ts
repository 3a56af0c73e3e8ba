import { given } from '../shared/given-when-then';
import type { ChannelTerms, ProductRegistered } from './product.events';
import type { OrderEvent } from './order.events';
import { orderDecider, type PlaceOrder } from './order.decider';
import { evolveProduct, initialProductState, type ProductState } from './product.decider';

const orderId = '33333333-3333-4333-8333-333333333333';
const customerId = '44444444-4444-4444-8444-444444444444';
const [p1, p2] = ['55555555-5555-4555-8555-555555555555', '66666666-6666-4666-8666-666666666666'];
const now = new Date('2026-11-23T22:30:00.000Z');
const at = now.toISOString();
const terms = (over: Partial<ChannelTerms> = {}): ChannelTerms => ({
  channel: 'web',
  priceCents: 1250,
  currency: 'EUR',
  paymentMethods: ['card', 'invoice'],
  discountPct: 20,
  delivery: { method: 'parcel', days: 3 },
  ...over,
});
const productState = (productId: string, sku: string, channels: ChannelTerms[]): ProductState => {
  const e: ProductRegistered = {
    type: 'sales.ProductRegistered',
    data: { productId, sku, name: sku, unit: 'piece', channels, by: 'a', at },
  };
  return evolveProduct(initialProductState, e);
};
const place = (over: Partial<PlaceOrder['data']> = {}): PlaceOrder => ({
  type: 'PlaceOrder',
  data: {
    orderId,
    customerId,
    channel: 'web',
    paymentMethod: 'card',
    items: [
      { productId: p1, quantity: 3 },
      { productId: p2, quantity: 1 },
    ],
    products: {
      [p1]: productState(p1, 'A', [terms()]),
      [p2]: productState(p2, 'B', [
        terms({ priceCents: 500, discountPct: 0, delivery: { method: 'parcel', days: 5 } }),
      ]),
    },
    now,
    ...over,
  },
});
const placed: OrderEvent = {
  type: 'sales.OrderPlaced',
  data: {
    orderId,
    customerId,
    channel: 'web',
    paymentMethod: 'card',
    currency: 'EUR',
    totalCents: 3500,
    expectedDelivery: '2026-11-28',
    at,
    items: [
      {
        productId: p1,
        sku: 'A',
        name: 'A',
        unit: 'piece',
        quantity: 3,
        listPriceCents: 1250,
        discountPct: 20,
        unitPriceCents: 1000,
        lineTotalCents: 3000,
        deliveryDays: 3,
      },
      {
        productId: p2,
        sku: 'B',
        name: 'B',
        unit: 'piece',
        quantity: 1,
        listPriceCents: 500,
        discountPct: 0,
        unitPriceCents: 500,
        lineTotalCents: 500,
        deliveryDays: 5,
      },
    ],
  },
};

describe('order decider', () => {
  it("prices each line on the channel after its discount; expected delivery is the slowest line's", () => {
    given(orderDecider, []).when(place()).then([placed]);
  });

  it('refuses a product not sold on the channel, a payment method a line does not take, mixed currencies, a repeated product', () => {
    given(orderDecider, [])
      .when(place({ channel: 'kiosk' }))
      .thenThrows('SALES.INVALID_ORDER', { fields: ['items.0.productId', 'items.1.productId'] });
    given(orderDecider, [])
      .when(place({ paymentMethod: 'cash' }))
      .thenThrows('SALES.INVALID_ORDER', { fields: ['paymentMethod', 'paymentMethod'] });
    const usd = { [p1]: productState(p1, 'A', [terms()]), [p2]: productState(p2, 'B', [terms({ currency: 'USD' })]) };
    given(orderDecider, [])
      .when(place({ products: usd }))
      .thenThrows('SALES.INVALID_ORDER', { fields: ['items'] });
    given(orderDecider, [])
      .when(
        place({
          items: [
            { productId: p1, quantity: 1 },
            { productId: p1, quantity: 2 },
          ],
        }),
      )
      .thenThrows('SALES.INVALID_ORDER', { fields: ['items.1.productId'] });
  });

  it('a channel named like an Object.prototype member is just a channel the products are not sold on', () => {
    given(orderDecider, [])
      .when(place({ channel: 'constructor' }))
      .thenThrows('SALES.INVALID_ORDER', { fields: ['items.0.productId', 'items.1.productId'] });
    given(orderDecider, [])
      .when(place({ channel: '__proto__' }))
      .thenThrows('SALES.INVALID_ORDER', { fields: ['items.0.productId', 'items.1.productId'] });
  });

  it('an unknown product is not found, naming the line', () => {
    given(orderDecider, [])
      .when(place({ products: { [p1]: productState(p1, 'A', [terms()]) } }))
      .thenThrows('SALES.PRODUCT_NOT_FOUND', { kind: 'not_found', fields: ['items.1.productId'] });
  });

  const reservedEv: OrderEvent = { type: 'sales.OrderReserved', data: { orderId, at } };
  const confirm = { type: 'ConfirmOrder' as const, data: { orderId, paymentRef: 'ref', now } };

  it('confirms a reserved order (paid, then confirmed) once', () => {
    given(orderDecider, [placed, reservedEv])
      .when(confirm)
      .then([
        { type: 'sales.OrderPaid', data: { orderId, paymentRef: 'ref', at } },
        { type: 'sales.OrderConfirmed', data: { orderId, at } },
      ]);
    given(orderDecider, [placed]).when(confirm).thenNothing();
  });

  it('a cancellation asked for before the capture wins: confirming then changes nothing', () => {
    const asked: OrderEvent = {
      type: 'sales.OrderCancellationRequested',
      data: { orderId, by: 'user:x', reason: 'r', at },
    };
    given(orderDecider, [placed, reservedEv, asked]).when(confirm).thenNothing();
  });

  it('cancellation: allowed until shipped, 409 after shipping or when closed, idempotent while pending', () => {
    const ask = { type: 'RequestCancellation' as const, data: { orderId, by: 'user:x', reason: 'r', now } };
    given(orderDecider, [placed])
      .when(ask)
      .then([{ type: 'sales.OrderCancellationRequested', data: { orderId, by: 'user:x', reason: 'r', at } }]);
    given(orderDecider, [
      placed,
      { type: 'sales.OrderCancellationRequested', data: { orderId, by: 'user:x', reason: 'r', at } },
    ])
      .when(ask)
      .thenNothing();
    const confirmed: OrderEvent[] = [
      placed,
      reservedEv,
      { type: 'sales.OrderPaid', data: { orderId, paymentRef: 'ref', at } },
      { type: 'sales.OrderConfirmed', data: { orderId, at } },
    ];
    given(orderDecider, [...confirmed, { type: 'sales.ShipmentDispatched', data: { orderId, shipmentId: 's', at } }])
      .when(ask)
      .thenThrows('SALES.ORDER_SHIPPED', { kind: 'conflict' });
    given(orderDecider, [placed, { type: 'sales.OrderRejected', data: { orderId, reason: 'r', detail: {}, at } }])
      .when(ask)
      .thenThrows('SALES.ORDER_CLOSED', { kind: 'conflict' });
  });

  it('ships only a confirmed order without a pending cancellation, once', () => {
    const ship = { type: 'DispatchShipment' as const, data: { orderId, shipmentId: 's1', now } };
    const confirmed: OrderEvent[] = [
      placed,
      reservedEv,
      { type: 'sales.OrderPaid', data: { orderId, paymentRef: 'ref', at } },
      { type: 'sales.OrderConfirmed', data: { orderId, at } },
    ];
    given(orderDecider, confirmed)
      .when(ship)
      .then([{ type: 'sales.ShipmentDispatched', data: { orderId, shipmentId: 's1', at } }]);
    given(orderDecider, [...confirmed, { type: 'sales.ShipmentDispatched', data: { orderId, shipmentId: 's1', at } }])
      .when(ship)
      .thenNothing();
    given(orderDecider, [placed, reservedEv]).when(ship).thenNothing();
  });

  it('rejecting or cancelling a closed order changes nothing', () => {
    const rejected: OrderEvent = { type: 'sales.OrderRejected', data: { orderId, reason: 'r', detail: {}, at } };
    given(orderDecider, [placed, rejected])
      .when({ type: 'CancelOrder', data: { orderId, reason: 'x', detail: {}, now } })
      .thenNothing();
    given(orderDecider, [placed, rejected])
      .when({ type: 'RejectOrder', data: { orderId, reason: 'x', detail: {}, now } })
      .thenNothing();
    given(orderDecider, [])
      .when({ type: 'CancelOrder', data: { orderId, reason: 'x', detail: {}, now } })
      .thenThrows('SALES.ORDER_NOT_FOUND');
  });
});
