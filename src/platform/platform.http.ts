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

type ComponentHealth = { status: 'ok' | 'degraded' | 'down'; [detail: string]: unknown };

const CHECK_TIMEOUT_MS = 1000;

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

  @Get('projections')
  async projections() {
    return { projections: await this.platform.projections.status() };
  }

  @Get('projections/:name')
  async projection(@Param('name') name: string) {
    const p = this.platform.projections.get(name);
    return {
      ...(await this.platform.projections.info(p)),
      operatorLog: await this.platform.projections.operatorLog(name),
    };
  }

  @Post('projections/:name/rebuild')
  @HttpCode(202)
  async rebuild(@Param('name') name: string, @Req() req: FastifyRequest) {
    const jobId = await this.platform.jobs.enqueue(name, actorOf(req), req.id);
    return { jobId, status: `/admin/jobs/${jobId}` };
  }

  @Post('projections/:name/retry')
  async retry(@Param('name') name: string, @Req() req: FastifyRequest) {
    await this.platform.projections.retry(name, actorOf(req));
    return this.platform.projections.info(this.platform.projections.get(name));
  }

  @Post('projections/:name/skip')
  async skip(@Param('name') name: string, @Req() req: FastifyRequest) {
    await this.platform.projections.skip(name, actorOf(req));
    return this.platform.projections.info(this.platform.projections.get(name));
  }

  @Get('jobs/:id')
  job(@Param('id') id: string) {
    // BullMQ numbers its jobs; anything else is not one of ours and never reaches Redis.
    return this.platform.jobs.get(
      parseInput(z.object({ id: z.string().regex(/^\d{1,20}$/, 'must be a job number') }), { id }).id,
    );
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

  @Get()
  list() {
    return { commands: this.registry.names() };
  }

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
