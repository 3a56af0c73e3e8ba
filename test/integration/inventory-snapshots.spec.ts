import { randomUUID } from 'node:crypto';
import { fold } from '../../domain/shared/event';
import {
  inventoryDecider,
  inventoryStateFromJson,
  type InventoryCommand,
  type InventoryState,
} from '../../domain/sales/inventory.decider';
import type { InventoryEvent } from '../../domain/sales/inventory.events';
import { handleCommand, StateCache } from '../../src/platform/commands/command-handling';
import { StreamSnapshots } from '../../src/platform/commands/snapshots';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * The inventory's small state (issue 13) against the real store: an order's
 * answer is recognised by its identity (the store keeps one), not by a state
 * that remembers every order; and snapshots are a cache: with, without, or
 * with a stale or foreign one, every decision is the same.
 */
let db: TestDatabase;
let store: PostgresEventStore;
beforeAll(async () => {
  db = await createTestDatabase('inv');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
});
afterAll(async () => {
  await store.close();
  await db.drop();
});

const now = new Date('2026-12-01T10:00:00.000Z');
const ctx = (key: string) => ({ correlationId: 'c', causationId: 'c', actor: 'system:test', idempotencyKey: key, now });

function send(
  streamId: string,
  command: InventoryCommand,
  options: { cache?: StateCache<InventoryState>; snapshots?: StreamSnapshots<InventoryState> } = {},
) {
  return handleCommand({
    store,
    decider: inventoryDecider,
    streamId,
    command,
    ctx: ctx(randomUUID()),
    retries: 10,
    lookupKey: false,
    ...options,
  });
}

const productId = '22222222-2222-4222-8222-222222222222';
const receive = (quantity: number): InventoryCommand => ({
  type: 'ReceiveStock',
  data: { productId, quantity, reference: 'r', by: 'admin', now },
});
const reserve = (orderId: string, quantity: number): InventoryCommand => ({
  type: 'ReserveStock',
  data: { productId, orderId, quantity, now },
});
/** A state as it is stored in a snapshot (the open reservations as a plain object). */
const asJson = (state: InventoryState): unknown => JSON.parse(JSON.stringify(state));
const release = (orderId: string): InventoryCommand => ({ type: 'ReleaseStock', data: { productId, orderId, now } });
const ship = (orderId: string): InventoryCommand => ({ type: 'ShipStock', data: { productId, orderId, now } });

it('an order answered once is never answered again, whatever the state forgot: rejected, released or shipped, with any key', async () => {
  const streamId = `inventory-${randomUUID()}`;
  await send(streamId, receive(1));
  expect((await send(streamId, reserve('o1', 2))).events.map((e) => e.type)).toEqual([
    'sales.StockReservationRejected',
  ]);
  await send(streamId, receive(5));
  await send(streamId, reserve('o2', 2));
  await send(streamId, release('o2'));
  await send(streamId, reserve('o3', 1));
  await send(streamId, ship('o3'));
  const before = await store.readStream(streamId);
  // Resends with new idempotency keys and fresh caches: stock would allow each, the answer's identity refuses it.
  for (const orderId of ['o1', 'o2', 'o3']) {
    const again = await send(streamId, reserve(orderId, 1), { cache: new StateCache() });
    expect(again.duplicate).toBe(true);
  }
  expect(await send(streamId, release('o2'))).toMatchObject({ events: [] });
  expect(await send(streamId, ship('o3'))).toMatchObject({ events: [] });
  expect((await store.readStream(streamId)).map((e) => e.id)).toEqual(before.map((e) => e.id));
  const state = fold(inventoryDecider, await store.readStream<InventoryEvent>(streamId));
  expect(asJson(state)).toEqual({ onHand: 5, reserved: 0, shipped: 1, open: {} });
});

it('snapshots every N events; a cold decision starts from one; deleting or spoiling them changes no decision', async () => {
  const streamId = `inventory-${randomUUID()}`;
  const snapshots = new StreamSnapshots<InventoryState>(db.pool, {
    version: 2,
    every: 5,
    revive: inventoryStateFromJson,
  });
  await send(streamId, receive(100), { snapshots });
  for (let i = 0; i < 30; i++) {
    await send(streamId, reserve(`o${i}`, 1), { snapshots, cache: new StateCache() });
    if (i % 3 === 0) await send(streamId, ship(`o${i}`), { snapshots, cache: new StateCache() });
    if (i % 3 === 1) await send(streamId, release(`o${i}`), { snapshots, cache: new StateCache() });
  }
  const snap = await db.pool.query<{ revision: string; state: unknown }>(
    'SELECT revision, state FROM stream_snapshots WHERE stream_id = $1',
    [streamId],
  );
  const events = await store.readStream<InventoryEvent>(streamId);
  expect(Number(snap.rows[0]!.revision)).toBeGreaterThanOrEqual(events.length - 1 - 5);
  // The snapshot is the fold of the events up to its revision, and holds only the open reservations.
  const upTo = events.slice(0, Number(snap.rows[0]!.revision) + 1);
  expect(snap.rows[0]!.state).toEqual(asJson(fold(inventoryDecider, upTo)));
  expect(inventoryStateFromJson(snap.rows[0]!.state).open.equals(fold(inventoryDecider, upTo).open)).toBe(true);
  const truth = fold(inventoryDecider, events);
  expect(truth.open.size).toBe(10);

  // Same decisions from a snapshot, from none, and from a spoiled one of another version.
  const decide = async (s: StreamSnapshots<InventoryState> | undefined) =>
    (await send(streamId, reserve('o1', 1), { cache: new StateCache(), ...(s ? { snapshots: s } : {}) })).duplicate;
  expect(await decide(snapshots)).toBe(true); // o1 was reserved, then released: answered already
  await db.pool.query(
    `UPDATE stream_snapshots SET version = 1, state = '{"onHand":0,"reserved":0,"shipped":0,"reservations":{}}' WHERE stream_id = $1`,
    [streamId],
  );
  expect(
    await decide(
      new StreamSnapshots<InventoryState>(db.pool, { version: 2, every: 1000, revive: inventoryStateFromJson }),
    ),
  ).toBe(true);
  await db.pool.query('DELETE FROM stream_snapshots WHERE stream_id = $1', [streamId]);
  expect(await decide(undefined)).toBe(true);
  const fresh = await send(streamId, reserve('new-order', 85), {
    cache: new StateCache(),
    snapshots: new StreamSnapshots<InventoryState>(db.pool, { version: 2, every: 5, revive: inventoryStateFromJson }),
  });
  expect(fresh.events).toEqual([
    {
      type: 'sales.StockReservationRejected',
      data: {
        productId,
        orderId: 'new-order',
        requested: 85,
        available: truth.onHand - truth.reserved,
        at: now.toISOString(),
      },
    },
  ]);
});
