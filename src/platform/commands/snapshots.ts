import type { Pool } from 'pg';

/**
 * Snapshots of long streams (stream_snapshots, migrations/0026): the folded
 * state at a revision, taken every `every` events, so a decision on a stream
 * that no cache holds reads one row and the events after it instead of the
 * whole stream. A cache and nothing more: a missing row, or one of another
 * `version` (the state's shape changed), means a fold from the start, with
 * the same result.
 */
export interface SnapshotOptions<S> {
  /** The state's shape: bump it when the state changes, and old snapshots are ignored. */
  readonly version: number;
  /** Events between two snapshots (STREAM_SNAPSHOT_EVERY). */
  readonly every: number;
  /** The state from its JSON (what JSON.stringify wrote): a state that is not plain data is rebuilt here. */
  readonly revive: (json: unknown) => S;
  /**
   * Events between two snapshots of a state this large, when more than `every`: a snapshot costs
   * in proportion to the state (JSON written on the event loop, a row rewritten), so a large state
   * is snapshotted less often and the cost per event stays bounded; a cold decision then folds at
   * most that many events after the snapshot, less work than reading the snapshot itself.
   */
  readonly spacing?: (state: S) => number;
}

export class StreamSnapshots<S> {
  /** The revision of each stream's newest snapshot as this process knows it (-1: none). */
  private readonly bases = new Map<string, number>();

  constructor(
    private readonly pool: Pool,
    readonly options: SnapshotOptions<S>,
  ) {}

  async load(streamId: string): Promise<{ revision: number; state: S } | undefined> {
    const res = await this.pool.query<{ revision: string; state: unknown }>(
      'SELECT revision, state FROM stream_snapshots WHERE stream_id = $1 AND version = $2',
      [streamId, this.options.version],
    );
    const row = res.rows[0];
    this.remember(streamId, row ? Number(row.revision) : -1);
    if (!row) return undefined;
    return { revision: Number(row.revision), state: this.options.revive(row.state) };
  }

  /** Saves `state` when `due`. */
  async saveIfDue(streamId: string, revision: number, state: S): Promise<void> {
    if (this.due(streamId, revision, state)) await this.save(streamId, revision, state);
  }

  /** True when `revision` is `every` events (or the state's `spacing`, when more) past the stream's newest snapshot. */
  due(streamId: string, revision: number, state: S): boolean {
    const since = revision - (this.bases.get(streamId) ?? -1);
    if (since < this.options.every) return false;
    return !this.options.spacing || since >= this.options.spacing(state);
  }

  /** Keeps the newest: an older snapshot never replaces a newer one. */
  async save(streamId: string, revision: number, state: S): Promise<void> {
    await this.pool.query(
      `INSERT INTO stream_snapshots (stream_id, revision, version, state) VALUES ($1, $2, $3, $4)
       ON CONFLICT (stream_id) DO UPDATE SET revision = EXCLUDED.revision, version = EXCLUDED.version,
         state = EXCLUDED.state, taken_at = now()
       WHERE stream_snapshots.revision < EXCLUDED.revision OR stream_snapshots.version <> EXCLUDED.version`,
      [streamId, revision, this.options.version, JSON.stringify(state)],
    );
    this.remember(streamId, revision);
  }

  private remember(streamId: string, revision: number): void {
    if (this.bases.size >= 10_000 && !this.bases.has(streamId)) this.bases.clear();
    this.bases.set(streamId, Math.max(revision, this.bases.get(streamId) ?? -1));
  }
}
