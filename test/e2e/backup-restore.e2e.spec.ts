import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, type RunningApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/platform/logger';
import type { HttpResult } from '../support/app';
import { eventually } from '../support/events';
import { pgTool, startCluster, type Cluster } from '../support/pg-cluster';
import { httpJson } from '../support/processes';
import { testRedisUrl } from '../support/services';

/**
 * Backup and restore as an operator does it: the app runs on PostgreSQL cluster A
 * (external DATABASE_URL), data is written and projected, `pg_dump -Fc` of A is
 * restored with `pg_restore` into a freshly initialised cluster B, and the app
 * starts on B with the same DATA_DIR (its secrets) and a fresh Redis namespace.
 * A has used many more transaction ids than B, as a production cluster has.
 * Read models must be intact, new writes must reach every read model (the
 * saga included), and a rebuild on B must give the same rows.
 */

type Auth = { authorization: string };
interface Running {
  readonly app: RunningApp;
  http(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResult>;
}

const password = 'a perfectly long passphrase 9';
const admin = { email: `ops-${randomUUID().slice(0, 8)}@example.test`, password: 'correct horse battery staple 42' };
const dataDir = mkdtempSync(join(tmpdir(), 'platform-restore-'));
const dumpFile = join(dataDir, 'platform.dump');
let a: Cluster | undefined;
let b: Cluster | undefined;
let onA: Running | undefined;
let onB: Running | undefined;

/** What the A side wrote, and how its read models looked before the dump. */
// Readings an hour old: TELEMETRY_RETENTION_DAYS keeps them (older raw rows are dropped at start).
const hourAgo = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
const at = (minutes: number) => new Date(hourAgo.getTime() + minutes * 60_000).toISOString();
const range = `from=${at(-60)}&to=${at(120)}`;

const written = {
  ada: { email: `ada-${randomUUID().slice(0, 8)}@example.test`, userId: '', auth: { authorization: '' } },
  owner: { auth: { authorization: '' } },
  deviceId: '',
  deviceSecret: '',
  productId: '',
  orderId: '',
  head: 0,
};
let viewsOnA: Record<string, unknown>;

async function start(cluster: Cluster, queuePrefix: string): Promise<Running> {
  const config = loadConfig({
    DATABASE_URL: cluster.url('platform'),
    REDIS_URL: testRedisUrl(),
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    QUEUE_PREFIX: queuePrefix,
    ADMIN_EMAIL: admin.email,
    ADMIN_PASSWORD: admin.password,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    MQTT_PORT: '0',
    SHIPPING_INTERVAL_MS: '3600000',
  });
  const app = await createApp(config, createLogger(config.LOG_LEVEL));
  return { app, http: (method, path, body, headers) => httpJson(app.url, method, path, body, headers) };
}

async function ok(r: Promise<HttpResult>, status: number, what: string): Promise<any> {
  const res = await r;
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function login(s: Running, email: string, pw: string): Promise<Auth> {
  const body = await ok(s.http('POST', '/auth/login', { email, password: pw }), 200, `login ${email}`);
  return { authorization: `Bearer ${body.accessToken as string}` };
}

/** Polls `check` until true; a timeout names `what` and the last thing `check` saw. */
async function until(
  what: string,
  check: (seen: (x: unknown) => void) => Promise<boolean>,
  timeoutMs = 90_000,
): Promise<void> {
  let last: unknown;
  try {
    await eventually(
      () =>
        check((x) => {
          last = x;
        }),
      what,
      timeoutMs,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message} (last seen: ${JSON.stringify(last)?.slice(0, 2000)})`);
  }
}

/** Waits until every projection has applied every event of its types, and the saga has settled the orders. */
async function settled(s: Running, adminAuth: Auth, orders: string[]): Promise<void> {
  await until('projections caught up and orders confirmed or shipped', async (seen) => {
    const p = await s.http('GET', '/admin/projections', undefined, adminAuth);
    seen(p.body);
    if (p.status !== 200 || !(p.body.projections as { lagEvents: number }[]).every((x) => x.lagEvents === 0))
      return false;
    for (const id of orders) {
      const o = await s.http('GET', `/orders/${id}`, undefined, adminAuth);
      seen(o.body);
      if (o.status !== 200 || !['confirmed', 'shipped'].includes(o.body.status as string)) return false;
    }
    return true;
  });
}

/** The read models as clients see them. */
async function views(
  s: Running,
  adminAuth: Auth,
  extra: { userIds: string[]; productIds: string[]; orderIds: string[] },
): Promise<Record<string, unknown>> {
  const get = (path: string, auth: Auth) => ok(s.http('GET', path, undefined, auth), 200, `GET ${path}`);
  const out: Record<string, unknown> = {
    users: await get('/admin/users?limit=100', adminAuth),
    devices: await get('/devices?limit=100', adminAuth),
    catalogue: await get('/products?channel=web&limit=100', adminAuth),
    orders: await get('/orders?limit=100', adminAuth),
    metrics: await get(`/devices/${written.deviceId}/metrics`, adminAuth),
    history: await get(`/devices/${written.deviceId}/metrics/temp?${range}`, adminAuth),
    rollup: await get(`/devices/${written.deviceId}/metrics/temp?${range}&bucket=1h&agg=avg`, adminAuth),
  };
  for (const id of extra.userIds) out[`user ${id}`] = await get(`/admin/users/${id}`, adminAuth);
  for (const id of extra.productIds) out[`stock ${id}`] = await get(`/products/${id}/stock`, adminAuth);
  for (const id of extra.orderIds) out[`order ${id}`] = await get(`/orders/${id}`, adminAuth);
  return out;
}

beforeAll(async () => {
  a = await startCluster('a');
  // A long-lived production cluster has used far more transaction ids than a fresh one.
  await a.query(
    'postgres',
    'DO $$ BEGIN FOR i IN 1..30000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$',
  );
  await a.query('postgres', 'CREATE DATABASE platform');
  onA = await start(a, `restore-a-${randomUUID().slice(0, 8)}`);
  const s = onA;
  const adminAuth = await login(s, admin.email, admin.password);

  const ada = await ok(
    s.http('POST', '/auth/signup', { email: written.ada.email, password, name: 'Ada' }),
    201,
    'signup',
  );
  written.ada.userId = ada.userId;
  written.ada.auth = await login(s, written.ada.email, password);
  const ownerEmail = `owner-${randomUUID().slice(0, 8)}@example.test`;
  await ok(s.http('POST', '/auth/signup', { email: ownerEmail, password, name: 'Owner' }), 201, 'signup owner');
  written.owner.auth = await login(s, ownerEmail, password);
  const dev = await ok(s.http('POST', '/devices', { name: 'press-7' }, written.owner.auth), 201, 'register device');
  written.deviceId = dev.deviceId;
  written.deviceSecret = dev.secret;
  await ok(
    s.http(
      'POST',
      `/devices/${written.deviceId}/readings`,
      [
        { metric: 'temp', value: 21.5, ts: at(0) },
        { metric: 'temp', value: 22.5, ts: at(30) },
      ],
      written.owner.auth,
    ),
    202,
    'readings',
  );
  const p = await ok(
    s.http(
      'POST',
      '/products',
      {
        sku: `KB-${randomUUID().slice(0, 8)}`,
        name: 'Keyboard',
        unit: 'piece',
        channels: [
          {
            channel: 'web',
            price: 49.9,
            currency: 'EUR',
            paymentMethods: ['card'],
            delivery: { method: 'parcel', days: 3 },
          },
        ],
      },
      adminAuth,
    ),
    201,
    'register product',
  );
  written.productId = p.productId;
  await ok(
    s.http('POST', `/products/${written.productId}/stock-receipts`, { quantity: 5, reference: 'PO-1' }, adminAuth),
    201,
    'stock',
  );
  const o = await ok(
    s.http(
      'POST',
      '/orders',
      { channel: 'web', paymentMethod: 'card', items: [{ productId: written.productId, quantity: 2 }] },
      written.ada.auth,
    ),
    202,
    'order',
  );
  written.orderId = o.orderId;
  await settled(s, adminAuth, [written.orderId]);
  // Shipped before the dump, so B's first shipping batch (at start) finds nothing to change.
  await ok(s.http('POST', '/admin/shipping/run', undefined, adminAuth), 200, 'shipping');
  await until('the order shipped', async (seen) => {
    const r = await s.http('GET', `/orders/${written.orderId}`, undefined, adminAuth);
    seen(r.body);
    return r.body?.status === 'shipped';
  });
  await settled(s, adminAuth, [written.orderId]);
  viewsOnA = await views(s, adminAuth, {
    userIds: [written.ada.userId],
    productIds: [written.productId],
    orderIds: [written.orderId],
  });
  await onA.app.close();
  onA = undefined;
  written.head = Number(
    (await a.query<{ p: string }>('platform', 'SELECT max(position)::text AS p FROM events'))[0]!.p,
  );

  // Back up A, restore into a fresh cluster B: the standard tools, default options.
  await pgTool('pg_dump', [
    '-Fc',
    '-h',
    '127.0.0.1',
    '-p',
    String(a.port),
    '-U',
    'postgres',
    '-d',
    'platform',
    '-f',
    dumpFile,
  ]);
  b = await startCluster('b');
  await b.query('postgres', 'CREATE DATABASE platform');
  await pgTool('pg_restore', [
    '--exit-on-error',
    '-h',
    '127.0.0.1',
    '-p',
    String(b.port),
    '-U',
    'postgres',
    '-d',
    'platform',
    dumpFile,
  ]);
  // The case this test is about: B's next transaction would get a position below A's events.
  const next = await b.query<{ x: string }>('platform', 'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x');
  expect(Number(next[0]!.x) * 65536).toBeLessThan(written.head);

  onB = await start(b, `restore-b-${randomUUID().slice(0, 8)}`);
}, 600_000);

afterAll(async () => {
  await onA?.app.close().catch(() => undefined);
  await onB?.app.close().catch(() => undefined);
  await a?.stop();
  await b?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('pg_dump of cluster A, pg_restore into a fresh cluster B, the app started on B', () => {
  it("(1) with no new writes: every read model is as it was on A, and A's tokens still work (the keys are in DATA_DIR)", async () => {
    const s = onB!;
    const health = await s.http('GET', '/health');
    expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
    const me = await ok(s.http('GET', '/users/me', undefined, written.ada.auth), 200, 'users/me with a token from A');
    expect(me.userId).toBe(written.ada.userId);
    const adminAuth = await login(s, admin.email, admin.password);
    expect(
      await views(s, adminAuth, {
        userIds: [written.ada.userId],
        productIds: [written.productId],
        orderIds: [written.orderId],
      }),
    ).toEqual(viewsOnA);
    // The start on B noticed where the store came from and moved its positions on, once.
    const [offset] = await b!.query<{
      xid_offset: string;
      system_identifier: string;
      own: string;
      misaligned: boolean;
    }>(
      'platform',
      'SELECT o.xid_offset::text, o.system_identifier, (SELECT system_identifier::text FROM pg_control_system()) AS own, es_positions_misaligned() AS misaligned FROM es_position_offset o',
    );
    expect(Number(offset!.xid_offset)).toBeGreaterThan(0);
    expect(offset).toMatchObject({ system_identifier: offset!.own, misaligned: false });
  });

  it('(2) new writes (sign-up, device, reading, product, stock, order) get positions after every restored one and reach every read model and the saga', async () => {
    const s = onB!;
    const adminAuth = await login(s, admin.email, admin.password);
    const email = `grace-${randomUUID().slice(0, 8)}@example.test`;
    const signup = await ok(s.http('POST', '/auth/signup', { email, password, name: 'Grace' }), 201, 'signup on B');
    const users = await ok(
      s.http('GET', `/admin/users?q=${encodeURIComponent(email)}&minPosition=${signup.position}`, undefined, adminAuth),
      200,
      'users',
    );
    expect(users.items.map((u: { userId: string }) => u.userId)).toEqual([signup.userId]);
    expect(signup.position).toBeGreaterThan(written.head);

    const grace = await login(s, email, password);
    const dev = await ok(s.http('POST', '/devices', { name: 'press-8' }, grace), 201, 'device on B');
    const devices = await ok(s.http('GET', `/devices?minPosition=${dev.position}`, undefined, grace), 200, 'devices');
    expect(devices.items.map((d: { deviceId: string }) => d.deviceId)).toEqual([dev.deviceId]);
    const reading = await ok(
      s.http(
        'POST',
        `/devices/${written.deviceId}/readings`,
        { metric: 'temp', value: 30, ts: at(45) },
        written.owner.auth,
      ),
      202,
      'reading on B',
    );
    const latest = await ok(
      s.http(
        'GET',
        `/devices/${written.deviceId}/metrics/temp/latest?minPosition=${reading.position}`,
        undefined,
        written.owner.auth,
      ),
      200,
      'latest',
    );
    expect(latest.value).toBe(30);

    const p = await ok(
      s.http(
        'POST',
        '/products',
        {
          sku: `MS-${randomUUID().slice(0, 8)}`,
          name: 'Mouse',
          unit: 'piece',
          channels: [
            {
              channel: 'web',
              price: 19.9,
              currency: 'EUR',
              paymentMethods: ['card'],
              delivery: { method: 'parcel', days: 2 },
            },
          ],
        },
        adminAuth,
      ),
      201,
      'product on B',
    );
    const receipt = await ok(
      s.http('POST', `/products/${p.productId}/stock-receipts`, { quantity: 3, reference: 'PO-2' }, adminAuth),
      201,
      'stock on B',
    );
    const catalogue = await ok(
      s.http('GET', `/products?channel=web&limit=100&minPosition=${receipt.position}`, undefined, grace),
      200,
      'catalogue',
    );
    expect(catalogue.items.map((i: { productId: string }) => i.productId)).toEqual(
      expect.arrayContaining([written.productId, p.productId]),
    );
    expect(catalogue.items.find((i: { productId: string }) => i.productId === p.productId)).toMatchObject({
      available: 3,
    });

    // The saga's checkpoint came from A too: orders on B (new and restored product) must still be fulfilled.
    const o1 = await ok(
      s.http(
        'POST',
        '/orders',
        { channel: 'web', paymentMethod: 'card', items: [{ productId: p.productId, quantity: 1 }] },
        grace,
      ),
      202,
      'order on B',
    );
    const o2 = await ok(
      s.http(
        'POST',
        '/orders',
        { channel: 'web', paymentMethod: 'card', items: [{ productId: written.productId, quantity: 3 }] },
        written.ada.auth,
      ),
      202,
      'order 2 on B',
    );
    await settled(s, adminAuth, [written.orderId, o1.orderId, o2.orderId]);
    const stock = await ok(s.http('GET', `/products/${written.productId}/stock`, undefined, adminAuth), 200, 'stock');
    expect(stock).toMatchObject({ available: 0, shipped: 2 });
    const list = await ok(s.http('GET', '/admin/users?limit=100', undefined, adminAuth), 200, 'all users');
    expect(list.items.map((u: { userId: string }) => u.userId)).toEqual(
      expect.arrayContaining([written.ada.userId, signup.userId]),
    );
  });

  it('(3) after every projection is rebuilt on B, the same rows', async () => {
    const s = onB!;
    const adminAuth = await login(s, admin.email, admin.password);
    const users = await ok(s.http('GET', '/admin/users?limit=100', undefined, adminAuth), 200, 'users');
    const orders = await ok(s.http('GET', '/orders?limit=100', undefined, adminAuth), 200, 'orders');
    const catalogue = await ok(
      s.http('GET', '/products?channel=web&limit=100', undefined, adminAuth),
      200,
      'catalogue',
    );
    const ids = {
      userIds: users.items.map((u: { userId: string }) => u.userId) as string[],
      productIds: catalogue.items.map((i: { productId: string }) => i.productId) as string[],
      orderIds: orders.items.map((o: { orderId: string }) => o.orderId) as string[],
    };
    expect(ids.orderIds).toHaveLength(3);
    const before = await views(s, adminAuth, ids);

    const { projections } = await ok(s.http('GET', '/admin/projections', undefined, adminAuth), 200, 'projections');
    for (const { name } of projections as { name: string }[]) {
      const { jobId } = await ok(
        s.http('POST', `/admin/projections/${name}/rebuild`, undefined, adminAuth),
        202,
        `rebuild ${name}`,
      );
      await until(
        `rebuild of ${name}`,
        async (seen) => {
          const j = await s.http('GET', `/admin/jobs/${jobId as string}`, undefined, adminAuth);
          seen(j.body);
          if (j.body?.state === 'failed') throw new Error(`rebuild of ${name} failed: ${JSON.stringify(j.body)}`);
          return j.body?.state === 'completed';
        },
        120_000,
      );
    }
    expect(await views(s, adminAuth, ids)).toEqual(before);
  });
});
