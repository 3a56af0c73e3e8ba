import { DomainError, validationError, type FieldError } from '../shared/errors';
import type { ReadingsRecorded } from './reading.events';
import { TelemetryErrorCode } from './telemetry-errors';

/**
 * The rules of a reading payload and of IngestReading. Pure: the caller
 * parses the JSON (safely) and passes the value and the receive time in.
 *
 * Payload: `{metric, value, ts?, id?}` or an array of them (at most 1000).
 */

export const MAX_READINGS_PER_MESSAGE = 1000;
/** A reading may be stamped at most this far ahead of the receive time (clock skew). */
export const MAX_FUTURE_MS = 5 * 60 * 1000;
const DAY_MS = 86_400_000;
/**
 * How far back a reading may be stamped, in days (configured): it bounds the
 * day partitions of history one message can make (one per distinct day).
 */
export const pastRule = (maxPastDays: number) => `must not be more than ${maxPastDays} days in the past`;
export const METRIC_PATTERN = /^[a-z0-9_.-]{1,64}$/;
export const ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
// ISO-8601 date-time with a zone (Z or ±hh:mm), optional fraction.
export const ISO_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

export const RULES = {
  shape: 'must be a reading object {metric, value, ts?, id?} or an array of them',
  count: `must hold 1 to ${MAX_READINGS_PER_MESSAGE} readings`,
  metric: 'must be 1-64 characters of a-z, 0-9, _ . -',
  value: 'must be a finite number',
  ts: 'must be an ISO-8601 date-time with a zone, or epoch milliseconds',
  future: `must not be more than ${MAX_FUTURE_MS / 60000} minutes in the future`,
  id: 'must be 1-128 printable ASCII characters, or a non-negative integer',
  unknown: 'is not a reading field (allowed: metric, value, ts, id)',
} as const;

export interface Reading {
  readonly metric: string;
  readonly value: number;
  /** ISO-8601 UTC with milliseconds. */
  readonly ts: string;
  readonly id?: string;
}

const ALLOWED = new Set(['metric', 'value', 'ts', 'id']);

/**
 * Validates a decoded payload. Never recurses into values: a deeply nested
 * payload is refused at the first level that is not a reading.
 */
export function parseReadings(payload: unknown, receivedAt: Date, maxPastDays = Infinity): Reading[] {
  const earliest = receivedAt.getTime() - maxPastDays * DAY_MS;
  const items = Array.isArray(payload) ? payload : [payload];
  if (Array.isArray(payload) && (payload.length === 0 || payload.length > MAX_READINGS_PER_MESSAGE)) {
    throw invalid([{ field: '(payload)', rule: RULES.count }]);
  }
  const errors: FieldError[] = [];
  const out: Reading[] = [];
  items.forEach((item: unknown, i) => {
    const at = (f: string) => (Array.isArray(payload) ? `${i}.${f}` : f);
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      errors.push({ field: Array.isArray(payload) ? String(i) : '(payload)', rule: RULES.shape });
      return;
    }
    const r = item as Record<string, unknown>;
    const before = errors.length;
    for (const k of Object.keys(r)) if (!ALLOWED.has(k)) errors.push({ field: at(k), rule: RULES.unknown });
    if (typeof r.metric !== 'string' || !METRIC_PATTERN.test(r.metric))
      errors.push({ field: at('metric'), rule: RULES.metric });
    if (typeof r.value !== 'number' || !Number.isFinite(r.value))
      errors.push({ field: at('value'), rule: RULES.value });
    let ts = receivedAt.getTime();
    if (r.ts !== undefined) {
      const parsed = parseTs(r.ts);
      if (parsed === undefined) errors.push({ field: at('ts'), rule: RULES.ts });
      else if (parsed > receivedAt.getTime() + MAX_FUTURE_MS) errors.push({ field: at('ts'), rule: RULES.future });
      else if (parsed < earliest) errors.push({ field: at('ts'), rule: pastRule(maxPastDays) });
      else ts = parsed;
    }
    let id: string | undefined;
    if (r.id !== undefined) {
      if (typeof r.id === 'number' && Number.isSafeInteger(r.id) && r.id >= 0) id = String(r.id);
      else if (typeof r.id === 'string' && ID_PATTERN.test(r.id)) id = r.id;
      else errors.push({ field: at('id'), rule: RULES.id });
    }
    if (errors.length > before) return;
    // Two literals, not a conditional spread: V8 copies a spread object slowly (µs per reading).
    const metric = r.metric as string;
    const value = r.value as number;
    const iso = new Date(ts).toISOString();
    out.push(id !== undefined ? { metric, value, ts: iso, id } : { metric, value, ts: iso });
  });
  // Enough to act on; a 1000-reading payload with every field wrong need not list 3000 errors.
  if (errors.length) throw invalid(errors.slice(0, 20));
  return out;
}

