import type { Pool } from 'pg';

/** MQTT messages that could not become readings, kept for an operator (migrations/0006). */

export const DEAD_LETTER_PAYLOAD_MAX = 64 * 1024;

export interface DeadLetter {
  readonly deviceId: string | null;
  readonly topic: string;
  readonly payload: Buffer;
  readonly code: string;
  readonly reason: string;
}

export interface DeadLetterView {
  id: number;
  deviceId: string | null;
  topic: string;
  /** The payload as UTF-8 text, truncated at 64 KiB. */
  payload: string;
  payloadSize: number;
  truncated: boolean;
  code: string;
  reason: string;
  receivedAt: Date;
}

export async function storeDeadLetter(pool: Pool, d: DeadLetter): Promise<void> {
  await pool.query(
    'INSERT INTO telemetry_dead_letters (device_id, topic, payload, payload_size, code, reason) VALUES ($1, $2, $3, $4, $5, $6)',
    [
      d.deviceId,
      d.topic.slice(0, 1024),
      d.payload.subarray(0, DEAD_LETTER_PAYLOAD_MAX),
      d.payload.length,
      d.code,
      d.reason.slice(0, 2000),
    ],
  );
}

/** Newest first; `before` is the keyset cursor (an id from the previous page). */
export async function listDeadLetters(
  pool: Pool,
  limit: number,
  before?: number,
  deviceId?: string,
): Promise<{ items: DeadLetterView[]; nextBefore: number | null }> {
  const res = await pool.query<{
    id: number;
    device_id: string | null;
    topic: string;
    payload: Buffer;
    payload_size: number;
    code: string;
    reason: string;
    received_at: Date;
  }>(
    `SELECT id, device_id, topic, payload, payload_size, code, reason, received_at FROM telemetry_dead_letters
      WHERE ($1::bigint IS NULL OR id < $1) AND ($3::text IS NULL OR device_id = $3) ORDER BY id DESC LIMIT $2`,
    [before ?? null, limit + 1, deviceId ?? null],
  );
  const items = res.rows.slice(0, limit).map((r) => ({
    id: r.id,
    deviceId: r.device_id,
    topic: r.topic,
    payload: r.payload.toString('utf8'),
    payloadSize: r.payload_size,
    truncated: r.payload_size > r.payload.length,
    code: r.code,
    reason: r.reason,
    receivedAt: r.received_at,
  }));
  return { items, nextBefore: res.rows.length > limit ? items[items.length - 1]!.id : null };
}

/** Drops up to `limit` dead letters received before `before` (oldest first); returns how many. */
export async function deleteDeadLettersBefore(pool: Pool, before: Date, limit: number): Promise<number> {
  const res = await pool.query(
    `DELETE FROM telemetry_dead_letters WHERE id IN (
       SELECT id FROM telemetry_dead_letters WHERE received_at < $1 ORDER BY received_at LIMIT $2)`,
    [before, limit],
  );
  return res.rowCount ?? 0;
}

export type RateVerdict = 'within' | 'first-over' | 'over';

/**
 * Dead letters per device in a fixed window (per instance, in memory: it guards
 * this instance's writes; a window that starts at the device's first dead letter).
 * Written here rather than taken from a rate-limit library: it is a counter per
 * key, and the one question it answers ("the first one past the rate?") decides
 * whether a summary row is written.
 */
export class DeadLetterRate {
  private readonly windows = new Map<string, { start: number; count: number }>();
  private sweepAt = 1024;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): RateVerdict {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs) {
      w = { start: t, count: 0 };
      this.windows.set(key, w);
      if (this.windows.size >= this.sweepAt) this.sweep(t);
    }
    w.count++;
    if (w.count <= this.max) return 'within';
    return w.count === this.max + 1 ? 'first-over' : 'over';
  }

  /** Forgets ended windows, so memory follows the devices of one window, not every device ever seen. */
  private sweep(t: number): void {
    for (const [k, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(k);
    this.sweepAt = Math.max(1024, this.windows.size * 2);
  }
}
