import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { Projections } from '../../src/platform/processing/projections';
import {
  AccountsWorkload,
  IGNORED_EVENT,
  accountsProjection,
  allEvents,
  foldAccounts,
  ledgerTable,
  readAccounts,
} from '../fixtures/accounts-projection';
import { eventually } from '../support/events';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * Crash safety with real processes: a projector child (test/fixtures/projector-child.ts,
 * compiled to dist/) is SIGKILLed again and again (mid-batch, between batches, at
 * random moments including start-up) while events keep arriving; each time a new
 * one takes over. Afterwards the read model must equal the fold of every event and
 * a rebuild from zero, row for row: nothing applied twice, nothing missed.
 */

const ROOT = resolve(__dirname, '..', '..');
const CHILD_SOURCE = join(ROOT, 'test', 'fixtures', 'projector-child.ts');
const CHILD = join(ROOT, 'dist', 'test', 'fixtures', 'projector-child.js');
const NAME = 'crash_accounts';
const KILLS = 16;
const BATCH_SIZES = [10, 1, 25, 2, 50, 7, 3, 1];
/**
 * mid-batch: while a slow handler sleeps inside the batch's transaction;
 * between-batches: after a commit, with no statement running;
 * any-moment: a random delay after spawning (start-up, registration, lock, running);
 * after-commit: the instant the read model shows a new batch, with checkpoint
 * updates slowed down by a test trigger: an engine that moved the checkpoint
 * outside the batch's transaction would be caught between the two and apply
 * the batch again after the restart.
 */
const MODES = ['mid-batch', 'between-batches', 'any-moment', 'after-commit'] as const;
type Mode = (typeof MODES)[number];

/** The child's own sources and everything they import (relative imports), transitively. */
function childSources(): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s+'(\.{1,2}\/[^']+)'/g)) {
      const target = resolve(dirname(file), m[1]!);
      for (const candidate of [`${target}.ts`, join(target, 'index.ts')]) {
        if (existsSync(candidate)) {
          visit(candidate);
          break;
        }
      }
    }
  };
  visit(CHILD_SOURCE);
  return [...seen];
}

function staleOutputs(): string[] {
  return childSources().filter((ts) => {
    const js = join(ROOT, 'dist', relative(ROOT, ts)).replace(/\.ts$/, '.js');
    return !existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs;
  });
}

/**
 * The child runs from dist/ (`npx tsc -p tsconfig.json`; `npm test` builds
 * first). When its compiled files are missing or older than their sources,
 * build here rather than test stale code. (tsc skips writing an output whose
 * text would not change, so an output may stay older than a source edited
 * only in its types: after a build, that is current.)
 */
function ensureChildBuilt(): void {
  if (staleOutputs().length === 0) return;
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch {
    // Type errors elsewhere in the tree: tsc still emits.
  }
  if (!existsSync(CHILD)) throw new Error(`could not build ${relative(ROOT, CHILD)}: run npx tsc -p tsconfig.json`);
}

