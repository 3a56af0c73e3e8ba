import type { Queryable } from './projection';
import type { Bucket } from './telemetry.projection';

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

/** Raw points with from <= ts < to, oldest first (an index range scan). */
export async function rawSeries(
  db: Queryable,
  deviceId: string,
  metric: string,
  from: Date,
  to: Date,
  limit: number,
): Promise<Point[]> {
  const res = await db.query(
    `SELECT ts, value FROM telemetry_readings WHERE device_id = $1 AND metric = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, position LIMIT $5`,
    [deviceId, metric, from, to, limit],
  );
  return res.rows as unknown as Point[];
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
 */
export async function bucketSeries(
  db: Queryable,
  deviceId: string,
  metric: string,
  from: Date,
  to: Date,
  bucket: Bucket,
  agg: Agg,
  limit: number,
): Promise<Point[]> {
  const res = await db.query(
    `SELECT bucket_start AS ts, ${AGG_SQL[agg]} AS value FROM telemetry_rollups
      WHERE device_id = $1 AND metric = $2 AND width = $3
        AND bucket_start >= date_bin((SELECT iv FROM (VALUES ('1m', interval '1 minute'), ('5m', interval '5 minutes'), ('1h', interval '1 hour'), ('1d', interval '1 day')) v(w, iv) WHERE w = $3),
                                     $4::timestamptz, timestamptz '1970-01-01 00:00:00+00')
        AND bucket_start < $5
      ORDER BY bucket_start LIMIT $6`,
    [deviceId, metric, bucket, from, to, limit],
  );
  return res.rows as unknown as Point[];
}

/** Readings after a position, for the live stream. */
export async function readingsAfter(
  db: Queryable,
  deviceId: string,
  metric: string,
  afterPosition: number,
  limit: number,
): Promise<(Point & { position: number })[]> {
  const res = await db.query(
    `SELECT position, ts, value FROM telemetry_readings WHERE device_id = $1 AND metric = $2 AND position > $3 ORDER BY position LIMIT $4`,
    [deviceId, metric, afterPosition, limit],
  );
  return res.rows as unknown as (Point & { position: number })[];
}

/** Retention: drops raw rows older than `before` (events and rollups stay). Bounded per call. */
export async function deleteReadingsBefore(db: Queryable, before: Date, maxRows: number): Promise<number> {
  const res = await db.query(
    'DELETE FROM telemetry_readings WHERE position IN (SELECT position FROM telemetry_readings WHERE ts < $1 LIMIT $2)',
    [before, maxRows],
  );
  return res.rowCount ?? 0;
}
