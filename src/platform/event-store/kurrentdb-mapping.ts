import {
  ANY,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  WrongExpectedVersionError,
  type AppendStreamState,
  type ReadPosition,
} from '@kurrent/kurrentdb-client';
import { ConcurrencyError, type EventMetadata, type ExpectedRevision } from './event-store';

/**
 * The pure half of the KurrentDB adapter (kurrentdb-event-store.ts): how the
 * port's revisions, positions, metadata, errors and settings map to the
 * client's. Unit-tested without a server (test/unit/kurrentdb-mapping.spec.ts).
 */

/** The variable that selects this store; named in every configuration error. */
export const KURRENTDB_URL = 'KURRENTDB_URL';

// ---- expected revisions ----------------------------------------------------

/** The port's expected revision as the client's stream state. */
export function toStreamState(expected: ExpectedRevision): AppendStreamState {
  switch (expected) {
    case 'no_stream':
      return NO_STREAM;
    case 'any':
      return ANY;
    case 'stream_exists':
      return STREAM_EXISTS;
    default: {
      const n = typeof expected === 'bigint' ? expected : BigInt(checkRevision(expected));
      if (n < 0n) throw new Error(`invalid expected revision ${String(expected)}: must be >= 0`);
      return n;
    }
  }
}

function checkRevision(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid expected revision ${String(n)}: must be >= 0`);
  return n;
}

/** A stream revision from the server (bigint) as the port's number. */
export function toRevision(revision: bigint): number {
  return safeNumber(revision, 'stream revision');
}

/** The actual state a WrongExpectedVersion reports, as ConcurrencyError's `actual`. */
export function toActualRevision(current: unknown): number | 'no_stream' {
  if (typeof current === 'bigint') return current < 0n ? 'no_stream' : toRevision(current);
  if (typeof current === 'number') return current < 0 ? 'no_stream' : current;
  return 'no_stream';
}

// ---- positions ---------------------------------------------------------------

/**
 * The global position of the port is the commit position in `$all`. It is a
 * byte offset in the server's log (u64); the port (and the checkpoints in
 * PostgreSQL) keep it as a JS number, exact up to 2^53 - 1 (8 PiB of log).
 * Past that it fails loudly rather than round a checkpoint.
 */
export function toPosition(commit: bigint): number {
  return safeNumber(commit, 'commit position');
}

/**
 * Where a read of `$all` starts for "events after `position`" (exclusive):
 * the client reads from a position inclusively, so the caller drops events at
 * or below it (isAfter). 0 is the start of the log.
 */
export function toReadPosition(position: number): ReadPosition {
  if (!Number.isSafeInteger(position) || position < 0)
    throw new Error(`invalid position ${String(position)}: must be a non-negative safe integer`);
  if (position === 0) return START;
  const p = BigInt(position);
  return { commit: p, prepare: p };
}

/** True when an event at `commit` comes after the exclusive cursor `position`. */
export function isAfter(commit: bigint, position: number): boolean {
  return commit > BigInt(position);
}

function safeNumber(n: bigint, what: string): number {
  if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER))
    throw new Error(`KurrentDB ${what} ${n.toString()} does not fit a JS safe integer; refusing to round it`);
  return Number(n);
}

// ---- metadata ----------------------------------------------------------------

/**
 * Event metadata is stored as a flat JSON object of strings: the multi-stream
 * append of KurrentDB 25.1 takes only string values (its "properties", which
 * the server shows to readers as the event's JSON metadata), and single
 * appends use the same shape so every event reads back the same way.
 * String fields (correlationId, causationId, actor, command, ...) are kept as
 * they are; any other value is JSON text, its key listed in `jsonFields`;
 * `schemaVersion` is the version of `data`. Two tags the adapter reads back:
 * `appendOf`, on every event of an append but the first, is the first event's
 * id (where findAppend sees that append end; PostgreSQL knows it from the
 * transaction's position block); `writeId`, on the first event of each stream
 * of an append, is a random id of that call (the server answers a re-send of
 * known ids as a success, since 22.x with the original's position: the tag
 * tells the call that stored the events from the ones that re-sent them).
 */
export const SCHEMA_VERSION_KEY = 'schemaVersion';
export const JSON_FIELDS_KEY = 'jsonFields';
export const APPEND_OF_KEY = 'appendOf';
export const WRITE_ID_KEY = 'writeId';
const RESERVED = new Set([SCHEMA_VERSION_KEY, JSON_FIELDS_KEY, APPEND_OF_KEY, WRITE_ID_KEY]);

export interface AppendTags {
  readonly appendOf?: string | undefined;
  readonly writeId?: string | undefined;
}

export function encodeMetadata(
  metadata: EventMetadata,
  schemaVersion = 1,
  tags: AppendTags = {},
): Record<string, string> {
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1)
    throw new Error(`invalid schemaVersion ${String(schemaVersion)}: must be an integer >= 1`);
  const out: Record<string, string> = {};
  const json: string[] = [];
  for (const [key, value] of Object.entries(metadata)) {
    if (RESERVED.has(key)) throw new Error(`event metadata: the key "${key}" is reserved by the KurrentDB adapter`);
    if (key.startsWith('$')) throw new Error(`event metadata: the key "${key}" is reserved by KurrentDB ($ prefix)`);
    if (value === undefined) continue;
    if (typeof value === 'string') out[key] = value;
    else {
      out[key] = JSON.stringify(value);
      json.push(key);
    }
  }
  if (json.length > 0) out[JSON_FIELDS_KEY] = json.join(',');
  out[SCHEMA_VERSION_KEY] = String(schemaVersion);
  if (tags.appendOf !== undefined) out[APPEND_OF_KEY] = tags.appendOf;
  if (tags.writeId !== undefined) out[WRITE_ID_KEY] = tags.writeId;
  return out;
}

/**
 * The inverse of encodeMetadata, whichever way the event was appended; metadata
 * written by other tools (no schemaVersion) reads as version 1.
 */
export function decodeMetadata(raw: unknown): {
  metadata: EventMetadata;
  schemaVersion: number;
  appendOf: string | undefined;
  writeId: string | undefined;
} {
  const obj = parseMetadataObject(raw);
  const json = new Set(typeof obj[JSON_FIELDS_KEY] === 'string' ? obj[JSON_FIELDS_KEY].split(',') : []);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    // `$`-keys are the server's: a multi-stream append adds "$schema.name" and "$schema.format" to
    // the metadata readers see. encodeMetadata refuses them, so none of them is the application's.
    if (RESERVED.has(key) || key.startsWith('$')) continue;
    out[key] = json.has(key) && typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  }
  const v = obj[SCHEMA_VERSION_KEY];
  const schemaVersion = typeof v === 'string' && /^[1-9]\d{0,8}$/.test(v) ? Number(v) : typeof v === 'number' ? v : 1;
  return {
    metadata: {
      ...out,
      correlationId: typeof out.correlationId === 'string' ? out.correlationId : '',
      causationId: typeof out.causationId === 'string' ? out.causationId : '',
      actor: typeof out.actor === 'string' ? out.actor : '',
    },
    schemaVersion,
    appendOf: typeof obj[APPEND_OF_KEY] === 'string' ? obj[APPEND_OF_KEY] : undefined,
    writeId: typeof obj[WRITE_ID_KEY] === 'string' ? obj[WRITE_ID_KEY] : undefined,
  };
}

function parseMetadataObject(raw: unknown): Record<string, unknown> {
  if (raw === undefined || raw === null) return {};
  if (raw instanceof Uint8Array) {
    if (raw.length === 0) return {};
    return parseMetadataObject(JSON.parse(Buffer.from(raw).toString('utf8')) as unknown);
  }
  if (typeof raw === 'object' && !Array.isArray(raw)) return raw as Record<string, unknown>;
  throw new Error('event metadata is not a JSON object');
}

// ---- errors ------------------------------------------------------------------

/** A client error on append as the port's: WrongExpectedVersion becomes ConcurrencyError, anything else passes. */
export function toPortError(error: unknown, streamId: string, expected: ExpectedRevision): unknown {
  if (error instanceof WrongExpectedVersionError) {
    return new ConcurrencyError(error.streamName || streamId, expected, toActualRevision(error.actualState));
  }
  return error;
}

/** True for the client's WrongExpectedVersion (also raised by a multi-stream append, naming its stream). */
export function isWrongExpectedVersion(error: unknown): error is WrongExpectedVersionError {
  return error instanceof WrongExpectedVersionError;
}

// ---- connection strings ------------------------------------------------------

const SCHEMES: Record<string, string> = {
  kurrentdb: 'kurrentdb',
  'kurrentdb+discover': 'kurrentdb+discover',
  // EventStoreDB's own schemes: the same settings; the client prints a deprecation warning for
  // them on every connect, so they are rewritten to their kurrentdb spelling.
  esdb: 'kurrentdb',
  'esdb+discover': 'kurrentdb+discover',
};

/**
 * Checks a KURRENTDB_URL and returns it in the client's preferred spelling.
 * Throws an error naming the variable and the rule.
 */
export function parseKurrentDbUrl(url: string): string {
  const m = /^([a-z+]+):\/\/([^/?#]*)(.*)$/i.exec(url.trim());
  const accepted = Object.keys(SCHEMES)
    .map((s) => `${s}://`)
    .join(', ');
  if (!m) throw new Error(`${KURRENTDB_URL} must be a connection string starting with ${accepted}`);
  const [, scheme = '', authority = '', rest = ''] = m;
  const mapped = SCHEMES[scheme.toLowerCase()];
  if (!mapped) throw new Error(`${KURRENTDB_URL} must start with ${accepted} (got ${scheme}://)`);
  const hosts = authority.includes('@') ? authority.slice(authority.lastIndexOf('@') + 1) : authority;
  if (hosts === '' || hosts.split(',').some((h) => !/^[^:\s]+(:\d{1,5})?$/.test(h)))
    throw new Error(`${KURRENTDB_URL} must name at least one host (host:port[,host:port...])`);
  for (const h of hosts.split(',')) {
    const port = h.split(':')[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535))
      throw new Error(`${KURRENTDB_URL}: port ${port} is out of range 1-65535`);
  }
  if (rest !== '' && !rest.startsWith('?') && rest !== '/' && !rest.startsWith('/?'))
    throw new Error(`${KURRENTDB_URL} takes no path: settings go in the query string (?tls=false)`);
  return `${mapped}://${authority}${rest}`;
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:@/]*):[^@/]*@/i, '$1:***@');
}

// ---- filters -----------------------------------------------------------------

/** A server-side event-type filter matching exactly these types (regex metacharacters escaped). */
export function eventTypeRegex(types: readonly string[]): string {
  if (types.length === 0) return '^(?!)$';
  return `^(?:${[...new Set(types)].map(escapeRegex).join('|')})$`;
}

/** The metacharacters of .NET (the server's) and JS regexes alike. */
function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}