interface Child {
  readonly proc: ChildProcess;
  readonly appName: string;
  readonly lines: string[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: Child[] = [];

function spawnChild(batchSize: number, index: number): Child {
  const appName = `projector-child-${index}`;
  const proc = spawn(process.execPath, [CHILD], {
    cwd: ROOT,
    env: {
      ...process.env,
      PROJECTOR_DATABASE_URL: db.url,
      PROJECTOR_NAME: NAME,
      PROJECTOR_BATCH_SIZE: String(batchSize),
      PROJECTOR_APPLICATION_NAME: appName,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => lines.push(l));
  createInterface({ input: proc.stderr }).on('line', (l) => {
    stderr.push(l);
    if (stderr.length > 200) stderr.shift();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    proc.once('exit', (code, signal) => res({ code, signal }));
  });
  const child = { proc, appName, lines, stderr, exited };
  children.push(child);
  return child;
}

async function kill(child: Child): Promise<void> {
  child.proc.kill('SIGKILL');
  const { code, signal } = await child.exited;
  if (signal !== 'SIGKILL')
    throw new Error(`${child.appName} had already exited (code ${code}); its stderr:\n${child.stderr.join('\n')}`);
}

let db: TestDatabase;
let store: PostgresEventStore;

beforeAll(async () => {
  ensureChildBuilt();
  db = await createTestDatabase('crash');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
  // Test instrumentation: checkpoint updates can be made slow (see the after-commit kills).
  await db.pool.query(`
    CREATE TABLE crash_test_control (slow_checkpoint_ms integer NOT NULL);
    INSERT INTO crash_test_control VALUES (0);
    CREATE FUNCTION crash_test_slow_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_sleep(slow_checkpoint_ms / 1000.0) FROM crash_test_control WHERE slow_checkpoint_ms > 0;
      RETURN NEW;
    END $$;
    CREATE TRIGGER crash_test_slow_checkpoint BEFORE UPDATE OF position ON processor_checkpoints
      FOR EACH ROW WHEN (NEW.position IS DISTINCT FROM OLD.position) EXECUTE FUNCTION crash_test_slow_checkpoint();`);
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
});

async function ledgerHead(): Promise<number> {
  const r = await db.pool.query<{ max: number | null }>(`SELECT max(position) AS max FROM ${ledgerTable(NAME)}`);
  return r.rows[0]?.max ?? 0;
}

async function checkpoint(): Promise<number> {
  const r = await db.pool.query<{ position: number }>('SELECT position FROM processor_checkpoints WHERE name = $1', [
    NAME,
  ]);
  return r.rows[0]?.position ?? 0;
}

/** The child's backends inside a transaction; `sleeping`: inside a slow handler's pg_sleep (surely mid-batch). */
async function childTransactions(appName: string): Promise<{ open: number; sleeping: number }> {
  const r = await db.pool.query<{ open: number; sleeping: number }>(
    `SELECT count(*)::int AS open, count(*) FILTER (WHERE state = 'active' AND query ILIKE '%pg_sleep%')::int AS sleeping
       FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND xact_start IS NOT NULL`,
    [appName],
  );
  return r.rows[0]!;
}

describe('projection crash safety (real processes, SIGKILL)', () => {
  it(`survives ${KILLS} SIGKILLs mid-batch and between batches: no event applied twice or missed`, async () => {
    const workload = new AccountsWorkload('crash', 300, { slowEvery: 12, slowMs: [30, 150] });
    let appended = 0;
    const append = async (appends: number) => {
      for (let i = 0; i < appends; i++) {
        const { streamId, events } = workload.next();
        await store.append(streamId, events, 'any');
        appended += events.length;
      }
    };
    await append(600);

    const kills: {
      mode: Mode;
      batchSize: number;
      inTransaction: boolean;
      inSlowHandler: boolean;
      checkpoint: number;
    }[] = [];
    for (let k = 0; k < KILLS; k++) {
      const mode = MODES[k % MODES.length]!;
      const batchSize = BATCH_SIZES[k % BATCH_SIZES.length]!;
      const child = spawnChild(batchSize, k);
      // More events arrive while this child runs.
      const more = append(50);
      // What the child's connections were doing just before the kill.
      let state = { open: 0, sleeping: 0 };
      if (mode === 'any-moment') {
        // Anywhere from start-up (registering, taking the lock) to mid-run.
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 800)));
        state = await childTransactions(child.appName);
      } else {
        await eventually(() => child.lines.includes('active'), `child ${k} active`, 60_000);
        if (mode === 'mid-batch') {
          await eventually(
            async () => (state = await childTransactions(child.appName)).sleeping > 0,
            `child ${k} inside a batch`,
            60_000,
          );
        } else if (mode === 'between-batches') {
          const from = await checkpoint();
          await eventually(
            async () => (await checkpoint()) > from && (state = await childTransactions(child.appName)).open === 0,
            `child ${k} between batches`,
            60_000,
          );
        } else {
          // No pause between looks: kill as soon as a batch shows.
          await db.pool.query('UPDATE crash_test_control SET slow_checkpoint_ms = 50');
          const seen = await ledgerHead();
          const until = Date.now() + 60_000;
          while ((await ledgerHead()) === seen) {
            if (Date.now() > until) throw new Error(`child ${k}: no batch applied`);
          }
        }
      }
      await kill(child);
      await db.pool.query('UPDATE crash_test_control SET slow_checkpoint_ms = 0');
      kills.push({
        mode,
        batchSize,
        inTransaction: state.open > 0,
        inSlowHandler: state.sleeping > 0,
        checkpoint: await checkpoint(),
      });
      await more;
    }

    // A last projector catches up, then stops cleanly.
    const last = spawnChild(10, KILLS);
    const observer = new Projections(db.pool, store, [accountsProjection(NAME)], {
      connectionString: db.url,
      batchSize: 100,
      maxAttempts: 3,
      rebuildBatchSize: 500,
      log: () => undefined,
    });
    // The newest event (not store.headPosition(), which stops below transactions in flight).
    const head = (await db.pool.query<{ max: number }>('SELECT max(position) AS max FROM events')).rows[0]!.max;
    const caughtUp = await observer.waitFor(NAME, head, 300_000);
    if (!caughtUp) throw new Error(`projector did not catch up; its stderr:\n${last.stderr.join('\n')}`);
    last.proc.kill('SIGTERM');
    expect(await last.exited).toEqual({ code: 0, signal: null });
    expect(last.lines).toContain('stopped');

    // Kills landed where intended: inside a handler's transaction, and between batches.
    expect(kills).toHaveLength(KILLS);
    expect(kills.filter((k) => k.inSlowHandler).length).toBeGreaterThanOrEqual(KILLS / MODES.length);
    expect(kills.some((k) => k.mode === 'between-batches' && !k.inTransaction)).toBe(true);
    expect(kills.at(-1)!.checkpoint).toBeGreaterThan(kills[0]!.checkpoint);

    // Never parked (a double Opened would have failed on the primary key).
    const [info] = await observer.status();
    expect(info).toMatchObject({ status: 'running', parked: null, lagEvents: 0 });
    expect(await observer.operatorLog(NAME)).toEqual([]);

    // No ledger row twice; the read model is the fold of every event, exactly once each.
    const doubles = await db.pool.query(
      `SELECT position, count(*)::int AS n FROM ${ledgerTable(NAME)} GROUP BY position HAVING count(*) > 1`,
    );
    expect(doubles.rows).toEqual([]);
    const events = await allEvents(db.pool);
    expect(events.length).toBe(appended);
    const live = await readAccounts(db.pool, NAME);
    const folded = foldAccounts(events);
    expect(live.accounts.length).toBeGreaterThan(200);
    expect(live.ledger.length).toBeGreaterThan(1000);
    expect(live).toEqual(folded);

    // And equal to a rebuild from zero.
    const rebuilt = await observer.rebuild(NAME, 'system:test');
    expect(rebuilt.events).toBe(events.filter((e) => e.type !== IGNORED_EVENT).length);
    expect(await readAccounts(db.pool, NAME)).toEqual(live);

    const byMode = MODES.map((m) => `${kills.filter((k) => k.mode === m).length} ${m}`).join(', ');
    process.stdout.write(
      `projection crash test: ${KILLS} kills (${byMode}; ${kills.filter((k) => k.inSlowHandler).length} seen inside a slow handler, ` +
        `${kills.filter((k) => k.inTransaction).length} with a transaction open), ${appended} events, ${live.ledger.length} ledger rows\n`,
    );
  }, 600_000);
});
