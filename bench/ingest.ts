import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { createApp, type RunningApp } from '../src/app';
import { loadConfig } from '../src/config';
import { IdentityServices } from '../src/identity/identity.services';
import { createLogger } from '../src/platform/logger';
import type { Queryable } from '../projections/projection';
import { telemetryProjection } from '../projections/telemetry.projection';
import { bucketSeriesJson, rawSeriesJson } from '../projections/telemetry.queries';
import type { Pool } from 'pg';
import { readCheckpoint } from '../src/platform/processing/checkpoints';
import { EmbeddedBroker } from '../src/telemetry/embedded-broker';
import { startMosquitto, type Mosquitto } from '../test/support/mosquitto';
import { TelemetryServices } from '../src/telemetry/telemetry.services';
import { sendJson, target } from './http-client';
import {
  benchDatabaseUrl,
  copyField,
  copyLines,
  envInt,
  fmtMs,
  info,
  loadLine,
  median,
  percentile,
  processCpuMs,
  RUNS,
  report,
  serverSummary,
  sleep,
} from './support';

/**
 * Ingestion on the real application (createApp, embedded aedes broker,
 * projections running), each figure against a baseline measured in the same run:
 *
 * (a) readings/s stored AND queryable (projection caught up) through MQTT at
 *     QoS 1, vs the same publisher through the same broker code (a second
 *     EmbeddedBroker in this process, same auth and payload validation) that
 *     acknowledges without storing. Target >= 0.5x.
 *     Then (a)'s ceiling with this storage ("floor"): the telemetry projection's own statements applying
 *     the same events to fresh tables, nothing else running, vs the same pass-through (storageFloor).
 * (b) readings/s through POST /devices/:id/readings in batches of 500, vs raw
 *     COPY of the same rows (one COPY per 500-row batch, same concurrency)
 *     into a plain table. Target >= 0.5x.
 * (c) publish-to-queryable latency at half of (a)'s stored rate, open loop:
 *     p50 / p99, target p99 <= 150 ms.
 * (d) external broker mode: a real mosquitto (the shipped limits) and a second
 *     app instance subscribed to it (MQTT_URL), stored + queryable, vs (a)'s
 *     embedded mode, runs interleaved, same publisher and load. Target >= 0.8x.
 * (e) history: BENCH_HISTORY_DAYS (30) days of 1 Hz readings of one metric
 *     (2.6M rows, ingested over HTTP), then GET .../metrics/:metric at
 *     bucket=1h over the whole range, and 24 h of raw points paged 10,000 at a
 *     time, vs the same SQL (projections/telemetry.queries.ts) run directly on
 *     the pool. Target >= 0.8x each.
 */

const READINGS = envInt('BENCH_INGEST_READINGS', 40_000);
const PER_MESSAGE = envInt('BENCH_INGEST_PER_MESSAGE', 10);
const WINDOW = envInt('BENCH_INGEST_WINDOW', 100);
const HTTP_CONCURRENCY = envInt('BENCH_INGEST_HTTP_CONCURRENCY', 4);
const LATENCY_SECONDS = envInt('BENCH_LATENCY_SECONDS', 10);
const HTTP_BATCH = 500;
const HISTORY_DAYS = envInt('BENCH_HISTORY_DAYS', 30);
/** Seconds of reads per side per run, in HISTORY_SLICES slices alternating route and SQL. */
const QUERY_SECONDS = envInt('BENCH_HISTORY_SECONDS', 3);
const HISTORY_SLICES = 6;
const DAY_MS = 86_400_000;
/**
 * Rows to run (BENCH_INGEST_ROWS, comma-separated: a,floor,b,c,d,e,split; default all). (c) runs (a) for
 * its rate; floor applies the events (a) stored.
 */
const ROWS = new Set(
  (process.env.BENCH_INGEST_ROWS ?? 'a,floor,b,c,d,e,split')
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean),
);
const row = (r: string) => ROWS.has(r) || (r === 'a' && (ROWS.has('c') || ROWS.has('floor')));

let seq = 0;
// Yesterday onwards, a millisecond apart: well within TELEMETRY_MAX_PAST_DAYS, never in the future.
const T0 = Date.now() - DAY_MS;
const payload = (n: number) =>
  JSON.stringify(
    Array.from({ length: n }, () => {
      const i = ++seq;
      return { metric: 'temp', value: (i % 1000) / 10, ts: T0 + i, id: i };
    }),
  );

async function connect(port: number, deviceId: string, token: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: deviceId,
    password: token,
    clientId: deviceId,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  c.setMaxListeners(0);
  return c;
}

/** Publishes `messages` messages at QoS 1 with WINDOW in flight; resolves when all are PUBACKed. */
/** Connects to mosquitto (anonymous in the bench, like the tests: device auth is the broker's there). */
function connectExternal(broker: Mosquitto, clientId: string): Promise<MqttClient> {
  return mqtt.connectAsync(broker.url, { clientId, protocolVersion: 4, reconnectPeriod: 0, clean: true });
}

