import type { Pool, PoolClient } from 'pg';
import { copyLines } from '../processing/copy';
import type { AppendResult, EventToAppend, ExpectedRevision, SkipKnownResult } from './event-store';

/**
 * Group commit for the PostgreSQL store: appends that arrive while a group is
 * being written wait, then go together in the next one, one es_append_group
 * call (migrations/0027): one statement, one transaction, one commit for all
 * of them, each checked against its own expected revision and answered on its
 * own. KurrentDB writes concurrent appends the same way; with one transaction
 * per request, 16 writers pay 16 commits where a group pays one.
 *
 * A lone writer sees no delay: a group starts as soon as a slot is free, with
 * whatever has arrived; a group of one is written by es_append, as before. At most one append per stream is in flight at a time
 * (a later one to the same stream waits for the next group), so one process's
 * appends to a stream are written in the order they were called, and a
 * group's block of positions holds at most one append per stream (findAppend
 * relies on that).
 *
 * With splitMinEvents set, a large queue meeting two or more free slots is
 * split across them (see split): one group's rows are inserted while the next
 * is planned and serialised, and the two commits overlap, where one big group
 * would leave the other slot idle until it is done.
 */

export interface GroupWrite {
  readonly streamId: string;
  readonly events: readonly EventToAppend[];
  readonly expected: ExpectedRevision;
}

/** One append's answer from es_append_group (the statuses of es_append). */
export interface GroupAnswer {
  readonly status: 'ok' | 'duplicate' | 'conflict' | 'id_conflict';
  readonly revision: number;
  readonly position: number | null;
}

export interface GroupCommitOptions {
  /** Groups written at once (each on its own connection). */
  readonly maxInFlight: number;
  /** Events per group (a transaction's block holds 65,536 positions). */
  readonly maxEvents: number;
  /** Appends per group. */
  readonly maxAppends: number;
  /**
   * From this many events taken at once, with two or more slots free, they are split across up
   * to floor(events / (splitMinEvents / 2)) groups, one per free slot, each of at least
   * splitMinEvents / 2 events and two appends. Unset: never split.
   */
  readonly splitMinEvents?: number;
  /** Writes one group; throws for the whole group (retries are the caller's). */
  readonly write: (writes: readonly GroupWrite[]) => Promise<GroupAnswer[]>;
  /** Turns one answer into the caller's result or error. */
  readonly settle: (write: GroupWrite, answer: GroupAnswer) => AppendResult;
  /**
   * A group failed as a whole for a reason other than a race (bad input in one
   * append, say): each of its appends is then written on its own, so the
   * failure stays with the append that caused it.
   */
  readonly alone: (write: GroupWrite) => Promise<AppendResult>;
  /** After a group stored events (metrics, wake-ups): how many, and their types. */
  readonly stored: (events: number, types: readonly string[]) => void;
}

