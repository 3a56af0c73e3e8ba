import type { Decider } from '../shared/event';
import { conflict, notFound, validationError } from '../shared/errors';
import type { ChannelTerms, Delivery, ProductEvent } from './product.events';
import { SalesErrorCode } from './sales-errors';
import { unreachable } from '../shared/unreachable';

/**
 * The write model of one product (stream `product-<productId>`): what it is
 * and how each sales channel sells it. Field shapes and ranges are checked by
 * the HTTP schema; here live the rules that span fields (one entry per
 * channel, a channel changed must exist). Prices are changed by events, never
 * overwritten in place.
 */

export interface ChannelPatch {
  readonly channel: string;
  readonly priceCents?: number;
  readonly currency?: string;
  readonly discountPct?: number;
  readonly paymentMethods?: readonly string[];
  readonly delivery?: Delivery;
}

export type RegisterProduct = {
  readonly type: 'RegisterProduct';
  readonly data: {
    readonly productId: string;
    readonly sku: string;
    readonly name: string;
    readonly unit: string;
    readonly channels: readonly ChannelTerms[];
    readonly by: string;
    readonly now: Date;
  };
};
export type ChangeProduct = {
  readonly type: 'ChangeProduct';
  readonly data: {
    readonly productId: string;
    readonly name?: string;
    readonly channels?: readonly ChannelPatch[];
    readonly by: string;
    readonly now: Date;
  };
};
export type ProductCommand = RegisterProduct | ChangeProduct;

export interface ProductState {
  readonly exists: boolean;
  readonly productId: string;
  readonly sku: string;
  readonly name: string;
  readonly unit: string;
  readonly channels: Readonly<Record<string, ChannelTerms>>;
}

export const initialProductState: ProductState = {
  exists: false,
  productId: '',
  sku: '',
  name: '',
  unit: '',
  channels: {},
};

export function evolveProduct(state: ProductState, event: ProductEvent): ProductState {
  switch (event.type) {
    case 'sales.ProductRegistered': {
      const { productId, sku, name, unit, channels } = event.data;
      return {
        exists: true,
        productId,
        sku,
        name,
        unit,
        channels: Object.fromEntries(channels.map((c) => [c.channel, c])),
      };
    }
    case 'sales.ProductRenamed':
      return { ...state, name: event.data.name };
    case 'sales.ProductChannelAdded':
      return withChannel(state, event.data.terms);
    case 'sales.ProductPriceChanged': {
      const c = Object.hasOwn(state.channels, event.data.channel) ? state.channels[event.data.channel] : undefined;
      return c ? withChannel(state, { ...c, priceCents: event.data.priceCents, currency: event.data.currency }) : state;
    }
    case 'sales.ProductDiscountChanged': {
      const c = Object.hasOwn(state.channels, event.data.channel) ? state.channels[event.data.channel] : undefined;
      return c ? withChannel(state, { ...c, discountPct: event.data.discountPct }) : state;
    }
    case 'sales.ProductChannelTermsChanged': {
      const c = Object.hasOwn(state.channels, event.data.channel) ? state.channels[event.data.channel] : undefined;
      return c
        ? withChannel(state, { ...c, paymentMethods: event.data.paymentMethods, delivery: event.data.delivery })
        : state;
    }
    default:
      return unreachable(event, 'event');
  }
}

const withChannel = (state: ProductState, terms: ChannelTerms): ProductState => ({
  ...state,
  channels: { ...state.channels, [terms.channel]: terms },
});

export function decideProduct(command: ProductCommand, state: ProductState): ProductEvent[] {
  switch (command.type) {
    case 'RegisterProduct': {
      const { productId, sku, name, unit, channels, by, now } = command.data;
      if (state.exists) throw conflict(SalesErrorCode.PRODUCT_EXISTS, `product ${productId} already exists`);
      if (channels.length === 0) throw invalid('channels', 'must list at least one channel');
      uniqueChannels(
        channels.map((c) => c.channel),
        'channels',
      );
      return [
        {
          type: 'sales.ProductRegistered',
          data: { productId, sku, name, unit, channels: channels.map(normaliseTerms), by, at: now.toISOString() },
        },
      ];
    }
    case 'ChangeProduct': {
      const { productId, name, channels = [], by, now } = command.data;
      if (!state.exists) throw notFound(SalesErrorCode.PRODUCT_NOT_FOUND, `no product ${productId}`);
      uniqueChannels(
        channels.map((c) => c.channel),
        'channels',
      );
      const at = now.toISOString();
      const events: ProductEvent[] = [];
      if (name !== undefined && name !== state.name)
        events.push({ type: 'sales.ProductRenamed', data: { productId, name, by, at } });
      channels.forEach((patch, i) => events.push(...changeChannel(state, patch, i, by, at)));
      return events;
    }
    default:
      return unreachable(command, 'command');
  }
}

