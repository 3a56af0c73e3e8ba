import secureJson from 'secure-json-parse';
import { DomainError } from '../../domain/shared/errors';
import { parseReadings } from '../../domain/telemetry/reading.decider';
import type { IngestOutcome } from './ingest';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';

/**
 * One MQTT message, embedded or external broker alike: decode, validate,
 * ingest. Resolves once the message is durably kept — its readings appended,
 * or the message dead-lettered — and only then may the caller PUBACK it
 * (MQTT-4.3.2: the receiver owns the message once it has sent PUBACK).
 * Rejects on a failure to store either way (the caller must not acknowledge).
 * Resolves `rate-limited` when the device is past its dead-letter rate: the
 * message was not kept, and the caller decides (embedded broker: no PUBACK and
 * the connection closes; external broker: acknowledged, logged and counted).
 */

export const READINGS_TOPIC = /^devices\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/readings$/;
export const readingsTopic = (deviceId: string) => `devices/${deviceId}/readings`;

export interface MessageSinks {
  readonly maxPayloadBytes: number;
  /** Readings stamped further back are refused (TELEMETRY_MAX_PAST_DAYS); none when absent. */
  readonly maxPastDays?: number;
  /** Stores the message's readings (one event, whose id is also the message's correlation id). */
  ingest(deviceId: string, readings: ReturnType<typeof parseReadings>): Promise<IngestOutcome>;
  /** Keeps a message that can never be stored as readings, unless its device is past its dead-letter rate. */
  deadLetter(
    deviceId: string | null,
    topic: string,
    payload: Buffer,
    code: string,
    reason: string,
  ): Promise<DeadLetterOutcome>;
}

export type DeadLetterOutcome = 'stored' | 'rate-limited';

export type MessageResult =
  | { kind: 'stored'; outcome: IngestOutcome }
  | { kind: 'dead-lettered'; code: string }
  | { kind: 'rate-limited'; code: string };

export async function handleReadingsMessage(
  sinks: MessageSinks,
  topic: string,
  payload: Buffer,
  receivedAt: Date,
): Promise<MessageResult> {
  const m = READINGS_TOPIC.exec(topic);
  const deviceId = m ? m[1]! : null;
  const dead = async (code: string, reason: string): Promise<MessageResult> => {
    const kept = await sinks.deadLetter(deviceId, topic, payload, code, reason);
    return { kind: kept === 'stored' ? 'dead-lettered' : 'rate-limited', code };
  };
  if (!deviceId) return dead(TelemetryErrorCode.INVALID_TOPIC, 'topic must be devices/<device id>/readings');
  if (payload.length > sinks.maxPayloadBytes) {
    return dead(
      TelemetryErrorCode.PAYLOAD_TOO_LARGE,
      `payload of ${payload.length} bytes exceeds the limit of ${sinks.maxPayloadBytes} bytes`,
    );
  }
  let value: unknown;
  try {
    // Refuses __proto__ / constructor.prototype keys (prototype poisoning).
    value = secureJson.parse(payload.toString('utf8'), undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (e) {
    return dead(
      TelemetryErrorCode.MALFORMED_JSON,
      `payload is not valid JSON: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  try {
    const readings = parseReadings(value, receivedAt, sinks.maxPastDays);
    return { kind: 'stored', outcome: await sinks.ingest(deviceId, readings) };
  } catch (e) {
    // Invalid readings, unknown or revoked device: the message can never be stored; keep it for an operator.
    if (e instanceof DomainError && (e.kind === 'validation' || e.kind === 'not_found' || e.kind === 'forbidden'))
      return dead(e.code, e.message);
    throw e;
  }
}
