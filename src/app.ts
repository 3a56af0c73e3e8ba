import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Global, Module, type DynamicModule, type LoggerService, type Type } from '@nestjs/common';
import { DiscoveryModule, NestFactory } from '@nestjs/core';
import { CqrsModule } from '@nestjs/cqrs';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import secureJson from 'secure-json-parse';
import type { Projection } from '../projections/projection';
import { validationError } from '../domain/shared/errors';
import type { Config } from './config';
import { CommandRegistry } from './platform/commands/command-registry';
import { openEventStore } from './platform/event-store/open-event-store';
import { ProblemDetailsFilter, clientErrorProblem, sendProblem } from './platform/http/problem-details';
import { CORRELATION_ID_HEADER, CORRELATION_ID_RULE, acceptedCorrelationId } from './platform/http/request';
import { connectInfrastructure, type Infrastructure } from './platform/infrastructure';
import { RebuildJobs } from './platform/jobs/rebuild-jobs';
import type { Logger } from './platform/logger';
import { Metrics } from './platform/observability/metrics';
import {
  defaultHttpMaxConnections,
  enforceBodyDeadline,
  limitConnections,
  openFileLimit,
  refusalReporter,
} from './platform/connection-limits';
import { Platform } from './platform/platform';
import { AdminController, CommandsController, HealthController } from './platform/platform.http';
import { ApiDocsController } from './platform/api-docs.http';
import { EventExplorerController } from './platform/event-explorer.http';
import { Projections } from './platform/processing/projections';
import { allProjections } from './read-models';
import { contextModules } from './contexts';
import { ConsoleModule } from './console/console.http';
import { PlatformErrorCode } from './platform/platform-errors';

export interface AppOptions {
  /** Extra bounded-context modules (tests add fixtures here). */
  readonly modules?: readonly Type[];
  /** Extra projections (tests add fixtures here). */
  readonly projections?: readonly Projection[];
}

export interface RunningApp {
  readonly app: NestFastifyApplication;
  readonly platform: Platform;
  readonly url: string;
  /** Every route Fastify registered (method and URL as Fastify spells them, e.g. `/devices/:id`): the API document is checked against these. */
  readonly routes: readonly { method: string; url: string }[];
  /** Graceful shutdown: stop taking work, drain requests, finish batches and appends, close connections. */
  close(): Promise<void>;
}

@Global()
@Module({})
class PlatformModule {
  static forRoot(platform: Platform): DynamicModule {
    return {
      module: PlatformModule,
      imports: [CqrsModule.forRoot(), DiscoveryModule],
      controllers: [HealthController, AdminController, CommandsController, EventExplorerController, ApiDocsController],
      providers: [{ provide: Platform, useValue: platform }, CommandRegistry],
      exports: [Platform, CommandRegistry, CqrsModule],
    };
  }
}

/** Public routes that take credentials: small bodies only (AUTH_BODY_LIMIT_BYTES). */
const PUBLIC_CREDENTIAL_ROUTES = new Set(['/auth/signup', '/auth/login', '/auth/refresh', '/devices/:id/tokens']);

class PinoNestLogger implements LoggerService {
  constructor(private readonly pino: Logger) {}
  log(message: unknown) {
    this.pino.debug(String(message));
  }
  error(message: unknown, trace?: string) {
    this.pino.error({ trace }, String(message));
  }
  warn(message: unknown) {
    this.pino.warn(String(message));
  }
}

