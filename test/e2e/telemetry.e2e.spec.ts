import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { connectDevice, ownerWithDevice, publishAcked, type OwnedDevice } from '../support/telemetry';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';

/** The telemetry contract over MQTT (embedded broker) and HTTP, as devices and owners use it. */
const exec = promisify(execFile);
let app: TestApp;
let port: number;
let dev: OwnedDevice;
const topic = (id: string) => `devices/${id}/readings`;

beforeAll(async () => {
  app = await startTestApp();
  port = app.app.get(TelemetryServices).mqttPort;
  dev = await ownerWithDevice(app.http);
});
afterAll(async () => {
  await app.stop();
});

async function rowsOf(
  deviceId: string,
  metric: string,
): Promise<{ value: number; ts: Date; reading_id: string | null }[]> {
  const r = await app.db.pool.query(
    'SELECT value, ts, reading_id FROM telemetry_readings WHERE device_id = $1 AND metric = $2 ORDER BY ts',
    [deviceId, metric],
  );
  return r.rows as { value: number; ts: Date; reading_id: string | null }[];
}

describe('MQTT ingestion (embedded broker)', () => {
  it('an MQTT.js device publishes at QoS 1 with its token; the readings become queryable', async () => {
    const c = await connectDevice(port, dev.deviceId, dev.token);
    try {
      await publishAcked(
        c,
        topic(dev.deviceId),
        JSON.stringify({ metric: 'temp', value: 21.5, ts: '2026-01-01T00:00:00Z', id: 'a1' }),
      );
      await publishAcked(
        c,
        topic(dev.deviceId),
        JSON.stringify([
          { metric: 'temp', value: 22, ts: '2026-01-01T00:00:30Z' },
          { metric: 'humidity', value: 40, ts: 1767225600000 },
        ]),
      );
    } finally {
      c.end(true);
    }
    // Every PUBACKed reading is already in the event store: one event per message.
    const events = await app.db.pool.query(
      `SELECT type, jsonb_array_length(data->'readings') AS n FROM events WHERE stream_id = $1 ORDER BY position`,
      [`telemetry-${dev.deviceId}`],
    );
    expect(events.rows).toEqual([
      { type: 'telemetry.ReadingsRecorded', n: 1 },
      { type: 'telemetry.ReadingsRecorded', n: 2 },
    ]);
    await eventually(async () => (await rowsOf(dev.deviceId, 'temp')).length === 2, 'readings projected');
    const latest = await app.http('GET', `/devices/${dev.deviceId}/metrics/temp/latest`, undefined, dev.owner);
    expect(latest).toMatchObject({ status: 200, body: { value: 22, ts: '2026-01-01T00:00:30.000Z' } });
    const all = await app.http('GET', `/devices/${dev.deviceId}/metrics`, undefined, dev.owner);
    expect(all.body.metrics).toEqual([
      { metric: 'humidity', value: 40, ts: '2026-01-01T00:00:00.000Z' },
      { metric: 'temp', value: 22, ts: '2026-01-01T00:00:30.000Z' },
    ]);
  });

  it('the Debian mosquitto_pub client publishes with a device token', async () => {
    const { stdout, stderr } = await exec('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-q',
      '1',
      '-V',
      'mqttv311',
      '-i',
      dev.deviceId,
      '-u',
      dev.deviceId,
      '-P',
      dev.token,
      '-t',
      topic(dev.deviceId),
      '-m',
      JSON.stringify({ metric: 'pressure', value: 1013.25, ts: '2026-01-01T00:01:00Z' }),
    ]);
    expect(stdout + stderr).toBe('');
    const r = await app.http('GET', `/devices/${dev.deviceId}/metrics/pressure/latest`, undefined, {
      ...dev.owner,
      'x-min-position': String(await app.platform.store.headPosition()),
    });
    expect(r).toMatchObject({ status: 200, body: { value: 1013.25 } });
  });

  it("a wrong token, another device's token, and a wildcard client id are refused at CONNECT", async () => {
    const other = await ownerWithDevice(app.http);
    await expect(connectDevice(port, dev.deviceId, 'not-a-token')).rejects.toThrow(
      /Bad username or password|Not authorized/i,
    );
    await expect(connectDevice(port, dev.deviceId, other.token)).rejects.toThrow(
      /Bad username or password|Not authorized/i,
    );
    const owner = await app.http('POST', '/auth/login', { email: app.admin.email, password: app.admin.password });
    await expect(connectDevice(port, dev.deviceId, owner.body.accessToken)).rejects.toThrow(
      /Bad username or password|Not authorized/i,
    );
    for (const id of ['dev/1', 'dev+', 'dev#']) {
      await expect(connectDevice(port, dev.deviceId, dev.token, { clientId: id })).rejects.toThrow(
        /Identifier rejected/i,
      );
    }
    await expect(connectDevice(port, `${dev.deviceId}/x`, dev.token, { clientId: dev.deviceId })).rejects.toThrow(
      /Bad username or password/i,
    );
  });

  it("publishing to another device's topic closes the connection without PUBACK and stores nothing", async () => {
    const other = await ownerWithDevice(app.http);
    const c = await connectDevice(port, dev.deviceId, dev.token);
    try {
      await expect(
        publishAcked(c, topic(other.deviceId), JSON.stringify({ metric: 'temp', value: 1 })),
      ).rejects.toThrow(/closed before PUBACK/);
    } finally {
      c.end(true);
    }
    const n = await app.db.pool.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [
      `telemetry-${other.deviceId}`,
    ]);
    expect(n.rows[0].n).toBe(0);
  });

  it('subscriptions outside devices/<own id>/# are refused (SUBACK 0x80), its own are granted', async () => {
    const other = await ownerWithDevice(app.http);
    const c = await connectDevice(port, dev.deviceId, dev.token);
    try {
      const granted = await c.subscribeAsync(`devices/${dev.deviceId}/#`, { qos: 1 });
      expect(granted.map((g) => g.qos)).toEqual([1]);
      for (const t of [
        `devices/${other.deviceId}/#`,
        'devices/+/readings',
        '#',
        `$share/g/devices/${dev.deviceId}/readings`,
      ]) {
        const refused = await c.subscribeAsync(t, { qos: 1 }).then(
          () => undefined,
          (e: { packet?: { granted?: number[] } }) => e,
        );
        expect(refused?.packet?.granted).toEqual([128]);
      }
    } finally {
      c.end(true);
    }
  });

  it('bad payloads are each dead-lettered with their reason; the connection and the app keep working', async () => {
    const owned = await ownerWithDevice(app.http);
    const c = await connectDevice(port, owned.deviceId, owned.token);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const bad: [string, string | Buffer][] = [
      ['TELEMETRY.MALFORMED_JSON', '{"metric": "temp", '],
      ['TELEMETRY.INVALID_READING', JSON.stringify({ metric: 'temp', value: 'hot' })],
      ['TELEMETRY.MALFORMED_JSON', '{"metric": "temp", "value": NaN}'],
      ['TELEMETRY.INVALID_READING', JSON.stringify({ metric: 'Temp!', value: 1 })],
      ['TELEMETRY.INVALID_READING', JSON.stringify({ metric: 'temp', value: 1, ts: future })],
      [
        'TELEMETRY.INVALID_READING',
        JSON.stringify(Array.from({ length: 1001 }, (_, i) => ({ metric: 'temp', value: i }))),
      ],
      ['TELEMETRY.INVALID_READING', '['.repeat(10_000) + ']'.repeat(10_000)],
      ['TELEMETRY.PAYLOAD_TOO_LARGE', Buffer.alloc(5 * 1024 * 1024, 'x')],
    ];
    try {
      for (const [, payload] of bad) await publishAcked(c, topic(owned.deviceId), payload);
      // Still connected: a good reading after them is stored.
      await publishAcked(
        c,
        topic(owned.deviceId),
        JSON.stringify({ metric: 'temp', value: 5, ts: '2026-01-02T00:00:00Z' }),
      );
    } finally {
      c.end(true);
    }
    const admin = await app.adminAuth();
    const dl = await app.http('GET', '/admin/dead-letters?limit=100', undefined, admin);
    expect(dl.status).toBe(200);
    const mine = dl.body.items.filter((i: { deviceId: string }) => i.deviceId === owned.deviceId).reverse();
    expect(mine.map((i: { code: string }) => i.code)).toEqual(bad.map(([code]) => code));
    expect(mine[1].reason).toMatch(/value: must be a finite number/);
    expect(mine[4].reason).toMatch(/ts: must not be more than 5 minutes in the future/);
    expect(mine[5].reason).toMatch(/must hold 1 to 1000 readings/);
    expect(mine[7]).toMatchObject({ payloadSize: 5 * 1024 * 1024, truncated: true, topic: topic(owned.deviceId) });
    expect(mine[7].payload.length).toBe(64 * 1024);
    const page = await app.http('GET', '/admin/dead-letters?limit=2', undefined, admin);
    expect(page.body.items).toHaveLength(2);
    expect(page.body.nextBefore).toEqual(expect.any(Number));
    const notAdmin = await app.http('GET', '/admin/dead-letters', undefined, owned.owner);
    expect(notAdmin.status).toBe(403);
    const metrics = await app.http('GET', '/metrics');
    expect(metrics.body).toMatch(/telemetry_dead_letters_total\{code="TELEMETRY.INVALID_READING"\} [1-9]/);
    expect(metrics.body).toMatch(/telemetry_dead_letters_total\{code="TELEMETRY.PAYLOAD_TOO_LARGE"\} 1/);
    expect((await app.http('GET', '/health')).status).toBe(200);
    const events = await app.db.pool.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [
      `telemetry-${owned.deviceId}`,
    ]);
    expect(events.rows[0].n).toBe(1);
  });

  it('a resent reading (same id, or same metric and ts) is stored once', async () => {
    const owned = await ownerWithDevice(app.http);
    const c = await connectDevice(port, owned.deviceId, owned.token);
    try {
      const withId = JSON.stringify({ metric: 'temp', value: 1, id: 'r-1' });
      const withTs = JSON.stringify({ metric: 'temp', value: 2, ts: '2026-01-03T00:00:00Z' });
      await Promise.all([withId, withId, withTs, withTs, withId].map((p) => publishAcked(c, topic(owned.deviceId), p)));
      await publishAcked(c, topic(owned.deviceId), withTs);
    } finally {
      c.end(true);
    }
    const events = await app.db.pool.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [
      `telemetry-${owned.deviceId}`,
    ]);
    expect(events.rows[0].n).toBe(2);
  });
  it('a resent message and a reading repeated in a later message are each stored once, before and after a rebuild', async () => {
    const owned = await ownerWithDevice(app.http);
    const c = await connectDevice(port, owned.deviceId, owned.token);
    const first = JSON.stringify([
      { metric: 'rep', value: 1, id: 'm-1' },
      { metric: 'rep', value: 2, ts: '2026-01-04T00:00:00Z' },
    ]);
    try {
      await publishAcked(c, topic(owned.deviceId), first);
      // A QoS 1 redelivery of the same message (a device that lost the PUBACK sends it again).
      await publishAcked(c, topic(owned.deviceId), first);
      // A later, different message that repeats both readings (by id, and by metric and ts) and adds one.
      await publishAcked(
        c,
        topic(owned.deviceId),
        JSON.stringify([
          { metric: 'rep', value: 10, id: 'm-1', ts: '2026-01-05T00:00:00Z' },
          { metric: 'rep', value: 20, ts: '2026-01-04T00:00:00Z' },
          { metric: 'rep', value: 3, id: 'm-3', ts: '2026-01-06T00:00:00Z' },
        ]),
      );
    } finally {
      c.end(true);
    }
    // The same batch over HTTP repeats m-3 once more.
    const http = await app.http(
      'POST',
      `/devices/${owned.deviceId}/readings`,
      [{ metric: 'rep', value: 30, id: 'm-3' }],
      owned.owner,
    );
    expect(http.status).toBe(202);
    const events = await app.db.pool.query(
      `SELECT jsonb_array_length(data->'readings') AS n FROM events WHERE stream_id = $1 ORDER BY position`,
      [`telemetry-${owned.deviceId}`],
    );
    // The resend is not stored again; the later message and the batch are events of their own.
    expect(events.rows.map((r: { n: number }) => r.n)).toEqual([2, 3, 1]);
    // Wait for this device's last event by its own position: the store's head is held back by any
    // transaction in flight in the cluster (other test files' databases included).
    const last = await app.db.pool.query<{ p: string }>('SELECT max(position) AS p FROM events WHERE stream_id = $1', [
      `telemetry-${owned.deviceId}`,
    ]);
    const kept = async () => {
      expect(await app.platform.projections.waitFor('telemetry', Number(last.rows[0]!.p), 30_000)).toBe(true);
      const rows = (await rowsOf(owned.deviceId, 'rep')).map((r) => ({ value: r.value, id: r.reading_id }));
      const agg = await app.http(
        'GET',
        `/devices/${owned.deviceId}/metrics/rep?from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z&bucket=1d&agg=count`,
        undefined,
        owned.owner,
      );
      return { rows, counts: agg.body.points as unknown };
    };
    const expected = {
      rows: [
        { value: 2, id: null },
        { value: 3, id: 'm-3' },
        // m-1 was measured at its receive time (no ts): today.
        { value: 1, id: 'm-1' },
      ],
      counts: [
        { ts: '2026-01-04T00:00:00.000Z', value: 1 },
        { ts: '2026-01-06T00:00:00.000Z', value: 1 },
      ],
    };
    expect(await kept()).toEqual(expected);
    await app.platform.projections.rebuild('telemetry', 'test');
    expect(await kept()).toEqual(expected);
  });
});

