import { DomainError } from '../shared/errors';
import { MAX_FUTURE_MS, decideIngest, pastRule, parseReadings, readingDedupKey, RULES } from './reading.decider';

const now = new Date('2026-05-01T12:00:00.000Z');

function fieldsOf(fn: () => unknown): { field: string; rule: string }[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof DomainError) {
      expect(e.code).toBe('TELEMETRY.INVALID_READING');
      expect(e.kind).toBe('validation');
      return [...e.fields];
    }
    throw e;
  }
  throw new Error('expected a validation error');
}

describe('parseReadings', () => {
  it('takes one object or an array; ts as ISO-8601 or epoch ms, default the receive time; numeric ids become strings', () => {
    expect(parseReadings({ metric: 'temp', value: 21.5 }, now)).toEqual([
      { metric: 'temp', value: 21.5, ts: '2026-05-01T12:00:00.000Z' },
    ]);
    expect(
      parseReadings(
        [
          { metric: 'a.b_c-1', value: -1e300, ts: '2026-05-01T13:00:00+02:00', id: 'x-1' },
          { metric: 'hum', value: 0, ts: 1767225600000, id: 42 },
        ],
        now,
      ),
    ).toEqual([
      { metric: 'a.b_c-1', value: -1e300, ts: '2026-05-01T11:00:00.000Z', id: 'x-1' },
      { metric: 'hum', value: 0, ts: '2026-01-01T00:00:00.000Z', id: '42' },
    ]);
  });

  it.each([
    ['metric', { metric: 'Temp', value: 1 }, RULES.metric],
    ['metric', { metric: 'x'.repeat(65), value: 1 }, RULES.metric],
    ['metric', { value: 1 }, RULES.metric],
    ['value', { metric: 'temp', value: '1' }, RULES.value],
    ['value', { metric: 'temp', value: null }, RULES.value],
    ['value', { metric: 'temp', value: Infinity }, RULES.value],
    ['value', { metric: 'temp', value: NaN }, RULES.value],
    ['ts', { metric: 'temp', value: 1, ts: '2026-05-01' }, RULES.ts],
    ['ts', { metric: 'temp', value: 1, ts: '2026-05-01T12:00:00' }, RULES.ts],
    ['ts', { metric: 'temp', value: 1, ts: -5 }, RULES.ts],
    ['ts', { metric: 'temp', value: 1, ts: 1.5 }, RULES.ts],
    ['id', { metric: 'temp', value: 1, id: '' }, RULES.id],
    ['id', { metric: 'temp', value: 1, id: 'a b' }, RULES.id],
    ['id', { metric: 'temp', value: 1, id: -1 }, RULES.id],
    ['unit', { metric: 'temp', value: 1, unit: 'C' }, RULES.unknown],
  ])('refuses a bad %s, naming the field and the rule', (field, payload, rule) => {
    expect(fieldsOf(() => parseReadings(payload, now))).toEqual([{ field, rule }]);
  });

  it('refuses a timestamp more than 5 minutes ahead of the receive time, accepts one just within', () => {
    const ok = now.getTime() + MAX_FUTURE_MS;
    expect(parseReadings({ metric: 't', value: 1, ts: ok }, now)[0]!.ts).toBe(new Date(ok).toISOString());
    expect(fieldsOf(() => parseReadings({ metric: 't', value: 1, ts: ok + 1 }, now))).toEqual([
      { field: 'ts', rule: RULES.future },
    ]);
  });

  it('refuses a timestamp older than the configured number of days, accepts one just within', () => {
    const ok = now.getTime() - 30 * 86_400_000;
    expect(parseReadings({ metric: 't', value: 1, ts: ok }, now, 30)[0]!.ts).toBe(new Date(ok).toISOString());
    expect(fieldsOf(() => parseReadings([{ metric: 't', value: 1, ts: ok - 1 }], now, 30))).toEqual([
      { field: '0.ts', rule: pastRule(30) },
    ]);
    expect(pastRule(30)).toBe('must not be more than 30 days in the past');
    // Without a limit, any date since 1970 is a reading's own business.
    expect(parseReadings({ metric: 't', value: 1, ts: 0 }, now)[0]!.ts).toBe('1970-01-01T00:00:00.000Z');
  });

  it('names the failing element of an array; refuses empty and over-long arrays and non-objects', () => {
    expect(fieldsOf(() => parseReadings([{ metric: 't', value: 1 }, { metric: 't', value: 'x' }, 7], now))).toEqual([
      { field: '1.value', rule: RULES.value },
      { field: '2', rule: RULES.shape },
    ]);
    expect(fieldsOf(() => parseReadings([], now))).toEqual([{ field: '(payload)', rule: RULES.count }]);
    expect(
      fieldsOf(() =>
        parseReadings(
          Array.from({ length: 1001 }, () => ({ metric: 't', value: 1 })),
          now,
        ),
      ),
    ).toEqual([{ field: '(payload)', rule: RULES.count }]);
    expect(
      parseReadings(
        Array.from({ length: 1000 }, (_, i) => ({ metric: 't', value: i })),
        now,
      ),
    ).toHaveLength(1000);
    for (const p of [null, 'x', 3, true])
      expect(fieldsOf(() => parseReadings(p, now))).toEqual([{ field: '(payload)', rule: RULES.shape }]);
  });

  it('a 10,000-deep nesting is refused at the first level, without recursing', () => {
    let deep: unknown = { metric: 't', value: 1 };
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(fieldsOf(() => parseReadings(deep, now))).toEqual([{ field: '0', rule: RULES.shape }]);
  });
});

