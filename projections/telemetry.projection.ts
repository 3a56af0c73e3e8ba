import type { TelemetryEvent } from '../domain/telemetry/reading.events';
import type { Projection } from './projection';

/**
 * Sensor history: raw readings, partitioned by day; the latest value per
 * device and metric; and rollups per bucket width (count, sum, min, max;
 * avg = sum / count), so that a day of 1 Hz data is answered from 1,440
 * one-minute rows, not 86,400 raw ones.
 *
 * Each reading is kept once. A reading with a device-side id is the same
 * reading as any other of its device with that id (`telemetry_reading_ids`
 * holds every id taken); one without an id is the same as another of its
 * device with the same metric and timestamp (a unique index). Repeats are
 * dropped in event order (the first wins), so a rebuild gives the same rows.
 * The rollups and latest values take only the readings kept.
 *
 * A batch is applied set-based, in the transaction that moves the checkpoint:
 * the batch's day partitions are created if missing (`prepare`, which the live
 * runner sends with the query that opens the transaction), and one statement moves its
 * readings into the ids, history, rollups and latest values, taking them as arrays
 * (a small batch, UNNEST_MAX_READINGS) or from a session-local staging table they
 * were copied into (COPY) first.
 *
 * Retention (src/telemetry) drops whole day partitions of raw readings and
 * forgets ids older than the raw rows; rollups and latest values stay.
 */

export const BUCKETS = { '1m': '1 minute', '5m': '5 minutes', '1h': '1 hour', '1d': '1 day' } as const;
export type Bucket = keyof typeof BUCKETS;

/** The day partition of history that holds a UTC day (`YYYY-MM-DD`): telemetry_readings_YYYYMMDD. */
export const partitionName = (day: string) => `telemetry_readings_${day.replace(/-/g, '')}`;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

const WIDTHS = Object.entries(BUCKETS)
  .map(([k, v]) => `('${k}', interval '${v}')`)
  .join(', ');

const STAGE = 'pg_temp.telemetry_stage';
const STAGE_COLUMNS = '(position, idx, device_id, metric, ts, value, reading_id)';

/** Creates the days' partitions of history that do not exist yet (in the current schema). Each day is checked. */
function ensurePartitions(days: Iterable<string>): string {
  const list = [...days].sort().map((d) => {
    if (!DAY.test(d)) throw new Error(`telemetry: a reading's ts is not ISO-8601 UTC: ${d}`);
    return `'${d}'`;
  });
  return `DO $$
   DECLARE d date;
   BEGIN
     FOREACH d IN ARRAY ARRAY[${list.join(', ')}]::date[] LOOP
       IF to_regclass(format('%I.%I', current_schema(), 'telemetry_readings_' || to_char(d, 'YYYYMMDD'))) IS NULL THEN
         EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.telemetry_readings FOR VALUES FROM (%L) TO (%L)',
                        current_schema(), 'telemetry_readings_' || to_char(d, 'YYYYMMDD'), current_schema(),
                        d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
       END IF;
     END LOOP;
   END $$`;
}

/** Calls `each` for every reading of these events, in event order (both event versions: one reading, or many). */
function forEachReading(
  events: readonly { type: string; data: unknown }[],
  each: (
    position: number,
    idx: number,
    deviceId: string,
    metric: string,
    ts: string,
    value: number,
    id?: string,
  ) => void,
): void {
  for (const raw of events) {
    const e = raw as TelemetryEvent & { position: number };
    if (e.type === 'telemetry.ReadingsRecorded') {
      e.data.readings.forEach((r, i) => each(e.position, i, e.data.deviceId, r.metric, r.ts, r.value, r.id));
    } else if (e.type === 'telemetry.ReadingRecorded') {
      const d = e.data;
      each(e.position, 0, d.deviceId, d.metric, d.ts, d.value, d.readingId);
    }
  }
}

/** The UTC days (`YYYY-MM-DD`, unchecked) the readings of these events fall on. */
function daysOf(events: readonly { type: string; data: unknown }[]): Set<string> {
  const days = new Set<string>();
  forEachReading(events, (_position, _idx, _device, _metric, ts) => days.add(ts.slice(0, 10)));
  return days;
}