interface Pending extends GroupWrite {
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

export class GroupCommitter {
  private queue: Pending[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly streamsInFlight = new Set<string>();

  constructor(private readonly options: GroupCommitOptions) {}

  append(streamId: string, events: readonly EventToAppend[], expected: ExpectedRevision): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ streamId, events, expected, resolve, reject });
      this.schedule();
    });
  }

  /** Appends waiting for a group (for metrics and tests). */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Groups are formed on the next turn of the event loop, not at once: callers
   * answered by the previous group, and requests that arrived together, have
   * queued their appends by then, so they share a group instead of starting a
   * group of one each.
   */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const taken = this.take();
      if (taken.length === 0) return;
      for (const group of this.split(taken, this.options.maxInFlight - this.inFlight)) this.start(group);
    }
  }

  private start(group: Pending[]): void {
    this.inFlight++;
    for (const w of group) this.streamsInFlight.add(w.streamId);
    void this.run(group).finally(() => {
      this.inFlight--;
      for (const w of group) this.streamsInFlight.delete(w.streamId);
      this.schedule();
    });
  }

  /**
   * `taken` as one group, or cut in arrival order into up to `free` groups of at least
   * splitMinEvents / 2 events and two appends each (so each still goes through the group path,
   * with COPY, not es_append). Any cut keeps the order of a stream's appends: `taken` holds at
   * most one append per stream, and none of its streams has one in flight, so a later append of
   * any of them waits until the group holding the earlier one has committed.
   */
  private split(taken: Pending[], free: number): Pending[][] {
    const min = this.options.splitMinEvents;
    const events = taken.reduce((n, p) => n + p.events.length, 0);
    if (min === undefined || free < 2 || events < min) return [taken];
    const half = min / 2;
    const parts = Math.min(free, Math.floor(events / half), Math.floor(taken.length / 2));
    if (parts < 2) return [taken];
    const share = events / parts;
    const groups: Pending[][] = [[]];
    let current = groups[0]!;
    let inCurrent = 0;
    for (const p of taken) {
      if (inCurrent >= share && current.length >= 2 && groups.length < parts) {
        current = [];
        groups.push(current);
        inCurrent = 0;
      }
      current.push(p);
      inCurrent += p.events.length;
    }
    // Every group but the last reached the share (>= half); a short last one joins the one before.
    if (groups.length > 1 && (inCurrent < half || current.length < 2))
      groups[groups.length - 2]!.push(...groups.pop()!);
    return groups;
  }

  /** The next group: queued appends in arrival order, one per stream, within the limits. */
  private take(): Pending[] {
    const group: Pending[] = [];
    const rest: Pending[] = [];
    const streams = new Set<string>();
    let events = 0;
    let full = false;
    for (const p of this.queue) {
      const fits =
        group.length === 0 ||
        (group.length < this.options.maxAppends && events + p.events.length <= this.options.maxEvents);
      if (full || !fits || streams.has(p.streamId) || this.streamsInFlight.has(p.streamId)) {
        // A later append to a stream passed over here must not overtake this one.
        streams.add(p.streamId);
        rest.push(p);
        if (!fits) full = true;
        continue;
      }
      streams.add(p.streamId);
      group.push(p);
      events += p.events.length;
    }
    this.queue = rest;
    return group;
  }

  private async run(group: Pending[]): Promise<void> {
    // A group of one is an ordinary append (es_append: fewer statements than the group function).
    if (group.length === 1) {
      const p = group[0]!;
      await this.options.alone(p).then(p.resolve, p.reject);
      return;
    }
    let answers: GroupAnswer[];
    try {
      answers = await this.options.write(group);
      if (answers.length !== group.length)
        throw new Error(`es_append_group answered ${answers.length} of ${group.length} appends`);
    } catch {
      await Promise.all(group.map((p) => this.options.alone(p).then(p.resolve, p.reject)));
      return;
    }
    let stored = 0;
    const types = new Set<string>();
    group.forEach((p, i) => {
      const answer = answers[i]!;
      if (answer.status === 'ok') {
        stored += p.events.length;
        for (const e of p.events) types.add(e.type);
      }
      try {
        p.resolve(this.options.settle(p, answer));
      } catch (e) {
        p.reject(e);
      }
    });
    if (stored > 0) this.options.stored(stored, [...types]);
  }
}

/** es_append_group's parameters for a group (see migrations/0027). */
export function groupParams(
  writes: readonly GroupWrite[],
  expectedToSql: (e: ExpectedRevision) => [string, number | null],
  checkIds: boolean,
): unknown[] {
  const streams: string[] = [];
  const kinds: string[] = [];
  const expected: (number | null)[] = [];
  const counts: number[] = [];
  const ids: string[] = [];
  const types: string[] = [];
  const versions: number[] = [];
  const data: string[] = [];
  const metadata: string[] = [];
  const app: number[] = [];
  const k: number[] = [];
  writes.forEach((w, i) => {
    const [kind, revision] = expectedToSql(w.expected);
    streams.push(w.streamId);
    kinds.push(kind);
    expected.push(revision);
    counts.push(w.events.length);
    w.events.forEach((e, j) => {
      ids.push(e.id);
      types.push(e.type);
      versions.push(e.schemaVersion ?? 1);
      data.push(JSON.stringify(e.data));
      metadata.push(JSON.stringify(e.metadata));
      app.push(i + 1);
      k.push(j + 1);
    });
  });
  return [
    streams,
    kinds,
    expected,
    counts,
    ids,
    types,
    versions,
    `[${data.join(',')}]`,
    `[${metadata.join(',')}]`,
    app,
    k,
    checkIds,
  ];
}

