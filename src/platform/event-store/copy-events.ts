import {
  ConcurrencyError,
  IdempotencyConflictError,
  type AppendResult,
  type EventStore,
  type EventToAppend,
  type ExpectedRevision,
  type RecordedEvent,
} from './event-store';

/**
 * Copies a whole event store into another through the EventStore port (any
 * adapter on either side): every event in the source's global order, appended
 * to its stream with its id, type, data, metadata and schema version, at its
 * revision (expected revision = revision - 1, or no_stream for revision 0).
 * Appends are sequential, so the target's global order is the source's.
 *
 * Resuming: the copy is idempotent event by event. An append refused because
 * the target already holds that revision is compared with what is there: the
 * same ids are skipped, a different event stops the copy (EventCopyError
 * naming stream and revision). What was copied is a prefix of the source's
 * global order, so a page of the source whose last event is already in the
 * target was copied entirely and is skipped with one read of the target. A
 * checkpoint (the source position of the last page copied, kept by the
 * caller: the CLI writes a small file) lets a re-run start where the previous
 * one stopped instead of reading the source from the beginning; it is only a
 * hint, checked against both stores before use, so a lost or stale one costs
 * time, never correctness.
 */

export interface CopyCheckpoint {
  /** Source position of the last event known to be in the target. */
  readonly position: number;
  readonly eventId: string;
  readonly streamId: string;
  readonly revision: number;
}

export interface CheckpointStore {
  load(): Promise<CopyCheckpoint | undefined>;
  save(checkpoint: CopyCheckpoint): Promise<void>;
}

/** One atomic write to several streams whose events get global positions in the order given (PostgreSQL's appendMulti). */
export type OrderedMultiAppend = (
  writes: readonly { streamId: string; events: readonly EventToAppend[]; expected: ExpectedRevision }[],
) => Promise<AppendResult[]>;

export interface CopyProgress {
  /** Source events read by this run (skipped ones included). */
  readonly read: number;
  /** Events this run appended to the target. */
  readonly copied: number;
  /** Events this run found already in the target (a resumed copy). */
  readonly skipped: number;
  /** Streams this run created in the target (events at revision 0 appended). */
  readonly streams: number;
  /** Source position reached. */
  readonly position: number;
  /** Source position this run started after (0: the beginning). */
  readonly startPosition: number;
  /** The source's head when the run started (positions are sparse: a fraction of the span, not of the events). */
  readonly headPosition: number;
}

export interface CopyResult extends CopyProgress {
  /** True when the signal stopped the copy before the source's end. */
  readonly aborted: boolean;
  /** Why a checkpoint was not used, when one was given and found unusable. */
  readonly checkpointRejected?: string;
}

export interface CopyOptions {
  /** Source events read per page (default 500); a run of one stream's consecutive events within a page is one append. */
  readonly batchSize?: number;
  /** An append is cut before its events' JSON exceeds this many bytes (default 512 KiB; KurrentDB refuses appends over 1 MiB by default). */
  readonly maxAppendBytes?: number;
  readonly signal?: AbortSignal;
  readonly checkpoint?: CheckpointStore;
  /**
   * When the target has an atomic multi-stream append that keeps the given order (PostgreSQL's
   * appendMulti), a page is written in one call instead of one append per run. Any refusal
   * falls back to the run-by-run path for that page, where skips and divergence are decided.
   */
  readonly multiAppend?: OrderedMultiAppend;
  readonly onProgress?: (progress: CopyProgress) => void;
}

/** The target holds something else where a source event belongs: it was not empty, or diverged. The copy stopped. */
export class EventCopyError extends Error {
  constructor(
    message: string,
    readonly streamId: string,
    readonly revision: number,
  ) {
    super(message);
    this.name = 'EventCopyError';
  }
}

export const DEFAULT_COPY_BATCH_SIZE = 500;
const DEFAULT_MAX_APPEND_BYTES = 512 * 1024;

interface Run {
  readonly streamId: string;
  readonly events: readonly RecordedEvent[];
}

