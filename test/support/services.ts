import { randomBytes } from 'node:crypto';
import { lstatSync, realpathSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Client, Pool } from 'pg';
import '../../src/platform/infrastructure'; // int8 as number, as in the app
import { migrate } from '../../src/platform/migrations';

/**
 * Real services for tests: scripts/test.sh starts PostgreSQL and Redis (or
 * uses TEST_DATABASE_URL / TEST_REDIS_URL) and each test file makes its own
 * database, dropped at the end.
 */
export function testDatabaseUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test` (scripts/test.sh)');
  return url;
}

export function testRedisUrl(): string {
  const url = process.env.TEST_REDIS_URL;
  if (!url) throw new Error('TEST_REDIS_URL is not set: run the tests with `npm test` (scripts/test.sh)');
  return url;
}

export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  readonly pool: Pool;
  drop(): Promise<void>;
}

export async function createTestDatabase(
  prefix = 't',
  options: { migrate?: boolean; poolSize?: number } = {},
): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new Client({ connectionString: withDatabase(testDatabaseUrl(), 'postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = withDatabase(testDatabaseUrl(), name);
  const pool = new Pool({ connectionString: url, max: options.poolSize ?? 20 });
  if (options.migrate !== false) await migrate(pool);
  return {
    name,
    url,
    pool,
    drop: async () => {
      // pool.end() resolves before every socket has closed; DROP ... WITH (FORCE) may cut one.
      pool.on('error', () => undefined);
      await pool.end();
      const a = new Client({ connectionString: withDatabase(testDatabaseUrl(), 'postgres') });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/**
 * Removes a DATA_DIR a test gave the app, with the PostgreSQL cluster it may hold
 * outside it: as root with a private DATA_DIR, DATA_DIR/postgres links to
 * /var/lib/opsplatform/<hash>/postgres (src/platform/local/postgres.ts).
 */
export function removeDataDir(dataDir: string): void {
  const link = join(dataDir, 'postgres');
  try {
    if (lstatSync(link).isSymbolicLink()) rmSync(dirname(realpathSync(link)), { recursive: true, force: true });
  } catch {
    // no cluster, or its link dangles
  }
  rmSync(dataDir, { recursive: true, force: true });
}