describe('IngestReading', () => {
  const readings = parseReadings(
    [
      { metric: 'temp', value: 1, id: 'a' },
      { metric: 'temp', value: 2, id: 'a' },
      { metric: 'temp', value: 3, ts: 1000 },
      { metric: 'temp', value: 4, ts: 1000 },
      { metric: 'hum', value: 5, ts: 1000 },
    ],
    now,
  );
  const command = { type: 'IngestReading' as const, data: { deviceId: 'd1', readings } };

  it("an active device's readings become one ReadingsRecorded event, each dedup key once (the first wins)", () => {
    const { event, repeated } = decideIngest(command, { status: 'active' });
    expect(event).toEqual({
      type: 'telemetry.ReadingsRecorded',
      data: {
        deviceId: 'd1',
        readings: [
          { id: 'a', metric: 'temp', value: 1, ts: '2026-05-01T12:00:00.000Z' },
          { metric: 'temp', value: 3, ts: '1970-01-01T00:00:01.000Z' },
          { metric: 'hum', value: 5, ts: '1970-01-01T00:00:01.000Z' },
        ],
      },
    });
    expect(repeated).toBe(2);
    expect(JSON.parse(JSON.stringify(event))).toEqual(event);
  });

  it('the message key is the same for a resend received later (ids without ts), different for other readings', () => {
    const later = new Date(now.getTime() + 60_000);
    const msg = [
      { metric: 'temp', value: 1, id: 'a' },
      { metric: 'temp', value: 2, ts: 5000 },
    ];
    const key = (payload: unknown, at: Date) =>
      decideIngest(
        { type: 'IngestReading', data: { deviceId: 'd1', readings: parseReadings(payload, at) } },
        { status: 'active' },
      ).key;
    expect(key(msg, later)).toBe(key(msg, now));
    expect(key([msg[0]], now)).not.toBe(key(msg, now));
    expect(key([{ ...msg[0], value: 9 }, msg[1]], now)).not.toBe(key(msg, now));
    // Without id nor ts, the receive time is the reading's time: a later message is a new reading.
    expect(key({ metric: 'temp', value: 1 }, later)).not.toBe(key({ metric: 'temp', value: 1 }, now));
  });

  it('refuses an unknown device (404) and a revoked one (403)', () => {
    expect(() => decideIngest(command, { status: 'none' })).toThrow(
      expect.objectContaining({ code: 'TELEMETRY.DEVICE_NOT_FOUND', kind: 'not_found' }),
    );
    expect(() => decideIngest(command, { status: 'revoked' })).toThrow(
      expect.objectContaining({ code: 'TELEMETRY.DEVICE_REVOKED', kind: 'forbidden' }),
    );
  });

  it('refuses the readings of a device whose owner is disabled (403)', () => {
    expect(() => decideIngest(command, { status: 'owner_disabled' })).toThrow(
      expect.objectContaining({ code: 'TELEMETRY.DEVICE_OWNER_DISABLED', kind: 'forbidden' }),
    );
  });

  it('the dedup key is the device-side id when given, else metric and timestamp', () => {
    expect(readingDedupKey({ metric: 'm', value: 1, ts: '2026-01-01T00:00:00.000Z', id: '7' })).toBe('id:7');
    expect(readingDedupKey({ metric: 'm', value: 1, ts: '2026-01-01T00:00:00.000Z' })).toBe('at:m:1767225600000');
    expect(readingDedupKey({ metric: 'n', value: 1, ts: '2026-01-01T00:00:00.000Z' })).not.toBe(
      readingDedupKey({ metric: 'm', value: 1, ts: '2026-01-01T00:00:00.000Z' }),
    );
  });
});