export async function createApp(config: Config, log: Logger, options: AppOptions = {}): Promise<RunningApp> {
  const infra: Infrastructure = await connectInfrastructure(config, log);
  const metrics = new Metrics();
  const store = await openEventStore(config, infra, {
    onAppended: (n) => {
      metrics.eventsAppended.inc(n);
      metrics.appends.inc();
    },
    log: (msg, err) => log.warn({ err }, msg),
  }).catch(async (e: unknown) => {
    await infra.close();
    throw e;
  });
  const engine = new Projections(infra.pool, store, [...allProjections, ...(options.projections ?? [])], {
    connectionString: infra.databaseUrl,
    batchSize: config.PROJECTION_BATCH_SIZE,
    maxAttempts: config.PROJECTION_MAX_ATTEMPTS,
    log: (level, msg, extra) => log[level](extra ?? {}, msg),
  });
  const stale = await engine.register();
  const jobs = new RebuildJobs(infra.redisUrl, config.QUEUE_PREFIX, engine, () =>
    log.warn('projection rebuild worker did not close in time: connections dropped (a running rebuild runs again)'),
  );
  const platform = new Platform({
    config,
    log,
    pool: infra.pool,
    redis: infra.redis,
    redisUrl: infra.redisUrl,
    databaseUrl: infra.databaseUrl,
    store,
    projections: engine,
    jobs,
    metrics,
  });

  @Module({ imports: [PlatformModule.forRoot(platform), ...contextModules, ConsoleModule, ...(options.modules ?? [])] })
  class AppModule {}

  const adapter = new FastifyAdapter({
    loggerInstance: log,
    bodyLimit: config.BODY_LIMIT_BYTES,
    // HTTP_REQUEST_TIMEOUT_MS: Node times the headers (408 through clientErrorProblem), checking this
    // often (its default, 30 s, would stretch a short timeout); enforceBodyDeadline times the body.
    http: {
      headersTimeout: Math.min(60_000, config.HTTP_REQUEST_TIMEOUT_MS),
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, config.HTTP_REQUEST_TIMEOUT_MS / 4)),
    },
    // The correlation id: taken from the caller when it sends an acceptable one, else made here
    // (a present but unacceptable one is refused by the onRequest hook below).
    requestIdHeader: false,
    genReqId: (req: IncomingMessage) => acceptedCorrelationId(req.headers['x-correlation-id']) ?? randomUUID(),
    // Whose X-Forwarded-For decides request.ip, which every per-address limit counts by.
    trustProxy: config.TRUST_PROXY,
    // Errors raised before routing answer as problem details too.
    frameworkErrors: (error: Error, request: FastifyRequest, reply: FastifyReply) => sendProblem(request, reply, error),
    clientErrorHandler: clientErrorProblem,
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule, adapter, {
    logger: new PinoNestLogger(log),
    bodyParser: false,
  });
  app.useGlobalFilters(new ProblemDetailsFilter());
  const fastify = app.getHttpAdapter().getInstance();
  limitConnections(
    fastify.server,
    {
      maxConnections:
        config.HTTP_MAX_CONNECTIONS ?? defaultHttpMaxConnections(config.MQTT_MAX_CONNECTIONS, openFileLimit()),
      maxPerAddress: config.HTTP_MAX_CONNECTIONS_PER_ADDRESS,
    },
    refusalReporter(log, metrics.httpConnectionsRefused, {
      max: 'http: connection refused (HTTP_MAX_CONNECTIONS reached)',
      per_address: 'http: connection refused (HTTP_MAX_CONNECTIONS_PER_ADDRESS reached for this address)',
    }),
  );
  // Anyone may post to these, and their fields are small: a tighter body limit than BODY_LIMIT_BYTES,
  // applied while the body streams in. (Routes register at app.init(), after this hook.)
  const routes: { method: string; url: string }[] = [];
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
    if (route.method === 'POST' && PUBLIC_CREDENTIAL_ROUTES.has(route.url))
      route.bodyLimit = config.AUTH_BODY_LIMIT_BYTES;
  });
  // Our JSON parser: a malformed body becomes a problem naming the body, with a stable code
  // (Nest would turn Fastify's SyntaxError into a bare 400). Prototype poisoning is refused.
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(
        null,
        body === ''
          ? undefined
          : secureJson.parse(body as string, undefined, { protoAction: 'error', constructorAction: 'error' }),
      );
    } catch (e) {
      done(
        validationError(PlatformErrorCode.MALFORMED_JSON, `the body is not valid JSON: ${(e as Error).message}`, [
          { field: '(body)', rule: 'must be valid JSON' },
        ]),
        undefined,
      );
    }
  });
  fastify.addHook('onRequest', (request, reply, done) => {
    enforceBodyDeadline(request.raw, reply.raw, config.HTTP_REQUEST_TIMEOUT_MS);
    const header = request.headers['x-correlation-id'];
    if (header !== undefined && acceptedCorrelationId(header) === undefined) {
      done(
        validationError(PlatformErrorCode.INVALID_HEADER, `${CORRELATION_ID_HEADER} ${CORRELATION_ID_RULE}`, [
          { field: CORRELATION_ID_HEADER, rule: CORRELATION_ID_RULE },
        ]),
      );
      return;
    }
    done();
  });
  fastify.addHook('onSend', async (request, reply) => {
    void reply.header('X-Correlation-Id', request.id);
    // While shutting down, answer in-flight requests and close their keep-alive connections.
    if (!platform.accepting) void reply.header('Connection', 'close');
  });
  fastify.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  await app.init();

  if (config.RUN_PROJECTIONS) {
    engine.start();
    jobs.startWorker();
    for (const name of stale) {
      const id = await jobs.enqueue(name, 'system:startup', 'startup');
      log.warn({ projection: name, jobId: id }, 'projection definition changed: rebuild enqueued');
    }
  }
  await app.listen({ port: config.PORT, host: config.HOST });
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  const url = `http://127.0.0.1:${port}`;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      platform.accepting = false;
      await app.close();
      await jobs.close();
      await engine.stop();
      await store.close();
      await infra.close();
    })();
    return closing;
  };
  return { app, platform, url, routes, close };
}
