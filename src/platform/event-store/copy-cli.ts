import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import type { Config } from '../../config';
import { startLocalPostgres } from '../local/local-services';
import type { LocalService } from '../local/local-service';
import type { Logger } from '../logger';
import {
  copyEvents,
  DEFAULT_COPY_BATCH_SIZE,
  type CheckpointStore,
  type CopyCheckpoint,
  type CopyProgress,
  type OrderedMultiAppend,
} from './copy-events';
import type { EventStore } from './event-store';

/**
 * `npm run cli -- events:copy --from <postgres|kurrentdb> --to <postgres|kurrentdb>
 *   [--from-url URL] [--to-url URL] [--batch-size N] [--checkpoint FILE]`
 */

export const STORE_KINDS = ['postgres', 'kurrentdb'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/** An event store the CLI opened, and how to let it go. */
export interface OpenedStore {
  readonly store: EventStore;
  /** An ordered atomic multi-stream append, when the adapter has one (PostgreSQL): pages go in one write. */
  readonly multiAppend?: OrderedMultiAppend;
  /** Events after a position, when the store can count them cheaply (a progress bar in events rather than positions). */
  readonly countEvents?: (afterPosition: number) => Promise<number>;
  /** Default: the store's own close(). */
  close?(): Promise<void>;
}

export type OpenEventStore = (kind: StoreKind, url: string) => Promise<OpenedStore>;

export interface CopyArgs {
  readonly from: StoreKind;
  readonly to: StoreKind;
  /** Undefined: the embedded PostgreSQL the app uses (postgres only). */
  readonly fromUrl: string | undefined;
  readonly toUrl: string | undefined;
  readonly batchSize: number;
  readonly checkpoint: string | undefined;
}

export const MAX_COPY_BATCH_SIZE = 10_000;
const FLAGS = ['--from', '--to', '--from-url', '--to-url', '--batch-size', '--checkpoint'] as const;
const URL_SCHEMES: Record<StoreKind, readonly string[]> = {
  postgres: ['postgres:', 'postgresql:'],
  kurrentdb: ['kurrentdb:', 'kurrentdb+discover:', 'esdb:', 'esdb+discover:'],
};

export const COPY_USAGE =
  'usage: npm run cli -- events:copy --from <postgres|kurrentdb> --to <postgres|kurrentdb> [--from-url URL] [--to-url URL] [--batch-size N] [--checkpoint FILE]';

/**
 * Flags and their defaults: postgres is DATABASE_URL, or the embedded PostgreSQL the app
 * uses when it is unset; kurrentdb is KURRENTDB_URL. Every error names the flag and the rule.
 */
export function parseCopyArgs(
  args: readonly string[],
  env: { readonly DATABASE_URL?: string | undefined; readonly KURRENTDB_URL?: string | undefined },
): { ok: CopyArgs } | { errors: string[] } {
  const errors: string[] = [];
  const given = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [name, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    if (!(FLAGS as readonly string[]).includes(name)) {
      errors.push(`${name}: unknown argument (expected one of ${FLAGS.join(', ')})`);
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined || (inline === undefined && value.startsWith('--'))) {
      errors.push(`${name}: needs a value`);
      if (value?.startsWith('--')) i--;
      continue;
    }
    if (given.has(name)) errors.push(`${name}: given more than once`);
    given.set(name, value);
  }
  const kind = (flag: '--from' | '--to'): StoreKind | undefined => {
    const v = given.get(flag);
    if (v === undefined) {
      errors.push(`${flag}: required, one of ${STORE_KINDS.join(', ')}`);
      return undefined;
    }
    if (!(STORE_KINDS as readonly string[]).includes(v)) {
      errors.push(`${flag}: must be one of ${STORE_KINDS.join(', ')} (got "${v}")`);
      return undefined;
    }
    return v as StoreKind;
  };
  const from = kind('--from');
  const to = kind('--to');
  const url = (flag: '--from-url' | '--to-url', k: StoreKind | undefined): string | undefined => {
    if (!k) return undefined;
    const v = given.get(flag) ?? (k === 'postgres' ? env.DATABASE_URL : env.KURRENTDB_URL) ?? undefined;
    const source = given.has(flag) ? flag : k === 'postgres' ? 'DATABASE_URL' : 'KURRENTDB_URL';
    if (v === undefined || v === '') {
      if (k === 'kurrentdb') errors.push(`${flag}: required for kurrentdb when KURRENTDB_URL is not set`);
      return undefined;
    }
    let scheme: string;
    try {
      scheme = new URL(v).protocol;
    } catch {
      errors.push(`${source}: must be a URL (${URL_SCHEMES[k].map((s) => `${s}//`).join(', ')})`);
      return undefined;
    }
    if (!URL_SCHEMES[k].includes(scheme))
      errors.push(
        `${source}: a ${k} URL starts with ${URL_SCHEMES[k].map((s) => `${s}//`).join(' or ')} (got ${scheme}//)`,
      );
    return v;
  };
  const fromUrl = url('--from-url', from);
  const toUrl = url('--to-url', to);
  if (from && to && from === to && fromUrl === toUrl)
    errors.push(
      `--to: must differ from --from unless --from-url and --to-url name different stores (both are ${from} at ${fromUrl === undefined ? 'the embedded PostgreSQL' : 'the same URL'})`,
    );
  let batchSize = DEFAULT_COPY_BATCH_SIZE;
  const b = given.get('--batch-size');
  if (b !== undefined) {
    if (!/^\d+$/.test(b) || Number(b) < 1 || Number(b) > MAX_COPY_BATCH_SIZE)
      errors.push(`--batch-size: must be an integer from 1 to ${MAX_COPY_BATCH_SIZE} (got "${b}")`);
    else batchSize = Number(b);
  }
  if (errors.length > 0 || !from || !to) return { errors };
  return { ok: { from, to, fromUrl, toUrl, batchSize, checkpoint: given.get('--checkpoint') } };
}

/** The default checkpoint file: one per pair of stores, named by a hash (the URLs hold passwords). */
export function defaultCheckpointFile(dataDir: string, a: CopyArgs, fromUrl: string, toUrl: string): string {
  const h = createHash('sha256').update(`${a.from}\n${fromUrl}\n${a.to}\n${toUrl}`).digest('hex').slice(0, 16);
  return join(dataDir, 'events-copy', `${a.from}-to-${a.to}-${h}.json`);
}

/** A checkpoint in a small JSON file, replaced atomically (written aside, then renamed). */
export function fileCheckpoint(file: string): CheckpointStore {
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT') return Promise.resolve(undefined);
        throw e;
      }
      const c = JSON.parse(text) as Partial<CopyCheckpoint>;
      const ok =
        typeof c.position === 'number' &&
        typeof c.eventId === 'string' &&
        typeof c.streamId === 'string' &&
        typeof c.revision === 'number';
      if (!ok) throw new Error(`${file}: not a checkpoint of events:copy (delete it to start over)`);
      return Promise.resolve(c as CopyCheckpoint);
    },
    save(c) {
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(c) + '\n', { mode: 0o600 });
      renameSync(tmp, file);
      return Promise.resolve();
    },
  };
}

