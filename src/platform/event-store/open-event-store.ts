import type { Pool } from 'pg';
import type { Config } from '../../config';
import type { EventStore } from './event-store';
import { KurrentDbEventStore } from './kurrentdb-event-store';
import { PostgresEventStore } from './postgres-event-store';

export interface OpenEventStoreOptions {
  readonly log: (msg: string, err?: unknown) => void;
  /** Called after every append that stored events (metrics). */
  readonly onAppended?: (count: number) => void;
}

/**
 * The event store the configuration names: KurrentDB when KURRENTDB_URL is
 * set, else PostgreSQL (the default) in the platform's database. Read models,
 * checkpoints and everything else stay in PostgreSQL either way.
 */
export async function openEventStore(
  config: Pick<Config, 'KURRENTDB_URL' | 'KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM'>,
  pg: { readonly pool: Pool; readonly databaseUrl: string },
  options: OpenEventStoreOptions,
): Promise<EventStore> {
  if (config.KURRENTDB_URL) {
    return KurrentDbEventStore.connect(config.KURRENTDB_URL, {
      log: options.log,
      allowNonAtomicMultiStream: config.KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM,
      ...(options.onAppended ? { onAppended: options.onAppended } : {}),
    });
  }
  return new PostgresEventStore(pg.pool, {
    listenConnectionString: pg.databaseUrl,
    log: options.log,
    ...(options.onAppended ? { onAppended: options.onAppended } : {}),
  });
}
