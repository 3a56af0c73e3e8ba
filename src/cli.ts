import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import { Pool } from 'pg';
import { loadConfig } from './config';
import { resolveServices } from './platform/infrastructure';
import { createLogger } from './platform/logger';
import { migrate } from './platform/migrations';
import { runProjectionCommand } from './platform/processing/projection-cli';
import { allProjections } from './read-models';
import { PostgresEventStore } from './platform/event-store/postgres-event-store';
import { KurrentDbEventStore } from './platform/event-store/kurrentdb-event-store';
import { openEventStore } from './platform/event-store/open-event-store';
import { errorText } from './platform/processing/transaction';
import { runEventsCopy, type OpenedStore, type StoreKind } from './platform/event-store/copy-cli';
import { orderedPageAppend } from './platform/event-store/postgres-ordered-append';
import { grantAdmin } from './identity/grant-admin';
import { rotateSigningKeys } from './identity/auth/signing-keys';

/**
 * `npm run cli -- <command>`:
 *   migrate                         apply pending migrations
 *   projections:rebuild <name>      rebuild one read model from the events, with a progress bar
 *   projections:list                names, checkpoints, status
 *   users:grant-admin <email>       give an existing account the admin role
 *   keys:rotate                     add a new JWT signing key in DATA_DIR, drop keys past their life; prints the new kid
 *   events:copy --from K --to K     copy a whole event store (postgres | kurrentdb) into another, resumable, with a progress bar;
 *                                   [--from-url URL] [--to-url URL] [--batch-size N] [--checkpoint FILE]
 *   services:run --write-env F       start the local PostgreSQL and Redis, write their URLs to F (mode 600), run until SIGTERM (tests);
 *                                   --pg-port / --redis-port choose their ports (0: any free port)
 */
async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const config = loadConfig();
  const log = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, 'cli');
  switch (command) {
    case 'migrate': {
      const { databaseUrl, local } = await resolveServices(config, log);
      const pool = new Pool({ connectionString: databaseUrl });
      try {
        const r = await migrate(pool);
        console.log(r.applied.length ? `applied: ${r.applied.join(', ')}` : `up to date (version ${r.current})`);
      } finally {
        await pool.end();
        for (const s of local) await s.stop();
      }
      return 0;
    }
    case 'projections:rebuild':
    case 'projections:list': {
      return runProjectionCommand({ command, args, config, log, projections: allProjections });
    }
    case 'users:grant-admin': {
      const email = args[0];
      if (!email) {
        console.error('usage: npm run cli -- users:grant-admin <email>');
        return 2;
      }
      const { databaseUrl, local } = await resolveServices(config, log);
      const pool = new Pool({ connectionString: databaseUrl, max: 2 });
      try {
        await migrate(pool);
        // The configured store (KurrentDB when KURRENTDB_URL is set), as the app writes to it.
        const store = await openEventStore(config, { pool, databaseUrl }, { log: (msg) => log.warn(msg) });
        try {
          const userId = await grantAdmin(store, email, config.COMMAND_RETRIES);
          console.log(
            `user ${userId} (${email}) has the admin role; it applies to tokens issued from now on (log in again)`,
          );
        } finally {
          await store.close();
        }
      } finally {
        await pool.end();
        for (const s of local) await s.stop();
      }
      return 0;
    }
    case 'keys:rotate': {
      const r = rotateSigningKeys(config);
      console.log(r.kid);
      console.error(
        `${r.file}: new signing key ${r.kid}; verifying keys: ${r.kids.join(', ')}` +
          `${r.pruned.length ? `; pruned (all their tokens have expired): ${r.pruned.join(', ')}` : ''}.` +
          ' Running instances verify and publish it now and sign with it within a minute.',
      );
      return 0;
    }
    case 'events:copy': {
      return runEventsCopy({ args, config, log, openEventStore: openCopyStore, kurrentDbUrl: config.KURRENTDB_URL });
    }
    case 'services:run': {
      const envFile = flag(args, '--write-env');
      const pgPort = flag(args, '--pg-port');
      const redisPort = flag(args, '--redis-port');
      const cfg = loadConfig({
        ...process.env,
        DATABASE_URL: process.env.TEST_DATABASE_URL,
        REDIS_URL: process.env.TEST_REDIS_URL,
        ...(pgPort ? { EMBEDDED_PG_PORT: pgPort } : {}),
        ...(redisPort ? { EMBEDDED_REDIS_PORT: redisPort } : {}),
      });
      // Listening before anything starts: a script may stop us the moment the env file appears, or while starting.
      // Signal listeners do not keep Node running, nor do the servers (their child handles are unref'd): a timer does.
      const keepAlive = setInterval(() => undefined, 2 ** 30);
      const stopped = new Promise<void>((res) => {
        process.once('SIGTERM', res);
        process.once('SIGINT', res);
      }).finally(() => clearInterval(keepAlive));
      const services = await resolveServices(cfg, createLogger('info', 'test-services'));
      const lines = [`TEST_DATABASE_URL=${services.databaseUrl}`, `TEST_REDIS_URL=${services.redisUrl}`];
      if (envFile) writePrivate(envFile, lines.join('\n') + '\n');
      else console.log(lines.join('\n'));
      await stopped;
      for (const s of services.local.reverse()) await s.stop();
      return 0;
    }
    case undefined:
    default:
      console.error(
        'usage: npm run cli -- <migrate | projections:list | projections:rebuild <name> | users:grant-admin <email> | keys:rotate | events:copy --from K --to K | services:run --write-env F>',
      );
      return 2;
  }
}

/**
 * The one place events:copy builds a store. No upcasters on either side: the copy
 * carries the stored data and schema versions, not what today's code reads.
 */
async function openCopyStore(kind: StoreKind, url: string): Promise<OpenedStore> {
  switch (kind) {
    case 'postgres': {
      // Named, so an operator (and the crash test) can see its sessions in pg_stat_activity.
      const pool = new Pool({ connectionString: url, max: 4, application_name: 'events-copy' });
      try {
        await migrate(pool);
      } catch (e) {
        await pool.end();
        throw e;
      }
      const store = new PostgresEventStore(pool, { listenConnectionString: url });
      return {
        store,
        multiAppend: orderedPageAppend(pool),
        countEvents: async (after) =>
          Number(
            (await pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE position > $1', [after])).rows[0]
              ?.n ?? 0,
          ),
        close: async () => {
          await store.close();
          await pool.end();
        },
      };
    }
    case 'kurrentdb':
      // The copy never appends to several streams at once: an older server's weaker multi-stream mode does not matter here.
      return {
        store: await KurrentDbEventStore.connect(url, {
          allowNonAtomicMultiStream: true,
          log: (msg, err) => console.error(err === undefined ? msg : `${msg}: ${errorText(err)}`),
        }),
      };
  }
}

/**
 * The URLs hold passwords: mode 600, written under a temporary name and renamed, so
 * the file is never readable by others nor seen half-written by a script polling for it.
 */
function writePrivate(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