export interface EventsCopyCommand {
  readonly args: readonly string[];
  readonly config: Config;
  readonly log: Logger;
  readonly openEventStore: OpenEventStore;
  /** KURRENTDB_URL (not in Config yet). */
  readonly kurrentDbUrl: string | undefined;
  /** Progress bar (a TTY) or a plain line every few seconds. Default: whether stderr is a TTY. */
  readonly tty?: boolean;
}

const PLAIN_PROGRESS_INTERVAL_MS = 2000;

export async function runEventsCopy(cmd: EventsCopyCommand): Promise<number> {
  const parsed = parseCopyArgs(cmd.args, { DATABASE_URL: cmd.config.DATABASE_URL, KURRENTDB_URL: cmd.kurrentDbUrl });
  if ('errors' in parsed) {
    for (const e of parsed.errors) console.error(e);
    console.error(COPY_USAGE);
    return 2;
  }
  const a = parsed.ok;
  const local: LocalService[] = [];
  const opened: OpenedStore[] = [];
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const resolve = async (url: string | undefined): Promise<string> => {
      if (url !== undefined) return url;
      const pg = await startLocalPostgres(cmd.config.DATA_DIR, cmd.config.EMBEDDED_PG_PORT, 'platform', (m) =>
        cmd.log.info(m),
      );
      local.push(pg);
      return pg.url;
    };
    const fromUrl = await resolve(a.fromUrl);
    const toUrl = await resolve(a.toUrl);
    const source = await cmd.openEventStore(a.from, fromUrl);
    opened.push(source);
    const target = await cmd.openEventStore(a.to, toUrl);
    opened.push(target);

    const file = a.checkpoint ?? defaultCheckpointFile(cmd.config.DATA_DIR, a, fromUrl, toUrl);
    mkdirSync(join(file, '..'), { recursive: true });
    const checkpoint = fileCheckpoint(file);
    const started = Date.now();
    const show = progressDisplay(cmd.tty ?? process.stderr.isTTY, source.countEvents);
    const result = await copyEvents(source.store, target.store, {
      batchSize: a.batchSize,
      signal: controller.signal,
      checkpoint,
      ...(target.multiAppend ? { multiAppend: target.multiAppend } : {}),
      onProgress: (p) => show.update(p),
    }).finally(() => show.stop());

    const seconds = (Date.now() - started) / 1000;
    const rate = Math.round(result.copied / Math.max(seconds, 0.001));
    if (result.checkpointRejected)
      console.error(`checkpoint ${file} not used (${result.checkpointRejected}); started from the beginning`);
    const summary =
      `${result.copied} events copied (${result.streams} new streams) from ${a.from} to ${a.to} in ${seconds.toFixed(1)} s, ` +
      `${rate} events/s; ${result.skipped} already in the target` +
      (result.startPosition > 0 ? `; resumed after source position ${result.startPosition}` : '');
    if (result.aborted) {
      console.error(`interrupted: ${summary}. Run the same command again to resume (checkpoint ${file}).`);
      return 130;
    }
    console.log(summary);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const o of opened.reverse()) await (o.close ? o.close() : o.store.close());
    for (const s of local.reverse()) await s.stop();
  }
}

