import { Body, Controller, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { notFound, validationError } from '../../domain/shared/errors';
import { METRIC_PATTERN } from '../../domain/telemetry/reading.decider';
import { BUCKETS, type Bucket } from '../../projections/telemetry.projection';
import {
  bucketSeriesJson,
  latestValue,
  listMetrics,
  rawSeriesJson,
  readingsAfter,
  END_OF_EVENT,
  type StreamCursor,
  type Agg,
} from '../../projections/telemetry.queries';
import { readCheckpoint } from '../platform/processing/checkpoints';
import type { CommandContext } from '../platform/commands/command-context';
import { Ctx, MinPosition } from '../platform/http/request';
import { parseInput } from '../platform/http/validation';
import { Platform } from '../platform/platform';
import { DeviceAuth, Roles, principalOf } from '../platform/http/access';
import { IdentityServices } from '../identity/identity.services';
import { listDeadLetters } from './dead-letters';
import { IngestReading, deviceIdSchema } from './ingest-reading';
import type { IngestOutcome } from './ingest';
import { LiveStreams, type SseWriter } from './live-streams';
import { TelemetryServices } from './telemetry.services';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';
import { PlatformErrorCode } from '../platform/platform-errors';
import { ApiDoc } from '../platform/http/openapi';
import {
  deadLetterPageSchema,
  ingestedSchema,
  latestSchema,
  metricListSchema,
  readingsBodySchema,
  seriesSchema,
  streamSchema,
} from './telemetry.responses';

const deviceParam = z.object({ id: deviceIdSchema });
const metricParam = z.object({
  id: deviceIdSchema,
  metric: z.string().regex(METRIC_PATTERN, 'must be 1-64 characters of a-z, 0-9, _ . -'),
});
const instant = z.union(
  [
    z
      .string()
      .regex(/^\d{1,15}$/)
      .transform((s) => new Date(Number(s))),
    z
      .string()
      .datetime({ offset: true, message: 'must be an ISO-8601 date-time with a zone, or epoch milliseconds' })
      .transform((s) => new Date(s)),
  ],
  { message: 'must be an ISO-8601 date-time with a zone, or epoch milliseconds' },
);
const seriesQuery = z
  .object({
    from: instant.optional(),
    to: instant.optional(),
    bucket: z
      .enum(Object.keys(BUCKETS) as [Bucket, ...Bucket[]], { message: 'must be one of 1m, 5m, 1h, 1d' })
      .optional(),
    agg: z
      .enum(['avg', 'min', 'max', 'count', 'sum'], { message: 'must be one of avg, min, max, count, sum' })
      .optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
    minPosition: z.string().optional(),
  })
  .strict();
const deadLetterQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(50),
    before: z.coerce.number().int().positive().optional(),
    /** One device's dead letters (the console's device page). */
    deviceId: deviceIdSchema.optional(),
  })
  .strict();
const DAY_MS = 86_400_000;
/** A reader of a device's metrics: its owner, an admin or the device itself; to anyone else the device does not exist. */
const READ_ERRORS = { 404: [TelemetryErrorCode.DEVICE_NOT_FOUND] };
/** Rows one live stream reads per query. */
const STREAM_PAGE = 500;
/** An idle live stream sends a comment this often (proxies close silent connections). */
const KEEP_ALIVE_MS = 15_000;

@Controller('devices')
export class TelemetryController {
  private readonly streams: LiveStreams;

  constructor(
    private readonly telemetry: TelemetryServices,
    private readonly bus: CommandBus,
    private readonly platform: Platform,
    private readonly identity: IdentityServices,
  ) {
    const c = platform.config;
    this.streams = new LiveStreams({
      maxPerPrincipal: c.STREAMS_MAX_PER_PRINCIPAL,
      maxTotal: c.STREAMS_MAX_TOTAL,
      stallTimeoutMs: c.STREAM_STALL_TIMEOUT_MS,
      registry: platform.metrics.registry,
    });
  }

  /** The device (device token) or its owner sends readings: 202 {accepted, duplicates, position}. */
  @ApiDoc({
    summary: 'Send readings (the device itself, or its owner)',
    params: deviceParam,
    body: readingsBodySchema,
    responses: { 202: ingestedSchema },
    errors: {
      400: [TelemetryErrorCode.INVALID_READING],
      403: [TelemetryErrorCode.DEVICE_REVOKED, TelemetryErrorCode.DEVICE_OWNER_DISABLED],
      404: [TelemetryErrorCode.DEVICE_NOT_FOUND],
      503: [TelemetryErrorCode.SHUTTING_DOWN],
    },
  })
  @DeviceAuth('user-or-device')
  @Post(':id/readings')
  @HttpCode(202)
  async ingest(
    @Param('id') id: string,
    @Body() body: unknown,
    @Req() req: FastifyRequest,
    @Ctx() ctx: CommandContext,
  ): Promise<Pick<IngestOutcome, 'accepted' | 'duplicates' | 'position'>> {
    const { id: deviceId } = parseInput(deviceParam, { id });
    const r = await this.bus.execute(new IngestReading({ deviceId, readings: body }, principalOf(req), ctx));
    return { accepted: r.accepted, duplicates: r.duplicates, position: r.position };
  }

