import type { Redis } from 'ioredis';
import type { Pool } from 'pg';
import type { Config } from '../config';
import { DomainError } from '../../domain/shared/errors';
import type { EventStore } from './event-store/event-store';
import type { RebuildJobs } from './jobs/rebuild-jobs';
import type { Logger } from './logger';
import type { Metrics } from './observability/metrics';
import type { Projections } from './processing/projections';
import { PlatformErrorCode } from './platform-errors';

/** What the platform is made of; src/app.ts builds each part and hands them over by name. */
export interface PlatformParts {
  readonly config: Config;
  readonly log: Logger;
  readonly pool: Pool;
  readonly redis: Redis;
  readonly redisUrl: string;
  /** The resolved PostgreSQL URL (the embedded server's when DATABASE_URL is unset), for components that need their own connection. */
  readonly databaseUrl: string;
  readonly store: EventStore;
  readonly projections: Projections;
  readonly jobs: RebuildJobs;
  readonly metrics: Metrics;
}

/**
 * The running platform's parts, created once in src/app.ts and injected
 * where needed. A plain object rather than a dozen DI tokens: one place to
 * see what the application holds.
 */
export class Platform implements PlatformParts {
  /** False once shutdown has begun: health answers 503 so load balancers stop sending work. */
  accepting = true;

  readonly config: Config;
  readonly log: Logger;
  readonly pool: Pool;
  readonly redis: Redis;
  readonly redisUrl: string;
  readonly databaseUrl: string;
  readonly store: EventStore;
  readonly projections: Projections;
  readonly jobs: RebuildJobs;
  readonly metrics: Metrics;

  constructor(parts: PlatformParts) {
    this.config = parts.config;
    this.log = parts.log;
    this.pool = parts.pool;
    this.redis = parts.redis;
    this.redisUrl = parts.redisUrl;
    this.databaseUrl = parts.databaseUrl;
    this.store = parts.store;
    this.projections = parts.projections;
    this.jobs = parts.jobs;
    this.metrics = parts.metrics;
  }

  /**
   * Read-your-writes: when the client passes a position (query `minPosition`
   * or header `X-Min-Position`), wait, bounded, until the projection has
   * reached it; past the bound answer 503 with Retry-After.
   */
  async readAfter(projection: string, minPosition: number | undefined): Promise<void> {
    if (minPosition === undefined || minPosition <= 0) return;
    const reached = await this.projections.waitFor(projection, minPosition, this.config.READ_WAIT_TIMEOUT_MS);
    if (!reached) {
      throw new DomainError(
        'unavailable',
        PlatformErrorCode.READ_MODEL_BEHIND,
        `read model ${projection} has not reached position ${minPosition} yet`,
        [],
        { retryAfterSeconds: 1, projection, minPosition },
      );
    }
  }
}