describe('POST /devices/:id/readings', () => {
  it('the device or its owner sends readings: 202 {accepted, duplicates, position}; others get 404', async () => {
    const owned = await ownerWithDevice(app.http);
    const body = [
      { metric: 'temp', value: 1, id: 'h1' },
      { metric: 'temp', value: 2, id: 'h2' },
      { metric: 'temp', value: 2, id: 'h2' },
    ];
    const r = await app.http('POST', `/devices/${owned.deviceId}/readings`, body, {
      authorization: `Bearer ${owned.token}`,
    });
    expect(r).toMatchObject({ status: 202, body: { accepted: 2, duplicates: 1, position: expect.any(Number) } });
    // The same batch again (a retry): stored once, every reading counted as a duplicate.
    const again = await app.http('POST', `/devices/${owned.deviceId}/readings`, body, owned.owner);
    expect(again).toMatchObject({ status: 202, body: { accepted: 0, duplicates: 3, position: r.body.position } });
    // Another batch repeating h1: recorded in its event, kept once by the read model (below).
    const other = await app.http('POST', `/devices/${owned.deviceId}/readings`, body.slice(0, 1), owned.owner);
    expect(other).toMatchObject({ status: 202, body: { accepted: 1, duplicates: 0 } });
    await app.platform.projections.waitFor('telemetry', other.body.position, 30_000);
    expect((await rowsOf(owned.deviceId, 'temp')).map((x) => x.reading_id).sort()).toEqual(['h1', 'h2']);
    const stranger = await ownerWithDevice(app.http);
    expect((await app.http('POST', `/devices/${owned.deviceId}/readings`, body, stranger.owner)).status).toBe(404);
    expect(
      (
        await app.http('POST', `/devices/${owned.deviceId}/readings`, body, {
          authorization: `Bearer ${stranger.token}`,
        })
      ).status,
    ).toBe(404);
    // Read-your-writes with the returned position.
    const series = await app.http(
      'GET',
      `/devices/${owned.deviceId}/metrics/temp?minPosition=${r.body.position}`,
      undefined,
      owned.owner,
    );
    expect(series.body.points.map((p: { value: number }) => p.value)).toEqual([1, 2]);
    expect((await app.http('GET', `/devices/${owned.deviceId}/metrics`, undefined, stranger.owner)).status).toBe(404);
    const admin = await app.adminAuth();
    expect((await app.http('GET', `/devices/${owned.deviceId}/metrics`, undefined, admin)).status).toBe(200);
  });

  it('bad input is a 400 problem naming the field and the rule', async () => {
    const owned = await ownerWithDevice(app.http);
    const r = await app.http(
      'POST',
      `/devices/${owned.deviceId}/readings`,
      [
        { metric: 'temp', value: 1 },
        { metric: 'x', value: null },
      ],
      owned.owner,
    );
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(r.body).toMatchObject({
      code: 'TELEMETRY.INVALID_READING',
      errors: [{ field: '1.value', rule: 'must be a finite number' }],
    });
    const q = await app.http('GET', `/devices/${owned.deviceId}/metrics/temp?bucket=2m`, undefined, owned.owner);
    expect(q).toMatchObject({ status: 400, body: { errors: [{ field: 'bucket' }] } });
  });

  it("a revoked device's readings are refused", async () => {
    const owned = await ownerWithDevice(app.http);
    expect((await app.http('POST', `/devices/${owned.deviceId}/revoke`, undefined, owned.owner)).status).toBe(200);
    const r = await app.http('POST', `/devices/${owned.deviceId}/readings`, { metric: 'temp', value: 1 }, owned.owner);
    expect(r).toMatchObject({ status: 403, body: { code: 'TELEMETRY.DEVICE_REVOKED' } });
  });

  it('is also POST /commands/IngestReading', async () => {
    const owned = await ownerWithDevice(app.http);
    const r = await app.http(
      'POST',
      '/commands/IngestReading',
      { deviceId: owned.deviceId, readings: [{ metric: 'rpm', value: 900, id: 'c1' }] },
      owned.owner,
    );
    expect(r).toMatchObject({ status: 201, body: { accepted: 1, duplicates: 0, duplicate: false } });
    const again = await app.http(
      'POST',
      '/commands/IngestReading',
      { deviceId: owned.deviceId, readings: [{ metric: 'rpm', value: 900, id: 'c1' }] },
      owned.owner,
    );
    expect(again).toMatchObject({ status: 200, body: { accepted: 0, duplicates: 1, duplicate: true } });
  });
});

