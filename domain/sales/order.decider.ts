import type { Decider } from '../shared/event';
import { conflict, DomainError, notFound, validationError, type FieldError } from '../shared/errors';
import type { OrderEvent, OrderLine } from './order.events';
import { discountedCents, type ProductState } from './product.decider';
import { SalesErrorCode } from './sales-errors';
import { unreachable } from '../shared/unreachable';

/**
 * The write model of one order (stream `order-<orderId>`). Placing prices the
 * lines from the products' current channel terms (passed in, so `decide`
 * stays pure). Everything after placement is driven by the fulfilment saga
 * and is idempotent: a step repeated after a crash emits nothing.
 */

export type PlaceOrder = {
  readonly type: 'PlaceOrder';
  readonly data: {
    readonly orderId: string;
    readonly customerId: string;
    readonly channel: string;
    readonly paymentMethod: string;
    readonly items: readonly { readonly productId: string; readonly quantity: number }[];
    /** The current state of every product named in `items` (missing = unknown product). */
    readonly products: Readonly<Record<string, ProductState>>;
    readonly now: Date;
  };
};
export type MarkOrderReserved = {
  readonly type: 'MarkOrderReserved';
  readonly data: { readonly orderId: string; readonly now: Date };
};
export type ConfirmOrder = {
  readonly type: 'ConfirmOrder';
  readonly data: { readonly orderId: string; readonly paymentRef: string; readonly now: Date };
};
export type RejectOrder = {
  readonly type: 'RejectOrder';
  readonly data: {
    readonly orderId: string;
    readonly reason: string;
    readonly detail: Record<string, unknown>;
    readonly now: Date;
  };
};
export type RequestCancellation = {
  readonly type: 'RequestCancellation';
  readonly data: { readonly orderId: string; readonly by: string; readonly reason: string; readonly now: Date };
};
export type CancelOrder = {
  readonly type: 'CancelOrder';
  readonly data: {
    readonly orderId: string;
    readonly reason: string;
    readonly detail: Record<string, unknown>;
    readonly now: Date;
  };
};
export type DispatchShipment = {
  readonly type: 'DispatchShipment';
  readonly data: { readonly orderId: string; readonly shipmentId: string; readonly now: Date };
};
export type OrderCommand =
  PlaceOrder | MarkOrderReserved | ConfirmOrder | RejectOrder | RequestCancellation | CancelOrder | DispatchShipment;

export type OrderStatus = 'none' | 'placed' | 'reserved' | 'paid' | 'confirmed' | 'shipped' | 'rejected' | 'cancelled';

export interface OrderState {
  readonly status: OrderStatus;
  readonly orderId: string;
  readonly customerId: string;
  readonly items: readonly OrderLine[];
  readonly cancellationRequested: boolean;
}

export const initialOrderState: OrderState = {
  status: 'none',
  orderId: '',
  customerId: '',
  items: [],
  cancellationRequested: false,
};

const FINAL: readonly OrderStatus[] = ['shipped', 'rejected', 'cancelled'];
export const isFinal = (s: OrderStatus): boolean => FINAL.includes(s);

export const MAX_ORDER_LINES = 50;

export function evolveOrder(state: OrderState, event: OrderEvent): OrderState {
  switch (event.type) {
    case 'sales.OrderPlaced':
      return {
        status: 'placed',
        orderId: event.data.orderId,
        customerId: event.data.customerId,
        items: event.data.items,
        cancellationRequested: false,
      };
    case 'sales.OrderReserved':
      return { ...state, status: 'reserved' };
    case 'sales.OrderPaid':
      return { ...state, status: 'paid' };
    case 'sales.OrderConfirmed':
      return { ...state, status: 'confirmed' };
    case 'sales.OrderRejected':
      return { ...state, status: 'rejected' };
    case 'sales.OrderCancellationRequested':
      return { ...state, cancellationRequested: true };
    case 'sales.OrderCancelled':
      return { ...state, status: 'cancelled' };
    case 'sales.ShipmentDispatched':
      return { ...state, status: 'shipped' };
    default:
      return unreachable(event, 'event');
  }
}

