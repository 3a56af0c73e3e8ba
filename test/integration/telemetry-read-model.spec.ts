import type { TelemetryEvent } from '../../domain/telemetry/reading.events';
import { telemetryProjection } from '../../projections/telemetry.projection';
import {
  bucketSeries,
  deleteReadingsBefore,
  latestValue,
  listMetrics,
  rawSeries,
  readingsAfter,
} from '../../projections/telemetry.queries';
import { readModel } from '../support/read-model';

/**
 * The sensor-history read model, given readings, then raw rows, latest values
 * and rollups, and what the queries answer (test/support/read-model.ts). The
 * projection is set-based per batch, so the helper's two runs (one batch, an
 * event per transaction) are what show its rollups and "latest" do not depend
 * on where batches split.
 */

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const t = (hms: string) => `2025-01-01T${hms}.000Z`;
const d1 = id(1);
const d2 = id(2);

const reading = (deviceId: string, metric: string, ts: string, value: number, readingId?: string): TelemetryEvent => ({
  type: 'telemetry.ReadingRecorded',
  data: { deviceId, metric, ts: t(ts), value, ...(readingId !== undefined ? { readingId } : {}) },
});

describe('telemetry read model', () => {
  const telemetry = readModel(telemetryProjection);

  it('every reading is a raw row keyed by its position, with its device-side id when it has one', async () => {
    const s = telemetry.given(reading(d1, 'temp', '00:00:10', 21.5, 'r-1'), reading(d1, 'temp', '00:00:20', 22));
    const [p1, p2] = (await s.recorded()).map((e) => e.position);
    await s.thenRows('telemetry_readings', [
      { position: p1, device_id: d1, metric: 'temp', ts: new Date(t('00:00:10')), value: 21.5, reading_id: 'r-1' },
      { position: p2, device_id: d1, metric: 'temp', ts: new Date(t('00:00:20')), value: 22, reading_id: null },
    ]);
  });

  it('latest is the newest by measurement time: a late, older reading does not replace it', async () => {
    const s = telemetry.given(
      reading(d1, 'temp', '00:00:30', 23),
      reading(d1, 'temp', '00:00:10', 19),
      reading(d1, 'humidity', '00:00:05', 40),
      reading(d2, 'temp', '00:00:01', 5),
    );
    await s.thenQuery(
      (db) => listMetrics(db, d1),
      [
        { metric: 'humidity', value: 40, ts: new Date(t('00:00:05')) },
        { metric: 'temp', value: 23, ts: new Date(t('00:00:30')) },
      ],
    );
    await s.thenQuery((db) => latestValue(db, d2, 'temp'), { value: 5, ts: new Date(t('00:00:01')) });
    await s.thenQuery((db) => latestValue(db, d2, 'humidity'), undefined);
  });

  it('two readings with the same time: the later event wins', async () => {
    const s = telemetry.given(reading(d1, 'temp', '00:00:10', 1), reading(d1, 'temp', '00:00:10', 2));
    await s.thenQuery((db) => latestValue(db, d1, 'temp'), { value: 2, ts: new Date(t('00:00:10')) });
  });

  it('rollups per bucket width count, sum, min and max; bucketSeries answers from them', async () => {
    const s = telemetry.given(
      reading(d1, 'temp', '00:00:10', 1),
      reading(d1, 'temp', '00:00:50', 3),
      reading(d1, 'temp', '00:01:10', 5),
      reading(d1, 'temp', '00:05:00', 10),
      reading(d2, 'temp', '00:00:10', 100),
    );
    const d1Rollups = [
      { width: '1m', bucket_start: new Date(t('00:00:00')), count: 2, sum: 4, min: 1, max: 3 },
      { width: '1m', bucket_start: new Date(t('00:01:00')), count: 1, sum: 5, min: 5, max: 5 },
      { width: '1m', bucket_start: new Date(t('00:05:00')), count: 1, sum: 10, min: 10, max: 10 },
      { width: '5m', bucket_start: new Date(t('00:00:00')), count: 3, sum: 9, min: 1, max: 5 },
      { width: '5m', bucket_start: new Date(t('00:05:00')), count: 1, sum: 10, min: 10, max: 10 },
      { width: '1h', bucket_start: new Date(t('00:00:00')), count: 4, sum: 19, min: 1, max: 10 },
      { width: '1d', bucket_start: new Date(t('00:00:00')), count: 4, sum: 19, min: 1, max: 10 },
    ];
    const d2Rollups = ['1m', '5m', '1h', '1d'].map((width) => ({
      width,
      bucket_start: new Date(t('00:00:00')),
      count: 1,
      sum: 100,
      min: 100,
      max: 100,
    }));
    await s.thenRows('telemetry_rollups', [
      ...d1Rollups.map((r) => ({ device_id: d1, metric: 'temp', ...r })),
      ...d2Rollups.map((r) => ({ device_id: d2, metric: 'temp', ...r })),
    ]);
    // The query reads one device's series: d2's reading is in none of these.
    const from = new Date(t('00:00:30'));
    const to = new Date(t('00:06:00'));
    await s.thenQuery(
      (db) => bucketSeries(db, d1, 'temp', from, to, '1m', 'avg', 100),
      [
        { ts: new Date(t('00:00:00')), value: 2 },
        { ts: new Date(t('00:01:00')), value: 5 },
        { ts: new Date(t('00:05:00')), value: 10 },
      ],
    );
    await s.thenQuery(
      (db) => bucketSeries(db, d1, 'temp', from, to, '5m', 'count', 100),
      [
        { ts: new Date(t('00:00:00')), value: 3 },
        { ts: new Date(t('00:05:00')), value: 1 },
      ],
    );
    await s.thenQuery(
      (db) => bucketSeries(db, d1, 'temp', from, to, '1h', 'max', 1),
      [{ ts: new Date(t('00:00:00')), value: 10 }],
    );
    await s.thenQuery(
      (db) => bucketSeries(db, d1, 'temp', from, to, '5m', 'sum', 1),
      [{ ts: new Date(t('00:00:00')), value: 9 }],
    );
    await s.thenQuery(
      (db) => bucketSeries(db, d1, 'temp', from, to, '5m', 'min', 100),
      [
        { ts: new Date(t('00:00:00')), value: 1 },
        { ts: new Date(t('00:05:00')), value: 10 },
      ],
    );
  });

  it('rawSeries is [from, to) oldest first; readingsAfter follows positions', async () => {
    const s = telemetry.given(
      reading(d1, 'temp', '00:00:20', 2),
      reading(d1, 'temp', '00:00:10', 1),
      reading(d1, 'temp', '00:00:30', 3),
      reading(d1, 'humidity', '00:00:15', 50),
    );
    const [p1, p2, p3] = (await s.recorded()).map((e) => e.position);
    await s.thenQuery(
      (db) => rawSeries(db, d1, 'temp', new Date(t('00:00:10')), new Date(t('00:00:30')), 100),
      [
        { ts: new Date(t('00:00:10')), value: 1 },
        { ts: new Date(t('00:00:20')), value: 2 },
      ],
    );
    await s.thenQuery(
      (db) => rawSeries(db, d1, 'temp', new Date(t('00:00:00')), new Date(t('00:01:00')), 1),
      [{ ts: new Date(t('00:00:10')), value: 1 }],
    );
    await s.thenQuery(
      (db) => readingsAfter(db, d1, 'temp', p1!, 100),
      [
        { position: p2, ts: new Date(t('00:00:10')), value: 1 },
        { position: p3, ts: new Date(t('00:00:30')), value: 3 },
      ],
    );
  });

  it('retention deletes old raw rows, a bounded number per call; rollups and latest stay', async () => {
    const s = telemetry.given(
      reading(d1, 'temp', '00:00:10', 1),
      reading(d1, 'temp', '00:00:20', 2),
      reading(d1, 'temp', '00:00:30', 3),
    );
    await s.thenQuery((db) => deleteReadingsBefore(db, new Date(t('00:00:30')), 1), 1);
    await s.thenQuery((db) => deleteReadingsBefore(db, new Date(t('00:00:30')), 10), 1);
    await s.thenQuery((db) => deleteReadingsBefore(db, new Date(t('00:00:30')), 10), 0);
    await s.thenRows('telemetry_readings', [{ ts: new Date(t('00:00:30')) }], { columns: ['ts'] });
    await s.thenQuery(
      async (db) => (await db.query(`SELECT count, sum FROM telemetry_rollups WHERE width = '1m'`)).rows,
      [{ count: 3, sum: 6 }],
    );
    await s.thenQuery((db) => latestValue(db, d1, 'temp'), { value: 3, ts: new Date(t('00:00:30')) });
  });
});
