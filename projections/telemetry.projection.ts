import type { TelemetryEvent } from '../domain/telemetry/reading.events';
import type { Projection } from './projection';

/**
 * Sensor history: raw readings (indexed for time-range scans), the latest
 * value per device and metric, and rollups per bucket width (count, sum,
 * min, max; avg = sum / count) so that a day of 1 Hz data is answered from
 * 1,440 one-minute rows, not 86,400 raw ones.
 *
 * A batch is applied set-based: one statement (data-modifying CTEs over
 * unnest of the batch's arrays) writes raw rows, rollups and latest values,
 * whatever the batch size. The engine applies each event exactly once
 * (checkpoint in the same transaction), which the rollup additions rely on.
 * Every value comes from the event, so a rebuild produces the same rows.
 * Retention (src/telemetry) deletes old raw rows; rollups and latest stay.
 */

export const BUCKETS = { '1m': '1 minute', '5m': '5 minutes', '1h': '1 hour', '1d': '1 day' } as const;
export type Bucket = keyof typeof BUCKETS;

const WIDTHS = Object.entries(BUCKETS)
  .map(([k, v]) => `('${k}', interval '${v}')`)
  .join(', ');

const APPLY = `
WITH r AS (
  SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::float8[], $6::text[])
    AS t(position, device_id, metric, ts, value, reading_id)
), raw AS (
  INSERT INTO telemetry_readings (position, device_id, metric, ts, value, reading_id)
  SELECT position, device_id, metric, ts, value, reading_id FROM r
  ON CONFLICT (position) DO NOTHING
), rollup AS (
  INSERT INTO telemetry_rollups AS t (device_id, metric, width, bucket_start, count, sum, min, max)
  SELECT r.device_id, r.metric, w.width, date_bin(w.iv, r.ts, timestamptz '1970-01-01 00:00:00+00'),
         count(*), sum(r.value), min(r.value), max(r.value)
    FROM r CROSS JOIN (VALUES ${WIDTHS}) AS w(width, iv)
   GROUP BY 1, 2, 3, 4
  ON CONFLICT (device_id, metric, width, bucket_start) DO UPDATE
     SET count = t.count + EXCLUDED.count, sum = t.sum + EXCLUDED.sum,
         min = LEAST(t.min, EXCLUDED.min), max = GREATEST(t.max, EXCLUDED.max)
)
INSERT INTO telemetry_latest AS l (device_id, metric, value, ts, position)
SELECT DISTINCT ON (device_id, metric) device_id, metric, value, ts, position
  FROM r ORDER BY device_id, metric, ts DESC, position DESC
ON CONFLICT (device_id, metric) DO UPDATE
   SET value = EXCLUDED.value, ts = EXCLUDED.ts, position = EXCLUDED.position
 WHERE (EXCLUDED.ts, EXCLUDED.position) > (l.ts, l.position)`;

export const telemetryProjection: Projection<TelemetryEvent> = {
  name: 'telemetry',
  version: 1,
  tables: ['telemetry_readings', 'telemetry_latest', 'telemetry_rollups'],
  setup: [
    `CREATE TABLE telemetry_readings (
       position bigint PRIMARY KEY,
       device_id uuid NOT NULL,
       metric text NOT NULL,
       ts timestamptz NOT NULL,
       value double precision NOT NULL,
       reading_id text
     )`,
    // Time-range scans of one device's metric; also serves retention's "older than" per device.
    'CREATE INDEX telemetry_readings_series_idx ON telemetry_readings (device_id, metric, ts)',
    // Retention across all devices.
    'CREATE INDEX telemetry_readings_ts_idx ON telemetry_readings (ts)',
    `CREATE TABLE telemetry_latest (
       device_id uuid NOT NULL,
       metric text NOT NULL,
       value double precision NOT NULL,
       ts timestamptz NOT NULL,
       position bigint NOT NULL,
       PRIMARY KEY (device_id, metric)
     )`,
    `CREATE TABLE telemetry_rollups (
       device_id uuid NOT NULL,
       metric text NOT NULL,
       width text NOT NULL CHECK (width IN ('1m', '5m', '1h', '1d')),
       bucket_start timestamptz NOT NULL,
       count bigint NOT NULL,
       sum double precision NOT NULL,
       min double precision NOT NULL,
       max double precision NOT NULL,
       PRIMARY KEY (device_id, metric, width, bucket_start)
     )`,
  ],
  eventTypes: ['telemetry.ReadingRecorded'],
  async apply(events, db) {
    const cols: [number[], string[], string[], string[], number[], (string | null)[]] = [[], [], [], [], [], []];
    for (const e of events) {
      if (e.type !== 'telemetry.ReadingRecorded') continue;
      const d = e.data;
      cols[0].push(e.position);
      cols[1].push(d.deviceId);
      cols[2].push(d.metric);
      cols[3].push(d.ts);
      cols[4].push(d.value);
      cols[5].push(d.readingId ?? null);
    }
    if (cols[0].length === 0) return;
    await db.query(APPLY, cols);
  },
};