function parseTs(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string' || !ISO_PATTERN.test(v)) return undefined;
  const ms = Date.parse(v);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

function invalid(fields: readonly FieldError[]): DomainError {
  return validationError(
    TelemetryErrorCode.INVALID_READING,
    `invalid reading: ${fields.map((f) => `${f.field}: ${f.rule}`).join('; ')}`,
    fields,
  );
}

/**
 * What makes two readings the same: the device-side id when there is one,
 * else metric and timestamp. Event ids derive from it (with the device id).
 */
export function readingDedupKey(r: Reading): string {
  return r.id !== undefined ? `id:${r.id}` : `at:${r.metric}:${Date.parse(r.ts)}`;
}

export interface IngestReading {
  readonly type: 'IngestReading';
  readonly data: { readonly deviceId: string; readonly readings: readonly Reading[] };
}

/**
 * What IngestReading needs to know of the device (from identity's device and
 * user streams): a device whose owner is disabled is stopped with its owner.
 */
export interface DeviceStatus {
  readonly status: 'none' | 'active' | 'revoked' | 'owner_disabled';
}

/**
 * IngestReading: one `telemetry.ReadingsRecorded` event for the readings of
 * an active device (one message or HTTP batch). A reading repeated within the
 * command is kept once (the first). `key` names the message by its readings
 * (dedup key and value of each, in order): the caller derives the event id
 * from it and the device, so a resend of the same message is stored once by
 * the event store, whatever its receive time (a reading with an id and no
 * `ts` has the same key on a resend). Readings repeated across different
 * messages are dropped by the read model (see projections/telemetry.projection.ts).
 */
export interface IngestDecision {
  readonly event: ReadingsRecorded;
  readonly key: string;
  /** Readings of the command dropped as repeats within it. */
  readonly repeated: number;
}

export function decideIngest(command: IngestReading, device: DeviceStatus): IngestDecision {
  const { deviceId, readings } = command.data;
  if (device.status === 'none')
    throw new DomainError('not_found', TelemetryErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
  if (device.status === 'revoked')
    throw new DomainError('forbidden', TelemetryErrorCode.DEVICE_REVOKED, `device ${deviceId} is revoked`);
  if (device.status === 'owner_disabled') {
    throw new DomainError(
      'forbidden',
      TelemetryErrorCode.DEVICE_OWNER_DISABLED,
      `device ${deviceId} belongs to a disabled user`,
    );
  }
  const seen = new Set<string>();
  const kept: Reading[] = [];
  const keys: string[] = [];
  for (const r of readings) {
    const key = readingDedupKey(r);
    if (seen.has(key)) continue;
    seen.add(key);
    kept.push(r);
    keys.push(`${key}=${r.value}`);
  }
  return {
    event: {
      type: 'telemetry.ReadingsRecorded',
      data: {
        deviceId,
        // Two literals, not a conditional spread (see parseReadings).
        readings: kept.map((r) =>
          r.id !== undefined
            ? { id: r.id, metric: r.metric, value: r.value, ts: r.ts }
            : { metric: r.metric, value: r.value, ts: r.ts },
        ),
      },
    },
    key: keys.join('\n'),
    repeated: readings.length - kept.length,
  };
}