export async function copyEvents(
  source: EventStore,
  target: EventStore,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const batchSize = options.batchSize ?? DEFAULT_COPY_BATCH_SIZE;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer`);
  const maxBytes = options.maxAppendBytes ?? DEFAULT_MAX_APPEND_BYTES;
  const { checkpoint, signal } = options;

  let checkpointRejected: string | undefined;
  let position = 0;
  const saved = await checkpoint?.load();
  if (saved) {
    checkpointRejected = await checkCheckpoint(source, target, saved);
    if (!checkpointRejected) position = saved.position;
  }
  const startPosition = position;
  const headPosition = await source.headPosition();
  const counts = { read: 0, copied: 0, skipped: 0, streams: 0 };
  const progress = (): CopyProgress => ({ ...counts, position, startPosition, headPosition });
  // Until a page is found not yet copied, a page whose last event is in the target is skipped whole.
  let probing = true;

  for (;;) {
    if (signal?.aborted) return { ...progress(), aborted: true, ...(checkpointRejected && { checkpointRejected }) };
    const page = await source.readAll(position, batchSize);
    if (page.length === 0) break;
    for (const e of page) assertStoredForm(e);
    const last = page[page.length - 1]!;
    counts.read += page.length;

    if (probing && (await holds(target, last))) {
      counts.skipped += page.length;
    } else {
      probing = false;
      await copyPage(target, runsOf(page, maxBytes), counts, options.multiAppend);
    }
    position = last.position;
    await checkpoint?.save({ position, eventId: last.id, streamId: last.streamId, revision: last.revision });
    options.onProgress?.(progress());
  }
  return { ...progress(), aborted: false, ...(checkpointRejected && { checkpointRejected }) };
}

/** Undefined when the checkpoint names an event both stores hold (and the source at that position); else why not. */
async function checkCheckpoint(source: EventStore, target: EventStore, c: CopyCheckpoint): Promise<string | undefined> {
  const [inSource] = await source.readStream(c.streamId, c.revision, 1);
  if (!inSource || inSource.id !== c.eventId || inSource.position !== c.position)
    return `the source has no event ${c.eventId} at ${c.streamId}@${c.revision}, position ${c.position}`;
  if (!(await holds(target, inSource))) return `the target has no event ${c.eventId} at ${c.streamId}@${c.revision}`;
  return undefined;
}

async function holds(target: EventStore, e: RecordedEvent): Promise<boolean> {
  const [there] = await target.readStream(e.streamId, e.revision, 1);
  return there !== undefined && there.revision === e.revision && there.id === e.id;
}

/**
 * The copy must carry what is stored, not what today's code reads: an adapter with
 * upcasters marks an upcast event with metadata.storedSchemaVersion, and copying its
 * upcast data under the new version would rewrite history.
 */
function assertStoredForm(e: RecordedEvent): void {
  if (e.metadata.storedSchemaVersion !== undefined)
    throw new Error(
      `event ${e.id} (${e.streamId}@${e.revision}) was upcast on read: open the source event store without upcasters, so that stored data and schema versions are copied as stored`,
    );
}

/** Consecutive events of one stream, cut where their JSON would exceed maxBytes. */
function runsOf(page: readonly RecordedEvent[], maxBytes: number): Run[] {
  const runs: { streamId: string; events: RecordedEvent[]; bytes: number }[] = [];
  for (const e of page) {
    const bytes = Buffer.byteLength(JSON.stringify(e.data)) + Buffer.byteLength(JSON.stringify(e.metadata));
    const cur = runs[runs.length - 1];
    if (cur && cur.streamId === e.streamId && cur.bytes + bytes <= maxBytes) {
      cur.events.push(e);
      cur.bytes += bytes;
    } else {
      runs.push({ streamId: e.streamId, events: [e], bytes });
    }
  }
  return runs;
}

function toAppend(e: RecordedEvent): EventToAppend {
  return { id: e.id, type: e.type, data: e.data, metadata: e.metadata, schemaVersion: e.schemaVersion };
}

function expectedFor(e: RecordedEvent): ExpectedRevision {
  return e.revision === 0 ? 'no_stream' : e.revision - 1;
}

type Counts = { read: number; copied: number; skipped: number; streams: number };

function counted(counts: Counts, events: readonly RecordedEvent[]): void {
  counts.copied += events.length;
  counts.streams += events.filter((e) => e.revision === 0).length;
}

async function copyPage(
  target: EventStore,
  runs: readonly Run[],
  counts: Counts,
  multiAppend: OrderedMultiAppend | undefined,
): Promise<void> {
  if (multiAppend && runs.length > 1) {
    const writes = runs.map((r) => ({
      streamId: r.streamId,
      events: r.events.map(toAppend),
      expected: expectedFor(r.events[0]!),
    }));
    const done = await multiAppend(writes).then(
      (results) => results.every((r) => !r.duplicate),
      () => false,
    );
    if (done) {
      for (const r of runs) counted(counts, r.events);
      return;
    }
    // Refused or (partly) there already: nothing of it was written; decide run by run.
  }
  for (const run of runs) await copyRun(target, run, counts);
}

/** Appends one run at its revisions; what the target holds already is compared, then skipped or refused. */
async function copyRun(target: EventStore, run: Run, counts: Counts): Promise<void> {
  const { streamId, events } = run;
  const first = events[0]!;
  try {
    const r = await target.append(streamId, events.map(toAppend), expectedFor(first));
    if (!r.duplicate) {
      checkPlaced(run, r);
      counted(counts, events);
      return;
    }
  } catch (e) {
    if (!(e instanceof ConcurrencyError || e instanceof IdempotencyConflictError)) throw e;
  }
  const there = await target.readStream(streamId, first.revision, events.length);
  let k = 0;
  for (; k < events.length && k < there.length; k++) {
    const want = events[k]!;
    const got = there[k]!;
    if (got.revision !== want.revision || got.id !== want.id)
      throw new EventCopyError(
        `stream ${streamId} revision ${want.revision}: the target holds event ${got.id} (${got.type}) where the source has ${want.id} (${want.type}); the target was not empty or has diverged, copy stopped`,
        streamId,
        want.revision,
      );
  }
  counts.skipped += k;
  if (k === events.length) return;
  const rest = events.slice(k);
  const next = rest[0]!;
  try {
    const r = await target.append(streamId, rest.map(toAppend), expectedFor(next));
    if (r.duplicate) throw new Error('stored already, yet not at its revision');
    checkPlaced({ streamId, events: rest }, r);
    counted(counts, rest);
  } catch (e) {
    const found = e instanceof ConcurrencyError ? `the target stream is at revision ${String(e.actual)}` : errorText(e);
    throw new EventCopyError(
      `stream ${streamId} revision ${next.revision}: event ${next.id} cannot be placed at its revision (${found}); the target was not empty or has diverged, copy stopped`,
      streamId,
      next.revision,
    );
  }
}

function checkPlaced(run: Run, r: AppendResult): void {
  const last = run.events[run.events.length - 1]!;
  if (r.nextRevision !== last.revision)
    throw new EventCopyError(
      `stream ${run.streamId}: the target stored revision ${last.revision} as ${r.nextRevision}`,
      run.streamId,
      last.revision,
    );
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
