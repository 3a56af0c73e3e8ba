import { randomUUID } from 'node:crypto';
import type { TestApp } from './app';
import { eventually } from './events';

/** Sales flows as a client drives them: customers, products with stock, orders waited on until the saga settles them. */

export const FINAL_STATUSES = ['confirmed', 'shipped', 'rejected', 'cancelled'] as const;
/** The timeline of an order the saga confirmed without compensation, step by step. */
export const CONFIRMED_TIMELINE = [
  'placed',
  'stock-reserved',
  'reserved',
  'payment-requested',
  'payment-captured',
  'paid',
  'confirmed',
] as const;
const password = 'a perfectly long passphrase 9';

export async function customer(app: TestApp): Promise<{ userId: string; authorization: string }> {
  const email = `c-${randomUUID().slice(0, 12)}@example.test`;
  const r = await app.http('POST', '/auth/signup', { email, password, name: 'Customer' });
  if (r.status !== 201) throw new Error(`signup failed: ${r.status} ${JSON.stringify(r.body)}`);
  const { authorization } = await app.login(email, password);
  return { userId: r.body.userId as string, authorization };
}

export const webChannel = (over: Record<string, unknown> = {}) => ({
  channel: 'web',
  price: 10,
  currency: 'EUR',
  paymentMethods: ['card', 'card-declined', 'card-no-response'],
  delivery: { method: 'parcel', days: 3 },
  ...over,
});

/** Registers a product (admin) and receives `stock` units; returns its id. */
export async function product(app: TestApp, stock: number, channels: unknown[] = [webChannel()]): Promise<string> {
  const admin = await app.adminAuth();
  const sku = `SKU-${randomUUID().slice(0, 12)}`;
  const r = await app.http('POST', '/products', { sku, name: `Widget ${sku}`, unit: 'piece', channels }, admin);
  if (r.status !== 201) throw new Error(`register product failed: ${r.status} ${JSON.stringify(r.body)}`);
  const productId = r.body.productId as string;
  if (stock > 0) {
    const s = await app.http(
      'POST',
      `/products/${productId}/stock-receipts`,
      { quantity: stock, reference: 'initial' },
      admin,
    );
    if (s.status !== 201) throw new Error(`stock receipt failed: ${s.status} ${JSON.stringify(s.body)}`);
  }
  return productId;
}

export async function placeOrder(
  app: TestApp,
  auth: { authorization: string },
  items: { productId: string; quantity: number }[],
  paymentMethod = 'card',
  channel = 'web',
) {
  const r = await app.http('POST', '/orders', { channel, paymentMethod, items }, auth);
  if (r.status !== 202) throw new Error(`place order failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as { orderId: string; position: number };
}

/** The GET /orders/:id body, loosely typed for assertions. */
export type OrderBody = Record<string, any> & {
  status: string;
  timeline: { step: string; compensation: boolean; reason: string | null; detail: any }[];
};

/** Polls GET /orders/:id until the order is in one of `statuses` (default: any final one) and the timeline shows `step` when given. */
export async function orderIn(
  app: TestApp,
  auth: { authorization: string },
  orderId: string,
  statuses: readonly string[] = FINAL_STATUSES,
  step?: string,
) {
  let last: any;
  await eventually(
    async () => {
      const r = await app.http('GET', `/orders/${orderId}`, undefined, auth);
      last = r.body as unknown;
      const body = r.body as OrderBody;
      return (
        r.status === 200 && statuses.includes(body.status) && (!step || body.timeline.some((t) => t.step === step))
      );
    },
    `order ${orderId} in ${statuses.join('|')}${step ? ` with step ${step}` : ''} (last: ${JSON.stringify(last)?.slice(0, 400)})`,
    60_000,
  );
  return last as OrderBody;
}

export async function stockOf(app: TestApp, productId: string) {
  const r = await app.http('GET', `/products/${productId}/stock`, undefined, await app.adminAuth());
  if (r.status !== 200) throw new Error(`stock failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as {
    onHand: number;
    reserved: number;
    available: number;
    shipped: number;
    movements: { kind: string; quantity: number; orderId: string | null }[];
  };
}

/** Waits until the stock read model shows these figures (the catalogue projection may trail the orders one), then asserts them. */
export async function stockReaches(
  app: TestApp,
  productId: string,
  expected: Partial<Record<'onHand' | 'reserved' | 'available' | 'shipped', number>>,
) {
  let last: Awaited<ReturnType<typeof stockOf>> | undefined;
  try {
    await eventually(
      async () => {
        last = await stockOf(app, productId);
        return Object.entries(expected).every(([k, v]) => last![k as keyof typeof expected] === v);
      },
      `stock of ${productId} at ${JSON.stringify(expected)}`,
      30_000,
    );
  } finally {
    expect(last).toMatchObject(expected);
  }
}