interface ProgressDisplay {
  update(p: CopyProgress): void;
  stop(): void;
}

/**
 * On a TTY, a cli-progress bar (the one projections:rebuild uses): in events when the
 * source counts them cheaply, else in source positions (KurrentDB's grow with the
 * bytes written, a fair measure of the work). Elsewhere, a plain line every 2 s.
 */
function progressDisplay(tty: boolean, countEvents: OpenedStore['countEvents']): ProgressDisplay {
  let total: Promise<number | undefined> | undefined;
  let known: number | undefined;
  const totalOf = (p: CopyProgress) => {
    total ??= countEvents
      ? countEvents(p.startPosition).then(
          (n) => (known = n),
          () => undefined,
        )
      : Promise.resolve(undefined);
    void total;
  };
  if (tty) {
    const bar = new SingleBar(
      {
        format: 'events:copy [{bar}] {percentage}% | {what} | {copied} copied, {skipped} already there | {duration}s',
        stream: process.stderr,
      },
      Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        totalOf(p);
        const [value, max, what] =
          known !== undefined
            ? [p.read, Math.max(known, p.read), `${p.read}/${known} events`]
            : [
                p.position - p.startPosition,
                Math.max(p.headPosition - p.startPosition, p.position - p.startPosition, 1),
                `position ${p.position}/${p.headPosition}`,
              ];
        const payload = { what, copied: p.copied, skipped: p.skipped };
        if (!started) {
          bar.start(max, value, payload);
          started = true;
        }
        bar.setTotal(max);
        bar.update(value, payload);
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let last = 0;
  return {
    update(p) {
      totalOf(p);
      const now = Date.now();
      if (now - last < PLAIN_PROGRESS_INTERVAL_MS) return;
      last = now;
      const of = known !== undefined ? `/${known}` : '';
      console.error(
        `events:copy: ${p.read}${of} events read, ${p.copied} copied, ${p.skipped} already in the target; source position ${p.position}/${p.headPosition}`,
      );
    },
    stop() {},
  };
}