export const APPEND_GROUP_SQL =
  'SELECT status, revision, last_position FROM es_append_group($1::text[], $2::text[], $3::bigint[], $4::int[], $5::uuid[], $6::text[], $7::int[], $8, $9, $10::int[], $11::int[], $12)';

/** Runs es_append_group on the pool (autocommit: the statement is the transaction). */
export async function writeGroup(pool: Pool, params: unknown[]): Promise<GroupAnswer[]> {
  const res = await pool.query<{ status: GroupAnswer['status']; revision: string; last_position: string | null }>(
    APPEND_GROUP_SQL,
    params,
  );
  return res.rows.map((r) => ({
    status: r.status,
    revision: Number(r.revision),
    position: r.last_position === null ? null : Number(r.last_position),
  }));
}

const PLAN_SQL =
  'SELECT status, revision, last_position, first_position FROM es_append_group_plan($1::text[], $2::text[], $3::bigint[], $4::int[], $5::uuid[], $6)';
const COPY_SQL =
  'COPY events (position, event_id, stream_id, stream_revision, type, data, metadata, schema_version) FROM STDIN';

/**
 * A large group in one transaction on one connection: es_append_group_plan decides every
 * append (the same checks as es_append_group) and hands out positions, then the rows of
 * the accepted appends go in with one COPY, which inserts rows in batches (measured on 2
 * cores: about twice the rows per second of the function's INSERT ... SELECT), then COMMIT.
 */
export async function writeGroupByCopy(
  pool: Pool,
  writes: readonly GroupWrite[],
  expectedToSql: (e: ExpectedRevision) => [string, number | null],
  checkIds: boolean,
): Promise<GroupAnswer[]> {
  const kinds: string[] = [];
  const expected: (number | null)[] = [];
  for (const w of writes) {
    const [kind, revision] = expectedToSql(w.expected);
    kinds.push(kind);
    expected.push(revision);
  }
  return planThenCopy(pool, async (client) => {
    const plan = await client.query<{
      status: GroupAnswer['status'];
      revision: string;
      last_position: string | null;
      first_position: string | null;
    }>(PLAN_SQL, [
      writes.map((w) => w.streamId),
      kinds,
      expected,
      writes.map((w) => w.events.length),
      writes.flatMap((w) => w.events.map((e) => e.id)),
      checkIds,
    ]);
    if (plan.rows.length !== writes.length) throw new Error('es_append_group_plan answered another number of appends');
    const lines: string[] = [];
    plan.rows.forEach((r, i) => {
      if (r.status !== 'ok') return;
      const w = writes[i]!;
      const first = Number(r.first_position);
      const rev0 = Number(r.revision) - w.events.length + 1;
      const stream = copyField(w.streamId);
      w.events.forEach((e, k) => lines.push(copyLine(first + k, stream, rev0 + k, e)));
    });
    const answers = plan.rows.map((r) => ({
      status: r.status,
      revision: Number(r.revision),
      position: r.last_position === null ? null : Number(r.last_position),
    }));
    return { answers, lines };
  });
}

/**
 * One transaction on one connection: `plan` decides and hands out positions (returning the
 * rows to write as COPY lines), the lines go in with one COPY, then COMMIT; any failure rolls back.
 */
