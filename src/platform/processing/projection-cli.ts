import { SingleBar, Presets } from 'cli-progress';
import { Pool } from 'pg';
import type { Config } from '../../config';
import type { Projection } from '../../../projections/projection';
import { openEventStore } from '../event-store/open-event-store';
import { resolveServices } from '../infrastructure';
import type { Logger } from '../logger';
import { migrate } from '../migrations';
import { Projections } from './projections';

export interface ProjectionCommand {
  readonly command: 'projections:list' | 'projections:rebuild';
  readonly args: readonly string[];
  readonly config: Config;
  readonly log: Logger;
  /** The app's read models (src/read-models.ts): the composition root hands them in. */
  readonly projections: readonly Projection[];
}

/** `projections:list` and `projections:rebuild <name>` for the CLI; runs in-process against the configured database. */
export async function runProjectionCommand({
  command,
  args,
  config,
  log,
  projections,
}: ProjectionCommand): Promise<number> {
  const { databaseUrl, local } = await resolveServices(config, log);
  const pool = new Pool({ connectionString: databaseUrl, max: 4 });
  const store = await openEventStore(
    config,
    { pool, databaseUrl },
    { log: (msg, err) => log.warn({ err }, msg) },
  ).catch(async (e: unknown) => {
    await pool.end();
    for (const s of local) await s.stop();
    throw e;
  });
  const engine = new Projections(pool, store, projections, {
    connectionString: databaseUrl,
    batchSize: config.PROJECTION_BATCH_SIZE,
    maxAttempts: config.PROJECTION_MAX_ATTEMPTS,
    log: (level, msg, extra) => log[level](extra ?? {}, msg),
  });
  try {
    await migrate(pool);
    await engine.register();
    if (command === 'projections:list') {
      for (const i of await engine.status()) {
        console.log(`${i.name.padEnd(24)} ${i.status.padEnd(8)} checkpoint=${i.checkpoint} lag=${i.lagEvents} events`);
      }
      return 0;
    }
    const name = args[0];
    if (!name) {
      console.error(
        `usage: npm run cli -- projections:rebuild <name>   (one of: ${engine.projections.map((p) => p.name).join(', ')})`,
      );
      return 2;
    }
    engine.get(name);
    const bar = new SingleBar(
      { format: `${name} [{bar}] {percentage}% | {value}/{total} events | {duration}s` },
      Presets.shades_classic,
    );
    let started = false;
    const result = await engine.rebuild(name, 'system:cli', ({ processed, total }) => {
      if (!started) {
        bar.start(total, processed);
        started = true;
      }
      bar.setTotal(total);
      bar.update(processed);
    });
    bar.stop();
    console.log(`rebuilt ${name}: ${result.events} events, checkpoint ${result.position}`);
    return 0;
  } finally {
    await store.close();
    await pool.end();
    for (const s of local) await s.stop();
  }
}
