import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Pool } from 'pg';
import {
  copyEvents,
  EventCopyError,
  type CheckpointStore,
  type CopyCheckpoint,
  type CopyOptions,
} from '../../src/platform/event-store/copy-events';
import { UpcasterRegistry } from '../../src/platform/event-store/event-store';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { orderedPageAppend } from '../../src/platform/event-store/postgres-ordered-append';
import { Projections } from '../../src/platform/processing/projections';
import { quoteIdent } from '../../src/platform/processing/transaction';
import { allProjections } from '../../src/read-models';
import { startTestApp, type TestApp } from '../support/app';
import { eventually, testEvent } from '../support/events';
import { customer, orderIn, placeOrder, product } from '../support/sales';
import { createTestDatabase, type TestDatabase } from '../support/services';
import { ownerWithDevice } from '../support/telemetry';

/**
 * events:copy between two real PostgreSQL databases (no KurrentDB server here): the
 * source is filled by the real application (sign-ups, roles, devices, readings,
 * products, stock, orders settled by the saga), then copied through the EventStore
 * port, interrupted and resumed (abort signal, and a SIGKILLed CLI process), refused
 * on a diverged target; read models rebuilt from the copy equal those from the source.
 */

const CLI = resolve(__dirname, '..', '..', 'dist', 'src', 'cli.js');

let app: TestApp;
let sourceDb: TestDatabase;
let source: PostgresEventStore;
const targets: { db: TestDatabase; store: PostgresEventStore }[] = [];
let total: number;

/** Every stored column but position and recorded_at, in global order: what the copy must carry over. */
async function storedEvents(pool: Pool): Promise<Record<string, unknown>[]> {
  const r = await pool.query<Record<string, unknown>>(
    'SELECT event_id, stream_id, stream_revision, type, data, metadata, schema_version FROM events ORDER BY position',
  );
  return r.rows;
}

async function countEvents(pool: Pool): Promise<number> {
  return Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]?.n);
}

async function newTarget() {
  const db = await createTestDatabase('copy_to', { poolSize: 6 });
  const store = new PostgresEventStore(db.pool);
  targets.push({ db, store });
  return {
    db,
    store,
    /** What the CLI uses on a PostgreSQL target: a page in one statement. */
    multiAppend: orderedPageAppend(db.pool),
    appendMulti: ((w) => store.appendMulti(w)) satisfies CopyOptions['multiAppend'],
  };
}

function memoryCheckpoint(): CheckpointStore & { value: CopyCheckpoint | undefined } {
  return {
    value: undefined,
    load() {
      return Promise.resolve(this.value);
    },
    save(c) {
      this.value = c;
      return Promise.resolve();
    },
  };
}

beforeAll(async () => {
  app = await startTestApp();
  sourceDb = app.db;
  const admin = await app.adminAuth();
  // Identity: accounts (user + e-mail reservation streams), roles assigned and revoked, one disabled.
  const users: string[] = [];
  for (let i = 0; i < 8; i++) users.push((await customer(app)).userId);
  for (const id of users.slice(0, 3))
    expect((await app.http('POST', `/admin/users/${id}/roles`, { role: 'admin' }, admin)).status).toBe(201);
  expect((await app.http('DELETE', `/admin/users/${users[0]}/roles/admin`, undefined, admin)).status).toBe(200);
  expect((await app.http('POST', `/admin/users/${users[1]}/disable`, undefined, admin)).status).toBeLessThan(300);
  // Telemetry: devices and runs of readings in their streams, one reading per message (an event each).
  for (let d = 0; d < 3; d++) {
    const dev = await ownerWithDevice(app.http);
    const readings = Array.from({ length: 800 }, (_, i) => ({
      metric: i % 2 ? 'temp' : 'rpm',
      value: d * 1000 + i,
      id: `r-${i}`,
      ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    }));
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < readings.length) {
          const r = await app.http('POST', `/devices/${dev.deviceId}/readings`, readings[next++], {
            authorization: `Bearer ${dev.token}`,
          });
          expect(r.status).toBe(202);
        }
      }),
    );
  }
  // Sales: products with stock, orders the saga confirms or rejects, one cancelled.
  const products = [await product(app, 20), await product(app, 3)];
  const buyer = await customer(app);
  const orders: string[] = [];
  for (let i = 0; i < 6; i++) {
    const o = await placeOrder(
      app,
      buyer,
      [{ productId: products[i % 2]!, quantity: 1 + (i % 2) }],
      i === 4 ? 'card-declined' : 'card',
    );
    orders.push(o.orderId);
  }
  for (const id of orders) await orderIn(app, buyer, id);
  await app.close(); // the app stops; its database stays as the source
  // Two events of an old schema version, as stored (no upcaster is registered in the app).
  const raw = new PostgresEventStore(sourceDb.pool);
  await raw.append('legacy-1', [{ ...testEvent('legacy.Thing', { n: 1 }), schemaVersion: 1 }], 'no_stream');
  await raw.append('legacy-1', [{ ...testEvent('legacy.Thing', { n: 2 }), schemaVersion: 3 }], 0);
  await raw.close();
  source = new PostgresEventStore(sourceDb.pool);
  total = await countEvents(sourceDb.pool);
}, 240_000);

