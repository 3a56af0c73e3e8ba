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
