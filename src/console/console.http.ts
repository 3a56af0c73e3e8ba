import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { Controller, Get, Module, Param, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { notFound } from '../../domain/shared/errors';
import { Public } from '../platform/http/access';
import { projectRoot } from '../platform/paths';
import { PlatformErrorCode } from '../platform/platform-errors';
import { ApiDoc } from '../platform/http/openapi';
import { z } from 'zod';

/**
 * The operator console: static files that scripts/setup.sh builds from
 * src/console/web into dist/console (scripts/build-console.mjs), served here on
 * the app's own port. The files are public (they hold no secret and no data);
 * every datum they show comes from the API with the signed-in user's token.
 *
 * The Content-Security-Policy allows only this origin: no inline script or
 * style, no CDN, no frame, no form posting elsewhere. Tokens stay in the page's
 * memory (see web/api.ts), never in storage or cookies, so there is no cookie
 * for a cross-site request to ride on.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The built files, read once: a handful of small files, so memory beats a disk read per request. */
let files: Map<string, Buffer> | undefined;
function consoleFiles(): Map<string, Buffer> {
  if (files) return files;
  const dir = join(projectRoot(), 'dist', 'console');
  const found = new Map<string, Buffer>();
  try {
    for (const name of readdirSync(dir)) if (TYPES[extname(name)]) found.set(name, readFileSync(join(dir, name)));
  } catch {
    /* not built: every route answers 404 CONSOLE_NOT_BUILT (checked again on the next request) */
  }
  if (found.has('index.html')) files = found;
  return found;
}

/** Documents `:file` only: a name is looked up among the built files, never joined to a path. */
const consoleFileParam = z.object({ file: z.string().meta({ example: 'console.js' }) });

@Public()
@Controller('console')
export class ConsoleController {
  @ApiDoc({
    summary: 'The operator console (a single-page app; its data comes from this API)',
    tags: ['console'],
    responses: { 200: { description: 'The page.', contentType: 'text/html', schema: z.string() } },
    errors: { 404: [PlatformErrorCode.CONSOLE_NOT_BUILT] },
  })
  @Get()
  index(@Res() reply: FastifyReply) {
    return send(reply, 'index.html');
  }

  @ApiDoc({
    summary: 'A file of the console (JavaScript, CSS, SVG)',
    tags: ['console'],
    params: consoleFileParam,
    responses: { 200: { description: 'The file.', contentType: 'application/octet-stream' } },
    errors: { 404: [PlatformErrorCode.ROUTE_NOT_FOUND, PlatformErrorCode.CONSOLE_NOT_BUILT] },
  })
  @Get(':file')
  file(@Param('file') file: string, @Res() reply: FastifyReply) {
    return send(reply, file);
  }
}

function send(reply: FastifyReply, name: string) {
  const body = consoleFiles().get(name);
  if (!body) {
    throw notFound(
      consoleFiles().has('index.html') ? PlatformErrorCode.ROUTE_NOT_FOUND : PlatformErrorCode.CONSOLE_NOT_BUILT,
      consoleFiles().has('index.html')
        ? `no console file ${name}`
        : 'the console is not built: scripts/setup.sh builds it (npm run up does)',
    );
  }
  return reply
    .header('content-type', TYPES[extname(name)]!)
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .send(body);
}

@Module({ controllers: [ConsoleController] })
export class ConsoleModule {}