function changeChannel(
  state: ProductState,
  patch: ChannelPatch,
  index: number,
  by: string,
  at: string,
): ProductEvent[] {
  const { productId } = state;
  const current = Object.hasOwn(state.channels, patch.channel) ? state.channels[patch.channel] : undefined;
  if (!current) {
    // A channel not sold on yet: the patch must describe it whole.
    const missing = (['priceCents', 'currency', 'paymentMethods', 'delivery'] as const).filter(
      (k) => patch[k] === undefined,
    );
    if (missing.length) {
      throw validationError(
        SalesErrorCode.INVALID_PRODUCT,
        `channel ${patch.channel} is new: it needs ${missing.join(', ')}`,
        missing.map((k) => ({
          field: `channels.${index}.${k === 'priceCents' ? 'price' : k}`,
          rule: 'is required for a channel the product is not sold on yet',
        })),
      );
    }
    const terms = normaliseTerms({
      channel: patch.channel,
      priceCents: patch.priceCents!,
      currency: patch.currency!,
      paymentMethods: patch.paymentMethods!,
      delivery: patch.delivery!,
      discountPct: patch.discountPct ?? 0,
    });
    return [{ type: 'sales.ProductChannelAdded', data: { productId, terms, by, at } }];
  }
  const events: ProductEvent[] = [];
  const priceCents = patch.priceCents ?? current.priceCents;
  const currency = patch.currency ?? current.currency;
  if (priceCents !== current.priceCents || currency !== current.currency) {
    events.push({
      type: 'sales.ProductPriceChanged',
      data: { productId, channel: patch.channel, priceCents, currency, by, at },
    });
  }
  if (patch.discountPct !== undefined && patch.discountPct !== current.discountPct) {
    events.push({
      type: 'sales.ProductDiscountChanged',
      data: { productId, channel: patch.channel, discountPct: patch.discountPct, by, at },
    });
  }
  const paymentMethods = patch.paymentMethods ? [...new Set(patch.paymentMethods)] : current.paymentMethods;
  const delivery = patch.delivery ?? current.delivery;
  if (
    JSON.stringify(paymentMethods) !== JSON.stringify(current.paymentMethods) ||
    JSON.stringify(delivery) !== JSON.stringify(current.delivery)
  ) {
    events.push({
      type: 'sales.ProductChannelTermsChanged',
      data: {
        productId,
        channel: patch.channel,
        paymentMethods,
        delivery: { method: delivery.method, days: delivery.days },
        by,
        at,
      },
    });
  }
  return events;
}

function normaliseTerms(t: ChannelTerms): ChannelTerms {
  return {
    channel: t.channel,
    priceCents: t.priceCents,
    currency: t.currency,
    paymentMethods: [...new Set(t.paymentMethods)],
    discountPct: t.discountPct,
    delivery: { method: t.delivery.method, days: t.delivery.days },
  };
}

function uniqueChannels(names: readonly string[], field: string): void {
  const seen = new Set<string>();
  names.forEach((n, i) => {
    if (seen.has(n)) throw invalid(`${field}.${i}.channel`, `must be unique: ${n} is listed twice`);
    seen.add(n);
  });
}

const invalid = (field: string, rule: string) =>
  validationError(SalesErrorCode.INVALID_PRODUCT, `${field} ${rule}`, [{ field, rule }]);

/** The price one unit costs on a channel after its discount, in minor units. */
export function discountedCents(terms: Pick<ChannelTerms, 'priceCents' | 'discountPct'>): number {
  return Math.round((terms.priceCents * (100 - terms.discountPct)) / 100);
}

export const productDecider: Decider<ProductCommand, ProductEvent, ProductState> = {
  initialState: initialProductState,
  evolve: evolveProduct,
  decide: decideProduct,
};