  @ApiDoc({
    summary: "A device's metrics, each with its latest value",
    params: deviceParam,
    readsModel: true,
    responses: { 200: metricListSchema },
    errors: READ_ERRORS,
  })
  @DeviceAuth('user-or-device')
  @Get(':id/metrics')
  async metrics(@Param('id') id: string, @Req() req: FastifyRequest, @MinPosition() minPosition: number | undefined) {
    const { id: deviceId } = parseInput(deviceParam, { id });
    await this.telemetry.ensureMayRead(deviceId, principalOf(req));
    await this.platform.readAfter('telemetry', minPosition);
    return { deviceId, metrics: await listMetrics(this.platform.pool, deviceId) };
  }

  @ApiDoc({
    summary: 'The latest value of one metric',
    params: metricParam,
    readsModel: true,
    responses: { 200: latestSchema },
    errors: { 404: [TelemetryErrorCode.DEVICE_NOT_FOUND, TelemetryErrorCode.METRIC_NOT_FOUND] },
  })
  @DeviceAuth('user-or-device')
  @Get(':id/metrics/:metric/latest')
  async latest(
    @Param('id') id: string,
    @Param('metric') metric: string,
    @Req() req: FastifyRequest,
    @MinPosition() minPosition: number | undefined,
  ) {
    const p = parseInput(metricParam, { id, metric });
    await this.telemetry.ensureMayRead(p.id, principalOf(req));
    await this.platform.readAfter('telemetry', minPosition);
    const v = await latestValue(this.platform.pool, p.id, p.metric);
    if (!v) throw notFound(TelemetryErrorCode.METRIC_NOT_FOUND, `device ${p.id} has no readings of ${p.metric}`);
    return { value: v.value, ts: v.ts };
  }

  /** Raw points, or aggregates per bucket from the rollups. Default range: the last 24 hours. */
  @ApiDoc({
    summary: 'History of one metric: raw points, or aggregates per bucket',
    description: 'Default range: the 24 hours up to `to` (default now). `agg` needs `bucket`.',
    params: metricParam,
    query: seriesQuery,
    readsModel: true,
    responses: { 200: seriesSchema },
    errors: READ_ERRORS,
  })
  @DeviceAuth('user-or-device')
  @Get(':id/metrics/:metric')
  async series(
    @Param('id') id: string,
    @Param('metric') metric: string,
    @Query() query: unknown,
    @Req() req: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
    @MinPosition() minPosition: number | undefined,
  ): Promise<string> {
    const p = parseInput(metricParam, { id, metric });
    const q = parseInput(seriesQuery, query ?? {});
    if (q.agg && !q.bucket)
      throw validationError(PlatformErrorCode.INVALID_INPUT, 'agg needs a bucket', [
        { field: 'agg', rule: 'needs bucket (1m, 5m, 1h or 1d)' },
      ]);
    const to = q.to ?? new Date();
    const from = q.from ?? new Date(to.getTime() - DAY_MS);
    if (from.getTime() >= to.getTime())
      throw validationError(PlatformErrorCode.INVALID_INPUT, 'from must be before to', [
        { field: 'from', rule: 'must be before to' },
      ]);
    await this.telemetry.ensureMayRead(p.id, principalOf(req));
    await this.platform.readAfter('telemetry', minPosition);
    const pool = this.platform.pool;
    const agg: Agg | undefined = q.bucket ? (q.agg ?? 'avg') : undefined;
    const points = q.bucket
      ? await bucketSeriesJson(pool, p.id, p.metric, from, to, q.bucket, agg!, q.limit)
      : await rawSeriesJson(pool, p.id, p.metric, from, to, q.limit);
    // The points are JSON already (built by PostgreSQL): sent on as they are, not parsed and written again.
    const head = JSON.stringify({
      deviceId: p.id,
      metric: p.metric,
      from,
      to,
      ...(q.bucket ? { bucket: q.bucket, agg } : {}),
    });
    void reply.type('application/json; charset=utf-8');
    return `${head.slice(0, -1)},"points":${points}}`;
  }