describe('sensor history', () => {
  it('aggregations per bucket equal a direct computation over the raw rows', async () => {
    const owned = await ownerWithDevice(app.http);
    const start = Date.parse('2026-02-01T00:00:00Z');
    // 3 hours at one reading every 7 s, integer values (sums are exact), sent in batches of 500.
    const readings = Array.from({ length: 1543 }, (_, i) => ({
      metric: 'load',
      value: ((i * 37) % 101) - 50,
      ts: start + i * 7000,
    }));
    let position = 0;
    for (let i = 0; i < readings.length; i += 500) {
      const r = await app.http('POST', `/devices/${owned.deviceId}/readings`, readings.slice(i, i + 500), owned.owner);
      expect(r.status).toBe(202);
      position = r.body.position;
    }
    await app.platform.projections.waitFor('telemetry', position, 30_000);
    const from = '2026-02-01T00:10:00Z';
    const to = '2026-02-01T02:30:00Z';
    for (const [bucket, secs] of [
      ['1m', 60],
      ['5m', 300],
      ['1h', 3600],
      ['1d', 86400],
    ] as const) {
      const direct = await app.db.pool.query(
        `SELECT date_bin($3::interval, ts, timestamptz '1970-01-01') AS b, avg(value) AS avg, min(value) AS min, max(value) AS max, count(*)::float8 AS count, sum(value) AS sum
           FROM telemetry_readings WHERE device_id = $1 AND metric = 'load'
            AND date_bin($3::interval, ts, timestamptz '1970-01-01') >= date_bin($3::interval, $4::timestamptz, timestamptz '1970-01-01')
            AND date_bin($3::interval, ts, timestamptz '1970-01-01') < $2
          GROUP BY 1 ORDER BY 1`,
        [owned.deviceId, to, `${secs} seconds`, from],
      );
      for (const agg of ['avg', 'min', 'max', 'count', 'sum'] as const) {
        const r = await app.http(
          'GET',
          `/devices/${owned.deviceId}/metrics/load?from=${from}&to=${to}&bucket=${bucket}&agg=${agg}&limit=10000&minPosition=${position}`,
          undefined,
          owned.owner,
        );
        expect(r.status).toBe(200);
        expect(r.body.points.map((p: { ts: string }) => p.ts)).toEqual(
          direct.rows.map((d) => (d.b as Date).toISOString()),
        );
        r.body.points.forEach((p: { value: number }, i: number) =>
          expect(p.value).toBeCloseTo(Number(direct.rows[i][agg]), 9),
        );
      }
    }
    const raw = await app.http(
      'GET',
      `/devices/${owned.deviceId}/metrics/load?from=${from}&to=${to}&limit=10000`,
      undefined,
      owned.owner,
    );
    const direct = await app.db.pool.query(
      `SELECT value FROM telemetry_readings WHERE device_id = $1 AND metric = 'load' AND ts >= $2 AND ts < $3 ORDER BY ts`,
      [owned.deviceId, from, to],
    );
    expect(raw.body.points.map((p: { value: number }) => p.value)).toEqual(direct.rows.map((d) => d.value as number));
    expect(direct.rows.length).toBeGreaterThan(1000);
  });

  it('live values arrive as server-sent events', async () => {
    const owned = await ownerWithDevice(app.http);
    const ctrl = new AbortController();
    const res = await fetch(`${app.url}/devices/${owned.deviceId}/metrics/temp/stream`, {
      headers: owned.owner,
      signal: ctrl.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const post = await app.http(
      'POST',
      `/devices/${owned.deviceId}/readings`,
      [
        { metric: 'temp', value: 7, ts: '2026-03-01T00:00:00Z' },
        { metric: 'other', value: 8 },
      ],
      owned.owner,
    );
    expect(post.status).toBe(202);
    while (!text.includes('event: reading')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    ctrl.abort();
    expect(text).toMatch(/event: reading\ndata: \{"value":7,"ts":"2026-03-01T00:00:00.000Z"\}/);
    expect(text).not.toMatch(/"value":8/);
  });

  it('a rebuild gives the same read model', async () => {
    const dump = async () => {
      const out: unknown[] = [];
      for (const [t, order] of [
        ['telemetry_readings', 'position, idx'],
        ['telemetry_reading_ids', 'device_id, reading_id'],
        ['telemetry_latest', 'device_id, metric'],
        ['telemetry_rollups', 'device_id, metric, width, bucket_start'],
      ]) {
        out.push((await app.db.pool.query(`SELECT * FROM ${t} ORDER BY ${order}`)).rows);
      }
      return out;
    };
    // The newest stored event by its own position (the store's head waits for every transaction in the cluster).
    const newest = await app.db.pool.query<{ p: string }>('SELECT max(position) AS p FROM events');
    expect(await app.platform.projections.waitFor('telemetry', Number(newest.rows[0]!.p), 30_000)).toBe(true);
    const before = await dump();
    const tables = async () =>
      (
        await app.db.pool.query(
          `SELECT c.oid::int AS oid, c.relname AS name FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE 'telemetry\\_%'
              AND c.relname NOT LIKE 'telemetry\\_dead\\_%' ORDER BY 2`,
        )
      ).rows as { oid: number; name: string }[];
    const old = await tables();
    await app.platform.projections.rebuild('telemetry', 'test');
    expect(await dump()).toEqual(before);
    // The swap put new tables in place, the day partitions with them (same names, none left behind).
    const swapped = await tables();
    expect(swapped.map((t) => t.name)).toEqual(old.map((t) => t.name));
    expect(swapped.filter((t) => old.some((o) => o.oid === t.oid))).toEqual([]);
    expect(swapped.filter((t) => /^telemetry_readings_\d{8}$/.test(t.name)).length).toBeGreaterThan(1);
    expect((before[0] as unknown[]).length).toBeGreaterThan(1000);
    expect((before[1] as unknown[]).length).toBeGreaterThan(0);
  });

  it('retention drops raw rows older than N days; rollups and latest values stay', async () => {
    const owned = await ownerWithDevice(app.http);
    const r = await app.http(
      'POST',
      `/devices/${owned.deviceId}/readings`,
      [
        { metric: 'old', value: 1, ts: '2020-01-01T00:00:00Z' },
        { metric: 'old', value: 2, ts: new Date().toISOString() },
      ],
      owned.owner,
    );
    await app.platform.projections.waitFor('telemetry', r.body.position, 30_000);
    const dropped = await app.app.get(TelemetryServices).applyRetention();
    expect(dropped).toContain('2020-01-01');
    const parts = await app.db.pool.query(`SELECT to_regclass('telemetry_readings_20200101') IS NULL AS gone`);
    expect(parts.rows[0].gone).toBe(true);
    expect((await rowsOf(owned.deviceId, 'old')).map((x) => x.value)).toEqual([2]);
    const day = await app.http(
      'GET',
      `/devices/${owned.deviceId}/metrics/old?from=2019-12-31T00:00:00Z&to=2020-01-02T00:00:00Z&bucket=1d&agg=count`,
      undefined,
      owned.owner,
    );
    expect(day.body.points).toEqual([{ ts: '2020-01-01T00:00:00.000Z', value: 1 }]);
    const events = await app.db.pool.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [
      `telemetry-${owned.deviceId}`,
    ]);
    expect(events.rows[0].n).toBe(1);
  });
});

describe('device token lifetime', () => {
  it('a session ends when its device token expires', async () => {
    const short = await startTestApp({ env: { DEVICE_TOKEN_TTL_S: '3' } });
    try {
      const owned = await ownerWithDevice(short.http);
      const c = await connectDevice(short.app.get(TelemetryServices).mqttPort, owned.deviceId, owned.token);
      let closed = false;
      c.on('close', () => {
        closed = true;
      });
      await publishAcked(c, topic(owned.deviceId), JSON.stringify({ metric: 'temp', value: 1 }));
      // The broker closes the connection at the token's expiry (no reconnect: reconnectPeriod 0).
      await eventually(() => closed, 'the broker to end the session', 30_000);
      c.end(true);
      // And the expired token no longer connects.
      await expect(
        connectDevice(short.app.get(TelemetryServices).mqttPort, owned.deviceId, owned.token),
      ).rejects.toThrow(/Bad username or password/i);
    } finally {
      await short.stop();
    }
  });
});

describe('readings stamped too far in the past (TELEMETRY_MAX_PAST_DAYS)', () => {
  it('are refused over HTTP and dead-lettered over MQTT, naming the field; no day partition is made for them', async () => {
    const strict = await startTestApp({ env: { TELEMETRY_MAX_PAST_DAYS: '30' } });
    try {
      const owned = await ownerWithDevice(strict.http);
      const partitions = async () =>
        (
          await strict.db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'telemetry_readings'::regclass`,
          )
        ).rows[0]!.n;
      const before = await partitions();
      const day = 86_400_000;
      // One hostile message: 1000 readings, each on its own day long ago.
      const flood = Array.from({ length: 1000 }, (_, i) => ({ metric: 'temp', value: i, ts: i * day }));
      const r = await strict.http('POST', `/devices/${owned.deviceId}/readings`, flood, owned.owner);
      expect(r.status).toBe(400);
      expect(r.body.errors[0]).toEqual({ field: '0.ts', rule: 'must not be more than 30 days in the past' });
      const c = await connectDevice(strict.app.get(TelemetryServices).mqttPort, owned.deviceId, owned.token);
      try {
        await publishAcked(c, topic(owned.deviceId), JSON.stringify(flood));
        // Just within the limit is fine.
        const recent = { metric: 'temp', value: 1, ts: new Date(Date.now() - 29 * day).toISOString() };
        await publishAcked(c, topic(owned.deviceId), JSON.stringify(recent));
      } finally {
        c.end(true);
      }
      const dl = await strict.http('GET', '/admin/dead-letters?limit=10', undefined, await strict.adminAuth());
      const mine = dl.body.items.filter((i: { deviceId: string }) => i.deviceId === owned.deviceId);
      expect(mine).toHaveLength(1);
      expect(mine[0].reason).toMatch(/0\.ts: must not be more than 30 days in the past/);
      const stored = await strict.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM events WHERE stream_id = $1`,
        [`telemetry-${owned.deviceId}`],
      );
      expect(stored.rows[0]!.n).toBe(1);
      const newest = await strict.db.pool.query<{ p: string }>('SELECT max(position) AS p FROM events');
      expect(await strict.platform.projections.waitFor('telemetry', Number(newest.rows[0]!.p), 30_000)).toBe(true);
      // At most the recent reading's day (and the days the projection keeps ahead) are there.
      expect((await partitions()) - before).toBeLessThanOrEqual(1);
    } finally {
      await strict.stop();
    }
  });
});
