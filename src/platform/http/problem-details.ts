import { ArgumentsHost, Catch, HttpException, type ExceptionFilter } from '@nestjs/common';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, type ErrorKind } from '../../../domain/shared/errors';
import { PlatformErrorCode } from '../platform-errors';

/**
 * Every error leaves as RFC 9457 problem details (application/problem+json)
 * with a stable `code`; validation errors list the failing fields.
 */
const STATUS: Record<ErrorKind, number> = {
  validation: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  rate_limited: 429,
  unavailable: 503,
};

const TITLE: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  correlationId?: string;
  errors?: readonly { field: string; rule: string }[];
  [extra: string]: unknown;
}

export function toProblem(error: unknown, bodyLimit?: number): Problem {
  if (error instanceof DomainError) {
    const status = STATUS[error.kind];
    return {
      type: `urn:problem:${error.code}`,
      title: TITLE[status] ?? 'Error',
      status,
      detail: error.message,
      code: error.code,
      ...(error.fields.length ? { errors: error.fields } : {}),
      ...error.extra,
    };
  }
  const fst = error as { statusCode?: number; code?: string; message?: string };
  if (fst.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || (error instanceof HttpException && error.getStatus() === 413)) {
    // Neither Fastify's error nor Nest's wrapping of it carries the limit; the route knows it.
    const rule = bodyLimit ? `must be at most ${bodyLimit} bytes` : 'is too large';
    return partProblem(413, PlatformErrorCode.BODY_TOO_LARGE, 'body', rule);
  }
  if (fst.code === 'FST_ERR_BAD_URL') {
    // Fastify's own answer echoes the raw path into its JSON; ours names the rule only.
    return partProblem(400, PlatformErrorCode.MALFORMED_URL, 'url', 'must be valid percent-encoded UTF-8');
  }
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const code = status === 404 ? PlatformErrorCode.ROUTE_NOT_FOUND : `HTTP.${status}`;
    return { type: `urn:problem:${code}`, title: TITLE[status] ?? 'Error', status, detail: error.message, code };
  }
  // Errors Fastify raises before a handler runs: malformed JSON, body too large, wrong content type.
  if (typeof fst.statusCode === 'number' && fst.statusCode >= 400 && fst.statusCode < 500) {
    const code =
      (error as Error).name === 'SyntaxError' ||
      fst.code === 'FST_ERR_CTP_INVALID_JSON' ||
      fst.code === 'FST_ERR_CTP_EMPTY_JSON_BODY'
        ? PlatformErrorCode.MALFORMED_JSON
        : `HTTP.${fst.code ?? fst.statusCode}`;
    const fields =
      code === PlatformErrorCode.MALFORMED_JSON ? [{ field: '(body)', rule: 'must be valid JSON' }] : undefined;
    return {
      type: `urn:problem:${code}`,
      title: TITLE[fst.statusCode] ?? 'Error',
      status: fst.statusCode,
      detail: fst.message ?? 'bad request',
      code,
      ...(fields ? { errors: fields } : {}),
    };
  }
  return {
    type: `urn:problem:${PlatformErrorCode.INTERNAL}`,
    title: TITLE[500]!,
    status: 500,
    detail: 'internal error; see the server log for this correlation id',
    code: PlatformErrorCode.INTERNAL,
  };
}

/** A problem with one part of the request as a whole (the body, the URL, the headers) breaking `rule`. */
function partProblem(status: number, code: string, part: string, rule: string): Problem {
  return {
    type: `urn:problem:${code}`,
    title: TITLE[status] ?? 'Error',
    status,
    detail: `the ${part === 'url' ? 'URL' : part} ${rule}`,
    code,
    errors: [{ field: `(${part})`, rule }],
  };
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: unknown): void {
  const problem = toProblem(error, request.routeOptions?.bodyLimit);
  problem.instance = request.url;
  problem.correlationId = request.id;
  if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.info({ code: problem.code, status: problem.status }, 'request rejected');
  if (problem.status === 401) void reply.header('WWW-Authenticate', 'Bearer');
  if (problem.status === 429 || problem.status === 503) {
    const retry = (error as { extra?: { retryAfterSeconds?: number } }).extra?.retryAfterSeconds;
    void reply.header('Retry-After', String(retry ?? 1));
  }
  void reply.status(problem.status).header('Content-Type', 'application/problem+json').send(problem);
}

/**
 * Fastify's `clientErrorHandler`: requests Node's HTTP parser refuses before any route (headers
 * beyond the limit, bad framing, a request that took too long) also get problem details, then
 * the connection is closed, as Node itself does.
 */
export function clientErrorProblem(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, part, rule] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers', "must fit the server's header size limit (request line and headers together)"]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request', "must arrive within the server's request timeout"]
        : [400, 'request', 'must be a well-formed HTTP/1.1 request'];
  const body = JSON.stringify(partProblem(status, PlatformErrorCode.MALFORMED_REQUEST, part, rule));
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${TITLE[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/problem+json\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(err);
}

@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    sendProblem(http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), exception);
  }
}
