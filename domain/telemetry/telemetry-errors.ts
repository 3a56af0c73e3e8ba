/**
 * Stable error codes of the telemetry context: over HTTP as problem details,
 * over MQTT as the `code` of a dead letter. Clients match on these strings,
 * so they never change meaning once shipped.
 */
export const TelemetryErrorCode = {
  INVALID_READING: 'TELEMETRY.INVALID_READING',
  DEVICE_NOT_FOUND: 'TELEMETRY.DEVICE_NOT_FOUND',
  DEVICE_REVOKED: 'TELEMETRY.DEVICE_REVOKED',
  DEVICE_OWNER_DISABLED: 'TELEMETRY.DEVICE_OWNER_DISABLED',
  METRIC_NOT_FOUND: 'TELEMETRY.METRIC_NOT_FOUND',
  /** Ingest refuses new readings while the platform drains for shutdown. */
  SHUTTING_DOWN: 'TELEMETRY.SHUTTING_DOWN',
  TOO_MANY_STREAMS: 'TELEMETRY.TOO_MANY_STREAMS',
  // MQTT messages that cannot be read as readings; each becomes a dead letter with this code.
  INVALID_TOPIC: 'TELEMETRY.INVALID_TOPIC',
  PAYLOAD_TOO_LARGE: 'TELEMETRY.PAYLOAD_TOO_LARGE',
  PACKET_TOO_LARGE: 'TELEMETRY.PACKET_TOO_LARGE',
  MALFORMED_JSON: 'TELEMETRY.MALFORMED_JSON',
  /** A device over its dead-letter budget: further bad messages are counted, not stored. */
  DEAD_LETTER_RATE_EXCEEDED: 'TELEMETRY.DEAD_LETTER_RATE_EXCEEDED',
} as const;

export type TelemetryErrorCode = (typeof TelemetryErrorCode)[keyof typeof TelemetryErrorCode];
