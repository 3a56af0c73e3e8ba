import { given } from '../shared/given-when-then';
import type { ChannelTerms, ProductEvent } from './product.events';
import { discountedCents, productDecider } from './product.decider';

const productId = '22222222-2222-4222-8222-222222222222';
const now = new Date('2026-11-23T10:00:00.000Z');
const at = now.toISOString();
const web: ChannelTerms = {
  channel: 'web',
  priceCents: 1000,
  currency: 'EUR',
  paymentMethods: ['card'],
  discountPct: 0,
  delivery: { method: 'parcel', days: 3 },
};
const registered: ProductEvent = {
  type: 'sales.ProductRegistered',
  data: { productId, sku: 'KB-1', name: 'Keyboard', unit: 'piece', channels: [web], by: 'admin', at },
};
const change = (data: Record<string, unknown>) => ({
  type: 'ChangeProduct' as const,
  data: { productId, by: 'admin', now, ...data },
});

describe('product decider', () => {
  it('registers a product with its channels', () => {
    given(productDecider, [])
      .when({
        type: 'RegisterProduct',
        data: { productId, sku: 'KB-1', name: 'Keyboard', unit: 'piece', channels: [web], by: 'admin', now },
      })
      .then([registered]);
  });

  it('a channel listed twice is refused, naming it', () => {
    given(productDecider, [])
      .when({
        type: 'RegisterProduct',
        data: { productId, sku: 'KB-1', name: 'K', unit: 'piece', channels: [web, web], by: 'admin', now },
      })
      .thenThrows('SALES.INVALID_PRODUCT', { kind: 'validation', fields: ['channels.1.channel'] });
  });

  it('registering twice is a conflict; changing an unknown product is not found', () => {
    given(productDecider, [registered])
      .when({
        type: 'RegisterProduct',
        data: { productId, sku: 'KB-1', name: 'K', unit: 'piece', channels: [web], by: 'admin', now },
      })
      .thenThrows('SALES.PRODUCT_EXISTS', { kind: 'conflict' });
    given(productDecider, [])
      .when(change({ name: 'X' }))
      .thenThrows('SALES.PRODUCT_NOT_FOUND', { kind: 'not_found' });
  });

  it('changes are events: rename, price, discount, terms; an unchanged value emits nothing', () => {
    given(productDecider, [registered])
      .when(change({ name: 'Keyboard', channels: [{ channel: 'web', priceCents: 1000 }] }))
      .thenNothing();
    given(productDecider, [registered])
      .when(
        change({
          name: 'Board',
          channels: [{ channel: 'web', priceCents: 1200, discountPct: 10, delivery: { method: 'courier', days: 1 } }],
        }),
      )
      .then([
        { type: 'sales.ProductRenamed', data: { productId, name: 'Board', by: 'admin', at } },
        {
          type: 'sales.ProductPriceChanged',
          data: { productId, channel: 'web', priceCents: 1200, currency: 'EUR', by: 'admin', at },
        },
        { type: 'sales.ProductDiscountChanged', data: { productId, channel: 'web', discountPct: 10, by: 'admin', at } },
        {
          type: 'sales.ProductChannelTermsChanged',
          data: {
            productId,
            channel: 'web',
            paymentMethods: ['card'],
            delivery: { method: 'courier', days: 1 },
            by: 'admin',
            at,
          },
        },
      ]);
  });

  it('a new channel must be described whole; then it is added', () => {
    given(productDecider, [registered])
      .when(change({ channels: [{ channel: 'kiosk', priceCents: 900 }] }))
      .thenThrows('SALES.INVALID_PRODUCT', {
        fields: ['channels.0.currency', 'channels.0.paymentMethods', 'channels.0.delivery'],
      });
    const kiosk = {
      channel: 'kiosk',
      priceCents: 900,
      currency: 'EUR',
      paymentMethods: ['cash'],
      delivery: { method: 'pickup', days: 0 },
    };
    given(productDecider, [registered])
      .when(change({ channels: [kiosk] }))
      .then([
        {
          type: 'sales.ProductChannelAdded',
          data: { productId, terms: { ...kiosk, discountPct: 0 }, by: 'admin', at },
        },
      ]);
  });

  it('the discounted price rounds to the cent', () => {
    expect(discountedCents({ priceCents: 999, discountPct: 15 })).toBe(849);
    expect(discountedCents({ priceCents: 1000, discountPct: 100 })).toBe(0);
  });
});