async function publishAll(c: MqttClient, topic: string, messages: number): Promise<void> {
  let sent = 0;
  await Promise.all(
    Array.from({ length: WINDOW }, async () => {
      while (sent < messages) {
        sent++;
        await c.publishAsync(topic, payload(PER_MESSAGE), { qos: 1 });
      }
    }),
  );
}

async function main(): Promise<void> {
  const redisUrl = process.env.BENCH_REDIS_URL;
  if (!redisUrl) throw new Error('BENCH_REDIS_URL is not set: run the benchmarks with `bash bench/run.sh ingest`');
  const tag = `${Date.now().toString(36)}${process.pid}`;
  const config = loadConfig({
    DATABASE_URL: benchDatabaseUrl(),
    REDIS_URL: redisUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    MQTT_PORT: '0',
    MQTT_HOST: '127.0.0.1',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'bench-ingest-')),
    QUEUE_PREFIX: `bench-ingest-${tag}`,
    LOG_LEVEL: 'silent',
    DEVICE_TOKEN_TTL_S: '3600',
    ACCESS_TOKEN_TTL_S: '3600',
    LOGIN_MAX_PER_ADDRESS: '1000000',
  });
  let running: RunningApp | undefined;
  let passthrough: EmbeddedBroker | undefined;
  let external: RunningApp | undefined;
  let mosquitto: Mosquitto | undefined;
  try {
    running = await createApp(config, createLogger('silent'));
    const app = running;
    const pool = app.platform.pool;
    console.log(`ingest benchmark — ${await serverSummary(pool)}`);
    console.log(
      `${READINGS.toLocaleString('en-US')} readings per run, ${PER_MESSAGE} per MQTT message, ${WINDOW} messages in flight, ${RUNS} runs per figure; app, broker and load generator share this process`,
    );
    console.log(loadLine('start'));
    // PostgreSQL CPU: this benchmark's server only (its postmaster and children), not other servers on the box.
    const postmaster = await postmasterPid(pool);
    const postgresCpuMs = () => serverCpuMs(postmaster);

    // An owner and a device, over HTTP as a client would.
    const http = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(app.url + path, {
        method,
        headers: { 'content-type': 'application/json', ...headers },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const email = `bench-${tag}@example.test`;
    const password = `Pw-${randomBytes(12).toString('base64url')}`;
    const signup = await http('POST', '/auth/signup', { email, password, name: 'Load Generator' });
    if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${JSON.stringify(signup.body)}`);
    const owner = {
      authorization: `Bearer ${(await http('POST', '/auth/login', { email, password })).body.accessToken as string}`,
    };
    const dev = await http('POST', '/devices', { name: 'bench' }, owner);
    if (dev.status !== 201) throw new Error(`device: ${dev.status} ${JSON.stringify(dev.body)}`);
    const deviceId = dev.body.deviceId as string;
    const issued = await http('POST', `/devices/${deviceId}/tokens`, { secret: dev.body.secret });
    if (issued.status !== 200) throw new Error(`device token: ${issued.status} ${JSON.stringify(issued.body)}`);
    const token = issued.body.accessToken as string;
    const topic = `devices/${deviceId}/readings`;

    const identity = app.app.get(IdentityServices);
    const telemetry = app.app.get(TelemetryServices);
    passthrough = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      log: createLogger('silent'),
      maxPacketBytes: config.TELEMETRY_MAX_PACKET_BYTES,
      maxConnectPacketBytes: config.MQTT_MAX_CONNECT_PACKET_BYTES,
      maxConnections: config.MQTT_MAX_CONNECTIONS,
      connectTimeoutMs: config.MQTT_CONNECT_TIMEOUT_MS,
      maxPendingPerAddress: config.MQTT_MAX_PENDING_PER_ADDRESS,
      maxInflightQos2: config.MQTT_MAX_INFLIGHT_QOS2,
      maxSubscriptions: config.MQTT_MAX_SUBSCRIPTIONS,
      maxRetainedBytes: config.MQTT_MAX_RETAINED_BYTES,
      maxInFlightBytes: config.TELEMETRY_MAX_IN_FLIGHT_BYTES,
      sinks: {
        maxPayloadBytes: config.TELEMETRY_MAX_PAYLOAD_BYTES,
        ingest: (_d, readings) =>
          Promise.resolve({ accepted: readings.length, duplicates: 0, position: 0, revision: 0, duplicate: false }),
        deadLetter: () => Promise.resolve('stored' as const),
      },
      authenticate: (t) => identity.authenticate(`Bearer ${t}`, 'device'),
      deviceActive: async (id) => (await identity.loadDevice(id)).status === 'active',
      watchSession: (principal, end) => identity.watchSession(principal, end),
    });
    const passPort = await passthrough.start();
    const messages = Math.ceil(READINGS / PER_MESSAGE);
    const readings = messages * PER_MESSAGE;

    // Warm-up: JIT, pools, the projection's first batches.
    for (const port of [passPort, telemetry.mqttPort]) {
      const c = await connect(port, deviceId, token);
      await publishAll(c, topic, Math.min(500, messages));
      await c.endAsync();
    }
    await projectionCaughtUp(app, 60_000);

    /** One run of the same publisher through the pass-through broker: its rate and CPU ms (this process, PostgreSQL). */
    const passThroughRun = async (): Promise<{ rate: number; cpu: [number, number] }> => {
      const c = await connect(passPort, deviceId, token);
      const [n0, p0] = [processCpuMs(), postgresCpuMs()];
      const t0 = performance.now();
      await publishAll(c, topic, messages);
      const rate = readings / ((performance.now() - t0) / 1000);
      const cpu: [number, number] = [processCpuMs() - n0, postgresCpuMs() - p0];
      await c.endAsync();
      return { rate, cpu };
    };

    // (a) -----------------------------------------------------------------
    const stored: number[] = [];
    if (row('a')) {
      const pass: number[] = [];
      // CPU ms of this process and of PostgreSQL per run: where a run's time goes on a 2-core box.
      const cpu = { stored: [] as [number, number][], pass: [] as [number, number][] };
      let lastLag = 0;
      for (let run = 0; run < RUNS; run++) {
        {
          const p = await passThroughRun();
          pass.push(p.rate);
          cpu.pass.push(p.cpu);
        }
        {
          const c = await connect(telemetry.mqttPort, deviceId, token);
          const [n0, p0] = [processCpuMs(), postgresCpuMs()];
          const t0 = performance.now();
          await publishAll(c, topic, messages);
          const acked = performance.now();
          // Queryable: the projection has applied everything the PUBACKs covered.
          await projectionCaughtUp(app);
          const t1 = performance.now();
          lastLag = t1 - acked;
          stored.push(readings / ((t1 - t0) / 1000));
          cpu.stored.push([processCpuMs() - n0, postgresCpuMs() - p0]);
          await c.endAsync();
        }
      }
      report(
        `(a) MQTT QoS 1, ${readings.toLocaleString('en-US')} readings (${messages.toLocaleString('en-US')} messages of ${PER_MESSAGE}), ${WINDOW} in flight`,
        { label: 'stored + queryable (embedded broker)', rates: stored },
        { label: 'same broker, PUBACK without storing', rates: pass },
        0.5,
      );
      info(`last run: projection caught up ${fmtMs(lastLag)} after the last PUBACK`);
      const perK = (runs: [number, number][], i: 0 | 1) => median(runs.map((r) => (r[i] * 1000) / readings)).toFixed(1);
      info(
        `CPU per 1,000 readings (median run): stored — this process ${perK(cpu.stored, 0)} ms, PostgreSQL ${perK(cpu.stored, 1)} ms; ` +
          `pass-through — this process ${perK(cpu.pass, 0)} ms, PostgreSQL ${perK(cpu.pass, 1)} ms`,
      );
      const dupes = await pool.query<{ n: number; d: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT r->>'id')::int AS d
         FROM events, jsonb_array_elements(data->'readings') r WHERE stream_id = $1`,
        [`telemetry-${deviceId}`],
      );
      info(
        `readings stored for the device (in its events): ${dupes.rows[0]!.n.toLocaleString('en-US')}, distinct reading ids: ${dupes.rows[0]!.d.toLocaleString('en-US')}`,
      );
    }
    if (row('floor')) {
      // (a)'s ceiling -------------------------------------------------------
      await storageFloor(pool, deviceId, messages, readings, config.PROJECTION_BATCH_SIZE, {
        passRun: async () => (await passThroughRun()).rate,
        postgresCpuMs,
      });
    }
    if (row('b')) {
      // (b) -----------------------------------------------------------------
      await pool.query('DROP TABLE IF EXISTS readings_raw');
      await pool.query(
        'CREATE TABLE readings_raw (device_id uuid NOT NULL, metric text NOT NULL, ts timestamptz NOT NULL, value float8 NOT NULL, reading_id text)',
      );
      const batches = Math.ceil(READINGS / HTTP_BATCH);
      const bodies = () => Array.from({ length: batches }, () => payload(HTTP_BATCH));
      const httpRates: number[] = [];
      const copyRates: number[] = [];
      const devAuth = { authorization: `Bearer ${token}` };
      // CPU ms of this process and of PostgreSQL per run: while the POSTs are answered (the projection
      // running alongside), while the projection finishes afterwards, and while the COPYs run.
      const cpu: Record<'accepted' | 'caughtUp' | 'copy', [number, number]>[] = [];
      for (let run = 0; run < RUNS; run++) {
        const work = bodies();
        let i = 0;
        const [n0, p0] = [processCpuMs(), postgresCpuMs()];
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: HTTP_CONCURRENCY }, async () => {
            while (i < work.length) {
              const body = work[i++]!;
              const r = await http('POST', `/devices/${deviceId}/readings`, body, devAuth);
              if (r.status !== 202) throw new Error(`POST readings: ${r.status} ${JSON.stringify(r.body)}`);
            }
          }),
        );
        httpRates.push((batches * HTTP_BATCH) / ((performance.now() - t0) / 1000));
        const accepted: [number, number] = [processCpuMs() - n0, postgresCpuMs() - p0];
        // Not timed: the projection applies what it has not yet, so that the COPY side does not share
        // the box with it; its CPU is noted apart.
        await projectionCaughtUp(app);
        const caughtUp: [number, number] = [processCpuMs() - n0 - accepted[0], postgresCpuMs() - p0 - accepted[1]];
        // The same rows, raw: one COPY per batch of 500, same concurrency.
        const lines = work.map((b) =>
          (JSON.parse(b) as { metric: string; value: number; ts: number; id: number }[]).map(
            (r) => `${deviceId}\t${copyField(r.metric)}\t${new Date(r.ts).toISOString()}\t${r.value}\t${r.id}\n`,
          ),
        );
        let j = 0;
        const [n1, p1] = [processCpuMs(), postgresCpuMs()];
        const t1 = performance.now();
        await Promise.all(
          Array.from({ length: HTTP_CONCURRENCY }, async () => {
            const client = await pool.connect();
            try {
              while (j < lines.length)
                await copyLines(
                  client,
                  'COPY readings_raw (device_id, metric, ts, value, reading_id) FROM STDIN',
                  lines[j++]!,
                );
            } finally {
              client.release();
            }
          }),
        );
        copyRates.push((batches * HTTP_BATCH) / ((performance.now() - t1) / 1000));
        cpu.push({ accepted, caughtUp, copy: [processCpuMs() - n1, postgresCpuMs() - p1] });
      }
      report(
        `(b) ${(batches * HTTP_BATCH).toLocaleString('en-US')} readings in batches of ${HTTP_BATCH}, ${HTTP_CONCURRENCY} in flight`,
        { label: 'POST /devices/:id/readings (202)', rates: httpRates },
        { label: 'COPY of the same rows, per batch', rates: copyRates },
        0.5,
      );
      const perK = (part: 'accepted' | 'caughtUp' | 'copy', i: 0 | 1) =>
        median(cpu.map((r) => (r[part][i] * 1000) / (batches * HTTP_BATCH))).toFixed(1);
      info(
        `CPU per 1,000 readings (median run): POSTs answered — this process ${perK('accepted', 0)} ms, PostgreSQL ${perK('accepted', 1)} ms ` +
          `(the projection running alongside); the projection finishing after the last 202 — this process ${perK('caughtUp', 0)} ms, PostgreSQL ${perK('caughtUp', 1)} ms; ` +
          `COPY — this process ${perK('copy', 0)} ms, PostgreSQL ${perK('copy', 1)} ms`,
      );
    }
    if (row('c')) {
      // (c) -----------------------------------------------------------------
      const rate = median(stored) / 2;
      const msgRate = rate / PER_MESSAGE;
      const total = Math.max(1, Math.floor(msgRate * LATENCY_SECONDS));
      const c = await connect(telemetry.mqttPort, deviceId, token);
      await projectionCaughtUp(app, 60_000);
      const sentAt = new Map<number, number>(); // last reading id of a message -> publish time
      const seenAt = new Map<number, number>();
      const ackedAt = new Map<number, number>(); // PUBACK received: the message is stored
      let polling = true;
      // The watcher reads, about every 2 ms, the last reading of each message applied since its
      // previous read, as a live stream does (readingsAfter): by the stream index (device, metric,
      // position, idx), after the newest position it saw. A message's readings become queryable
      // together (one event, one projection transaction), and the projection commits in position
      // order. (Before: it read every row after a position without the metric, which only a BRIN
      // index served, 17 ms of PostgreSQL per read; then each unseen message by its ts through the
      // series index, 60-110 ms per read once a few hundred were in flight. Either took a core from
      // what it measured.)
      let polls = 0;
      let pollMs = 0;
      let after = await app.platform.store.headPosition();
      const poller = (async () => {
        while (polling || seenAt.size < sentAt.size) {
          const t = performance.now();
          const res = await pool.query<{ position: string; reading_id: string }>(
            `SELECT position, reading_id FROM telemetry_readings
              WHERE device_id = $1 AND metric = 'temp' AND position > $2 AND idx = $3
              ORDER BY position LIMIT 10000`,
            [deviceId, after, PER_MESSAGE - 1],
          );
          const now = performance.now();
          polls++;
          pollMs += now - t;
          for (const r of res.rows) {
            const id = Number(r.reading_id);
            if (sentAt.has(id) && !seenAt.has(id)) seenAt.set(id, now);
            after = Math.max(after, Number(r.position));
          }
          await sleep(2);
          if (!polling && performance.now() - Math.max(...seenAt.values(), 0) > 30_000) break;
        }
      })();
      let late = 0;
      const t0 = performance.now();
      const inflight: Promise<unknown>[] = [];
      for (let m = 0; m < total; m++) {
        const due = t0 + (m * 1000) / msgRate;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        else if (wait < -10) late++;
        const body = payload(PER_MESSAGE);
        const id = seq;
        sentAt.set(id, performance.now());
        inflight.push(c.publishAsync(topic, body, { qos: 1 }).then(() => ackedAt.set(id, performance.now())));
      }
      await Promise.all(inflight);
      polling = false;
      await poller;
      await c.endAsync();
      const lat = [...sentAt].flatMap(([id, t]) => (seenAt.has(id) ? [seenAt.get(id)! - t] : []));
      const p99 = percentile(lat, 99);
      console.log(
        `\n(c) publish-to-queryable latency at half the stored rate (${Math.round(rate).toLocaleString('en-US')} readings/s = ${msgRate.toFixed(0)} messages/s, ${LATENCY_SECONDS} s, open loop)`,
      );
      console.log(
        `  p50 ${fmtMs(percentile(lat, 50))}   p90 ${fmtMs(percentile(lat, 90))}   p99 ${fmtMs(p99)}   max ${fmtMs(Math.max(...lat))}   target p99 ≤ 150 ms  ${p99 <= 150 ? 'PASS' : 'BELOW'}`,
      );
      const acked = [...sentAt].flatMap(([id, t]) => (ackedAt.has(id) ? [ackedAt.get(id)! - t] : []));
      const projected = [...ackedAt].flatMap(([id, t]) => (seenAt.has(id) ? [Math.max(0, seenAt.get(id)! - t)] : []));
      info(
        `publish → PUBACK (stored) p50 ${fmtMs(percentile(acked, 50))} p99 ${fmtMs(percentile(acked, 99))}; ` +
          `PUBACK → queryable p50 ${fmtMs(percentile(projected, 50))} p99 ${fmtMs(percentile(projected, 99))}`,
      );
      info(
        `${lat.length} of ${sentAt.size} messages seen queryable; ${late} published more than 10 ms late (the box was too busy to pace); ` +
          `the watcher's reads: ${polls.toLocaleString('en-US')}, ${fmtMs(pollMs / Math.max(1, polls))} each`,
      );
      info(
        `peak resident memory of this process (app, broker and load generator): ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`,
      );
    }
    if (row('d')) {
      // (d) -----------------------------------------------------------------
      mosquitto = await startMosquitto();
      external = await createApp(
        loadConfig({
          DATABASE_URL: benchDatabaseUrl(),
          REDIS_URL: redisUrl,
          PORT: '0',
          HOST: '127.0.0.1',
          DATA_DIR: mkdtempSync(join(tmpdir(), 'bench-ingest-ext-')),
          QUEUE_PREFIX: `bench-ingest-${tag}`,
          LOG_LEVEL: 'silent',
          MQTT_URL: mosquitto.url,
          MQTT_CLIENT_ID: `bench-ext-${tag}`,
          // This instance answers no authenticated request; HS256 spares generating a key pair.
          JWT_ALG: 'HS256',
          JWT_HS256_SECRET: randomBytes(32).toString('base64url'),
        }),
        createLogger('silent'),
      );
      // mosquitto acknowledges the publisher before our instance has the message: in both modes a run
      // ends when every reading it sent is queryable (counted by its id in the read model).
      const queryableIds = async () =>
        (
          await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_reading_ids WHERE device_id = $1', [
            deviceId,
          ])
        ).rows[0]!.n;
      const allQueryable = async (n: number) => {
        const until = performance.now() + 120_000;
        while ((await queryableIds()) < n) {
          if (performance.now() > until) throw new Error('readings did not become queryable');
          await sleep(5);
        }
      };
      {
        const warm = await connectExternal(mosquitto, `bench-pub-${tag}`);
        const expected = (await queryableIds()) + Math.min(500, messages) * PER_MESSAGE;
        await publishAll(warm, topic, Math.min(500, messages));
        await warm.endAsync();
        await allQueryable(expected);
      }
      const embeddedRates: number[] = [];
      const externalRates: number[] = [];
      // CPU ms of this process, PostgreSQL and mosquitto per run and mode: where the external mode's time goes.
      const cpu = { embedded: [] as number[][], external: [] as number[][] };
      const mosquittoCpuMs = () => processTreeCpuMs(mosquitto!.pid);
      for (let run = 0; run < RUNS; run++) {
        for (const mode of ['embedded', 'external'] as const) {
          const c =
            mode === 'embedded'
              ? await connect(telemetry.mqttPort, deviceId, token)
              : await connectExternal(mosquitto, `bench-pub-${tag}`);
          const expected = (await queryableIds()) + readings;
          const before = [processCpuMs(), postgresCpuMs(), mosquittoCpuMs()];
          const t0 = performance.now();
          await publishAll(c, topic, messages);
          await allQueryable(expected);
          (mode === 'embedded' ? embeddedRates : externalRates).push(readings / ((performance.now() - t0) / 1000));
          const after = [processCpuMs(), postgresCpuMs(), mosquittoCpuMs()];
          cpu[mode].push(after.map((v, i) => ((v - before[i]!) * 1000) / readings));
          await c.endAsync();
        }
      }
      report(
        `(d) external broker mode, ${readings.toLocaleString('en-US')} readings per run, ${WINDOW} in flight (runs interleaved)`,
        { label: 'mosquitto → MQTT_URL instance, stored + queryable', rates: externalRates },
        { label: 'embedded broker, stored + queryable', rates: embeddedRates },
        0.8,
      );
      const perK = (mode: 'embedded' | 'external', i: number) => median(cpu[mode].map((r) => r[i]!)).toFixed(1);
      info(
        `CPU per 1,000 readings (median run): external — this process ${perK('external', 0)} ms, PostgreSQL ${perK('external', 1)} ms, mosquitto ${perK('external', 2)} ms; ` +
          `embedded — this process ${perK('embedded', 0)} ms, PostgreSQL ${perK('embedded', 1)} ms`,
      );
      await external.close();
      external = undefined;
    }
    if (row('split')) {
      // Where (a)'s CPU goes: the same load with the projections stopped (ingest and append
      // alone), then the projection catching up alone (started again after each run). Before (e):
      // the 2.6 M rows (e) loads leave autovacuum work that would land in these figures.
      {
        const runs: { ingest: [number, number]; projection: [number, number] }[] = [];
        for (let run = 0; run < RUNS; run++) {
          await app.platform.projections.stop();
          const c = await connect(telemetry.mqttPort, deviceId, token);
          const [n0, p0] = [processCpuMs(), postgresCpuMs()];
          await publishAll(c, topic, messages);
          const [n1, p1] = [processCpuMs(), postgresCpuMs()];
          await c.endAsync();
          const newest = Number((await pool.query<{ p: string }>('SELECT max(position) AS p FROM events')).rows[0]!.p);
          app.platform.projections.start();
          while (((await readCheckpoint(pool, 'telemetry'))?.position ?? 0) < newest) await sleep(5);
          const [n2, p2] = [processCpuMs(), postgresCpuMs()];
          runs.push({ ingest: [n1 - n0, p1 - p0], projection: [n2 - n1, p2 - p1] });
        }
        const k = (ms: number) => ((ms * 1000) / readings).toFixed(1);
        const fig = (part: 'ingest' | 'projection', i: 0 | 1) =>
          `${k(median(runs.map((r) => r[part][i])))} (${runs.map((r) => k(r[part][i])).join(' / ')})`;
        console.log(
          `\n(a) split: ${readings.toLocaleString('en-US')} readings, CPU ms per 1,000 readings, median of ${RUNS} runs (runs)`,
        );
        info(`ingest + append (projections stopped): this process ${fig('ingest', 0)}, PostgreSQL ${fig('ingest', 1)}`);
        info(
          `telemetry projection catching up alone: this process ${fig('projection', 0)}, PostgreSQL ${fig('projection', 1)}`,
        );
      }
    }
    if (row('e')) {
      // (e) -----------------------------------------------------------------
      await history(app, owner, http);
    }
    console.log(
      `peak resident memory of this process over the whole run (app, broker and load generator): ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`,
    );
    console.log(loadLine('end'));
  } finally {
    await passthrough?.stop();
    await external?.close();
    await running?.close();
    await mosquitto?.stop();
  }
}

