import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Controller, Get, Param, Res } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import { notFound } from '../../domain/shared/errors';
import { CommandRegistry } from './commands/command-registry';
import { Public } from './http/access';
import {
  ApiDoc,
  buildApiDocument,
  commandResultSchema,
  discoverRoutes,
  type ApiDocument,
  type ExtraOperation,
} from './http/openapi';
import { projectRoot } from './paths';
import { Platform } from './platform';
import { PlatformErrorCode } from './platform-errors';

/**
 * GET /openapi.json (the API document, built once from the routes' own
 * declarations: src/platform/http/openapi.ts) and GET /docs (Swagger UI over
 * it). Public: they describe the API, not data. The UI's files come from the
 * swagger-ui-dist package and are served from memory, by a fixed list of
 * names: nothing from a CDN, no path from the request ever reaches the file system.
 */

const ASSETS = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
} as const;
type AssetName = keyof typeof ASSETS | 'docs.js';

const ASSET_NAMES: [AssetName, ...AssetName[]] = ['docs.js', ...(Object.keys(ASSETS) as (keyof typeof ASSETS)[])];
const assetParam = z.object({
  file: z.enum(ASSET_NAMES, {
    message: 'must be a file of the docs page',
  }),
});

/** Our own initializer, as a file: the page runs no inline script. validatorUrl null: no call to a remote validator. */
const INIT_JS = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs.js"></script>
</body>
</html>
`;

/** The page's own files only; Swagger UI sets style attributes, so inline styles are allowed, scripts are not. */
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'";

const html = z.string().meta({ description: 'An HTML page.' });

@Public()
@Controller()
export class ApiDocsController {
  private built: ApiDocument | undefined;
  private readonly assets = new Map<AssetName, Buffer>();

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly registry: CommandRegistry,
    private readonly platform: Platform,
  ) {
    const dir = dirname(require.resolve('swagger-ui-dist/package.json'));
    for (const name of Object.keys(ASSETS) as (keyof typeof ASSETS)[])
      this.assets.set(name, readFileSync(join(dir, name)));
    this.assets.set('docs.js', Buffer.from(INIT_JS));
  }

  /** The document, built on first use (every module's controllers and commands are registered by then). */
  apiDocument(): ApiDocument {
    if (this.built) return this.built;
    const controllers = [...new Set(this.discovery.getControllers().map((w) => w.metatype))].filter(
      (t): t is NonNullable<typeof t> => typeof t === 'function',
    );
    const pkg = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as {
      version: string;
      description: string;
    };
    this.built = buildApiDocument(discoverRoutes(controllers as never), this.commandOperations(), {
      title: 'Connected operations platform',
      version: pkg.version,
      description: `${pkg.description}.\n\nErrors are RFC 9457 problem details (application/problem+json) with a stable \`code\`.`,
    });
    if (this.built.undocumented.length)
      this.platform.log.warn(
        { routes: this.built.undocumented },
        'routes without @ApiDoc are missing from GET /openapi.json',
      );
    return this.built;
  }

  /** POST /commands/{name} expanded: one operation per registered command, with that command's schema and access. */
  private commandOperations(): ExtraOperation[] {
    return this.registry.definitions().map((def) => ({
      method: 'post',
      path: `/commands/${def.name}`,
      operationId: `command_${def.name}`,
      access: {
        isPublic: def.access === 'public',
        mode: 'user',
        roles: def.access === 'admin' ? ['admin'] : [],
      },
      doc: {
        summary: `Send the command ${def.name}`,
        description: `The generic route for ${def.name}, validated against its schema.`,
        tags: ['commands'],
        body: def.schema,
        command: true,
        responses: {
          201: commandResultSchema,
          200: { description: 'An Idempotency-Key replay: nothing new stored.', schema: commandResultSchema },
        },
      },
    }));
  }

  @ApiDoc({
    summary: 'This API as an OpenAPI 3.1 document',
    tags: ['docs'],
    responses: {
      200: {
        description: 'The OpenAPI document.',
        schema: z.looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.looseObject({}) }),
      },
    },
  })
  @Get('openapi.json')
  openapi() {
    return this.apiDocument().document;
  }

  @ApiDoc({
    summary: 'Interactive API reference (Swagger UI, served locally)',
    tags: ['docs'],
    responses: { 200: { description: 'The page.', contentType: 'text/html', schema: html } },
  })
  @Get('docs')
  async page(@Res() reply: FastifyReply): Promise<void> {
    await reply.header('content-security-policy', CSP).type('text/html; charset=utf-8').send(PAGE);
  }

  @ApiDoc({
    summary: 'A file of the docs page',
    tags: ['docs'],
    params: assetParam,
    responses: {
      200: { description: 'The file (CSS, JavaScript or PNG).', contentType: 'application/octet-stream' },
    },
    errors: { 404: [PlatformErrorCode.ROUTE_NOT_FOUND] },
  })
  @Get('docs/:file')
  async asset(@Param('file') file: string, @Res() reply: FastifyReply): Promise<void> {
    const parsed = assetParam.safeParse({ file });
    const body = parsed.success ? this.assets.get(parsed.data.file) : undefined;
    if (!parsed.success || !body) throw notFound(PlatformErrorCode.ROUTE_NOT_FOUND, `no file ${file} in /docs`);
    const type = parsed.data.file === 'docs.js' ? 'text/javascript; charset=utf-8' : ASSETS[parsed.data.file];
    await reply.header('cache-control', 'public, max-age=3600').type(type).send(body);
  }
}
