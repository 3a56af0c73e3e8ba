import { z } from 'zod';

/** Response schemas of the platform's own routes (platform.http.ts), for GET /openapi.json. */

const component = z
  .looseObject({ status: z.enum(['ok', 'degraded', 'down']) })
  .meta({ description: 'One component: its status and what it measured (latency, lag, error).' });

export const healthSchema = z
  .object({
    status: z.enum(['ok', 'degraded', 'down']),
    shuttingDown: z.boolean(),
    components: z.object({
      postgres: component,
      redis: component,
      eventStore: component,
      projections: component,
      jobs: component,
    }),
  })
  .meta({ id: 'Health' });

export const projectionInfoSchema = z
  .object({
    name: z.string(),
    version: z.number().int(),
    definedVersion: z.number().int(),
    checkpoint: z.number().int(),
    status: z.string().meta({ description: 'running, parked, rebuilding or stale.' }),
    lagEvents: z.number().int().nullable(),
    lagSeconds: z.number(),
    activeHere: z.boolean(),
    parked: z
      .object({
        position: z.number().int(),
        eventId: z.string().nullable(),
        eventType: z.string().nullable(),
        error: z.string().nullable(),
        attempts: z.number().int().nullable(),
      })
      .nullable(),
    updatedAt: z.date(),
  })
  .meta({ id: 'ProjectionInfo' });

export const projectionListSchema = z.object({ projections: z.array(projectionInfoSchema) });

export const projectionDetailSchema = projectionInfoSchema
  .extend({
    operatorLog: z
      .array(z.looseObject({}))
      .meta({ description: 'Retries, skips and rebuilds operators asked for, newest first.' }),
  })
  .meta({ id: 'ProjectionDetail' });

export const rebuildStartedSchema = z.object({
  jobId: z.string(),
  status: z.string().meta({ description: 'Where to follow the job: /admin/jobs/{id}.' }),
});

export const jobSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    state: z.string().meta({ description: 'BullMQ state: waiting, active, completed, failed, delayed.' }),
    progress: z.unknown(),
    data: z.unknown(),
    result: z.unknown(),
    failedReason: z.string().nullable(),
    attempts: z.number().int(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .meta({ id: 'Job' });

export const commandNamesSchema = z.object({ commands: z.array(z.string()) });

export const recordedEventSchema = z
  .looseObject({
    id: z.string(),
    streamId: z.string(),
    revision: z.number().int(),
    position: z.number().int(),
    type: z.string(),
    data: z.looseObject({}),
    metadata: z.looseObject({ correlationId: z.string(), causationId: z.string(), actor: z.string() }),
    schemaVersion: z.number().int(),
    recordedAt: z.date(),
  })
  .meta({ id: 'RecordedEvent', description: 'An event as stored (data not upcast).' });

export const eventPageSchema = z.object({
  head: z.number().int().meta({ description: 'The newest position in the store.' }),
  events: z.array(recordedEventSchema),
});
export const streamPageSchema = z.object({ streamId: z.string(), events: z.array(recordedEventSchema) });
export const eventWithRelationsSchema = z.object({
  event: recordedEventSchema,
  causedBy: recordedEventSchema.nullable().meta({ description: 'The event whose handling caused this one.' }),
  caused: z.array(recordedEventSchema).meta({ description: 'Events this one caused (at most 200).' }),
  correlated: z.array(recordedEventSchema).meta({ description: 'Events of the same correlation (at most 200).' }),
});
