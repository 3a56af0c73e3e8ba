import type { Queryable } from './projection';
import { partitionName, type Bucket } from './telemetry.projection';

/** Typed reads of the sensor-history read model (projections/telemetry.projection.ts). */

export type Agg = 'avg' | 'min' | 'max' | 'count' | 'sum';

export interface MetricLatest {
  readonly metric: string;
  readonly value: number;
  readonly ts: Date;
}

export interface Point {
  readonly ts: Date;
  readonly value: number;
}

export async function listMetrics(db: Queryable, deviceId: string): Promise<MetricLatest[]> {
  const res = await db.query('SELECT metric, value, ts FROM telemetry_latest WHERE device_id = $1 ORDER BY metric', [
    deviceId,
  ]);
  return res.rows as unknown as MetricLatest[];
}

export async function latestValue(
  db: Queryable,
  deviceId: string,
  metric: string,
): Promise<{ value: number; ts: Date } | undefined> {
  const res = await db.query('SELECT value, ts FROM telemetry_latest WHERE device_id = $1 AND metric = $2', [
    deviceId,
    metric,
  ]);
  return res.rows[0] as { value: number; ts: Date } | undefined;
}

/** A point as JSON text carries it: ts as ISO-8601 UTC with milliseconds, as JavaScript writes a Date. */
const POINT_JSON = `json_build_object('ts', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'value', value)`;

/**
 * Raw points with from <= ts < to, oldest first (an index range scan), as a
 * JSON array built by PostgreSQL: a history route sends it on as it is, so
 * 10,000 points cost no row objects in Node.
 */
export async function rawSeriesJson(
  db: Queryable,
  deviceId: string,
  metric: string,
  from: Date,
  to: Date,
  limit: number,
): Promise<string> {
  const res = await db.query(
    `SELECT coalesce(json_agg(${POINT_JSON} ORDER BY ts, position, idx), '[]')::text AS points
       FROM (SELECT ts, value, position, idx FROM telemetry_readings
              WHERE device_id = $1 AND metric = $2 AND ts >= $3 AND ts < $4
              ORDER BY ts, position, idx LIMIT $5) r`,
    [deviceId, metric, from, to, limit],
  );
  return res.rows[0]!.points as string;
}

const AGG_SQL: Record<Agg, string> = {
  avg: 'sum / count',
  min: 'min',
  max: 'max',
  count: 'count::float8',
  sum: 'sum',
};

/**
 * Aggregates per bucket from the rollups (never the raw rows): every bucket
 * that overlaps [from, to), i.e. bucket_start from the start of from's bucket.
 * A JSON array built by PostgreSQL, as rawSeriesJson.
 */
export async function bucketSeriesJson(
  db: Queryable,
  deviceId: string,
  metric: string,
  from: Date,
  to: Date,
  bucket: Bucket,
  agg: Agg,
  limit: number,
): Promise<string> {
  const res = await db.query(
    `SELECT coalesce(json_agg(${POINT_JSON} ORDER BY ts), '[]')::text AS points
       FROM (SELECT bucket_start AS ts, ${AGG_SQL[agg]} AS value FROM telemetry_rollups
              WHERE device_id = $1 AND metric = $2 AND width = $3
                AND bucket_start >= date_bin((SELECT iv FROM (VALUES ('1m', interval '1 minute'), ('5m', interval '5 minutes'), ('1h', interval '1 hour'), ('1d', interval '1 day')) v(w, iv) WHERE w = $3),
                                             $4::timestamptz, timestamptz '1970-01-01 00:00:00+00')
                AND bucket_start < $5
              ORDER BY bucket_start LIMIT $6) b`,
    [deviceId, metric, bucket, from, to, limit],
  );
  return res.rows[0]!.points as string;
}

const toPoints = (json: string): Point[] =>
  (JSON.parse(json) as { ts: string; value: number }[]).map((p) => ({ ts: new Date(p.ts), value: p.value }));

/** rawSeriesJson as points. */
export const rawSeries = async (...args: Parameters<typeof rawSeriesJson>): Promise<Point[]> =>
  toPoints(await rawSeriesJson(...args));

/** bucketSeriesJson as points. */
export const bucketSeries = async (...args: Parameters<typeof bucketSeriesJson>): Promise<Point[]> =>
  toPoints(await bucketSeriesJson(...args));

/** Where a live stream is: the last reading sent, by its event's position and its index in the event. */
export interface StreamCursor {
  readonly position: number;
  readonly idx: number;
}
/** Past every reading of an event. */
export const END_OF_EVENT = 2_147_483_647;

/** Readings after a cursor, for the live stream (telemetry_readings_stream_idx: an index range, the rows sent). */
export async function readingsAfter(
  db: Queryable,
  deviceId: string,
  metric: string,
  after: StreamCursor,
  limit: number,
): Promise<(Point & StreamCursor)[]> {
  const res = await db.query(
    `SELECT position, idx, ts, value FROM telemetry_readings
      WHERE device_id = $1 AND metric = $2 AND position >= $3 AND (position, idx) > ($3, $4)
      ORDER BY position, idx LIMIT $5`,
    [deviceId, metric, after.position, after.idx, limit],
  );
  return res.rows as unknown as (Point & StreamCursor)[];
}

/** The UTC days that have a partition of raw readings, oldest first (`YYYY-MM-DD`). */
export async function readingDays(db: Queryable): Promise<string[]> {
  const res = await db.query(
    `SELECT to_char(to_date(substr(c.relname, length('telemetry_readings_') + 1), 'YYYYMMDD'), 'YYYY-MM-DD') AS day
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass('telemetry_readings') ORDER BY 1`,
  );
  return res.rows.map((r) => r.day as string);
}

/**
 * Retention: drops the day partitions of raw readings that end at or before `before`
 * (a catalogue change, not a DELETE), then forgets reading ids older than `before`
 * in bounded chunks (a reading sent again after its day was dropped is stored again).
 * Events, rollups and latest values stay. Returns the days dropped and the ids forgotten.
 */
export async function dropReadingsBefore(
  db: Queryable,
  before: Date,
  maxIds: number,
): Promise<{ days: string[]; ids: number }> {
  const cutoff = before.toISOString().slice(0, 10);
  const days = (await readingDays(db)).filter((d) => d < cutoff);
  for (const d of days) await db.query(`DROP TABLE IF EXISTS ${partitionName(d)}`);
  const res = await db.query(
    `DELETE FROM telemetry_reading_ids WHERE ctid = ANY (ARRAY(SELECT ctid FROM telemetry_reading_ids WHERE ts < $1 LIMIT $2))`,
    [before, maxIds],
  );
  return { days, ids: res.rowCount ?? 0 };
}
