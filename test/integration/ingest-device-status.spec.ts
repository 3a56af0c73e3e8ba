import { deviceStreamId } from '../../domain/identity/device.events';
import { userStreamId } from '../../domain/identity/user.events';
import { telemetryStreamId } from '../../domain/telemetry/reading.events';
import { DEVICE_STATUS_SQL } from '../../src/telemetry/ingest';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * Ingest checks every batch's devices against the event store (revoked device,
 * disabled owner). With a store full of telemetry in a few device streams, the
 * owner check must stay an index probe: it used to be planned as a scan of the
 * whole events table on every batch (67–341 ms at 100k events), a cost that grew
 * with the store. Migration 0030's partial index is what keeps it a probe.
 */

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('devstatus');
  const event = (stream: string, rev: number, type: string, data: object) =>
    db.pool.query(
      `INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata)
       VALUES ((SELECT coalesce(max(position), 0) + 1 FROM events), gen_random_uuid(), $1, $2, $3, $4, '{}')`,
      [stream, rev, type, JSON.stringify(data)],
    );
  await event(userStreamId('u-ok'), 0, 'identity.UserRegistered', {});
  await event(userStreamId('u-off'), 0, 'identity.UserRegistered', {});
  await event(userStreamId('u-off'), 1, 'identity.UserDisabled', {});
  await event(deviceStreamId('d-ok'), 0, 'identity.DeviceRegistered', { ownerId: 'u-ok' });
  await event(deviceStreamId('d-off'), 0, 'identity.DeviceRegistered', { ownerId: 'u-off' });
  await event(deviceStreamId('d-rev'), 0, 'identity.DeviceRegistered', { ownerId: 'u-ok' });
  await event(deviceStreamId('d-rev'), 1, 'identity.DeviceRevoked', {});
  // 120k telemetry events in three device streams: what a store looks like after a day of a few sensors.
  await db.pool.query(
    `INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata)
     SELECT 1000 + g, gen_random_uuid(), $1 || (g % 3), g / 3, 'telemetry.ReadingRecorded',
            jsonb_build_object('metric', 'temp', 'value', g), '{}'
       FROM generate_series(0, 119999) g`,
    [telemetryStreamId('d-')],
  );
  await db.pool.query('ANALYZE events');
}, 120_000);

afterAll(async () => {
  await db.drop();
});

const params = (devices: string[]) => [devices.map(deviceStreamId), userStreamId('')];

it('answers each device: active, revoked, owner disabled, unknown', async () => {
  const { rows } = await db.pool.query(DEVICE_STATUS_SQL, params(['d-ok', 'd-off', 'd-rev', 'd-none']));
  const byStream = Object.fromEntries(rows.map((r) => [r.stream_id, r]));
  expect(byStream[deviceStreamId('d-ok')]).toMatchObject({ registered: true, revoked: false, owner_disabled: false });
  expect(byStream[deviceStreamId('d-off')]).toMatchObject({ registered: true, revoked: false, owner_disabled: true });
  expect(byStream[deviceStreamId('d-rev')]).toMatchObject({ registered: true, revoked: true, owner_disabled: false });
  expect(byStream[deviceStreamId('d-none')]).toBeUndefined();
});

it('never scans the events table, however many telemetry events it holds', async () => {
  // node-pg sends parameters in an unnamed statement: planned for these values, as ingest's query is.
  const { rows } = await db.pool.query(
    `EXPLAIN (FORMAT JSON) ${DEVICE_STATUS_SQL}`,
    params(['d-ok', 'd-off', 'd-rev']),
  );
  const scans: string[] = [];
  const walk = (node: { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; Plans?: unknown[] }) => {
    if (node['Relation Name'] === 'events')
      scans.push(`${node['Node Type']}${node['Index Name'] ? ` ${node['Index Name']}` : ''}`);
    for (const p of node.Plans ?? []) walk(p as typeof node);
  };
  walk(rows[0]['QUERY PLAN'][0].Plan);
  expect(scans.length).toBeGreaterThan(0);
  expect(scans.filter((s) => s.startsWith('Seq Scan'))).toEqual([]);
  expect(scans.some((s) => s.includes('events_user_disabled_idx'))).toBe(true);
});
