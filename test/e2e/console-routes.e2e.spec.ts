import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { storeDeadLetter } from '../../src/telemetry/dead-letters';
import { startTestApp, type TestApp } from '../support/app';
import { testEvent } from '../support/events';
import { customer, orderIn, placeOrder, product } from '../support/sales';

/**
 * The query routes the operator console reads that no other route gave:
 * the event explorer (admins), an admin's filters by customer, owner and
 * device. Limits and rules are checked before any query runs; a user never
 * reads beyond their own.
 */
const ROOT = join(__dirname, '../..');
let app: TestApp;
let admin: { authorization: string };
let user: { userId: string; authorization: string };

beforeAll(async () => {
  // Built by scripts/setup.sh (npm test); a bare `npx jest` of this file builds it here.
  if (!existsSync(join(ROOT, 'dist/console/index.html')))
    execFileSync('node', [join(ROOT, 'scripts/build-console.mjs')], { stdio: 'inherit' });
  app = await startTestApp({ env: { SHIPPING_INTERVAL_MS: '3600000' } });
  admin = await app.adminAuth();
  user = await customer(app);
});
afterAll(async () => {
  await app.stop();
});

describe('event explorer', () => {
  it('follows causation both ways and the correlation, for admins only', async () => {
    const correlationId = randomUUID();
    const cause = testEvent('explorer.Cause', { n: 1 });
    const meta = { correlationId, causationId: 'request:1', actor: 'system:test' };
    const stream = `explorer-${randomUUID()}`;
    await app.platform.store.append(stream, [{ ...cause, metadata: meta }], 'no_stream');
    const effect = { ...testEvent('explorer.Effect'), metadata: { ...meta, causationId: cause.id } };
    const unrelated = testEvent('explorer.Unrelated');
    await app.platform.store.append(stream, [effect, unrelated], 0);

    const c = await app.http('GET', `/admin/events/${cause.id}`, undefined, admin);
    expect(c.status).toBe(200);
    expect(c.body.event).toMatchObject({ id: cause.id, type: 'explorer.Cause', streamId: stream, revision: 0 });
    expect(c.body.causedBy).toBeNull(); // a request, not an event
    expect(c.body.caused.map((e: { id: string }) => e.id)).toEqual([effect.id]);
    expect(c.body.correlated.map((e: { id: string }) => e.id)).toEqual([cause.id, effect.id]);
    const e = await app.http('GET', `/admin/events/${effect.id}`, undefined, admin);
    expect(e.body.causedBy).toMatchObject({ id: cause.id });
    expect(e.body.caused).toEqual([]);

    const s = await app.http('GET', `/admin/streams/${stream}/events?from=1&limit=1`, undefined, admin);
    expect(s.status).toBe(200);
    expect(s.body.events.map((x: { id: string }) => x.id)).toEqual([effect.id]);

    // $all, newest first by pages: the newest page ends at the newest event; `before` pages back.
    const newest = await app.http('GET', '/admin/events?limit=2', undefined, admin);
    expect(newest.body.events.map((x: { id: string }) => x.id)).toEqual([effect.id, unrelated.id]);
    const older = await app.http(
      'GET',
      `/admin/events?limit=1&before=${newest.body.events[0].position}`,
      undefined,
      admin,
    );
    expect(older.body.events.map((x: { id: string }) => x.id)).toEqual([cause.id]);
    const newer = await app.http(
      'GET',
      `/admin/events?limit=5&after=${older.body.events[0].position}`,
      undefined,
      admin,
    );
    expect(newer.body.events.map((x: { id: string }) => x.id)).toEqual([effect.id, unrelated.id]);
    const typed = await app.http('GET', '/admin/events?limit=5&type=explorer.Cause', undefined, admin);
    expect(typed.body.events.map((x: { id: string }) => x.id)).toEqual([cause.id]);

    for (const path of ['/admin/events', `/admin/events/${cause.id}`, `/admin/streams/${stream}/events`]) {
      expect((await app.http('GET', path, undefined, user)).status).toBe(403);
      expect((await app.http('GET', path)).status).toBe(401);
    }
  });

  // An MQTT message's event is correlated by its own id (migrations/0029 indexes only the others):
  // its correlation still lists every event of that correlation id, and what it caused.
  it('finds the correlation of an event whose correlation id is its own id', async () => {
    const own = testEvent('explorer.Message');
    const meta = { correlationId: own.id, causationId: `mqtt:${own.id}`, actor: 'system:test' };
    const stream = `explorer-${randomUUID()}`;
    await app.platform.store.append(stream, [{ ...own, metadata: meta }], 'no_stream');
    const follower = { ...testEvent('explorer.Follower'), metadata: { ...meta, causationId: own.id } };
    await app.platform.store.append(stream, [follower], 0);

    for (const id of [own.id, follower.id]) {
      const r = await app.http('GET', `/admin/events/${id}`, undefined, admin);
      expect(r.status).toBe(200);
      expect(r.body.correlated.map((e: { id: string }) => e.id)).toEqual([own.id, follower.id]);
    }
    const o = await app.http('GET', `/admin/events/${own.id}`, undefined, admin);
    expect(o.body.causedBy).toBeNull();
    expect(o.body.caused.map((e: { id: string }) => e.id)).toEqual([follower.id]);
  });

  it('refuses bad input naming the field and rule, and answers 404 for an unknown event', async () => {
    const bad = async (path: string, field: string) => {
      const r = await app.http('GET', path, undefined, admin);
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('PLATFORM.INVALID_INPUT');
      expect(r.body.errors.map((f: { field: string }) => f.field)).toContain(field);
    };
    await bad('/admin/events?limit=0', 'limit');
    await bad('/admin/events?limit=201', 'limit');
    await bad('/admin/events?before=-1', 'before');
    await bad('/admin/events?before=5&after=1', 'before');
    await bad(`/admin/events?type=${'x'.repeat(201)}`, 'type');
    await bad('/admin/events?nope=1', '(body)'); // parseInput's name for an unknown key
    await bad('/admin/events/not-a-uuid', 'id');
    await bad('/admin/streams/a%20b/events', 'streamId');
    await bad('/admin/streams/s/events?limit=500', 'limit');
    const missing = await app.http('GET', `/admin/events/${randomUUID()}`, undefined, admin);
    expect(missing).toMatchObject({ status: 404, body: { code: 'PLATFORM.EVENT_NOT_FOUND' } });
  });
});