type Http = (
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) => Promise<{ status: number; body: Record<string, unknown> }>;

/** Waits until the telemetry projection has applied every event stored so far; throws after `timeoutMs`. */
async function projectionCaughtUp(app: RunningApp, timeoutMs = 120_000): Promise<void> {
  if (!(await app.platform.projections.waitFor('telemetry', await app.platform.store.headPosition(), timeoutMs)))
    throw new Error('the telemetry projection did not catch up');
}

/**
 * (a)'s ceiling with this storage: the telemetry projection's own statements (its `setup`, `prepare` and
 * `apply`, this code) applying the last `messages` events (a) stored, as the live runner does (batches of
 * PROJECTION_BATCH_SIZE events, the batch and the partition check in one transaction), to a fresh copy of
 * its tables in a scratch schema, with nothing else running: no broker, no append, no event read. The
 * projection applies one batch at a time, so no path can make readings stored and queryable faster than
 * this; the same broker's pass-through runs interleaved, as in (a). Floor ÷ pass-through BELOW the (a)
 * target means (a) cannot reach it without cheaper storage, whatever the ingest path does.
 */
async function storageFloor(
  pool: Pool,
  deviceId: string,
  messages: number,
  readings: number,
  batchEvents: number,
  { passRun, postgresCpuMs }: { passRun: () => Promise<number>; postgresCpuMs: () => number },
): Promise<void> {
  const newest = await pool.query<{ position: string; type: string; data: { readings: unknown[] } }>(
    `SELECT position, type, data FROM events WHERE stream_id = $1 ORDER BY position DESC LIMIT $2`,
    [`telemetry-${deviceId}`, messages],
  );
  const events = newest.rows.reverse().map((e) => ({ ...e, position: Number(e.position) })) as unknown as Parameters<
    typeof telemetryProjection.apply
  >[0];
  const applied = newest.rows.reduce((n, e) => n + e.data.readings.length, 0);
  if (applied !== readings)
    throw new Error(`floor: ${applied} readings in the last ${messages} events, not ${readings}`);
  const client = await pool.connect();
  const floor: number[] = [];
  const pass: number[] = [];
  const cpu: [number, number][] = [];
  try {
    for (let run = 0; run < RUNS; run++) {
      pass.push(await passRun());
      await client.query('DROP SCHEMA IF EXISTS bench_floor CASCADE; CREATE SCHEMA bench_floor');
      await client.query('SET search_path TO bench_floor');
      for (const sql of telemetryProjection.setup) await client.query(sql);
      const db: Queryable = {
        query: (text, values) => client.query(text, values),
        copyRows: (sql, lines) => copyLines(client, sql, lines),
      };
      const [n0, p0] = [processCpuMs(), postgresCpuMs()];
      const t0 = performance.now();
      for (let i = 0; i < events.length; i += batchEvents) {
        const batch = events.slice(i, i + batchEvents);
        await client.query('BEGIN');
        const prepare = telemetryProjection.prepare?.(batch);
        if (prepare) await client.query(prepare);
        await telemetryProjection.apply(batch, db);
        await client.query('COMMIT');
      }
      floor.push(readings / ((performance.now() - t0) / 1000));
      cpu.push([processCpuMs() - n0, postgresCpuMs() - p0]);
      const n = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_readings');
      if (n.rows[0]!.n !== readings) throw new Error(`floor: ${n.rows[0]!.n} rows applied, not ${readings}`);
    }
  } finally {
    await client.query('RESET search_path; DROP SCHEMA IF EXISTS bench_floor CASCADE').catch(() => undefined);
    client.release();
  }
  report(
    `(a) ceiling: the telemetry projection's statements alone on the same ${readings.toLocaleString('en-US')} readings, batches of ${batchEvents} events, nothing else running`,
    { label: 'projection apply alone (fresh tables)', rates: floor },
    { label: 'same broker, PUBACK without storing', rates: pass },
    0.5,
    'readings/s',
  );
  const perK = (i: 0 | 1) => median(cpu.map((r) => (r[i] * 1000) / readings)).toFixed(1);
  info(`CPU per 1,000 readings (median run): this process ${perK(0)} ms, PostgreSQL ${perK(1)} ms`);
  info(`stored + queryable (a) cannot exceed this rate: BELOW here means (a)'s target needs cheaper storage`);
}

