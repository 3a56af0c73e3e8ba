import { RequestMethod, SetMetadata, type Type } from '@nestjs/common';
import { HTTP_CODE_METADATA, METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { z, type ZodType } from 'zod';
import {
  createDocument,
  type ZodOpenApiObject,
  type ZodOpenApiOperationObject,
  type ZodOpenApiPathsObject,
  type ZodOpenApiResponseObject,
  type oas31,
} from 'zod-openapi';
import { AuthErrorCode } from './auth-errors';
import { AUTH_KIND, IS_PUBLIC, ROLES, type AuthMode } from './access';
import { PlatformErrorCode } from '../platform-errors';

/**
 * The API document (OpenAPI 3.1) is built from what the routes themselves
 * declare, so it cannot drift from them:
 *
 * - method and path from Nest's own @Get/@Post/... metadata (what Fastify registers);
 * - who may call from @Public/@DeviceAuth/@Roles, the metadata the AccessGuard enforces;
 * - request params, query and body from the zod schemas the handler passes to
 *   parseInput (the same objects, listed in the route's @ApiDoc next to the handler);
 * - responses from zod schemas declared next to the controller, checked against
 *   real answers in test/e2e/openapi.e2e.spec.ts;
 * - problem responses (RFC 9457) with the stable codes the route can answer, from
 *   the error catalogues: the ones every route of its kind shares (added here) and
 *   the route's own (`errors`).
 *
 * Adding a route: put `@ApiDoc({...})` on its handler. A handler without one is
 * left out of the document, and the route-coverage test fails naming it.
 */

/** A success answer: its schema (JSON), or a full description for other media types. */
export type ResponseDoc =
  | ZodType
  | {
      readonly description?: string;
      /** Default application/json. */
      readonly contentType?: string;
      /** No schema: the response has no body (204) or an opaque one. */
      readonly schema?: ZodType;
      /** Response headers, each with `.meta({ description })`. */
      readonly headers?: z.ZodObject;
    };

/** The problem statuses a route declares itself, each with the codes it can answer with. */
export type ProblemStatus = 400 | 401 | 403 | 404 | 409 | 413 | 429 | 503;

export interface RouteDoc {
  readonly summary: string;
  readonly description?: string;
  /** Default: the first segment of the path. */
  readonly tags?: readonly string[];
  /** Path parameters: the schema the handler parses `:params` with. */
  readonly params?: z.ZodObject;
  /** Query string: the schema the handler parses the query with. */
  readonly query?: z.ZodObject;
  /** The JSON body: the schema the handler parses it with. */
  readonly body?: ZodType;
  /** Whether a body must be sent (default true when `body` is given). */
  readonly bodyRequired?: boolean;
  /** Request headers the route reads (besides Authorization, X-Correlation-Id and the ones below). */
  readonly headers?: z.ZodObject;
  /** Read-your-writes: the route takes `minPosition` / `X-Min-Position` and may answer 503 PLATFORM.READ_MODEL_BEHIND. */
  readonly readsModel?: boolean;
  /** A command: takes `Idempotency-Key`, may answer 409 on a conflict or a reused key. */
  readonly command?: boolean;
  /** Success answers by status. */
  readonly responses: Readonly<Partial<Record<number, ResponseDoc>>>;
  /** Problem answers this route gives besides the ones every route of its kind gives. */
  readonly errors?: Readonly<Partial<Record<ProblemStatus, readonly string[]>>>;
}

export const API_DOC = 'openapi:route';
/** Documents a route handler in GET /openapi.json (see RouteDoc). */
export const ApiDoc = (doc: RouteDoc) => SetMetadata(API_DOC, doc);

/** An RFC 9457 problem as ProblemDetailsFilter sends it (src/platform/http/problem-details.ts). */
export const problemSchema = z
  .looseObject({
    type: z.string().meta({ example: 'urn:problem:PLATFORM.INVALID_INPUT' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().meta({ description: 'Stable error code; clients match on it.' }),
    instance: z.string().optional(),
    correlationId: z.string().optional(),
    errors: z
      .array(z.object({ field: z.string(), rule: z.string() }))
      .optional()
      .meta({ description: 'Validation problems: each failing field and the rule it broke.' }),
  })
  .meta({
    id: 'Problem',
    description: 'RFC 9457 problem details (application/problem+json); further members depend on the code.',
  });

/** What every command answers (CommandResult), with the use case's own fields. */
export const commandResultSchema = z
  .looseObject({
    position: z.number().int().meta({ description: 'Global position written: pass as minPosition to read it.' }),
    revision: z.number().int(),
    duplicate: z.boolean().meta({ description: 'True when an Idempotency-Key replay stored nothing new.' }),
  })
  .meta({ id: 'CommandResult' });

const minPositionQuery = z.object({
  minPosition: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .meta({ description: 'Wait (bounded) until the read model has reached this position (read-your-writes).' }),
});
const minPositionHeader = z.object({
  'X-Min-Position': z.coerce.number().int().min(0).optional().meta({ description: 'Same as the minPosition query.' }),
});
const idempotencyHeader = z.object({
  'Idempotency-Key': z
    .string()
    .min(1)
    .max(200)
    .regex(/^[\x21-\x7e]+$/)
    .optional()
    .meta({ description: 'Sending the same request again with the same key stores nothing new.' }),
});
const correlationHeader = z.object({
  'X-Correlation-Id': z
    .string()
    .regex(/^[\x21-\x7e]{1,128}$/)
    .optional()
    .meta({ description: 'Kept in every event and log line the request causes; echoed in the response.' }),
});

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

const METHODS: Partial<Record<RequestMethod, 'get' | 'post' | 'put' | 'patch' | 'delete'>> = {
  [RequestMethod.GET]: 'get',
  [RequestMethod.POST]: 'post',
  [RequestMethod.PUT]: 'put',
  [RequestMethod.PATCH]: 'patch',
  [RequestMethod.DELETE]: 'delete',
};

export interface RouteAccessDoc {
  readonly isPublic: boolean;
  readonly mode: AuthMode;
  readonly roles: readonly string[];
}

/** A route as Nest registers it, with its @ApiDoc when it has one. */
export interface DiscoveredRoute {
  readonly method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI form: `/devices/{id}/tokens`. */
  readonly path: string;
  readonly defaultStatus: number;
  readonly access: RouteAccessDoc;
  readonly doc: RouteDoc | undefined;
  /** `Controller.handler`, to name an undocumented route. */
  readonly handler: string;
}

const joinPath = (...parts: string[]) =>
  '/' +
  parts
    .flatMap((p) => p.split('/'))
    .filter(Boolean)
    .map((s) => (s.startsWith(':') ? `{${s.slice(1)}}` : s))
    .join('/');

const pathsOf = (meta: unknown): string[] =>
  Array.isArray(meta) ? (meta as string[]) : [typeof meta === 'string' ? meta : ''];

function metaOf<T>(key: string, handler: object, cls: object): T | undefined {
  return (Reflect.getMetadata(key, handler) as T | undefined) ?? (Reflect.getMetadata(key, cls) as T | undefined);
}

/** Every route of these controllers, read from the metadata Nest routes by (as the AccessGuard reads access). */
export function discoverRoutes(controllers: readonly Type[]): DiscoveredRoute[] {
  const routes: DiscoveredRoute[] = [];
  for (const cls of controllers) {
    const prefixes = pathsOf(Reflect.getMetadata(PATH_METADATA, cls));
    const proto = cls.prototype as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const handler = proto[name];
      if (name === 'constructor' || typeof handler !== 'function') continue;
      const requestMethod = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      const routePath = Reflect.getMetadata(PATH_METADATA, handler) as unknown;
      if (requestMethod === undefined || routePath === undefined) continue;
      const method = METHODS[requestMethod];
      if (!method) throw new Error(`${cls.name}.${name}: method ${RequestMethod[requestMethod]} is not documented`);
      const access: RouteAccessDoc = {
        isPublic: metaOf<boolean>(IS_PUBLIC, handler, cls) === true,
        mode: metaOf<AuthMode>(AUTH_KIND, handler, cls) ?? 'user',
        roles: metaOf<string[]>(ROLES, handler, cls) ?? [],
      };
      const doc = Reflect.getMetadata(API_DOC, handler) as RouteDoc | undefined;
      const defaultStatus =
        (Reflect.getMetadata(HTTP_CODE_METADATA, handler) as number | undefined) ??
        (requestMethod === RequestMethod.POST ? 201 : 200);
      for (const prefix of prefixes)
        for (const p of pathsOf(routePath))
          routes.push({
            method,
            path: joinPath(prefix, p),
            defaultStatus,
            access,
            doc,
            handler: `${cls.name}.${name}`,
          });
    }
  }
  return routes;
}

/** The codes a route of this kind can answer with, by status, besides its own. */
function problemsOf(route: { access: RouteAccessDoc; doc: RouteDoc }): Map<number, Set<string>> {
  const { access, doc } = route;
  const byStatus = new Map<number, Set<string>>();
  const add = (status: number, ...codes: string[]) => {
    const set = byStatus.get(status) ?? new Set<string>();
    for (const c of codes) set.add(c);
    byStatus.set(status, set);
  };
  add(400, PlatformErrorCode.INVALID_HEADER, PlatformErrorCode.MALFORMED_URL);
  if (doc.params || doc.query || doc.body || doc.readsModel || doc.command) add(400, PlatformErrorCode.INVALID_INPUT);
  if (doc.body) {
    add(400, PlatformErrorCode.MALFORMED_JSON);
    add(413, PlatformErrorCode.BODY_TOO_LARGE);
  }
  if (!access.isPublic) {
    add(
      401,
      AuthErrorCode.MISSING_TOKEN,
      AuthErrorCode.INVALID_TOKEN,
      AuthErrorCode.TOKEN_EXPIRED,
      AuthErrorCode.TOKEN_REVOKED,
    );
    add(503, AuthErrorCode.REVOCATION_UNAVAILABLE);
  }
  if (access.roles.length) add(403, AuthErrorCode.FORBIDDEN);
  if (doc.readsModel) add(503, PlatformErrorCode.READ_MODEL_BEHIND);
  if (doc.command) add(409, PlatformErrorCode.CONCURRENCY_CONFLICT, PlatformErrorCode.IDEMPOTENCY_KEY_REUSED);
  for (const [status, codes] of Object.entries(doc.errors ?? {})) add(Number(status), ...(codes ?? []));
  add(500, PlatformErrorCode.INTERNAL);
  return byStatus;
}

function problemResponse(status: number, codes: readonly string[]): ZodOpenApiResponseObject {
  const sorted = [...codes].sort();
  return {
    description: `${TITLES[status] ?? 'Error'}: ${sorted.join(', ')}`,
    content: {
      'application/problem+json': {
        schema: z.intersection(
          problemSchema,
          z.looseObject({ status: z.literal(status), code: z.enum(sorted as [string, ...string[]]) }),
        ),
      },
    },
  };
}

function successResponse(status: number, r: ResponseDoc): ZodOpenApiResponseObject {
  if (r instanceof z.ZodType)
    return { description: TITLES[status] ?? 'OK', content: { 'application/json': { schema: r } } };
  return {
    description: r.description ?? 'OK',
    ...(r.schema ? { content: { [r.contentType ?? 'application/json']: { schema: r.schema } } } : {}),
    ...(r.headers ? { headers: r.headers } : {}),
  };
}

function securityOf(access: RouteAccessDoc): oas31.SecurityRequirementObject[] {
  if (access.isPublic) return [];
  const roles = [...access.roles];
  if (access.mode === 'device') return [{ deviceToken: roles }];
  if (access.mode === 'user-or-device') return [{ userToken: roles }, { deviceToken: roles }];
  return [{ userToken: roles }];
}

/** One operation: the route's schemas, its auth, its success and problem answers. */
export function operationOf(route: {
  access: RouteAccessDoc;
  doc: RouteDoc;
  path: string;
  operationId: string;
}): ZodOpenApiOperationObject {
  const { access, doc, path } = route;
  const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
  const declared = Object.keys(doc.params?.shape ?? {});
  if (templated.sort().join() !== [...declared].sort().join())
    throw new Error(`${route.operationId} (${path}): params document ${declared.join(', ') || 'nothing'}`);
  const query = doc.readsModel ? (doc.query ?? z.object({})).extend(minPositionQuery.shape) : doc.query;
  const headers = [
    correlationHeader.shape,
    doc.readsModel ? minPositionHeader.shape : {},
    doc.command ? idempotencyHeader.shape : {},
    doc.headers?.shape ?? {},
  ].reduce((a, b) => ({ ...a, ...b }), {});
  const responses: Record<string, ZodOpenApiResponseObject> = {};
  for (const [status, r] of Object.entries(doc.responses))
    if (r) responses[status] = successResponse(Number(status), r);
  for (const [status, codes] of problemsOf(route)) responses[String(status)] = problemResponse(status, [...codes]);
  const roles = access.roles.length ? ` Needs the role ${access.roles.join(' or ')}.` : '';
  const who = access.isPublic
    ? 'No authentication.'
    : access.mode === 'device'
      ? 'Device token.'
      : access.mode === 'user-or-device'
        ? 'User access token or device token.'
        : 'User access token.';
  return {
    operationId: route.operationId,
    summary: doc.summary,
    description: [doc.description, `${who}${roles}`].filter(Boolean).join('\n\n'),
    tags: [...(doc.tags ?? [path.split('/')[1] ?? 'api'])],
    security: securityOf(access),
    ...(access.roles.length ? { 'x-roles': [...access.roles] } : {}),
    requestParams: {
      ...(doc.params ? { path: doc.params } : {}),
      ...(query ? { query } : {}),
      header: z.object(headers),
    },
    ...(doc.body
      ? {
          requestBody: {
            required: doc.bodyRequired ?? true,
            content: { 'application/json': { schema: doc.body } },
          },
        }
      : {}),
    responses,
  };
}

export interface ExtraOperation {
  readonly method: DiscoveredRoute['method'];
  readonly path: string;
  readonly access: RouteAccessDoc;
  readonly doc: RouteDoc;
  readonly operationId: string;
}

export interface ApiDocument {
  readonly document: oas31.OpenAPIObject;
  /** Routes whose handler has no @ApiDoc (left out of the document). */
  readonly undocumented: readonly string[];
}

/** The OpenAPI 3.1 document of these routes (plus operations a route expands into, e.g. one per command). */
export function buildApiDocument(
  routes: readonly DiscoveredRoute[],
  extra: readonly ExtraOperation[],
  info: { title: string; version: string; description: string },
): ApiDocument {
  const paths: ZodOpenApiPathsObject = {};
  const undocumented: string[] = [];
  const operations: (ExtraOperation & { defaultStatus?: number })[] = [...extra];
  for (const r of routes) {
    if (r.doc) operations.push({ ...r, doc: r.doc, operationId: r.handler.replace('.', '_') });
    else undocumented.push(`${r.method.toUpperCase()} ${r.path} (${r.handler})`);
  }
  for (const op of operations) {
    const item = (paths[op.path] ??= {});
    if (item[op.method]) throw new Error(`${op.method.toUpperCase()} ${op.path} documented twice`);
    if (op.defaultStatus !== undefined && !(op.defaultStatus in op.doc.responses))
      throw new Error(
        `${op.operationId}: answers ${op.defaultStatus} but documents ${Object.keys(op.doc.responses).join()}`,
      );
    item[op.method] = operationOf(op);
  }
  const doc: ZodOpenApiObject = {
    openapi: '3.1.0',
    info,
    paths,
    components: {
      securitySchemes: {
        userToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A user access token from POST /auth/login (15 minutes; POST /auth/refresh for a new one).',
        },
        deviceToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A device token from POST /devices/{id}/tokens (id and secret of a registered device).',
        },
      },
    },
  };
  const document = createDocument(doc, {
    // Dates leave as JSON strings (Date.prototype.toJSON).
    override: ({ jsonSchema, zodSchema, io }) => {
      if (zodSchema._zod.def.type === 'date' && io === 'output') {
        jsonSchema.type = 'string';
        jsonSchema.format = 'date-time';
      }
    },
  });
  return { document, undocumented };
}
