import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { RecordedEvent, Subscription } from '../../src/platform/event-store/event-store';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { eventually } from '../support/events';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * Group commit under SIGKILL, with real processes: a writer child
 * (test/fixtures/appender-child.ts, from dist/) runs 24 concurrent writers
 * through one PostgresEventStore, so their appends go out in groups (one
 * transaction each). Each child is killed while one of its groups is inside
 * es_append_group (a statement trigger keeps every group open a few
 * milliseconds); the next child first re-sends what the killed one had sent
 * without an answer, with the same event ids and expected revisions.
 *
 * Afterwards: every acknowledged append is stored exactly as acknowledged
 * (stream, revisions, positions); every refused one is not stored at all; an
 * append killed without an answer is stored whole or not at all, and its
 * re-send is stored once; a re-sent acknowledged append answers duplicate with
 * the original position; each stream's revisions are 0..n-1 in position order;
 * and a subscriber that ran throughout saw every event exactly once, in order.
 */

const ROOT = resolve(__dirname, '..', '..');
const CHILD = join(ROOT, 'dist', 'test', 'fixtures', 'appender-child.js');
const CHILD_SOURCE = join(ROOT, 'test', 'fixtures', 'appender-child.ts');
const KILLS = 8;

interface Send {
  op: 'send';
  n: string;
  stream: string;
  ids: string[];
  expected: string | number;
  kind: 'fresh' | 'wrong' | 'shared' | 'again';
  resent?: true;
}
interface Ack {
  op: 'ack';
  n: string;
  position: number;
  nextRevision: number;
  duplicate: boolean;
}
interface Refused {
  op: 'refused';
  n: string;
  code: string;
}
type Line = Send | Ack | Refused | { op: 'ready' | 'done' };

