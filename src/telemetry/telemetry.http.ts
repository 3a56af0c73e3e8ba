import { Body, Controller, Get, HttpCode, Injectable, Param, Post, Query, Req, Res, type OnModuleInit } from '@nestjs/common';
import { Command, CommandBus, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { notFound, validationError } from '../../domain/shared/errors';
import { METRIC_PATTERN } from '../../domain/telemetry/readings';
import { BUCKETS, type Bucket } from '../../projections/telemetry.projection';
import { bucketSeries, latestValue, listMetrics, rawSeries, readingsAfter, type Agg } from '../../projections/telemetry.queries';
import { readCheckpoint } from '../platform/projections/projection-store';
import type { CommandContext } from '../platform/commands/command-context';
import { CommandRegistry, type Caller } from '../platform/commands/command-registry';
import { Ctx, MinPosition } from '../platform/http/request';
import { parseInput } from '../platform/http/validation';
import { Platform } from '../platform/platform';
import { DeviceAuth, Roles, principalOf } from '../identity/auth-guard';
import { listDeadLetters } from './dead-letters';
import type { IngestOutcome } from './ingest';
import { TelemetryServices } from './telemetry.services';

const uuid = z.string().uuid('must be a UUID').transform((s) => s.toLowerCase());
const deviceParam = z.object({ id: uuid });
const metricParam = z.object({ id: uuid, metric: z.string().regex(METRIC_PATTERN, 'must be 1-64 characters of a-z, 0-9, _ . -') });
const instant = z.union([
  z.string().regex(/^\d{1,15}$/).transform((s) => new Date(Number(s))),
  z.string().datetime({ offset: true, message: 'must be an ISO-8601 date-time with a zone, or epoch milliseconds' }).transform((s) => new Date(s)),
], { message: 'must be an ISO-8601 date-time with a zone, or epoch milliseconds' });
const seriesQuery = z.object({
  from: instant.optional(),
  to: instant.optional(),
  bucket: z.enum(Object.keys(BUCKETS) as [Bucket, ...Bucket[]], { message: 'must be one of 1m, 5m, 1h, 1d' }).optional(),
  agg: z.enum(['avg', 'min', 'max', 'count', 'sum'], { message: 'must be one of avg, min, max, count, sum' }).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  minPosition: z.string().optional(),
}).strict();
const deadLetterQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: z.coerce.number().int().positive().optional(),
}).strict();
const DAY_MS = 86_400_000;

/** IngestReading on the bus: one or many readings of one device (resource route and POST /commands/IngestReading). */
export class IngestReading extends Command<IngestOutcome> {
  constructor(readonly input: { deviceId: string; readings: unknown }, readonly by: Caller, readonly ctx: CommandContext) { super(); }
}

@CommandHandler(IngestReading)
export class IngestReadingHandler implements ICommandHandler<IngestReading> {
  constructor(private readonly telemetry: TelemetryServices) {}
  execute(c: IngestReading) { return this.telemetry.ingestCommand(c.input.deviceId, c.input.readings, c.by, c.ctx); }
}

@Injectable()
export class TelemetryCommands implements OnModuleInit {
  constructor(private readonly registry: CommandRegistry) {}
  onModuleInit() {
    this.registry.register({
      name: 'IngestReading',
      // readings: validated by the domain rules (parseReadings), which name each failing field.
      schema: z.object({ deviceId: uuid, readings: z.unknown().refine((v) => v !== undefined, 'is required') }).strict() as z.ZodType<{ deviceId: string; readings: unknown }>,
      access: 'authenticated',
      create: (i, ctx, by) => new IngestReading(i, by!, ctx),
    });
  }
}

@Controller('devices')
export class TelemetryController {
  constructor(private readonly telemetry: TelemetryServices, private readonly bus: CommandBus, private readonly platform: Platform) {}

  /** The device (device token) or its owner sends readings: 202 {accepted, duplicates, position}. */
  @DeviceAuth('user-or-device')
  @Post(':id/readings')
  @HttpCode(202)
  async ingest(@Param('id') id: string, @Body() body: unknown, @Req() req: FastifyRequest, @Ctx() ctx: CommandContext): Promise<Pick<IngestOutcome, 'accepted' | 'duplicates' | 'position'>> {
    const { id: deviceId } = parseInput(deviceParam, { id });
    const r = await this.bus.execute(new IngestReading({ deviceId, readings: body }, principalOf(req), ctx));
    return { accepted: r.accepted, duplicates: r.duplicates, position: r.position };
  }

