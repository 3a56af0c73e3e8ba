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
    [d.deviceId, d.topic.slice(0, 1024), d.payload.subarray(0, DEAD_LETTER_PAYLOAD_MAX), d.payload.length, d.code, d.reason.slice(0, 2000)]);
}

/** Newest first; `before` is the keyset cursor (an id from the previous page). */
export async function listDeadLetters(pool: Pool, limit: number, before?: number): Promise<{ items: DeadLetterView[]; nextBefore: number | null }> {
  const res = await pool.query<{ id: number; device_id: string | null; topic: string; payload: Buffer; payload_size: number; code: string; reason: string; received_at: Date }>(
    `SELECT id, device_id, topic, payload, payload_size, code, reason, received_at FROM telemetry_dead_letters
      WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2`, [before ?? null, limit + 1]);
  const items = res.rows.slice(0, limit).map((r) => ({
    id: r.id, deviceId: r.device_id, topic: r.topic, payload: r.payload.toString('utf8'), payloadSize: r.payload_size,
    truncated: r.payload_size > r.payload.length, code: r.code, reason: r.reason, receivedAt: r.received_at,
  }));
  return { items, nextBefore: res.rows.length > limit ? items[items.length - 1]!.id : null };
}