async function planThenCopy<T>(
  pool: Pool,
  plan: (client: PoolClient) => Promise<{ answers: T; lines: readonly string[] }>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { answers, lines } = await plan(client);
    if (lines.length > 0) await copyLines(client, COPY_SQL, lines);
    await client.query('COMMIT');
    return answers;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/** One `events` row as a COPY_SQL line (`stream`: already a COPY field). */
function copyLine(position: number, stream: string, revision: number, e: EventToAppend): string {
  return `${position}\t${e.id}\t${stream}\t${revision}\t${copyField(e.type)}\t${copyField(JSON.stringify(e.data))}\t${copyField(JSON.stringify(e.metadata))}\t${e.schemaVersion ?? 1}\n`;
}

/** A row of es_append_skip_known (0005) and es_append_skip_known_group (0029). */
export interface SkipKnownRow {
  stream_id: string;
  appended: number;
  new_ids: string[];
  revision: string;
  last_position: string | null;
}

export function skipKnownResult(r: SkipKnownRow): SkipKnownResult {
  return {
    streamId: r.stream_id,
    appended: r.appended,
    newIds: r.new_ids,
    nextRevision: Number(r.revision),
    position: Number(r.last_position ?? 0),
  };
}

type SkipKnownWrite = { readonly streamId: string; readonly events: readonly EventToAppend[] };

const SKIP_KNOWN_SQL =
  'SELECT stream_id, appended, new_ids::text[] AS new_ids, revision, last_position, first_position FROM es_append_skip_known_group($1::text[], $2::int[], $3::uuid[], $4::text[], $5::int[], $6, $7)';

/**
 * appendSkippingKnown in one statement (es_append_skip_known_group, migrations/0029): arrays, and
 * data and metadata as one JSON array text each. Autocommit: the statement is the transaction.
 */
export async function appendSkipKnownGroup(pool: Pool, writes: readonly SkipKnownWrite[]): Promise<SkipKnownResult[]> {
  const ids: string[] = [];
  const types: string[] = [];
  const versions: number[] = [];
  const data: string[] = [];
  const metadata: string[] = [];
  for (const w of writes)
    for (const e of w.events) {
      ids.push(e.id);
      types.push(e.type);
      versions.push(e.schemaVersion ?? 1);
      data.push(JSON.stringify(e.data));
      metadata.push(JSON.stringify(e.metadata));
    }
  const res = await pool.query<SkipKnownRow>(SKIP_KNOWN_SQL, [
    writes.map((w) => w.streamId),
    writes.map((w) => w.events.length),
    ids,
    types,
    versions,
    `[${data.join(',')}]`,
    `[${metadata.join(',')}]`,
  ]);
  return res.rows.map(skipKnownResult);
}

/**
 * A large appendSkippingKnown in one transaction: es_append_skip_known_group decides (no rows
 * passed: p_types NULL) and hands out positions, the fresh rows go in with one COPY, then COMMIT
 * (as writeGroupByCopy does for es_append_group).
 */
export async function appendSkipKnownByCopy(pool: Pool, writes: readonly SkipKnownWrite[]): Promise<SkipKnownResult[]> {
  return planThenCopy(pool, async (client) => {
    const plan = await client.query<SkipKnownRow & { first_position: string | null }>(SKIP_KNOWN_SQL, [
      writes.map((w) => w.streamId),
      writes.map((w) => w.events.length),
      writes.flatMap((w) => w.events.map((e) => e.id)),
      null,
      null,
      null,
      null,
    ]);
    if (plan.rows.length !== writes.length)
      throw new Error('es_append_skip_known_group answered another number of writes');
    const lines: string[] = [];
    plan.rows.forEach((r, i) => {
      if (r.appended === 0) return;
      const w = writes[i]!;
      const fresh = new Set(r.new_ids);
      let position = Number(r.first_position);
      let revision = Number(r.revision) - r.appended + 1;
      const stream = copyField(w.streamId);
      for (const e of w.events) if (fresh.has(e.id)) lines.push(copyLine(position++, stream, revision++, e));
    });
    return { answers: plan.rows.map(skipKnownResult), lines };
  });
}

/** A PostgreSQL COPY text-format field. */
function copyField(v: string): string {
  return /[\\\t\n\r]/.test(v)
    ? v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'))
    : v;
}
