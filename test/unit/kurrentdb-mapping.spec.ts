import { ANY, NO_STREAM, START, STREAM_EXISTS, WrongExpectedVersionError } from '@kurrent/kurrentdb-client';
import { ConcurrencyError } from '../../src/platform/event-store/event-store';
import {
  decodeMetadata,
  encodeMetadata,
  eventTypeRegex,
  isAfter,
  parseKurrentDbUrl,
  redactUrl,
  toActualRevision,
  toPortError,
  toPosition,
  toReadPosition,
  toRevision,
  toStreamState,
} from '../../src/platform/event-store/kurrentdb-mapping';

describe('KurrentDB mapping: expected revisions', () => {
  it('maps the named states to the client constants', () => {
    expect(toStreamState('no_stream')).toBe(NO_STREAM);
    expect(toStreamState('any')).toBe(ANY);
    expect(toStreamState('stream_exists')).toBe(STREAM_EXISTS);
  });

  it('maps an exact revision (number or bigint) to a bigint', () => {
    expect(toStreamState(0)).toBe(0n);
    expect(toStreamState(41)).toBe(41n);
    expect(toStreamState(7n)).toBe(7n);
    expect(toStreamState(Number.MAX_SAFE_INTEGER)).toBe(BigInt(Number.MAX_SAFE_INTEGER));
  });

  it('refuses negative, fractional and unsafe revisions', () => {
    expect(() => toStreamState(-1)).toThrow(/must be >= 0/);
    expect(() => toStreamState(-1n)).toThrow(/must be >= 0/);
    expect(() => toStreamState(1.5)).toThrow(/invalid expected revision 1.5/);
    expect(() => toStreamState(Number.MAX_SAFE_INTEGER + 2)).toThrow(/invalid expected revision/);
  });

  it('reads back actual revisions, with no_stream for a missing stream', () => {
    expect(toActualRevision(3n)).toBe(3);
    expect(toActualRevision('no_stream')).toBe('no_stream');
    expect(toActualRevision(-1n)).toBe('no_stream');
    expect(toRevision(0n)).toBe(0);
  });
});