interface Child {
  readonly proc: ChildProcess;
  readonly appName: string;
  readonly lines: Line[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function ensureChildBuilt(): void {
  const sources = [
    CHILD_SOURCE,
    join(ROOT, 'src/platform/event-store/postgres-event-store.ts'),
    join(ROOT, 'src/platform/event-store/postgres-group-commit.ts'),
  ];
  const js = (ts: string) => join(ROOT, 'dist', ts.slice(ROOT.length + 1)).replace(/\.ts$/, '.js');
  if (sources.every((ts) => existsSync(js(ts)) && statSync(js(ts)).mtimeMs >= statSync(ts).mtimeMs)) return;
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch {
    // Type errors elsewhere in the tree: tsc still emits.
  }
  if (!existsSync(CHILD)) throw new Error('could not build the appender child: run npx tsc -p tsconfig.json');
}

let db: TestDatabase;
let store: PostgresEventStore;
let dir: string;
const children: Child[] = [];

function spawnChild(index: number, resend: Send[], ops?: number): Child {
  const appName = `appender-child-${index}`;
  const resendFile = join(dir, `resend-${index}.json`);
  writeFileSync(resendFile, JSON.stringify(resend));
  const proc = spawn(process.execPath, [CHILD], {
    cwd: ROOT,
    env: {
      ...process.env,
      APPENDER_DATABASE_URL: db.url,
      APPENDER_CHILD: String(index),
      APPENDER_WRITERS: '24',
      APPENDER_APPLICATION_NAME: appName,
      APPENDER_RESEND: resendFile,
      ...(ops === undefined ? {} : { APPENDER_OPS: String(ops) }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Line));
  createInterface({ input: proc.stderr }).on('line', (l) => stderr.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    proc.once('exit', (code, signal) => res({ code, signal }));
  });
  // Every line is in once the pipe is closed.
  const closed = new Promise<void>((res) => proc.stdout.once('close', () => res()));
  const child = { proc, appName, lines, stderr, exited: exited.then(async (x) => (await closed, x)) };
  children.push(child);
  return child;
}

/** The child's backends now inside es_append_group, and how many of those are in the trigger's sleep. */
async function groupsInFlight(appName: string): Promise<{ groups: number; sleeping: number }> {
  const r = await db.pool.query<{ groups: number; sleeping: number }>(
    `SELECT count(*)::int AS groups, count(*) FILTER (WHERE wait_event = 'PgSleep')::int AS sleeping
       FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = $1 AND state = 'active' AND query LIKE '%es_append_group%'`,
    [appName],
  );
  return r.rows[0]!;
}

beforeAll(async () => {
  ensureChildBuilt();
  dir = mkdtempSync(join(tmpdir(), 'group-commit-crash-'));
  db = await createTestDatabase('gccrash');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
  // Test instrumentation: every insert into events (one per group) stays open a few milliseconds,
  // so a kill lands inside a group's transaction.
  await db.pool.query(`
    CREATE FUNCTION crash_test_slow_group() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_sleep(0.004);
      RETURN NULL;
    END $$;
    CREATE TRIGGER crash_test_slow_group AFTER INSERT ON events
      FOR EACH STATEMENT EXECUTE FUNCTION crash_test_slow_group();`);
}, 300_000);

afterAll(async () => {
  for (const c of children) {
    if (c.proc.exitCode === null && c.proc.signalCode === null) {
      c.proc.kill('SIGKILL');
      await c.exited;
    }
  }
  await store?.close();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('group commit crash safety (real processes, SIGKILL)', () => {
  it(`survives ${KILLS} SIGKILLs inside a group: acknowledged appends stored once, refused ones never`, async () => {
    const seen: RecordedEvent[] = [];
    const sub: Subscription = store.subscribe({ fromPosition: 0, batchSize: 300 }, (events) => {
      seen.push(...events);
      return Promise.resolve();
    });
    const sends = new Map<string, Send>();
    const answers = new Map<string, Ack | Refused>();
    const unanswered: Send[][] = [];
    let killedInGroup = 0;
    let killedSleeping = 0;
    let resend: Send[] = [];
    try {
      for (let k = 0; k <= KILLS; k++) {
        const last = k === KILLS;
        const child = spawnChild(k, resend, last ? 400 : undefined);
        if (!last) {
          const acks = () => child.lines.filter((l) => l.op === 'ack').length;
          // Some real work first, then kill at a moment a group of this child is being written.
          const from = 50 + Math.floor(Math.random() * 300);
          await eventually(
            () => child.lines.some((l) => l.op === 'ready') && acks() >= from,
            `child ${k} working`,
            60_000,
          );
          let state = { groups: 0, sleeping: 0 };
          await eventually(
            async () => (state = await groupsInFlight(child.appName)).groups > 0,
            `child ${k} inside a group`,
            60_000,
          );
          child.proc.kill('SIGKILL');
          const { signal } = await child.exited;
          if (signal !== 'SIGKILL') throw new Error(`child ${k} had exited: ${child.stderr.join('\n')}`);
          killedInGroup++;
          if (state.sleeping > 0) killedSleeping++;
        } else {
          expect(await child.exited).toEqual({ code: 0, signal: null });
        }
        if (child.stderr.length > 0 && !last) {
          // A killed child may print nothing on stderr; anything there is a failure of its own.
          throw new Error(`child ${k} stderr:\n${child.stderr.join('\n')}`);
        }
        for (const l of child.lines) {
          if (l.op === 'send') sends.set(l.n, l);
          else if (l.op === 'ack' || l.op === 'refused') answers.set(l.n, l);
        }
        resend = child.lines.filter((l): l is Send => l.op === 'send' && !answers.has(l.n));
        unanswered.push(resend);
      }
      expect(resend).toEqual([]);

      // What is stored, by event id.
      const rows = await db.pool.query<{
        event_id: string;
        stream_id: string;
        stream_revision: number;
        position: number;
      }>('SELECT event_id, stream_id, stream_revision, position FROM events');
      const byId = new Map(rows.rows.map((r) => [r.event_id, r]));

      let acked = 0;
      let refused = 0;
      let duplicates = 0;
      for (const [n, s] of sends) {
        const a = answers.get(n);
        const stored = s.ids.map((id) => byId.get(id));
        if (!a) {
          // Killed without an answer: all or nothing (its re-send, answered, is checked on its own).
          expect([0, s.ids.length]).toContain(stored.filter(Boolean).length);
          continue;
        }
        if (a.op === 'refused') {
          refused++;
          expect({ n, kind: s.kind, code: a.code }).toEqual({
            n,
            kind: 'wrong',
            code: 'PLATFORM.CONCURRENCY_CONFLICT',
          });
          expect(stored.filter(Boolean)).toEqual([]);
          continue;
        }
        acked++;
        if (s.kind === 'again') expect({ n, duplicate: a.duplicate }).toEqual({ n, duplicate: true });
        // A re-send after a kill answers duplicate when the killed child's group had committed.
        if ((s.kind === 'fresh' || s.kind === 'shared') && !s.resent)
          expect({ n, duplicate: a.duplicate }).toEqual({ n, duplicate: false });
        if (a.duplicate) duplicates++;
        // Stored whole, in its stream, at consecutive revisions and positions ending where the answer said.
        expect(stored.every((r) => r?.stream_id === s.stream)).toBe(true);
        const last = stored.at(-1)!;
        expect({ n, position: last.position, revision: last.stream_revision }).toEqual({
          n,
          position: a.position,
          revision: a.nextRevision,
        });
        stored.forEach((r, i) => {
          expect(r!.stream_revision).toBe(a.nextRevision - (s.ids.length - 1 - i));
          expect(r!.position).toBe(a.position - (s.ids.length - 1 - i));
        });
      }
      // Every acknowledged "again" re-send answered the original's position.
      const firstAck = new Map<string, number>();
      for (const [n, s] of sends) {
        const a = answers.get(n);
        if (a?.op !== 'ack') continue;
        const key = s.ids.join(',');
        const p = firstAck.get(key);
        if (p === undefined) firstAck.set(key, a.position);
        else expect({ n, position: a.position }).toEqual({ n, position: p });
      }

      // Each stream: revisions 0..n-1, in position order; no event twice.
      const streams = await db.pool.query<{ stream_id: string; n: number; max: number; ordered: boolean }>(
        `SELECT stream_id, count(*)::int AS n, max(stream_revision)::int AS max,
                bool_and(prev IS NULL OR prev = stream_revision - 1) AS ordered
           FROM (SELECT stream_id, stream_revision,
                        lag(stream_revision) OVER (PARTITION BY stream_id ORDER BY position) AS prev
                   FROM events) x GROUP BY stream_id`,
      );
      for (const s of streams.rows)
        expect(s).toEqual({ stream_id: s.stream_id, n: s.max + 1, max: s.max, ordered: true });

      // Several appends shared a transaction (a group), else this test would not test group commit.
      const grouped = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (SELECT position >> 16 FROM events GROUP BY 1 HAVING count(DISTINCT stream_id) > 1) g`,
      );
      expect(grouped.rows[0]!.n).toBeGreaterThan(0);

      // The subscriber saw every event once, in position order.
      const total = rows.rows.length;
      await eventually(() => seen.length >= total, 'subscriber caught up', 120_000);
      expect(seen.length).toBe(total);
      expect(new Set(seen.map((e) => e.id)).size).toBe(total);
      expect(seen.every((e, i) => i === 0 || e.position > seen[i - 1]!.position)).toBe(true);

      expect(killedInGroup).toBe(KILLS);
      expect(refused).toBeGreaterThan(0);
      expect(duplicates).toBeGreaterThan(0);
      expect(unanswered.slice(0, KILLS).some((u) => u.length > 0)).toBe(true);
      process.stdout.write(
        `group commit crash test: ${KILLS} kills inside a group (${killedSleeping} while its insert was running), ` +
          `${sends.size} appends sent, ${acked} acknowledged (${duplicates} duplicates), ${refused} refused, ` +
          `${unanswered.flat().length} re-sent after a kill, ${total} events, ${grouped.rows[0]!.n} transactions with several appends\n`,
      );
    } finally {
      await sub.stop();
    }
  }, 600_000);
});
