import type { TelemetryEvent } from '../../domain/telemetry/reading.events';
import { telemetryProjection, UNNEST_MAX_READINGS } from '../../projections/telemetry.projection';
import {
  bucketSeries,
  dropReadingsBefore,
  END_OF_EVENT,
  latestValue,
  listMetrics,
  rawSeries,
  readingDays,
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

/** One reading in one event (the current event, or with `legacy` the first release's event). */
const reading = (
  deviceId: string,
  metric: string,
  ts: string,
  value: number,
  readingId?: string,
  legacy = false,
): TelemetryEvent =>
  legacy
    ? {
        type: 'telemetry.ReadingRecorded',
        data: { deviceId, metric, ts: t(ts), value, ...(readingId !== undefined ? { readingId } : {}) },
      }
    : message(deviceId, [{ metric, ts, value, ...(readingId !== undefined ? { id: readingId } : {}) }]);

/** One message: several readings in one event; `ts` is a time of 2025-01-01 or a full ISO instant. */
const message = (
  deviceId: string,
  readings: { metric: string; ts: string; value: number; id?: string }[],
): TelemetryEvent => ({
  type: 'telemetry.ReadingsRecorded',
  data: { deviceId, readings: readings.map((r) => ({ ...r, ts: r.ts.includes('T') ? r.ts : t(r.ts) })) },
});

describe('telemetry read model', () => {
  const telemetry = readModel(telemetryProjection);

  it('every reading is a raw row keyed by its event position and index, with its device-side id when it has one', async () => {
    const s = telemetry.given(
      message(d1, [
        { metric: 'temp', ts: '00:00:10', value: 21.5, id: 'r-1' },
        { metric: 'hum', ts: '00:00:10', value: 40 },
      ]),
      reading(d1, 'temp', '00:00:20', 22),
      reading(d2, 'temp', '00:00:05', 7, 'legacy-1', true),
    );
    const [p1, p2, p3] = (await s.recorded()).map((e) => e.position);
    await s.thenRows('telemetry_readings', [
      {
        position: p1,
        idx: 0,
        device_id: d1,
        metric: 'temp',
        ts: new Date(t('00:00:10')),
        value: 21.5,
        reading_id: 'r-1',
      },
      { position: p1, idx: 1, device_id: d1, metric: 'hum', ts: new Date(t('00:00:10')), value: 40, reading_id: null },
      { position: p2, idx: 0, device_id: d1, metric: 'temp', ts: new Date(t('00:00:20')), value: 22, reading_id: null },
      {
        position: p3,
        idx: 0,
        device_id: d2,
        metric: 'temp',
        ts: new Date(t('00:00:05')),
        value: 7,
        reading_id: 'legacy-1',
      },
    ]);
  });

  it('a reading repeated in a later message is kept once, the first: by device-side id, else by metric and time', async () => {
    const s = telemetry.given(
      message(d1, [
        { metric: 'temp', ts: '00:00:10', value: 1, id: 'a' },
        { metric: 'temp', ts: '00:00:20', value: 2 },
      ]),
      // Same id (another time and value), same metric and time without id, and the same id on another device.
      message(d1, [
        { metric: 'temp', ts: '00:00:30', value: 100, id: 'a' },
        { metric: 'temp', ts: '00:00:20', value: 200 },
        { metric: 'temp', ts: '00:00:40', value: 4, id: 'b' },
      ]),
      message(d2, [{ metric: 'temp', ts: '00:00:10', value: 5, id: 'a' }]),
      // The first release's event of an id already kept, and of a time already kept.
      reading(d1, 'temp', '00:00:50', 300, 'b', true),
      reading(d1, 'temp', '00:00:20', 400, undefined, true),
    );
    const [p1, p2, p3] = (await s.recorded()).map((e) => e.position);
    await s.thenRows(
      'telemetry_readings',
      [
        { position: p1, idx: 0, device_id: d1, value: 1 },
        { position: p1, idx: 1, device_id: d1, value: 2 },
        { position: p2, idx: 2, device_id: d1, value: 4 },
        { position: p3, idx: 0, device_id: d2, value: 5 },
      ],
      { columns: ['position', 'idx', 'device_id', 'value'] },
    );
    // Rollups and latest values take only what was kept.
    await s.thenQuery(
      async (db) =>
        (
          await db.query(
            `SELECT device_id, width, count::int AS count, sum FROM telemetry_rollups ORDER BY device_id, width`,
          )
        ).rows,
      [
        ...['1d', '1h', '1m', '5m'].map((width) => ({ device_id: d1, width, count: 3, sum: 7 })),
        ...['1d', '1h', '1m', '5m'].map((width) => ({ device_id: d2, width, count: 1, sum: 5 })),
      ],
    );
    await s.thenQuery((db) => latestValue(db, d1, 'temp'), { value: 4, ts: new Date(t('00:00:40')) });
  });

  it('history is partitioned by UTC day, each partition created when a batch first touches its day', async () => {
    const s = telemetry.given(
      message(d1, [
        { metric: 'temp', ts: '2025-01-01T23:59:59.999Z', value: 1 },
        { metric: 'temp', ts: '2025-01-02T00:00:00.000Z', value: 2 },
      ]),
      reading(d1, 'temp', '00:00:01', 3),
      message(d1, [{ metric: 'temp', ts: '2024-02-29T12:00:00.000Z', value: 4 }]),
    );
    await s.thenQuery(readingDays, ['2024-02-29', '2025-01-01', '2025-01-02']);
    await s.thenQuery(
      async (db) =>
        (
          await db.query(`SELECT tableoid::regclass::text AS part, value FROM telemetry_readings ORDER BY value`)
        ).rows.map((r) => ({ part: String(r.part).replace(/^.*\./, ''), value: r.value })),
      [
        { part: 'telemetry_readings_20250101', value: 1 },
        { part: 'telemetry_readings_20250102', value: 2 },
        { part: 'telemetry_readings_20250101', value: 3 },
        { part: 'telemetry_readings_20240229', value: 4 },
      ],
    );
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

  it('two readings with the same time, one with an id: both kept, the later event is the latest', async () => {
    const s = telemetry.given(reading(d1, 'temp', '00:00:10', 1), reading(d1, 'temp', '00:00:10', 2, 'x'));
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
      (db) => readingsAfter(db, d1, 'temp', { position: p1!, idx: END_OF_EVENT }, 100),
      [
        { position: p2, idx: 0, ts: new Date(t('00:00:10')), value: 1 },
        { position: p3, idx: 0, ts: new Date(t('00:00:30')), value: 3 },
      ],
    );
  });

  it('readingsAfter resumes within an event, from the reading after the cursor', async () => {
    const s = telemetry.given(
      message(d1, [
        { metric: 'temp', ts: '00:00:01', value: 1 },
        { metric: 'hum', ts: '00:00:01', value: 50 },
        { metric: 'temp', ts: '00:00:02', value: 2 },
        { metric: 'temp', ts: '00:00:03', value: 3 },
      ]),
    );
    const [p1] = (await s.recorded()).map((e) => e.position);
    await s.thenQuery(
      (db) => readingsAfter(db, d1, 'temp', { position: p1!, idx: 0 }, 1),
      [{ position: p1, idx: 2, ts: new Date(t('00:00:02')), value: 2 }],
    );
    await s.thenQuery((db) => readingsAfter(db, d1, 'temp', { position: p1!, idx: 3 }, 10), []);
  });

  it('readingsAfter reads the rows it sends, not the readings ingested since autovacuum last came by', async () => {
    // Two devices, 4,000 fresh readings each (no VACUUM: what a live stream meets under ingest).
    const n = 4000;
    const at = (i: number) => new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString();
    const s = telemetry.given(
      ...[d1, d2].map((device) =>
        message(
          device,
          Array.from({ length: n }, (_, i) => ({ metric: 'temp', ts: at(i), value: i })),
        ),
      ),
    );
    const [p1] = (await s.recorded()).map((e) => e.position);
    // The plan of the query readingsAfter sends, run: the rows each scan produced and threw away.
    type PlanNode = {
      'Actual Rows'?: number;
      'Rows Removed by Filter'?: number;
      'Rows Removed by Index Recheck'?: number;
      'Node Type': string;
      Plans?: PlanNode[];
    };
    const examined = (node: PlanNode): number =>
      (/Scan/.test(node['Node Type'])
        ? (node['Actual Rows'] ?? 0) +
          (node['Rows Removed by Filter'] ?? 0) +
          (node['Rows Removed by Index Recheck'] ?? 0)
        : 0) + (node.Plans ?? []).reduce((sum, child) => sum + examined(child), 0);
    const plan = await s.read(async (db) => {
      let explained: PlanNode | undefined;
      const explaining = {
        query: async (text: string, values?: unknown[]) => {
          const r = await db.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values);
          explained = (r.rows[0]!['QUERY PLAN'] as { Plan: PlanNode }[])[0]!.Plan;
          return { rows: [], rowCount: 0 };
        },
      };
      await readingsAfter(explaining, d1, 'temp', { position: p1!, idx: n - 11 }, 100);
      return examined(explained!);
    });
    // 10 rows sent; a block-range index on position read every fresh row of both devices (8,000).
    expect(plan).toBeLessThanOrEqual(20);
  });

  it('retention drops whole day partitions older than the cutoff and forgets their ids; rollups and latest stay', async () => {
    const s = telemetry.given(
      message(d1, [
        { metric: 'temp', ts: '2024-12-30T10:00:00.000Z', value: 1, id: 'old' },
        { metric: 'temp', ts: '2024-12-31T10:00:00.000Z', value: 2, id: 'mid' },
        { metric: 'temp', ts: '00:00:30', value: 3, id: 'new' },
      ]),
    );
    // Cutoff within 2024-12-31: that day is not wholly older, so it stays.
    await s.thenQuery((db) => dropReadingsBefore(db, new Date('2024-12-31T12:00:00.000Z'), 10), {
      days: ['2024-12-30'],
      ids: 2,
    });
    await s.thenQuery((db) => dropReadingsBefore(db, new Date('2024-12-31T12:00:00.000Z'), 10), { days: [], ids: 0 });
    await s.thenQuery(readingDays, ['2024-12-31', '2025-01-01']);
    await s.thenRows('telemetry_readings', [{ value: 2 }, { value: 3 }], { columns: ['value'] });
    await s.thenRows('telemetry_reading_ids', [{ reading_id: 'new' }], { columns: ['reading_id'] });
    await s.thenQuery(
      async (db) =>
        (await db.query(`SELECT count::int AS count, sum FROM telemetry_rollups WHERE width = '1d' ORDER BY sum`)).rows,
      [
        { count: 1, sum: 1 },
        { count: 1, sum: 2 },
        { count: 1, sum: 3 },
      ],
    );
    await s.thenQuery((db) => latestValue(db, d1, 'temp'), { value: 3, ts: new Date(t('00:00:30')) });
  });

  it('a batch of more than UNNEST_MAX_READINGS readings is COPYed, a smaller one passed as arrays: the same rows, repeats and ids to escape included', async () => {
    const at = (second: number) => new Date(Date.UTC(2025, 0, 1) + second * 1000).toISOString();
    const n = 1000;
    // Ids the two encodings must escape: backslash, quote, braces, comma, and the word NULL.
    const key = (i: number) => `k\\"{${i}},NULL`;
    const range = (f: (i: number) => { metric: string; ts: string; value: number; id?: string }) =>
      Array.from({ length: n }, (_, i) => f(i));
    // Batch mode: all three messages in one batch (3,000 readings: COPY); one by one: 1,000 each (arrays).
    expect(3 * n).toBeGreaterThan(UNNEST_MAX_READINGS);
    expect(n).toBeLessThanOrEqual(UNNEST_MAX_READINGS);
    const s = telemetry.given(
      message(
        d1,
        range((i) => ({ metric: 'temp', ts: at(i), value: i, id: key(i) })),
      ),
      // ids 500..1499: the first 500 were taken by the message before.
      message(
        d1,
        range((i) => ({ metric: 'temp', ts: at(2000 + i), value: 1, id: key(i + 500) })),
      ),
      // no ids, each (metric, ts) twice: the first of each kept.
      message(
        d1,
        range((i) => ({ metric: 'hum', ts: at(i % 500), value: i < 500 ? 2 : 99 })),
      ),
    );
    await s.thenQuery(
      async (db) =>
        (
          await db.query(
            `SELECT metric, count(*)::int AS n, sum(value)::float8 AS sum FROM telemetry_readings GROUP BY metric ORDER BY metric`,
          )
        ).rows,
      [
        { metric: 'hum', n: 500, sum: 1000 },
        { metric: 'temp', n: 1500, sum: 499_500 + 500 },
      ],
    );
    await s.thenQuery(
      async (db) => (await db.query(`SELECT value FROM telemetry_readings WHERE reading_id = $1`, [key(7)])).rows,
      [{ value: 7 }],
    );
    await s.thenQuery(
      async (db) =>
        (await db.query(`SELECT metric, count::int AS count FROM telemetry_rollups WHERE width = '1d' ORDER BY metric`))
          .rows,
      [
        { metric: 'hum', count: 500 },
        { metric: 'temp', count: 1500 },
      ],
    );
  });
});
