import { randomUUID } from 'node:crypto';
import type { EventStore } from '../../src/platform/event-store/event-store';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { devicesOwnedBy } from '../../src/identity/session-watch';
import { ReadingIngestor } from '../../src/telemetry/ingest';
import { createTestDatabase, type TestDatabase } from '../support/services';
import { testEvent } from '../support/events';

/**
 * Two readers answer from SQL over `events` on PostgreSQL and from stream reads
 * through the port on any other store (store.kind). Both paths run here on the
 * same real PostgreSQL store: the port-only one through a view of it that
 * reports another kind, so it must give the SQL path's answers from the same
 * events. (The stores themselves are compared by the contract suite.)
 */

let db: TestDatabase;
let store: PostgresEventStore;
let portOnly: EventStore;

beforeAll(async () => {
  db = await createTestDatabase('port_paths');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
  portOnly = new Proxy(store, {
    get: (target, key) => (key === 'kind' ? 'kurrentdb' : (Reflect.get(target, key, target) as unknown)),
  });
});
afterAll(async () => {
  await store.close();
  await db.drop();
});

const at = '2026-01-01T00:00:00.000Z';

async function registerDevice(ownerId: string, revoked = false): Promise<string> {
  const deviceId = randomUUID();
  await store.appendMulti([
    {
      streamId: `device-quota-${ownerId}`,
      events: [testEvent('identity.DeviceSlotTaken', { ownerId, deviceId, at })],
      expected: 'any',
    },
    {
      streamId: `device-${deviceId}`,
      events: [testEvent('identity.DeviceRegistered', { deviceId, ownerId, name: 'd', secretHash: 'h', at })],
      expected: 'no_stream',
    },
  ]);
  if (revoked) {
    await store.append(`device-${deviceId}`, [testEvent('identity.DeviceRevoked', { deviceId, by: ownerId, at })], 0);
    await store.append(
      `device-quota-${ownerId}`,
      [testEvent('identity.DeviceSlotReleased', { ownerId, deviceId, at })],
      'any',
    );
  }
  return deviceId;
}

it('devicesOwnedBy: the device-quota stream gives the devices the SQL over events gives', async () => {
  const owner = randomUUID();
  const other = randomUUID();
  const active = await registerDevice(owner);
  const revoked = await registerDevice(owner, true);
  await registerDevice(other);
  const fromSql = await devicesOwnedBy(store, db.pool, owner);
  const fromStreams = await devicesOwnedBy(portOnly, db.pool, owner);
  expect(fromSql.sort()).toEqual([active, revoked].sort());
  expect(fromStreams.sort()).toEqual(fromSql.sort());
  expect(await devicesOwnedBy(portOnly, db.pool, randomUUID())).toEqual([]);
});

it('telemetry ingest: device and owner status read from streams answers as the SQL does', async () => {
  const owner = randomUUID();
  const disabledOwner = randomUUID();
  const active = await registerDevice(owner);
  const revoked = await registerDevice(owner, true);
  const orphaned = await registerDevice(disabledOwner);
  await store.append(
    `user-${disabledOwner}`,
    [testEvent('identity.UserDisabled', { userId: disabledOwner, by: 'admin', at })],
    'any',
  );
  const outcome = async (s: EventStore, deviceId: string) => {
    const ingestor = new ReadingIngestor(db.pool, s, { maxBatch: 100, maxPending: 1000 });
    try {
      const r = await ingestor.ingest(deviceId, [{ metric: 'temp', value: 1, ts: at, id: randomUUID() }], {
        correlationId: 'c',
        causationId: 'c',
        actor: `device:${deviceId}`,
      });
      return `accepted ${r.accepted}`;
    } catch (e) {
      return (e as { code?: string }).code ?? String(e);
    } finally {
      await ingestor.drain();
    }
  };
  const devices = [active, revoked, orphaned, randomUUID()];
  const viaSql = [];
  const viaStreams = [];
  for (const d of devices) {
    viaSql.push(await outcome(store, d));
    viaStreams.push(await outcome(portOnly, d));
  }
  expect(viaSql).toEqual([
    'accepted 1',
    'TELEMETRY.DEVICE_REVOKED',
    'TELEMETRY.DEVICE_OWNER_DISABLED',
    'TELEMETRY.DEVICE_NOT_FOUND',
  ]);
  expect(viaStreams).toEqual(viaSql);
});
