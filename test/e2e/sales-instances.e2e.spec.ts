import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADVISORY_LOCKS } from '../../src/platform/locks';
import { eventually } from '../support/events';
import { MAIN, killAllApps, login, signUp, spawnApp, type AppProcess } from '../support/processes';
import { createTestDatabase, testRedisUrl, type TestDatabase } from '../support/services';

/**
 * Two instances of the real app (dist/src/main.js) on one database, one Redis
 * and one queue prefix (issue 4: "the shipping batch moves confirmed orders to
 * shipped exactly once across two app instances"). Both run the shipping
 * worker (a BullMQ job scheduler every 200 ms) and, on top, are told to run a
 * batch at the same moment, again and again; only one runs the saga (advisory
 * lock), yet orders placed through either complete, and when that one dies the
 * other takes over.
 */

const ORDERS = 30;
const STOCK = [60, 60, 60];
const PASSWORD = 'a perfectly long passphrase 9';
const LOCK_CLASS = ADVISORY_LOCKS.sagaRunner;
const SAGA_ACTIVE = 'saga order-fulfilment: runner active in this process';
const SHIPPED_LOG = 'shipping batch dispatched orders';

let db: TestDatabase;
const dataDir = mkdtempSync(join(tmpdir(), 'sales-instances-'));
const admin = { email: `admin-${randomUUID().slice(0, 8)}@example.test`, password: 'correct horse battery staple 42' };

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx tsc -p tsconfig.json)`);
  db = await createTestDatabase('salesinst');
});

afterAll(async () => {
  await killAllApps();
  await db?.drop();
});

/** What an instance's own log says it shipped (every batch that dispatched something logs how many). */
const loggedShipped = (app: AppProcess) =>
  app.kept
    .map((l) => JSON.parse(l) as { msg?: string; shipped?: number })
    .filter((l) => l.msg === SHIPPED_LOG)
    .reduce((n, l) => n + (l.shipped ?? 0), 0);
const sagaActive = (app: AppProcess) => app.kept.some((l) => l.includes(SAGA_ACTIVE));

async function sagaLockHolders(): Promise<number> {
  const r = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
      WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.granted AND d.datname = current_database()`,
    [LOCK_CLASS],
  );
  return r.rows[0]!.n;
}

