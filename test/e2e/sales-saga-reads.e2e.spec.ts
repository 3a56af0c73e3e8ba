import { startTestApp, type TestApp } from '../support/app';
import { customer, orderIn, placeOrder, product, CONFIRMED_TIMELINE } from '../support/sales';

/**
 * What the saga reads for an order placed while it runs: its own stream is new (no runner before
 * this one saw the order), so the first step is recorded at 'no_stream' without reading it first;
 * the append's expected revision is the check (a conflict reads and decides again).
 */
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp({ env: { SHIPPING_INTERVAL_MS: '3600000' } });
});
afterAll(async () => {
  await app.stop();
});

it("an order placed after the saga started is confirmed without a read of its saga's stream", async () => {
  const store = app.platform.store;
  const reads: string[] = [];
  const readStream = store.readStream.bind(store);
  store.readStream = ((streamId: string, ...rest: unknown[]) => {
    reads.push(streamId);
    return (readStream as (...a: unknown[]) => unknown)(streamId, ...rest);
  }) as typeof store.readStream;
  try {
    const c = await customer(app);
    const p = await product(app, 10);
    // A first order confirmed proves the runner's tenure began (begin() runs before its first read),
    // so the order below is placed after it, whatever the timing of the app's start.
    const first = await placeOrder(app, c, [{ productId: p, quantity: 1 }]);
    await orderIn(app, c, first.orderId, ['confirmed']);
    const { orderId } = await placeOrder(app, c, [{ productId: p, quantity: 1 }]);
    const order = await orderIn(app, c, orderId, ['confirmed']);
    expect(order.timeline.map((t) => t.step)).toEqual([...CONFIRMED_TIMELINE]);
    expect(reads.filter((s) => s === `order-saga-${orderId}`)).toEqual([]);
  } finally {
    store.readStream = readStream;
  }
});
