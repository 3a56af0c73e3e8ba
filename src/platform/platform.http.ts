import { Body, Controller, Get, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { DomainError } from '../../domain/shared/errors';
import { Authenticator, Public, Roles, type AuthenticatedRequest } from './http/access';
import { CommandRegistry } from './commands/command-registry';
import { actorOf, commandContext } from './http/request';
import { parseInput } from './http/validation';
import { Platform } from './platform';
import { AuthErrorCode } from './http/auth-errors';
import { ApiDoc, commandResultSchema } from './http/openapi';
import { PlatformErrorCode } from './platform-errors';
import {
  commandNamesSchema,
  healthSchema,
  jobSchema,
  projectionDetailSchema,
  projectionInfoSchema,
  projectionListSchema,
  rebuildStartedSchema,
} from './platform.responses';

type ComponentHealth = { status: 'ok' | 'degraded' | 'down'; [detail: string]: unknown };

const CHECK_TIMEOUT_MS = 1000;

const projectionParam = z.object({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,100}$/, 'must be a projection name (1-100 characters of A-Z, a-z, 0-9, _ . -)'),
});
const projectionName = (name: string) => parseInput(projectionParam, { name }).name;
const jobParam = z.object({ id: z.string().regex(/^\d{1,20}$/, 'must be a job number') });
const commandParam = z.object({ name: z.string().meta({ description: 'A name from GET /commands.' }) });

/** Runs one health check, bounded: a server that does not answer is "down", not a hung /health. */
async function timed(check: () => Promise<Record<string, unknown> | void>): Promise<ComponentHealth> {
  const t = process.hrtime.bigint();
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
    });
    const extra = (await Promise.race([check(), timeout])) ?? {};
    return { status: 'ok', latencyMs: Number(process.hrtime.bigint() - t) / 1e6, ...extra };
  } catch (e) {
    return { status: 'down', error: e instanceof Error ? e.message : String(e) };
  } finally {
    clearTimeout(timer);
  }
}

@Public()
@Controller()
export class HealthController {
  constructor(private readonly platform: Platform) {}

  /** Green when every component answers; degraded (still 200) when a projection is parked or lagging; 503 when something is down. */
  @ApiDoc({
    summary: 'Health of each component',
    description: 'ok or degraded (a projection parked or stale): 200; a component down or shutting down: 503.',
    responses: {
      200: healthSchema,
      503: { description: 'Something is down, or the app is shutting down.', schema: healthSchema },
    },
  })
  @Get('health')
  async health(@Res() reply: FastifyReply): Promise<void> {
    const p = this.platform;
    const [postgres, redis, eventStore, jobs] = await Promise.all([
      timed(async () => {
        await p.pool.query('SELECT 1');
      }),
      timed(async () => {
        await p.redis.ping();
      }),
      timed(async () => ({ kind: p.store.kind, headPosition: await p.store.headPosition() })),
      timed(async () => {
        await p.jobs.ping();
      }),
    ]);
    let projections: ComponentHealth;
    try {
      const list = await p.projections.status({ countLag: false });
      const parked = list.filter((i) => i.status === 'parked').map((i) => i.name);
      const stale = list.filter((i) => i.status === 'stale').map((i) => i.name);
      projections = {
        status: parked.length || stale.length ? 'degraded' : 'ok',
        running: list.length - parked.length,
        parked,
        stale,
        maxLagSeconds: Math.max(0, ...list.map((i) => i.lagSeconds)),
      };
    } catch (e) {
      projections = { status: 'down', error: e instanceof Error ? e.message : String(e) };
    }
    const components = { postgres, redis, eventStore, projections, jobs };
    const states = Object.values(components).map((c) => c.status);
    const status = !p.accepting || states.includes('down') ? 'down' : states.includes('degraded') ? 'degraded' : 'ok';
    await reply.status(status === 'down' ? 503 : 200).send({ status, shuttingDown: !p.accepting, components });
  }

  @ApiDoc({
    summary: 'Prometheus metrics',
    responses: {
      200: { description: 'Prometheus text exposition format.', contentType: 'text/plain', schema: z.string() },
    },
  })
  @Get('metrics')
  async metrics(@Res() reply: FastifyReply): Promise<void> {
    const p = this.platform;
    for (const i of await p.projections.status()) {
      p.metrics.projectionLagEvents.set({ projection: i.name }, i.lagEvents ?? 0);
      p.metrics.projectionLagSeconds.set({ projection: i.name }, i.lagSeconds);
      p.metrics.projectionParked.set({ projection: i.name }, i.status === 'parked' ? 1 : 0);
      p.metrics.projectionCheckpoint.set({ projection: i.name }, i.checkpoint);
    }
    await reply.header('Content-Type', p.metrics.registry.contentType).send(await p.metrics.registry.metrics());
  }
}

@Controller('admin')
@Roles('admin')
export class AdminController {
  constructor(private readonly platform: Platform) {}

  @ApiDoc({ summary: 'Every projection: status, checkpoint, lag', responses: { 200: projectionListSchema } })
  @Get('projections')
  async projections() {
    return { projections: await this.platform.projections.status() };
  }