export function decideOrder(command: OrderCommand, state: OrderState): OrderEvent[] {
  switch (command.type) {
    case 'PlaceOrder':
      if (state.status !== 'none')
        throw conflict(SalesErrorCode.ORDER_EXISTS, `order ${command.data.orderId} already exists`);
      return [place(command.data)];
    case 'MarkOrderReserved': {
      const { orderId, now } = command.data;
      requireOrder(state, orderId);
      return state.status === 'placed'
        ? [{ type: 'sales.OrderReserved', data: { orderId, at: now.toISOString() } }]
        : [];
    }
    case 'ConfirmOrder': {
      const { orderId, paymentRef, now } = command.data;
      requireOrder(state, orderId);
      // A cancellation already asked for wins; the saga refunds the capture.
      if (state.status !== 'reserved' || state.cancellationRequested) return [];
      const at = now.toISOString();
      return [
        { type: 'sales.OrderPaid', data: { orderId, paymentRef, at } },
        { type: 'sales.OrderConfirmed', data: { orderId, at } },
      ];
    }
    case 'RejectOrder': {
      const { orderId, reason, detail, now } = command.data;
      requireOrder(state, orderId);
      if (state.status !== 'placed' && state.status !== 'reserved') return [];
      return [{ type: 'sales.OrderRejected', data: { orderId, reason, detail, at: now.toISOString() } }];
    }
    case 'RequestCancellation': {
      const { orderId, by, reason, now } = command.data;
      requireOrder(state, orderId);
      if (state.status === 'shipped')
        throw conflict(SalesErrorCode.ORDER_SHIPPED, `order ${orderId} has shipped and can no longer be cancelled`);
      if (state.status === 'rejected' || state.status === 'cancelled')
        throw conflict(SalesErrorCode.ORDER_CLOSED, `order ${orderId} is already ${state.status}`);
      if (state.cancellationRequested) return [];
      return [{ type: 'sales.OrderCancellationRequested', data: { orderId, by, reason, at: now.toISOString() } }];
    }
    case 'CancelOrder': {
      const { orderId, reason, detail, now } = command.data;
      requireOrder(state, orderId);
      if (isFinal(state.status)) return [];
      return [{ type: 'sales.OrderCancelled', data: { orderId, reason, detail, at: now.toISOString() } }];
    }
    case 'DispatchShipment': {
      const { orderId, shipmentId, now } = command.data;
      requireOrder(state, orderId);
      if (state.status !== 'confirmed' || state.cancellationRequested) return [];
      return [{ type: 'sales.ShipmentDispatched', data: { orderId, shipmentId, at: now.toISOString() } }];
    }
    default:
      return unreachable(command, 'command');
  }
}

function requireOrder(state: OrderState, orderId: string): void {
  if (state.status === 'none') throw notFound(SalesErrorCode.ORDER_NOT_FOUND, `no order ${orderId}`);
}

/** Prices every line on the order's channel and checks the payment method against each line's terms. */
function place(d: PlaceOrder['data']): OrderEvent {
  const errors: FieldError[] = [];
  if (d.items.length === 0) errors.push({ field: 'items', rule: 'must list at least one product' });
  if (d.items.length > MAX_ORDER_LINES)
    errors.push({ field: 'items', rule: `must list at most ${MAX_ORDER_LINES} products` });
  const seen = new Set<string>();
  const lines: OrderLine[] = [];
  const currencies = new Set<string>();
  d.items.forEach((item, i) => {
    if (seen.has(item.productId))
      errors.push({
        field: `items.${i}.productId`,
        rule: 'must not repeat a product: put the whole quantity on one line',
      });
    seen.add(item.productId);
    const product = Object.hasOwn(d.products, item.productId) ? d.products[item.productId] : undefined;
    if (!product?.exists) {
      throw new DomainError('not_found', SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${item.productId}`, [
        { field: `items.${i}.productId`, rule: 'must name an existing product' },
      ]);
    }
    // Own keys only: a channel named like an Object.prototype member is just an unknown channel.
    const terms = Object.hasOwn(product.channels, d.channel) ? product.channels[d.channel] : undefined;
    if (!terms) {
      errors.push({ field: `items.${i}.productId`, rule: `must be sold on channel ${d.channel}` });
      return;
    }
    if (!terms.paymentMethods.includes(d.paymentMethod)) {
      errors.push({
        field: 'paymentMethod',
        rule: `must be one ${product.sku} accepts on ${d.channel}: ${terms.paymentMethods.join(', ')}`,
      });
    }
    currencies.add(terms.currency);
    const unitPriceCents = discountedCents(terms);
    lines.push({
      productId: item.productId,
      sku: product.sku,
      name: product.name,
      unit: product.unit,
      quantity: item.quantity,
      listPriceCents: terms.priceCents,
      discountPct: terms.discountPct,
      unitPriceCents,
      lineTotalCents: unitPriceCents * item.quantity,
      deliveryDays: terms.delivery.days,
    });
  });
  if (currencies.size > 1)
    errors.push({
      field: 'items',
      rule: `must all be priced in one currency on ${d.channel}, found ${[...currencies].join(', ')}`,
    });
  if (errors.length)
    throw validationError(SalesErrorCode.INVALID_ORDER, errors.map((e) => `${e.field} ${e.rule}`).join('; '), errors);
  const days = Math.max(...lines.map((l) => l.deliveryDays));
  const expected = new Date(Date.UTC(d.now.getUTCFullYear(), d.now.getUTCMonth(), d.now.getUTCDate() + days));
  return {
    type: 'sales.OrderPlaced',
    data: {
      orderId: d.orderId,
      customerId: d.customerId,
      channel: d.channel,
      paymentMethod: d.paymentMethod,
      items: lines,
      currency: [...currencies][0]!,
      totalCents: lines.reduce((s, l) => s + l.lineTotalCents, 0),
      expectedDelivery: expected.toISOString().slice(0, 10),
      at: d.now.toISOString(),
    },
  };
}

export const orderDecider: Decider<OrderCommand, OrderEvent, OrderState> = {
  initialState: initialOrderState,
  evolve: evolveOrder,
  decide: decideOrder,
};