  @DeviceAuth('user-or-device')
  @Get(':id/metrics')
  async metrics(@Param('id') id: string, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const { id: deviceId } = parseInput(deviceParam, { id });
    await this.telemetry.ensureMayRead(deviceId, principalOf(req));
    await this.platform.readAfter('telemetry', minPosition);
    return { deviceId, metrics: await listMetrics(this.platform.pool, deviceId) };
  }

  @DeviceAuth('user-or-device')
  @Get(':id/metrics/:metric/latest')
  async latest(@Param('id') id: string, @Param('metric') metric: string, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const p = parseInput(metricParam, { id, metric });
    await this.telemetry.ensureMayRead(p.id, principalOf(req));
    await this.platform.readAfter('telemetry', minPosition);
    const v = await latestValue(this.platform.pool, p.id, p.metric);
    if (!v) throw notFound('TELEMETRY.METRIC_NOT_FOUND', `device ${p.id} has no readings of ${p.metric}`);
    return { value: v.value, ts: v.ts };
  }

  /** Raw points, or aggregates per bucket from the rollups. Default range: the last 24 hours. */
  @DeviceAuth('user-or-device')
  @Get(':id/metrics/:metric')
  async series(@Param('id') id: string, @Param('metric') metric: string, @Query() query: unknown, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const p = parseInput(metricParam, { id, metric });
    const q = parseInput(seriesQuery, query ?? {});
    if (q.agg && !q.bucket) throw validationError('PLATFORM.INVALID_INPUT', 'agg needs a bucket', [{ field: 'agg', rule: 'needs bucket (1m, 5m, 1h or 1d)' }]);
    const to = q.to ?? new Date();
    const from = q.from ?? new Date(to.getTime() - DAY_MS);
    if (from.getTime() >= to.getTime()) throw validationError('PLATFORM.INVALID_INPUT', 'from must be before to', [{ field: 'from', rule: 'must be before to' }]);
    await this.telemetry.ensureMayRead(p.id, principalOf(req));
    await this.platform.readAfter('telemetry', minPosition);
    if (q.bucket) {
      const agg: Agg = q.agg ?? 'avg';
      const points = await bucketSeries(this.platform.pool, p.id, p.metric, from, to, q.bucket, agg, q.limit);
      return { deviceId: p.id, metric: p.metric, from, to, bucket: q.bucket, agg, points };
    }
    return { deviceId: p.id, metric: p.metric, from, to, points: await rawSeries(this.platform.pool, p.id, p.metric, from, to, q.limit) };
  }

  /**
   * Live values as server-sent events (`event: reading`, `id:` the reading's
   * position, so a reconnecting client resumes with Last-Event-ID).
   */
  @DeviceAuth('user-or-device')
  @Get(':id/metrics/:metric/stream')
  async stream(@Param('id') id: string, @Param('metric') metric: string, @Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const p = parseInput(metricParam, { id, metric });
    await this.telemetry.ensureMayRead(p.id, principalOf(req));
    const lastId = req.headers['last-event-id'];
    let position = typeof lastId === 'string' && /^\d{1,18}$/.test(lastId)
      ? Number(lastId) : (await readCheckpoint(this.platform.pool, 'telemetry'))?.position ?? 0;
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive',
      'x-accel-buffering': 'no', 'x-correlation-id': req.id,
    });
    raw.write(': connected\n\n');
    let open = true;
    const end = () => {
      if (!open) return;
      open = false;
      raw.end();
    };
    const untrack = this.telemetry.trackStream(end);
    raw.on('close', () => { open = false; untrack(); });
    try {
      while (open) {
        const checkpoint = (await readCheckpoint(this.platform.pool, 'telemetry'))?.position ?? 0;
        const rows = await readingsAfter(this.platform.pool, p.id, p.metric, position, 500);
        for (const r of rows) {
          raw.write(`id: ${r.position}\nevent: reading\ndata: ${JSON.stringify({ value: r.value, ts: r.ts })}\n\n`);
          position = r.position;
        }
        if (rows.length === 500 || !open) continue;
        position = Math.max(position, checkpoint);
        const moved = await this.platform.projections.waitFor('telemetry', checkpoint + 1, 15_000);
        if (!moved && open) raw.write(': keep-alive\n\n');
      }
    } catch (e) {
      this.platform.log.warn({ err: e }, 'telemetry: live stream failed');
      end();
    } finally {
      untrack();
    }
  }
}

@Controller('admin/dead-letters')
@Roles('admin')
export class DeadLettersController {
  constructor(private readonly platform: Platform) {}

  /** MQTT messages that could not become readings, newest first; page on with `before=<nextBefore>`. */
  @Get()
  list(@Query() query: unknown) {
    const q = parseInput(deadLetterQuery, query ?? {});
    return listDeadLetters(this.platform.pool, q.limit, q.before);
  }
}