describe('sales across two app instances', () => {
  it('ships every confirmed order exactly once; one saga runner is active, orders placed through either instance complete', async () => {
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl(),
      DATA_DIR: dataDir,
      QUEUE_PREFIX: `inst-${db.name}`,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
      LOG_LEVEL: 'info',
      MQTT_PORT: '0',
      SHIPPING_INTERVAL_MS: '200',
    };
    const keep = new RegExp(`${SAGA_ACTIVE}|${SHIPPED_LOG}`);
    // One after the other: the second reads the signing keys the first wrote to DATA_DIR.
    const a = await spawnApp('instance-a', env, { keep });
    await a.ready();
    const b = await spawnApp('instance-b', env, { keep });
    await b.ready();
    const instances = [a, b];

    const adminAuth = await login(a, admin.email, admin.password);
    const customers = [
      await signUp(a, `inst-a-${randomUUID().slice(0, 8)}@example.test`, PASSWORD),
      await signUp(b, `inst-b-${randomUUID().slice(0, 8)}@example.test`, PASSWORD),
    ];
    const products: string[] = [];
    for (const quantity of STOCK) {
      const sku = `INST-${randomUUID().slice(0, 8)}`;
      const channels = [
        {
          channel: 'web',
          price: 5,
          currency: 'EUR',
          paymentMethods: ['card'],
          delivery: { method: 'parcel', days: 1 },
        },
      ];
      const r = await a.http(
        'POST',
        '/products',
        { sku, name: `Instances ${sku}`, unit: 'piece', channels },
        adminAuth,
      );
      expect(r.status).toBe(201);
      products.push(r.body.productId as string);
      expect(
        (
          await b.http(
            'POST',
            `/products/${r.body.productId as string}/stock-receipts`,
            { quantity, reference: 'initial' },
            adminAuth,
          )
        ).status,
      ).toBe(201);
    }

    // Exactly one runs the saga; the other stands by.
    await eventually(() => instances.filter(sagaActive).length === 1, 'one instance to run the saga');
    expect(await sagaLockHolders()).toBe(1);
    const active = sagaActive(a) ? a : b;
    const standby = active === a ? b : a;

    const expectedShipped = new Map(products.map((p) => [p, 0]));
    const place = async (via: AppProcess, i: number) => {
      const items = [{ productId: products[i % products.length]!, quantity: 1 + (i % 2) }];
      if (i % 3 === 0) items.push({ productId: products[(i + 1) % products.length]!, quantity: 1 });
      const r = await via.http('POST', '/orders', { channel: 'web', paymentMethod: 'card', items }, customers[i % 2]);
      expect(r.status).toBe(202);
      for (const item of items)
        expectedShipped.set(item.productId, expectedShipped.get(item.productId)! + item.quantity);
      return r.body.orderId as string;
    };
    const shippedCount = async (ids: readonly string[]) => {
      const r = await db.pool.query<{ n: number }>(
        `SELECT count(DISTINCT stream_id)::int AS n FROM events WHERE type = 'sales.ShipmentDispatched' AND stream_id = ANY($1)`,
        [ids.map((id) => `order-${id}`)],
      );
      return r.rows[0]!.n;
    };

    // Phase 1: orders trickle in through both instances; only the scheduled batch ships them.
    const trickled: string[] = [];
    for (let i = 0; i < ORDERS / 3; i++) {
      trickled.push(await place(instances[i % 2]!, i));
      await new Promise((r) => setTimeout(r, 150));
    }
    await eventually(
      async () => (await shippedCount(trickled)) === trickled.length,
      'the scheduled batch to ship the first orders',
      60_000,
    );
    // Which instance's worker takes each scheduled run is BullMQ's choice (one of them, maybe the same
    // one every time): what holds is that the scheduled batches alone shipped each trickled order once.
    await eventually(
      () => instances.map(loggedShipped).reduce((x, y) => x + y, 0) >= trickled.length,
      'the scheduled batches to log what they shipped',
    );
    const scheduledOnly = instances.map(loggedShipped);

    // Phase 2: many orders at once, and both instances told to run batches at the same moment until all shipped.
    const manual = new Map<AppProcess, number>(instances.map((x) => [x, 0]));
    let batchesRun = 0;
    const burst = Promise.all(
      Array.from({ length: ORDERS - trickled.length }, (_, i) => place(instances[i % 2]!, trickled.length + i)),
    );
    let burstIds: string[] | undefined;
    void burst.then((ids) => {
      burstIds = ids;
    });
    await eventually(
      async () => {
        const runs = await Promise.all(
          [a, b, a, b].map(async (x) => {
            const r = await x.http('POST', '/admin/shipping/run', undefined, adminAuth);
            expect(r.status).toBe(200);
            manual.set(x, manual.get(x)! + (r.body.shipped as number));
            return r;
          }),
        );
        batchesRun += runs.length;
        return burstIds !== undefined && (await shippedCount(burstIds)) === burstIds.length;
      },
      'every order shipped',
      60_000,
    );
    const orderIds = [...trickled, ...(await burst)];
    expect(orderIds).toHaveLength(ORDERS);

    // Exactly once, by the store: one ShipmentDispatched per order, one StockShipped per line.
    const dispatched = await db.pool.query<{ stream_id: string; n: number }>(
      `SELECT stream_id, count(*)::int AS n FROM events WHERE type = 'sales.ShipmentDispatched' GROUP BY stream_id`,
    );
    expect(dispatched.rows).toHaveLength(ORDERS);
    expect(dispatched.rows.filter((r) => r.n !== 1)).toEqual([]);
    const lines = (
      await db.pool.query<{ n: number }>(
        `SELECT sum(jsonb_array_length(data->'items'))::int AS n FROM events WHERE type = 'sales.OrderPlaced'`,
      )
    ).rows[0]!.n;
    const stockShipped = async () =>
      (
        await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM events WHERE type = 'sales.StockShipped' GROUP BY data->>'orderId', data->>'productId'`,
        )
      ).rows;
    await eventually(
      async () => (await stockShipped()).length === lines,
      'the saga to move stock for every shipped line',
    );
    const perLine = await stockShipped();
    expect(perLine).toHaveLength(lines);
    expect(perLine.filter((r) => r.n !== 1)).toEqual([]);

    // ... and by the batches' own accounts: each dispatch was counted by exactly one batch, on one instance.
    await eventually(
      () => instances.map(loggedShipped).reduce((x, y) => x + y, 0) >= ORDERS,
      'the batches to log what they shipped',
    );
    const logged = instances.map(loggedShipped);
    expect(instances.map(loggedShipped).reduce((x, y) => x + y, 0)).toBe(ORDERS);
    for (const x of instances) expect(manual.get(x)!).toBeLessThanOrEqual(loggedShipped(x));
    // The scheduled batches shipped the trickled orders, once each; both instances ran the batches asked for over HTTP.
    expect(scheduledOnly.reduce((x, y) => x + y, 0)).toBe(trickled.length);
    expect(batchesRun).toBeGreaterThanOrEqual(4);

    // The stock figures: shipped out of reserved, on hand down by the same.
    for (const [productId, shipped] of expectedShipped) {
      const expected = {
        onHand: STOCK[products.indexOf(productId)]! - shipped,
        reserved: 0,
        available: STOCK[products.indexOf(productId)]! - shipped,
        shipped,
      };
      for (const via of instances) {
        let seen: Record<string, unknown> = {};
        await eventually(async () => {
          const r = await via.http('GET', `/products/${productId}/stock`, undefined, adminAuth);
          seen = {
            onHand: r.body.onHand,
            reserved: r.body.reserved,
            available: r.body.available,
            shipped: r.body.shipped,
          };
          return JSON.stringify(seen) === JSON.stringify(expected);
        }, `stock of ${productId} via ${via.name}`).catch(() => undefined);
        expect(seen).toEqual(expected);
      }
    }
    const shippedView = await standby.http('GET', '/orders?status=shipped&limit=200', undefined, adminAuth);
    expect((shippedView.body.items as { orderId: string }[]).map((o) => o.orderId).sort()).toEqual(
      [...orderIds].sort(),
    );

    // Still one saga runner; when it dies, the standby takes over and new orders complete.
    expect(instances.filter(sagaActive)).toEqual([active]);
    expect(await sagaLockHolders()).toBe(1);
    await active.kill();
    const late = [await place(standby, ORDERS), await place(standby, ORDERS + 1)];
    await eventually(() => sagaActive(standby), 'the standby to take the saga over');
    await eventually(
      async () => (await shippedCount(late)) === late.length,
      'orders placed after the take-over to ship',
      60_000,
    );
    expect(await sagaLockHolders()).toBe(1);
    const again = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM events WHERE type = 'sales.ShipmentDispatched' GROUP BY stream_id HAVING count(*) > 1`,
    );
    expect(again.rows).toEqual([]);

    process.stdout.write(
      `sales instances: ${ORDERS} orders; shipped per instance by its log ${JSON.stringify(logged)} ` +
        `(scheduled batches while trickling ${JSON.stringify(scheduledOnly)}, asked over HTTP ${JSON.stringify(instances.map((x) => manual.get(x)))}); ` +
        `${batchesRun} batches asked for; saga ran on ${active.name}, then ${standby.name}\n`,
    );
    expect((await standby.stop()).code).toBe(0);
  });
});
