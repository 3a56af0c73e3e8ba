import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CommandContext } from '../commands/command-context';
import { ANONYMOUS } from '../commands/command-handling';
import { parseInput } from './validation';

const idempotencyKey = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');
const position = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * X-Correlation-Id from the caller is kept in every event and log line the request causes, so it
 * is bounded: 1-128 printable ASCII characters without spaces (room for a UUID, a W3C traceparent
 * or an AWS trace id). Anything else is refused with 400 naming the header rather than silently
 * replaced: the caller learns at once that its ids do not reach our events and logs.
 */
export const CORRELATION_ID_HEADER = 'X-Correlation-Id';
export const CORRELATION_ID_RULE = 'must be 1-128 printable ASCII characters without spaces';
const CORRELATION_ID = /^[\x21-\x7e]{1,128}$/;

/** The caller's correlation id when it is acceptable; undefined when absent or not. */
export function acceptedCorrelationId(header: unknown): string | undefined {
  return typeof header === 'string' && CORRELATION_ID.test(header) ? header : undefined;
}

/** The actor of a request: set by the auth guards; `anonymous` on public routes. */
export function actorOf(req: FastifyRequest): string {
  return (req as FastifyRequest & { actor?: string }).actor ?? ANONYMOUS;
}

export function commandContext(req: FastifyRequest): CommandContext {
  const raw = req.headers['idempotency-key'];
  const key =
    raw === undefined
      ? undefined
      : parseInput(z.object({ 'Idempotency-Key': idempotencyKey }), { 'Idempotency-Key': raw })['Idempotency-Key'];
  return {
    correlationId: req.id,
    causationId: `http:${req.id}`,
    actor: actorOf(req),
    now: new Date(),
    clientAddress: req.ip,
    ...(key ? { idempotencyKey: key } : {}),
  };
}

/** `minPosition` from the query string or the `X-Min-Position` header. */
export function minPositionOf(req: FastifyRequest): number | undefined {
  const q = (req.query as Record<string, unknown> | undefined)?.minPosition;
  const h = req.headers['x-min-position'];
  const raw = q ?? h;
  if (raw === undefined) return undefined;
  return parseInput(z.object({ minPosition: position }), { minPosition: raw }).minPosition;
}

/** `@Ctx()` in a controller: the CommandContext of this request. */
export const Ctx = createParamDecorator((_: unknown, c: ExecutionContext) =>
  commandContext(c.switchToHttp().getRequest<FastifyRequest>()),
);
/** `@MinPosition()` in a controller: the read-your-writes position, if any. */
export const MinPosition = createParamDecorator((_: unknown, c: ExecutionContext) =>
  minPositionOf(c.switchToHttp().getRequest<FastifyRequest>()),
);
