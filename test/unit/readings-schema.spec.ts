import Ajv2020 from 'ajv/dist/2020';
import { createSchema } from 'zod-openapi';
import { MAX_READINGS_PER_MESSAGE, parseReadings } from '../../domain/telemetry/reading.decider';
import { readingsBodySchema } from '../../src/telemetry/telemetry.responses';

/**
 * POST /devices/:id/readings is checked by the domain's parser (shared with MQTT);
 * the API document describes its body with a schema of its own. Both must accept
 * and refuse the same payloads: this checks the documented JSON Schema (as GET
 * /openapi.json renders it) and the parser side by side on each rule.
 */
const rendered = createSchema(readingsBodySchema, { io: 'input' });
const validate = new Ajv2020({ strict: false }).compile({
  ...rendered.schema,
  components: { schemas: rendered.components },
});
const now = new Date('2026-01-01T12:00:00Z');
const parses = (payload: unknown) => {
  try {
    parseReadings(payload, now);
    return true;
  } catch {
    return false;
  }
};

const accepted: [string, unknown][] = [
  ['one reading', { metric: 'temp', value: 21.5 }],
  [
    'an array',
    [
      { metric: 'temp', value: 21.5 },
      { metric: 'hum', value: 40, id: 'h-1' },
    ],
  ],
  ['ts as ISO with Z', { metric: 'temp', value: 1, ts: '2026-01-01T11:00:00Z' }],
  ['ts as ISO with an offset, no seconds', { metric: 'temp', value: 1, ts: '2026-01-01T11:00+01:00' }],
  ['ts as epoch ms', { metric: 'temp', value: 1, ts: 1767225600000 }],
  ['id as a non-negative integer', { metric: 'a.b_c-d', value: -3, id: 7 }],
  ['the largest array', Array.from({ length: MAX_READINGS_PER_MESSAGE }, () => ({ metric: 'm', value: 0 }))],
];
const refused: [string, unknown][] = [
  ['an unknown field', { metric: 'temp', value: 1, unit: 'C' }],
  ['an upper-case metric', { metric: 'Temp', value: 1 }],
  ['a metric of 65 characters', { metric: 'm'.repeat(65), value: 1 }],
  ['a string value', { metric: 'temp', value: '1' }],
  ['no value', { metric: 'temp' }],
  ['ts without a zone', { metric: 'temp', value: 1, ts: '2026-01-01T11:00:00' }],
  ['a negative ts', { metric: 'temp', value: 1, ts: -1 }],
  ['a fractional id', { metric: 'temp', value: 1, id: 1.5 }],
  ['an id with a space', { metric: 'temp', value: 1, id: 'a b' }],
  ['an empty array', []],
  ['too many readings', Array.from({ length: MAX_READINGS_PER_MESSAGE + 1 }, () => ({ metric: 'm', value: 0 }))],
  ['a number', 42],
  ['an array holding an array', [[{ metric: 'temp', value: 1 }]]],
];

describe('the documented readings body and the domain parser agree', () => {
  it.each(accepted)('both accept %s', (_, payload) => {
    expect({ parser: parses(payload), document: validate(payload) }).toEqual({ parser: true, document: true });
  });
  it.each(refused)('both refuse %s', (_, payload) => {
    expect({ parser: parses(payload), document: validate(payload) }).toEqual({ parser: false, document: false });
  });
});