describe('KurrentDB mapping: positions', () => {
  it('takes the commit position as a JS number', () => {
    expect(toPosition(1234n)).toBe(1234);
    expect(toPosition(BigInt(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('fails loudly instead of rounding a position beyond 2^53 - 1', () => {
    expect(() => toPosition(BigInt(Number.MAX_SAFE_INTEGER) + 1n)).toThrow(/does not fit a JS safe integer/);
    expect(() => toPosition(18446744073709551615n)).toThrow(/refusing to round/);
    expect(() => toRevision(-5n)).toThrow(/stream revision/);
  });

  it('starts a read at the log start for 0, else at the position (inclusive), which isAfter then excludes', () => {
    expect(toReadPosition(0)).toBe(START);
    expect(toReadPosition(9001)).toEqual({ commit: 9001n, prepare: 9001n });
    expect(isAfter(9001n, 9001)).toBe(false);
    expect(isAfter(9002n, 9001)).toBe(true);
    expect(isAfter(5n, 0)).toBe(true);
  });

  it('refuses a cursor that is not a non-negative safe integer', () => {
    expect(() => toReadPosition(-1)).toThrow(/invalid position -1/);
    expect(() => toReadPosition(0.5)).toThrow(/invalid position/);
  });
});

describe('KurrentDB mapping: metadata', () => {
  const meta = { correlationId: 'c-1', causationId: 'e-9', actor: 'user:42', command: 'PlaceOrder' };

  it('writes a flat object of strings (what the multi-stream append accepts)', () => {
    const encoded = encodeMetadata({ ...meta, attempt: 3, tags: ['a', 'b'] }, 2);
    for (const v of Object.values(encoded)) expect(typeof v).toBe('string');
    expect(encoded).toMatchObject({ ...meta, attempt: '3', tags: '["a","b"]', schemaVersion: '2' });
  });

  it('round-trips strings, non-string values, the schema version and the append tag', () => {
    const written = { ...meta, attempt: 3, flag: false, nested: { a: [1, null] }, text: '7' };
    const tags = { appendOf: 'first-id', writeId: 'call-1' };
    const decoded = decodeMetadata(JSON.parse(JSON.stringify(encodeMetadata(written, 3, tags))));
    expect(decoded).toEqual({ metadata: written, schemaVersion: 3, ...tags });
  });

  it("reads an event of a multi-stream append the same, without the server's $schema keys", () => {
    const seen = { ...encodeMetadata(meta, 2), '$schema.format': 'Json', '$schema.name': 'sales.ProductRegistered' };
    expect(decodeMetadata(seen)).toEqual({ metadata: meta, schemaVersion: 2, appendOf: undefined, writeId: undefined });
  });

  it('keeps a string that looks like JSON a string', () => {
    const decoded = decodeMetadata(encodeMetadata({ ...meta, note: '{"a":1}', n: '12' }));
    expect(decoded.metadata.note).toBe('{"a":1}');
    expect(decoded.metadata.n).toBe('12');
  });

  it('reads bytes, empty metadata and metadata written by other tools (version 1, no tag)', () => {
    const bytes = new TextEncoder().encode(JSON.stringify(encodeMetadata(meta, 4)));
    expect(decodeMetadata(bytes).schemaVersion).toBe(4);
    expect(decodeMetadata(new Uint8Array()).metadata).toEqual({ correlationId: '', causationId: '', actor: '' });
    expect(decodeMetadata({ correlationId: 'x', causationId: 'y', actor: 'z', other: 1 })).toEqual({
      metadata: { correlationId: 'x', causationId: 'y', actor: 'z', other: 1 },
      schemaVersion: 1,
      appendOf: undefined,
      writeId: undefined,
    });
    expect(() => decodeMetadata('text')).toThrow(/not a JSON object/);
  });

  it("refuses the adapter's reserved keys, $-prefixed keys and a bad schema version", () => {
    expect(() => encodeMetadata({ ...meta, schemaVersion: 2 })).toThrow(/"schemaVersion" is reserved/);
    expect(() => encodeMetadata({ ...meta, jsonFields: 'x' })).toThrow(/"jsonFields" is reserved/);
    expect(() => encodeMetadata({ ...meta, appendOf: 'x' })).toThrow(/"appendOf" is reserved/);
    expect(() => encodeMetadata({ ...meta, writeId: 'x' })).toThrow(/"writeId" is reserved/);
    expect(() => encodeMetadata({ ...meta, $correlationId: 'x' })).toThrow(/\$ prefix/);
    expect(() => encodeMetadata(meta, 0)).toThrow(/invalid schemaVersion 0/);
  });
});

describe('KurrentDB mapping: errors', () => {
  it('turns WrongExpectedVersion into ConcurrencyError with the actual revision', () => {
    const wev = new WrongExpectedVersionError(undefined, { streamName: 'order-1', expected: 2n, current: 5n });
    const e = toPortError(wev, 'order-1', 2);
    expect(e).toBeInstanceOf(ConcurrencyError);
    expect(e).toMatchObject({ streamId: 'order-1', expected: 2, actual: 5, code: 'PLATFORM.CONCURRENCY_CONFLICT' });
  });

  it("reports no_stream when the stream does not exist, and the error's stream in a multi-stream append", () => {
    const wev = new WrongExpectedVersionError(undefined, {
      streamName: 'email-a@b.c',
      expected: 'no_stream',
      current: 'no_stream',
    });
    expect(toPortError(wev, 'user-1', 'no_stream')).toMatchObject({ streamId: 'email-a@b.c', actual: 'no_stream' });
  });

  it('passes any other error through unchanged', () => {
    const other = new Error('unavailable');
    expect(toPortError(other, 's', 'any')).toBe(other);
  });
});

describe('KurrentDB mapping: KURRENTDB_URL', () => {
  it('accepts kurrentdb and kurrentdb+discover as they are', () => {
    expect(parseKurrentDbUrl('kurrentdb://127.0.0.1:2113?tls=false')).toBe('kurrentdb://127.0.0.1:2113?tls=false');
    expect(parseKurrentDbUrl('kurrentdb+discover://admin:changeit@cluster.local:2113')).toBe(
      'kurrentdb+discover://admin:changeit@cluster.local:2113',
    );
    expect(parseKurrentDbUrl('kurrentdb://a:2113,b:2113,c:2113?nodePreference=leader')).toBe(
      'kurrentdb://a:2113,b:2113,c:2113?nodePreference=leader',
    );
  });

  it("rewrites EventStoreDB's esdb and esdb+discover to the kurrentdb spelling", () => {
    expect(parseKurrentDbUrl('esdb://localhost:2113?tls=false')).toBe('kurrentdb://localhost:2113?tls=false');
    expect(parseKurrentDbUrl('ESDB+DISCOVER://h:2113')).toBe('kurrentdb+discover://h:2113');
  });

  it('refuses other schemes, naming the variable and what it accepts', () => {
    for (const bad of ['postgres://h:5432/db', 'http://h:2113', 'kdb://h:2113', 'tcp://h:1113']) {
      expect(() => parseKurrentDbUrl(bad)).toThrow(
        /KURRENTDB_URL must start with kurrentdb:\/\/, kurrentdb\+discover:\/\/, esdb:\/\/, esdb\+discover:\/\//,
      );
    }
    expect(() => parseKurrentDbUrl('127.0.0.1:2113')).toThrow(/KURRENTDB_URL must be a connection string/);
  });

  it('refuses a missing host, a bad port and a path', () => {
    expect(() => parseKurrentDbUrl('kurrentdb://?tls=false')).toThrow(/KURRENTDB_URL must name at least one host/);
    expect(() => parseKurrentDbUrl('kurrentdb://h:99999')).toThrow(/KURRENTDB_URL: port 99999 is out of range/);
    expect(() => parseKurrentDbUrl('kurrentdb://h:2113/streams')).toThrow(/KURRENTDB_URL takes no path/);
  });

  it('hides the password in logs', () => {
    expect(redactUrl('kurrentdb://admin:s3cret@h:2113?tls=true')).toBe('kurrentdb://admin:***@h:2113?tls=true');
    expect(redactUrl('kurrentdb://h:2113')).toBe('kurrentdb://h:2113');
  });
});

describe('KurrentDB mapping: event-type filter', () => {
  const matches = (types: readonly string[], t: string) => new RegExp(eventTypeRegex(types)).test(t);

  it('matches exactly the listed types', () => {
    const types = ['sales.OrderPlaced', 'sales.OrderCancelled'];
    expect(matches(types, 'sales.OrderPlaced')).toBe(true);
    expect(matches(types, 'sales.OrderCancelled')).toBe(true);
    expect(matches(types, 'sales.OrderPlacedV2')).toBe(false);
    expect(matches(types, 'xsales.OrderPlaced')).toBe(false);
  });

  it('escapes regex metacharacters: a dot matches only a dot', () => {
    expect(matches(['sales.OrderPlaced'], 'salesXOrderPlaced')).toBe(false);
    expect(matches(['a+b(c)|d'], 'a+b(c)|d')).toBe(true);
    expect(matches(['a+b(c)|d'], 'd')).toBe(false);
    expect(eventTypeRegex(['x', 'x'])).toBe('^(?:x)$');
  });

  it('matches nothing for an empty list (as PostgreSQL type = ANY of none)', () => {
    expect(matches([], '')).toBe(false);
    expect(matches([], 'sales.OrderPlaced')).toBe(false);
  });
});