afterAll(async () => {
  for (const t of targets) {
    await t.store.close();
    await t.db.drop();
  }
  await source?.close();
  await sourceDb?.drop();
});

describe('copyEvents between two PostgreSQL stores', () => {
  it('carries every event over with its id, stream revision, type, data, metadata and schema version, in the same global order', async () => {
    expect(total).toBeGreaterThan(2450);
    const expected = await storedEvents(sourceDb.pool);
    const streams = new Set(expected.map((e) => e.stream_id as string)).size;
    expect(new Set(expected.map((e) => e.type as string)).size).toBeGreaterThan(15);

    // A page in one statement (the CLI's way on PostgreSQL), a page through appendMulti, and run by run through the port alone.
    const viaStatement = await newTarget();
    const r1 = await copyEvents(source, viaStatement.store, { batchSize: 250, multiAppend: viaStatement.multiAppend });
    const viaMulti = await newTarget();
    const r2 = await copyEvents(source, viaMulti.store, { batchSize: 250, multiAppend: viaMulti.appendMulti });
    const viaPort = await newTarget();
    const r3 = await copyEvents(source, viaPort.store, { batchSize: 97 });
    for (const [r, t] of [
      [r1, viaStatement],
      [r2, viaMulti],
      [r3, viaPort],
    ] as const) {
      expect(r).toMatchObject({ read: total, copied: total, skipped: 0, streams, aborted: false });
      expect(await storedEvents(t.db.pool)).toEqual(expected);
    }
    // Stored schema versions, not upcast ones.
    const legacy = await viaPort.store.readStream('legacy-1');
    expect(legacy.map((e) => [e.schemaVersion, e.data])).toEqual([
      [1, { n: 1 }],
      [3, { n: 2 }],
    ]);

    // A second run finds everything there: one probe per page, nothing appended.
    const again = await copyEvents(source, viaPort.store, { batchSize: 500 });
    expect(again).toMatchObject({ read: total, copied: 0, skipped: total });
    expect(await countEvents(viaPort.db.pool)).toBe(total);
  });

  it('refuses a source that upcasts on read: the stored form is what gets copied', async () => {
    const upcasting = new PostgresEventStore(sourceDb.pool, {
      upcasters: new UpcasterRegistry().register({
        type: 'legacy.Thing',
        fromVersion: 1,
        upcast: (d) => ({ ...d, up: true }),
      }),
    });
    const t = await newTarget();
    await expect(copyEvents(upcasting, t.store)).rejects.toThrow(
      /was upcast on read: open the source event store without upcasters/,
    );
    await upcasting.close();
  });

  it('resumes an interrupted copy from its checkpoint without reading the copied part again', async () => {
    const t = await newTarget();
    const checkpoint = memoryCheckpoint();
    const stop = new AbortController();
    const first = await copyEvents(source, t.store, {
      batchSize: 100,
      checkpoint,
      multiAppend: t.multiAppend,
      signal: stop.signal,
      onProgress: (p) => {
        if (p.copied >= 1000) stop.abort();
      },
    });
    expect(first).toMatchObject({ aborted: true, copied: 1000, read: 1000 });
    expect(await countEvents(t.db.pool)).toBe(1000);
    expect(checkpoint.value?.position).toBe(first.position);

    const second = await copyEvents(source, t.store, { batchSize: 100, checkpoint, multiAppend: t.multiAppend });
    expect(second).toMatchObject({
      aborted: false,
      startPosition: first.position,
      read: total - 1000,
      copied: total - 1000,
      skipped: 0,
    });
    expect(await storedEvents(t.db.pool)).toEqual(await storedEvents(sourceDb.pool));
  });

  it('resumes without a checkpoint, with other page boundaries: copied pages and runs are skipped, nothing doubles', async () => {
    const t = await newTarget();
    const stop = new AbortController();
    const first = await copyEvents(source, t.store, {
      batchSize: 100,
      signal: stop.signal,
      onProgress: (p) => {
        if (p.copied >= 1500) stop.abort();
      },
    });
    expect(first.copied).toBe(1500);
    // Pages of 37 end inside the first run's pages: the page that straddles the boundary is decided run by run.
    const second = await copyEvents(source, t.store, { batchSize: 37 });
    expect(second).toMatchObject({ aborted: false, read: total, skipped: 1500, copied: total - 1500 });
    expect(await storedEvents(t.db.pool)).toEqual(await storedEvents(sourceDb.pool));
  });

  it('a checkpoint that does not match the stores is not used; the copy still ends equal', async () => {
    const t = await newTarget();
    const checkpoint = memoryCheckpoint();
    const [somewhere] = await source.readAll(0, 1);
    checkpoint.value = {
      position: somewhere!.position,
      eventId: somewhere!.id,
      streamId: somewhere!.streamId,
      revision: 0,
    };
    const r = await copyEvents(source, t.store, { checkpoint, multiAppend: t.multiAppend });
    expect(r.checkpointRejected).toMatch(/the target has no event/);
    expect(r).toMatchObject({ startPosition: 0, copied: total });
    expect(await storedEvents(t.db.pool)).toEqual(await storedEvents(sourceDb.pool));
  });

  it('refuses a target that holds another event at a revision of a source stream, naming the stream and revision, and stops', async () => {
    const all = await source.readAll(0, total + 1);
    const victim = all[600]!;
    const t = await newTarget();
    // The target already has the stream up to just before the victim, then a different event at its revision.
    const before = await source.readStream(victim.streamId, 0, victim.revision);
    if (before.length > 0)
      await t.store.append(
        victim.streamId,
        before.map((e) => ({
          id: e.id,
          type: e.type,
          data: e.data,
          metadata: e.metadata,
          schemaVersion: e.schemaVersion,
        })),
        'no_stream',
      );
    const stranger = testEvent('other.Thing', { x: 1 });
    await t.store.append(victim.streamId, [stranger], victim.revision === 0 ? 'no_stream' : victim.revision - 1);

    for (const multiAppend of [undefined, t.multiAppend, t.appendMulti]) {
      const err: unknown = await copyEvents(source, t.store, {
        batchSize: 50,
        ...(multiAppend ? { multiAppend } : {}),
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EventCopyError);
      expect(err).toMatchObject({ streamId: victim.streamId, revision: victim.revision });
      expect((err as Error).message).toContain(`stream ${victim.streamId} revision ${victim.revision}:`);
      expect((err as Error).message).toContain(`the target holds event ${stranger.id}`);
      expect((err as Error).message).toMatch(/not empty or has diverged, copy stopped/);
    }
    // Stopped there: nothing after the victim's page reached the target.
    const stored = await countEvents(t.db.pool);
    expect(stored).toBeLessThan(650 + before.length + 1);
  });

  it('read models rebuilt from the copy equal those rebuilt from the source (positions compared as the events they name)', async () => {
    const t = await newTarget();
    await copyEvents(source, t.store, { multiAppend: t.multiAppend });
    const src = await rebuiltReadModels(sourceDb, source);
    const dst = await rebuiltReadModels(t.db, t.store);
    expect(Object.keys(src).length).toBe(allProjections.flatMap((p) => p.tables).length);
    let rows = 0;
    for (const [table, r] of Object.entries(src)) {
      expect({ table, rows: dst[table] }).toEqual({ table, rows: r });
      rows += r.length;
    }
    expect(rows).toBeGreaterThan(2400);
    expect(src.telemetry_readings?.length).toBe(2400);
  });
});

/** Every projection rebuilt by the processor runtime, then every table's rows with `position` columns as event ids, sorted. */
async function rebuiltReadModels(db: TestDatabase, store: PostgresEventStore): Promise<Record<string, string[]>> {
  const engine = new Projections(db.pool, store, allProjections, {
    connectionString: db.url,
    batchSize: 500,
    maxAttempts: 3,
    log: () => undefined,
  });
  await engine.register();
  for (const p of allProjections) await engine.rebuild(p.name, 'system:test');
  await engine.stop();
  const ids = new Map<string, string>();
  for (const r of (
    await db.pool.query<{ position: string; event_id: string }>('SELECT position::text, event_id FROM events')
  ).rows)
    ids.set(r.position, r.event_id);
  const out: Record<string, string[]> = {};
  for (const p of allProjections)
    for (const table of p.tables) {
      const rows = (await db.pool.query(`SELECT * FROM ${quoteIdent(table)}`)).rows as Record<string, unknown>[];
      out[table] = rows
        .map((row) => {
          const r = { ...row };
          if ('position' in r) r.position = `event ${ids.get(String(r.position)) ?? `? ${String(r.position)}`}`;
          return JSON.stringify(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)));
        })
        .sort();
    }
  return out;
}

