/**
 * Stable error codes the platform itself answers with (HTTP plumbing, the
 * command route, the event store, projections, jobs). Clients match on these
 * strings, so they never change meaning once shipped. Only catalogue files
 * (`*-errors.ts`) spell codes out: a lint rule keeps them from scattering.
 */
export const PlatformErrorCode = {
  /** A body or query that fails its schema; `fields` names each failing field. */
  INVALID_INPUT: 'PLATFORM.INVALID_INPUT',
  /** A request header with a value the platform refuses (X-Correlation-Id, Authorization). */
  INVALID_HEADER: 'PLATFORM.INVALID_HEADER',
  MALFORMED_JSON: 'PLATFORM.MALFORMED_JSON',
  /** A URL whose percent-encoding does not decode (e.g. `%ff`, a lone `%`). */
  MALFORMED_URL: 'PLATFORM.MALFORMED_URL',
  /** A request the HTTP parser refused before any route saw it (headers too large, bad framing, timeout). */
  MALFORMED_REQUEST: 'PLATFORM.MALFORMED_REQUEST',
  BODY_TOO_LARGE: 'PLATFORM.BODY_TOO_LARGE',
  ROUTE_NOT_FOUND: 'PLATFORM.ROUTE_NOT_FOUND',
  /** Anything unexpected: the detail stays in the server log, under the correlation id. */
  INTERNAL: 'PLATFORM.INTERNAL',
  UNKNOWN_COMMAND: 'PLATFORM.UNKNOWN_COMMAND',
  /** The stream moved on while the command was decided, more often than the retries allow. */
  CONCURRENCY_CONFLICT: 'PLATFORM.CONCURRENCY_CONFLICT',
  /** An Idempotency-Key sent again with a different request. */
  IDEMPOTENCY_KEY_REUSED: 'PLATFORM.IDEMPOTENCY_KEY_REUSED',
  /** Read-your-writes: the read model has not reached the requested position within the bound. */
  READ_MODEL_BEHIND: 'PLATFORM.READ_MODEL_BEHIND',
  PROJECTION_NOT_FOUND: 'PLATFORM.PROJECTION_NOT_FOUND',
  PROJECTION_NOT_PARKED: 'PLATFORM.PROJECTION_NOT_PARKED',
  REBUILD_RUNNING: 'PLATFORM.REBUILD_RUNNING',
  JOB_NOT_FOUND: 'PLATFORM.JOB_NOT_FOUND',
  /** The operator console's files are not built (scripts/setup.sh builds them into dist/console). */
  CONSOLE_NOT_BUILT: 'PLATFORM.CONSOLE_NOT_BUILT',
  EVENT_NOT_FOUND: 'PLATFORM.EVENT_NOT_FOUND',
  /** The event store in use cannot answer this query (e.g. causation lookups on KurrentDB). */
  NOT_SUPPORTED_BY_STORE: 'PLATFORM.NOT_SUPPORTED_BY_STORE',
} as const;

export type PlatformErrorCode = (typeof PlatformErrorCode)[keyof typeof PlatformErrorCode];
