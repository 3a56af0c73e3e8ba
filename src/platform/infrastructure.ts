import { Redis } from 'ioredis';
import { Pool, types } from 'pg';
import type { Config } from '../config';
import { startLocalPostgres, startLocalRedis, type LocalService } from './local/local-services';
import type { Logger } from './logger';
import { migrate } from './migrations';

// bigint columns (positions, counts) as JS numbers: positions stay below 2^53
// until the cluster has used 2^37 transaction ids.
types.setTypeParser(types.builtins.INT8, (v) => Number(v));

export interface Infrastructure {
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly pool: Pool;
  readonly redis: Redis;
  /** Closes connections and stops the local servers this process started. */
  close(): Promise<void>;
}

/** The database and Redis: external when configured, otherwise local processes under DATA_DIR. */
export async function resolveServices(
  config: Config,
  log: Logger,
): Promise<{ databaseUrl: string; redisUrl: string; local: LocalService[] }> {
  const local: LocalService[] = [];
  let databaseUrl = config.DATABASE_URL;
  if (!databaseUrl) {
    const pg = await startLocalPostgres(config.DATA_DIR, config.EMBEDDED_PG_PORT, 'platform', (m) => log.info(m));
    local.push(pg);
    databaseUrl = pg.url;
  }
  let redisUrl = config.REDIS_URL;
  if (!redisUrl) {
    const r = await startLocalRedis(config.DATA_DIR, config.EMBEDDED_REDIS_PORT, (m) => log.info(m));
    local.push(r);
    redisUrl = r.url;
  }
  return { databaseUrl, redisUrl, local };
}

export async function connectInfrastructure(config: Config, log: Logger): Promise<Infrastructure> {
  const { databaseUrl, redisUrl, local } = await resolveServices(config, log);
  const pool = new Pool({ connectionString: databaseUrl, max: config.PG_POOL_SIZE, application_name: 'platform' });
  let closing = false;
  // pool.end() resolves before every socket is closed: errors from connections being closed are expected then.
  pool.on('error', (e) => {
    if (!closing) log.warn({ err: e.message }, 'idle PostgreSQL connection failed');
  });
  const { applied, positions } = await migrate(pool);
  if (applied.length) log.info({ applied }, 'migrations applied');
  if (positions?.raised) {
    log.warn(
      { previousOffset: positions.previousOffset, offset: positions.offset },
      'event store restored from another cluster: positions now continue above the stored ones (transaction-id offset raised)',
    );
  }
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
  redis.on('error', (e) => log.warn({ err: e.message }, 'Redis connection error'));
  return {
    databaseUrl,
    redisUrl,
    pool,
    redis,
    close: async () => {
      closing = true;
      redis.disconnect();
      await pool.end();
      for (const s of local.reverse()) await s.stop();
    },
  };
}