describe('npm run cli -- events:copy', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'events-copy-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  function cli(args: string[]) {
    const env: Record<string, string | undefined> = { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
    delete env.DATABASE_URL;
    delete env.KURRENTDB_URL;
    const proc = spawn(process.execPath, [CLI, 'events:copy', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: string[] = [];
    for (const s of [proc.stdout, proc.stderr]) createInterface({ input: s }).on('line', (l) => out.push(l));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
      proc.once('exit', (code, signal) => res({ code, signal })),
    );
    return { proc, out, exited };
  }

  it('stops cleanly on SIGTERM and survives a SIGKILL mid-copy: run again, it resumes and the target equals the source, nothing doubled', async () => {
    const t = await newTarget();
    const args = [
      '--from',
      'postgres',
      '--to',
      'postgres',
      '--from-url',
      sourceDb.url,
      '--to-url',
      t.db.url,
      '--batch-size',
      '3',
    ];
    /** The CLI's sessions on the target (its pool is named events-copy). */
    const cliSessions = async () =>
      Number(
        (
          await t.db.pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'events-copy'",
          )
        ).rows[0]?.n,
      );
    const copying = async (from: number) => {
      let n = 0;
      await eventually(async () => {
        n = await countEvents(t.db.pool);
        return n >= from + 300;
      }, 'the CLI copying');
    };

    const first = cli(args);
    await copying(0);
    first.proc.kill('SIGTERM');
    expect({ exit: await first.exited, out: first.out }).toMatchObject({ exit: { code: 130, signal: null } });
    const atTerm = await countEvents(t.db.pool);
    expect(first.out.join('\n')).toMatch(
      new RegExp(
        `interrupted: ${atTerm} events copied .*Run the same command again to resume \\(checkpoint .*events-copy/postgres-to-postgres-[0-9a-f]{16}\\.json\\)`,
      ),
    );

    const second = cli(args);
    await copying(atTerm);
    expect(await cliSessions()).toBeGreaterThan(0);
    second.proc.kill('SIGKILL');
    expect(await second.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // The killed CLI's last statement may still run (and commit) in its server session: count once those are gone.
    await eventually(async () => (await cliSessions()) === 0, "the killed CLI's sessions ending");
    const atKill = await countEvents(t.db.pool);
    expect(atKill).toBeLessThan(total);

    const third = cli(args);
    expect({ done: await third.exited, out: third.out }).toMatchObject({ done: { code: 0 } });
    // Exactly what the target lacked is copied; a SIGKILL between an append and the checkpoint write
    // leaves at most one page (3 events) to find again.
    const summary = third.out.find((l) => / events copied /.test(l)) ?? '';
    const m =
      /^(\d+) events copied \(\d+ new streams\) from postgres to postgres in [\d.]+ s, \d+ events\/s; ([0-3]) already in the target; resumed after source position \d+$/.exec(
        summary,
      );
    expect({ summary, out: third.out, matches: m !== null }).toMatchObject({ matches: true });
    expect(Number(m![1])).toBe(total - atKill);
    // Plain progress lines when not on a TTY.
    expect(third.out.some((l) => /^events:copy: \d+(\/\d+)? events read, \d+ copied/.test(l))).toBe(true);
    expect(await storedEvents(t.db.pool)).toEqual(await storedEvents(sourceDb.pool));
  });

  it('names the flag and the rule for bad input (exit 2), and says when the KurrentDB target does not answer', async () => {
    const bad = cli(['--from', 'mysql', '--to', 'postgres', '--batch-size', '0']);
    expect(await bad.exited).toMatchObject({ code: 2 });
    expect(bad.out).toEqual(
      expect.arrayContaining([
        '--from: must be one of postgres, kurrentdb (got "mysql")',
        '--batch-size: must be an integer from 1 to 10000 (got "0")',
      ]),
    );
    const kurrent = cli([
      '--from',
      'postgres',
      '--from-url',
      sourceDb.url,
      '--to',
      'kurrentdb',
      '--to-url',
      'kurrentdb://127.0.0.1:1?tls=false',
    ]);
    expect(await kurrent.exited).toMatchObject({ code: 1 });
    expect(kurrent.out.join('\n')).toMatch(/no answer from KurrentDB at kurrentdb:\/\/127\.0\.0\.1:1/);
  });
});