/** Creates the staging table once per connection and empties it. */
const PREPARE_STAGE = `CREATE TEMP TABLE IF NOT EXISTS telemetry_stage (
     position bigint NOT NULL, idx int NOT NULL, device_id uuid NOT NULL, metric text NOT NULL,
     ts timestamptz NOT NULL, value double precision NOT NULL, reading_id text);
   TRUNCATE ${STAGE}`;

/**
 * A batch of at most this many readings is applied in one statement, its readings passed as
 * arrays (unnest) instead of COPYed into the staging table: a live projection applies small
 * batches, and creating, emptying and filling the staging table cost more round trips and
 * catalog work than the readings themselves (bench:ingest (c)). Larger batches (catching up,
 * rebuilds) are COPYed.
 */
export const UNNEST_MAX_READINGS = 2000;
const UNNEST = `stage AS MATERIALIZED (
  SELECT * FROM unnest($1::bigint[], $2::int[], $3::uuid[], $4::text[], $5::timestamptz[], $6::float8[], $7::text[])
      AS s(position, idx, device_id, metric, ts, value, reading_id)
), `;

const applySql = (source: string, head = '') => `
WITH ${head}ided AS (
  SELECT DISTINCT ON (device_id, reading_id) position, idx, device_id, metric, ts, value, reading_id
    FROM ${source} WHERE reading_id IS NOT NULL
   ORDER BY device_id, reading_id, position, idx
), taken AS (
  INSERT INTO telemetry_reading_ids (device_id, reading_id, ts)
  SELECT device_id, reading_id, ts FROM ided
  ON CONFLICT DO NOTHING
  RETURNING device_id, reading_id
), fresh AS (
  SELECT i.position, i.idx, i.device_id, i.metric, i.ts, i.value, i.reading_id
    FROM ided i JOIN taken t ON t.device_id = i.device_id AND t.reading_id = i.reading_id
  UNION ALL
  SELECT * FROM (
    SELECT DISTINCT ON (device_id, metric, ts) position, idx, device_id, metric, ts, value, reading_id
      FROM ${source} WHERE reading_id IS NULL
     ORDER BY device_id, metric, ts, position, idx) anon
), raw AS (
  INSERT INTO telemetry_readings (device_id, metric, ts, value, reading_id, position, idx)
  SELECT device_id, metric, ts, value, reading_id, position, idx FROM fresh
  ON CONFLICT (device_id, metric, ts) WHERE reading_id IS NULL DO NOTHING
  RETURNING device_id, metric, ts, value, position, idx
), minutes AS (
  -- The batch's one-minute groups; every wider bucket is a whole number of minutes, so the wider
  -- rollups fold these few rows instead of every reading once per width.
  SELECT device_id, metric, date_bin(interval '1 minute', ts, timestamptz '1970-01-01 00:00:00+00') AS minute,
         count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max
    FROM raw GROUP BY 1, 2, 3
), rollup AS (
  INSERT INTO telemetry_rollups AS t (device_id, metric, width, bucket_start, count, sum, min, max)
  SELECT m.device_id, m.metric, w.width, date_bin(w.iv, m.minute, timestamptz '1970-01-01 00:00:00+00'),
         sum(m.count), sum(m.sum), min(m.min), max(m.max)
    FROM minutes m CROSS JOIN (VALUES ${WIDTHS}) AS w(width, iv)
   GROUP BY 1, 2, 3, 4
  ON CONFLICT (device_id, metric, width, bucket_start) DO UPDATE
     SET count = t.count + EXCLUDED.count, sum = t.sum + EXCLUDED.sum,
         min = LEAST(t.min, EXCLUDED.min), max = GREATEST(t.max, EXCLUDED.max)
)
INSERT INTO telemetry_latest AS l (device_id, metric, value, ts, position, idx)
SELECT DISTINCT ON (device_id, metric) device_id, metric, value, ts, position, idx
  FROM raw ORDER BY device_id, metric, ts DESC, position DESC, idx DESC
ON CONFLICT (device_id, metric) DO UPDATE
   SET value = EXCLUDED.value, ts = EXCLUDED.ts, position = EXCLUDED.position, idx = EXCLUDED.idx
 WHERE (EXCLUDED.ts, EXCLUDED.position, EXCLUDED.idx) > (l.ts, l.position, l.idx)`;

/** A value of COPY's text format: backslash, tab, newline and carriage return escaped. */
const copyText = (s: string) => (/[\\\t\n\r]/.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]!) : s);
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** The readings of a batch as staging columns, in event order. */
export interface StagingRows {
  readonly position: number[];
  readonly idx: number[];
  readonly deviceId: string[];
  readonly metric: string[];
  readonly ts: string[];
  readonly value: number[];
  readonly readingId: (string | null)[];
}