  /**
   * Live values as server-sent events (`event: reading`, `id:` the reading's
   * event position and index in it (`<position>.<index>`), so a reconnecting client resumes with Last-Event-ID).
   *
   * The stream lasts as long as its caller's access: it ends (`event: end` with the
   * reason, then the response ends) when the token expires or is revoked, the user
   * logs out, is disabled or loses a role, or the device is revoked or its owner
   * disabled (IdentityServices.watchSession, on every instance). Capped per
   * principal (STREAMS_MAX_PER_PRINCIPAL, then 429); it reads the next rows only
   * once the socket has room, and drops a client that does not read for
   * STREAM_STALL_TIMEOUT_MS. New readings wake it through the process's one
   * checkpoint notifier, not a poll per stream.
   */
  @ApiDoc({
    summary: 'Live values of one metric (server-sent events)',
    params: metricParam,
    headers: z.object({
      'Last-Event-ID': z
        .string()
        .optional()
        .meta({ description: 'Resume after this reading (`<position>.<index>`, or 0 for the whole history).' }),
    }),
    responses: { 200: { description: 'An event stream.', contentType: 'text/event-stream', schema: streamSchema } },
    errors: { ...READ_ERRORS, 429: [TelemetryErrorCode.TOO_MANY_STREAMS] },
  })
  @DeviceAuth('user-or-device')
  @Get(':id/metrics/:metric/stream')
  async stream(
    @Param('id') id: string,
    @Param('metric') metric: string,
    @Req() req: FastifyRequest,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const p = parseInput(metricParam, { id, metric });
    const principal = principalOf(req);
    await this.telemetry.ensureMayRead(p.id, principal);
    const release = this.streams.acquire(principal);
    let sse: SseWriter | undefined;
    let unwatch: () => void = () => undefined;
    let untrack: () => void = () => undefined;
    try {
      const lastId = req.headers['last-event-id'];
      // Last-Event-ID is `<position>.<index>` (a reading of an event), or `<position>` (all of that event).
      const resume = typeof lastId === 'string' ? /^(\d{1,18})(?:\.(\d{1,4}))?$/.exec(lastId) : null;
      let cursor: StreamCursor = resume
        ? { position: Number(resume[1]), idx: resume[2] !== undefined ? Number(resume[2]) : END_OF_EVENT }
        : { position: (await readCheckpoint(this.platform.pool, 'telemetry'))?.position ?? 0, idx: END_OF_EVENT };
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-correlation-id': req.id,
      });
      const stream = (sse = this.streams.writer(raw));
      unwatch = this.identity.watchSession(principal, (reason) => {
        // Told to the client when there is room for it; a client that does not read is simply cut off.
        if (raw.writableLength === 0) raw.write(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
        stream.end(reason);
      });
      const tracked = this.telemetry.trackStream(() => stream.end('shutdown'));
      untrack = () => {
        tracked();
      };
      await stream.send(': connected\n\n');
      while (stream.open) {
        const checkpoint = (await readCheckpoint(this.platform.pool, 'telemetry'))?.position ?? 0;
        const rows = await readingsAfter(this.platform.pool, p.id, p.metric, cursor, STREAM_PAGE);
        for (const r of rows) {
          // Waits while the client's socket buffer is full: no more rows are read until it drains.
          if (
            !(await stream.send(
              `id: ${r.position}.${r.idx}\nevent: reading\ndata: ${JSON.stringify({ value: r.value, ts: r.ts })}\n\n`,
            ))
          )
            break;
          cursor = { position: r.position, idx: r.idx };
        }
        if (rows.length === STREAM_PAGE || !stream.open) continue;
        if (checkpoint > cursor.position) cursor = { position: checkpoint, idx: END_OF_EVENT };
        const moved = await this.platform.projections.waitFor(
          'telemetry',
          checkpoint + 1,
          KEEP_ALIVE_MS,
          stream.signal,
        );
        if (!moved && stream.open) await stream.send(': keep-alive\n\n');
      }
    } catch (e) {
      if (!sse) throw e; // before the response started: a problem answer, as for any route
      this.platform.log.warn({ err: e }, 'telemetry: live stream failed');
      sse.drop('failed');
    } finally {
      unwatch();
      untrack();
      release();
    }
  }
}

@Controller('admin/dead-letters')
@Roles('admin')
export class DeadLettersController {
  constructor(private readonly platform: Platform) {}

  /** MQTT messages that could not become readings, newest first; page on with `before=<nextBefore>`. */
  @ApiDoc({
    summary: 'MQTT messages that could not become readings, newest first',
    tags: ['telemetry'],
    query: deadLetterQuery,
    responses: { 200: deadLetterPageSchema },
  })
  @Get()
  list(@Query() query: unknown) {
    const q = parseInput(deadLetterQuery, query ?? {});
    return listDeadLetters(this.platform.pool, q.limit, q.before, q.deviceId);
  }
}