/**
 * The fields of /proc/<pid>/stat after the command name (f[1] is the parent pid; f[11..14] are utime,
 * stime, cutime, cstime in ticks); undefined once the process is gone.
 */
function procStat(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU ms (user + system, its ended children included) of one process so far; 0 once it is gone. */
function processTreeCpuMs(pid: number): number {
  const f = procStat(pid);
  return f ? (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_MS : 0;
}

/** The PID of the postmaster serving this pool (the parent of its backends). */
async function postmasterPid(pool: Pool): Promise<number> {
  const backend = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  return Number(procStat(backend)![1]);
}

/**
 * CPU ms (user + system) of a postmaster and its children so far, ended ones included (the
 * postmaster's cutime and cstime: a backend or worker that exits between two samples still counts):
 * one server's, whatever else runs on the box.
 */
function serverCpuMs(postmaster: number): number {
  let ms = processTreeCpuMs(postmaster);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const f = procStat(pid);
    if (f && Number(f[1]) === postmaster) ms += (Number(f[11]) + Number(f[12])) * TICK_MS;
  }
  return ms;
}

/** (e): a month of 1 Hz history, read through the route and directly. */
async function history(app: RunningApp, owner: Record<string, string>, http: Http): Promise<void> {
  const dev = await http('POST', '/devices', { name: 'history' }, owner);
  const deviceId = dev.body.deviceId as string;
  const rows = HISTORY_DAYS * 86_400;
  const end = Math.floor(Date.now() / 3_600_000) * 3_600_000; // an hour boundary: whole buckets
  const start = end - rows * 1000;
  const batch = 1000; // MAX_READINGS_PER_MESSAGE
  let next = 0;
  let retried = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: HTTP_CONCURRENCY }, async () => {
      while (next < rows) {
        const from = next;
        next += batch;
        const body = Array.from({ length: Math.min(batch, rows - from) }, (_, k) => {
          const i = from + k;
          return { metric: 'load', value: Math.sin(i / 600) * 10 + 20, ts: start + i * 1000 };
        });
        // As a client should: a 503 (e.g. the revocation mirror unconfirmed on a starved box) is retried after its Retry-After.
        for (let attempt = 1; ; attempt++) {
          const r = await http('POST', `/devices/${deviceId}/readings`, body, owner);
          if (r.status === 202) break;
          if (r.status !== 503 || attempt >= 10)
            throw new Error(`POST readings: ${r.status} ${JSON.stringify(r.body)}`);
          retried++;
          await sleep(1000 * Number(r.body.retryAfterSeconds ?? 1));
        }
      }
    }),
  );
  await projectionCaughtUp(app, 600_000);
  const loaded = performance.now() - t0;
  const pool = app.platform.pool;
  const count = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM telemetry_readings WHERE device_id = $1 AND metric = 'load'`,
    [deviceId],
  );
  console.log(
    `\n(e) history: ${HISTORY_DAYS} days of 1 Hz readings of one metric, ${count.rows[0]!.n.toLocaleString('en-US')} rows (ingested over HTTP and projected in ${(loaded / 1000).toFixed(1)} s); ${QUERY_SECONDS} s of sequential reads per side per run, in ${HISTORY_SLICES} slices alternating route and SQL, after a warm-up run`,
  );
  if (retried) info(`${retried} load requests answered 503 and were retried`);
  await pool.query('ANALYZE telemetry_readings');
  await pool.query('ANALYZE telemetry_rollups');
  const path = `/devices/${deviceId}/metrics/load`;
  const rangeFrom = new Date(start);
  const rangeTo = new Date(end);
  const dayFrom = end - DAY_MS;

  // Each read, both ways; the rate is reads per second, sequential (one client). The route is read with
  // a keep-alive node:http client (bench/http-client, as bench:auth): fetch's own overhead per request
  // (~0.5 ms of this process's CPU for a 36 KB answer) is the client's, not the platform's.
  const reader = target(app.url, 1, 60_000);
  const read = async (url: string) => {
    const r = await sendJson(reader, 'GET', url, undefined, owner);
    if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json as { points: { ts: string }[] };
  };
  /** Reads for `ms`, sequentially; returns how many and how long they took. */
  const slice = async (read: () => Promise<number>, expect: number, ms: number) => {
    const t = performance.now();
    let reads = 0;
    do {
      const n = await read();
      if (n !== expect) throw new Error(`read ${n} points, expected ${expect}`);
      reads++;
    } while (performance.now() - t < ms);
    return { reads, ms: performance.now() - t };
  };
  /**
   * One run of a pair: QUERY_SECONDS per side, in HISTORY_SLICES slices alternating the route and
   * the SQL, so drift (JIT tiers, autovacuum, a GC) lands on both sides alike. Reads per second.
   */
  const pair = async (route: () => Promise<number>, sql: () => Promise<number>, expect: number) => {
    const sum = { route: { reads: 0, ms: 0 }, sql: { reads: 0, ms: 0 } };
    const ms = (QUERY_SECONDS * 1000) / HISTORY_SLICES;
    for (let k = 0; k < HISTORY_SLICES; k++) {
      for (const [side, read] of k % 2
        ? ([
            ['sql', sql],
            ['route', route],
          ] as const)
        : ([
            ['route', route],
            ['sql', sql],
          ] as const)) {
        const r = await slice(read, expect, ms);
        sum[side].reads += r.reads;
        sum[side].ms += r.ms;
      }
    }
    return { route: sum.route.reads / (sum.route.ms / 1000), sql: sum.sql.reads / (sum.sql.ms / 1000) };
  };
  const bucketRoute = async () => {
    const r = await read(`${path}?from=${start}&to=${end}&bucket=1h&agg=avg&limit=10000`);
    return r.points.length;
  };
  const bucketSql = async () =>
    (JSON.parse(await bucketSeriesJson(pool, deviceId, 'load', rangeFrom, rangeTo, '1h', 'avg', 10_000)) as unknown[])
      .length;
  // 24 h raw = 86,400 points, paged 10,000 at a time (the route's largest limit): the next page starts after the last ts.
  const rawRoute = async () => {
    let from = dayFrom;
    let n = 0;
    for (;;) {
      const points = (await read(`${path}?from=${from}&to=${end}&limit=10000`)).points;
      n += points.length;
      if (points.length < 10_000) return n;
      from = Date.parse(points[points.length - 1]!.ts) + 1;
    }
  };
  const rawSql = async () => {
    let from = dayFrom;
    let n = 0;
    for (;;) {
      const points = JSON.parse(await rawSeriesJson(pool, deviceId, 'load', new Date(from), new Date(end), 10_000)) as {
        ts: string;
      }[];
      n += points.length;
      if (points.length < 10_000) return n;
      from = Date.parse(points[points.length - 1]!.ts) + 1;
    }
  };
  const buckets = HISTORY_DAYS * 24;
  const rates = {
    bucketRoute: [] as number[],
    bucketSql: [] as number[],
    rawRoute: [] as number[],
    rawSql: [] as number[],
  };
  // Warm-up: both sides' code paths compiled by the JIT and the rows in shared buffers.
  await pair(bucketRoute, bucketSql, buckets);
  await pair(rawRoute, rawSql, 86_400);
  for (let run = 0; run < RUNS; run++) {
    const bucket = await pair(bucketRoute, bucketSql, buckets);
    rates.bucketRoute.push(bucket.route);
    rates.bucketSql.push(bucket.sql);
    const raw = await pair(rawRoute, rawSql, 86_400);
    rates.rawRoute.push(raw.route);
    rates.rawSql.push(raw.sql);
  }
  report(
    `(e1) ${HISTORY_DAYS} days at bucket=1h (${buckets} points), reads/s`,
    { label: 'GET /devices/:id/metrics/:metric?bucket=1h', rates: rates.bucketRoute },
    { label: 'the same SQL (bucketSeriesJson) on the pool, parsed', rates: rates.bucketSql },
    0.8,
    'reads/s',
  );
  report(
    '(e2) 24 h raw (86,400 points in pages of 10,000), reads/s',
    { label: 'GET /devices/:id/metrics/:metric, paged by from', rates: rates.rawRoute },
    { label: 'the same SQL (rawSeriesJson) on the pool, parsed', rates: rates.rawSql },
    0.8,
    'reads/s',
  );
  reader.agent.destroy();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
