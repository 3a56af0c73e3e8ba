import { z } from 'zod';
import {
  MAX_READINGS_PER_MESSAGE,
  METRIC_PATTERN,
  ID_PATTERN,
  ISO_PATTERN,
  RULES,
} from '../../domain/telemetry/reading.decider';

/**
 * Schemas of telemetry's routes (telemetry.http.ts) for GET /openapi.json.
 *
 * The readings body is checked by the domain's own parser (parseReadings, shared with
 * MQTT ingestion and written without zod for its speed); this schema describes the
 * same rules from the same constants, and test/unit/readings-schema.spec.ts checks
 * that the two agree on accepted and refused payloads.
 */
const reading = z
  .object({
    metric: z.string().regex(METRIC_PATTERN, RULES.metric),
    value: z.number().meta({ description: RULES.value }),
    ts: z
      .union([z.string().regex(ISO_PATTERN), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)])
      .optional()
      .meta({
        description: `${RULES.ts}; default: receive time; ${RULES.future}; not more than TELEMETRY_MAX_PAST_DAYS (366) days in the past.`,
      }),
    id: z
      .union([z.string().regex(ID_PATTERN), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)])
      .optional()
      .meta({ description: `Device-side unique id (dedup key): ${RULES.id}.` }),
  })
  .strict()
  .meta({ id: 'Reading' });

export const readingsBodySchema = z
  .union([reading, z.array(reading).min(1).max(MAX_READINGS_PER_MESSAGE)])
  .meta({ description: `One reading, or an array of 1 to ${MAX_READINGS_PER_MESSAGE}.` });

export const ingestedSchema = z.object({
  accepted: z.number().int(),
  duplicates: z.number().int().meta({ description: 'Readings already stored (a resend): not stored again.' }),
  position: z.number().int().meta({ description: 'Pass as minPosition to read these readings.' }),
});

export const metricListSchema = z.object({
  deviceId: z.string(),
  metrics: z.array(z.object({ metric: z.string(), value: z.number(), ts: z.date() })),
});

export const latestSchema = z.object({ value: z.number(), ts: z.date() });

const point = z.object({ ts: z.date(), value: z.number() });

export const seriesSchema = z
  .object({
    deviceId: z.string(),
    metric: z.string(),
    from: z.date(),
    to: z.date(),
    bucket: z.enum(['1m', '5m', '1h', '1d']).optional(),
    agg: z.enum(['avg', 'min', 'max', 'count', 'sum']).optional(),
    points: z.array(point),
  })
  .meta({ id: 'Series', description: 'Raw points, or one aggregate per bucket when bucket is given.' });

export const streamSchema = z.string().meta({
  description:
    'Server-sent events: `event: reading` with `data: {"value","ts"}` and `id: <position>.<index>` ' +
    '(send it back as Last-Event-ID to resume); `event: end` with the reason when access ends.',
});

export const deadLetterPageSchema = z.object({
  items: z.array(
    z.object({
      id: z.number().int(),
      deviceId: z.string().nullable(),
      topic: z.string(),
      payload: z.string(),
      payloadSize: z.number().int(),
      truncated: z.boolean(),
      code: z.string(),
      reason: z.string(),
      receivedAt: z.date(),
    }),
  ),
  nextBefore: z.number().int().nullable().meta({ description: 'Pass as `before` for the next page.' }),
});