describe("an admin's filters", () => {
  it("GET /orders?customerId: an admin's search by customer; a user only their own", async () => {
    const p = await product(app, 5);
    const { orderId } = await placeOrder(app, user, [{ productId: p, quantity: 1 }]);
    await orderIn(app, user, orderId);
    const other = await customer(app);

    const byCustomer = await app.http('GET', `/orders?customerId=${user.userId}`, undefined, admin);
    expect(byCustomer.body.items.map((o: { orderId: string }) => o.orderId)).toEqual([orderId]);
    expect((await app.http('GET', `/orders?customerId=${other.userId}`, undefined, admin)).body.items).toEqual([]);
    expect((await app.http('GET', `/orders?customerId=${user.userId}`, undefined, user)).body.items).toHaveLength(1);
    const refused = await app.http('GET', `/orders?customerId=${user.userId}`, undefined, other);
    expect(refused).toMatchObject({ status: 403, body: { code: 'AUTH.FORBIDDEN' } });
    const bad = await app.http('GET', '/orders?customerId=x', undefined, admin);
    expect(bad).toMatchObject({ status: 400, body: { errors: [{ field: 'customerId' }] } });
  });

  it("GET /devices?ownerId: an admin's devices of a user; a user only their own", async () => {
    const d = await app.http('POST', '/devices', { name: 'filter probe' }, user);
    expect(d.status).toBe(201);
    const other = await customer(app);
    const mine = await app.http('GET', `/devices?ownerId=${user.userId}`, undefined, admin);
    expect(mine.body.items.map((x: { deviceId: string }) => x.deviceId)).toEqual([d.body.deviceId]);
    expect((await app.http('GET', `/devices?ownerId=${other.userId}`, undefined, admin)).body.items).toEqual([]);
    expect((await app.http('GET', `/devices?ownerId=${user.userId}`, undefined, user)).body.items).toHaveLength(1);
    expect((await app.http('GET', `/devices?ownerId=${user.userId}`, undefined, other)).status).toBe(403);
  });

  it('GET /admin/dead-letters?deviceId: one device’s dead letters', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    for (const deviceId of [a, b, a])
      await storeDeadLetter(app.db.pool, {
        deviceId,
        topic: `devices/${deviceId}/readings`,
        payload: Buffer.from('not json'),
        code: 'TELEMETRY.MALFORMED_JSON',
        reason: 'not JSON',
      });
    const r = await app.http('GET', `/admin/dead-letters?deviceId=${a}`, undefined, admin);
    expect(r.status).toBe(200);
    expect(r.body.items).toHaveLength(2);
    expect(r.body.items.every((x: { deviceId: string }) => x.deviceId === a)).toBe(true);
    const bad = await app.http('GET', '/admin/dead-letters?deviceId=x', undefined, admin);
    expect(bad).toMatchObject({ status: 400, body: { errors: [{ field: 'deviceId' }] } });
  });
});

describe('/console', () => {
  it('serves its files with a self-only CSP, and 404 for another name', async () => {
    const index = await fetch(`${app.url}/console`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toMatch(/^text\/html/);
    expect(index.headers.get('content-security-policy')).toMatch(/default-src 'none'.*script-src 'self'/);
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    const js = await fetch(`${app.url}/console/app.js`);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await js.text()).not.toMatch(/ADMIN_PASSWORD|JWT_|-----BEGIN/);
    const missing = await app.http('GET', '/console/..%2fpackage.json');
    expect(missing.status).toBe(404);
    expect((await app.http('GET', '/console/nothing.js')).status).toBe(404);
  });
});