  @ApiDoc({
    summary: 'One projection with its operator log',
    params: projectionParam,
    responses: { 200: projectionDetailSchema },
    errors: { 404: [PlatformErrorCode.PROJECTION_NOT_FOUND] },
  })
  @Get('projections/:name')
  async projection(@Param('name') raw: string) {
    const name = projectionName(raw);
    const p = this.platform.projections.get(name);
    return {
      ...(await this.platform.projections.info(p)),
      operatorLog: await this.platform.projections.operatorLog(name),
    };
  }

  @ApiDoc({
    summary: 'Rebuild a projection (background job into shadow tables, swapped in when caught up)',
    params: projectionParam,
    responses: { 202: rebuildStartedSchema },
    errors: { 404: [PlatformErrorCode.PROJECTION_NOT_FOUND], 409: [PlatformErrorCode.REBUILD_RUNNING] },
  })
  @Post('projections/:name/rebuild')
  @HttpCode(202)
  async rebuild(@Param('name') raw: string, @Req() req: FastifyRequest) {
    const name = projectionName(raw);
    const jobId = await this.platform.jobs.enqueue(name, actorOf(req), req.id);
    return { jobId, status: `/admin/jobs/${jobId}` };
  }

  @ApiDoc({
    summary: 'Retry the event a parked projection stopped at',
    params: projectionParam,
    responses: { 201: projectionInfoSchema },
    errors: { 404: [PlatformErrorCode.PROJECTION_NOT_FOUND], 409: [PlatformErrorCode.PROJECTION_NOT_PARKED] },
  })
  @Post('projections/:name/retry')
  async retry(@Param('name') raw: string, @Req() req: FastifyRequest) {
    const name = projectionName(raw);
    await this.platform.projections.retry(name, actorOf(req));
    return this.platform.projections.info(this.platform.projections.get(name));
  }

  @ApiDoc({
    summary: 'Skip the event a parked projection stopped at (recorded in the operator log)',
    params: projectionParam,
    responses: { 201: projectionInfoSchema },
    errors: { 404: [PlatformErrorCode.PROJECTION_NOT_FOUND], 409: [PlatformErrorCode.PROJECTION_NOT_PARKED] },
  })
  @Post('projections/:name/skip')
  async skip(@Param('name') raw: string, @Req() req: FastifyRequest) {
    const name = projectionName(raw);
    await this.platform.projections.skip(name, actorOf(req));
    return this.platform.projections.info(this.platform.projections.get(name));
  }

  @ApiDoc({
    summary: 'A background job (a projection rebuild): state and progress',
    params: jobParam,
    responses: { 200: jobSchema },
    errors: { 404: [PlatformErrorCode.JOB_NOT_FOUND] },
  })
  @Get('jobs/:id')
  job(@Param('id') id: string) {
    // BullMQ numbers its jobs; anything else is not one of ours and never reaches Redis.
    return this.platform.jobs.get(parseInput(jobParam, { id }).id);
  }
}

/** `POST /commands/:name`: every registered command, its body validated against that command's schema. */
@Public()
@Controller('commands')
export class CommandsController {
  constructor(
    private readonly registry: CommandRegistry,
    private readonly bus: CommandBus,
    private readonly auth: Authenticator,
  ) {}

  @ApiDoc({ summary: 'The names of every command', responses: { 200: commandNamesSchema } })
  @Get()
  list() {
    return { commands: this.registry.names() };
  }

  @ApiDoc({
    summary: 'Send any command by name (each command is also documented at its own path)',
    description:
      "The body is validated against the named command's schema; who may send it depends on the command (see /commands/<name>).",
    params: commandParam,
    body: z.looseObject({}),
    bodyRequired: false,
    command: true,
    responses: {
      201: commandResultSchema,
      200: { description: 'An Idempotency-Key replay: nothing new stored.', schema: commandResultSchema },
    },
    errors: {
      401: [
        AuthErrorCode.MISSING_TOKEN,
        AuthErrorCode.INVALID_TOKEN,
        AuthErrorCode.TOKEN_EXPIRED,
        AuthErrorCode.TOKEN_REVOKED,
      ],
      403: [AuthErrorCode.FORBIDDEN],
      404: [PlatformErrorCode.UNKNOWN_COMMAND],
    },
  })
  @Post(':name')
  async send(
    @Param('name') name: string,
    @Body() body: unknown,
    @Req() req: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const def = this.registry.get(name);
    // The route is public; each command says who may send it.
    const caller =
      def.access === 'public' ? undefined : await this.auth.authenticate(req.headers.authorization, 'user');
    if (caller) (req as AuthenticatedRequest).actor = `${caller.kind}:${caller.id}`;
    if (def.access === 'admin' && !caller?.roles.includes('admin')) {
      throw new DomainError('forbidden', AuthErrorCode.FORBIDDEN, `command ${name} needs the admin role`);
    }
    const input = parseInput(def.schema, body ?? {});
    const result = await this.bus.execute(def.create(input, commandContext(req), caller));
    void reply.status(result.duplicate ? 200 : 201);
    return result;
  }
}