export function stagingRows(events: readonly { position: number; type: string; data: unknown }[]): StagingRows {
  const rows: StagingRows = {
    position: [],
    idx: [],
    deviceId: [],
    metric: [],
    ts: [],
    value: [],
    readingId: [],
  };
  forEachReading(events, (position, idx, deviceId, metric, ts, value, id) => {
    rows.position.push(position);
    rows.idx.push(idx);
    rows.deviceId.push(deviceId);
    rows.metric.push(metric);
    rows.ts.push(ts);
    rows.value.push(value);
    rows.readingId.push(id ?? null);
  });
  return rows;
}

/** The staging rows as lines of COPY's text format. */
function* copyLinesOf(r: StagingRows): Generator<string> {
  for (let i = 0; i < r.position.length; i++) {
    const id = r.readingId[i];
    yield `${r.position[i]}\t${r.idx[i]}\t${r.deviceId[i]}\t${copyText(r.metric[i]!)}\t${r.ts[i]}\t${r.value[i]}\t${id == null ? '\\N' : copyText(id)}\n`;
  }
}

export const telemetryProjection: Projection<TelemetryEvent> = {
  name: 'telemetry',
  version: 3,
  tables: ['telemetry_readings', 'telemetry_reading_ids', 'telemetry_latest', 'telemetry_rollups'],
  setup: [
    // One partition per UTC day, created by apply when a batch first touches that day.
    `CREATE TABLE telemetry_readings (
       device_id uuid NOT NULL,
       metric text NOT NULL,
       ts timestamptz NOT NULL,
       value double precision NOT NULL,
       reading_id text,
       position bigint NOT NULL,
       idx int NOT NULL
     ) PARTITION BY RANGE (ts)`,
    // Time-range scans of one device's metric.
    'CREATE INDEX telemetry_readings_series_idx ON telemetry_readings (device_id, metric, ts)',
    // Readings without an id: one per device, metric and timestamp.
    'CREATE UNIQUE INDEX telemetry_readings_at_key ON telemetry_readings (device_id, metric, ts) WHERE reading_id IS NULL',
    // Live streams: one device's metric after a cursor (position, idx). A B-tree, not a block-range
    // index on position: ranges not summarised yet (all that was ingested since autovacuum last came
    // by) are scanned whole, so under ingest one stream's wake-up read 600,000 fresh rows (39 ms);
    // here it reads the rows it sends.
    'CREATE INDEX telemetry_readings_stream_idx ON telemetry_readings (device_id, metric, position, idx)',
    `CREATE TABLE telemetry_reading_ids (
       device_id uuid NOT NULL,
       reading_id text NOT NULL,
       ts timestamptz NOT NULL,
       PRIMARY KEY (device_id, reading_id)
     )`,
    // Retention forgets old ids; rows arrive roughly in time order.
    'CREATE INDEX telemetry_reading_ids_ts_idx ON telemetry_reading_ids USING brin (ts) WITH (autosummarize = on)',
    `CREATE TABLE telemetry_latest (
       device_id uuid NOT NULL,
       metric text NOT NULL,
       value double precision NOT NULL,
       ts timestamptz NOT NULL,
       position bigint NOT NULL,
       idx int NOT NULL,
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
  eventTypes: ['telemetry.ReadingsRecorded', 'telemetry.ReadingRecorded'],
  // The batch's day partitions, created if missing: sent with the query that opens the batch's transaction.
  prepare(events) {
    const days = daysOf(events);
    return days.size ? ensurePartitions(days) : undefined;
  },
  async apply(events, db) {
    const rows = stagingRows(events);
    if (rows.position.length === 0) return;
    if (rows.position.length <= UNNEST_MAX_READINGS || !db.copyRows) {
      await db.query(applySql('stage', UNNEST), [
        rows.position,
        rows.idx,
        rows.deviceId,
        rows.metric,
        rows.ts,
        rows.value,
        rows.readingId,
      ]);
      return;
    }
    await db.query(PREPARE_STAGE);
    await db.copyRows(`COPY ${STAGE} ${STAGE_COLUMNS} FROM STDIN`, copyLinesOf(rows));
    await db.query(applySql(STAGE));
  },
};
