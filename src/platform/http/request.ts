import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CommandContext } from '../commands/command-context';
import { parseInput } from './validation';

const idempotencyKey = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');
const position = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** The actor of a request: set by the auth guards; `anonymous` on public routes. */
export function actorOf(req: FastifyRequest): string {
  return (req as FastifyRequest & { actor?: string }).actor ?? 'anonymous';
}

export function commandContext(req: FastifyRequest): CommandContext {
  const raw = req.headers['idempotency-key'];
  const key = raw === undefined ? undefined : parseInput(z.object({ 'Idempotency-Key': idempotencyKey }), { 'Idempotency-Key': raw })['Idempotency-Key'];
  return {
    correlationId: req.id,
    causationId: `http:${req.id}`,
    actor: actorOf(req),
    now: new Date(),
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
export const Ctx = createParamDecorator((_: unknown, c: ExecutionContext) => commandContext(c.switchToHttp().getRequest<FastifyRequest>()));
/** `@MinPosition()` in a controller: the read-your-writes position, if any. */
export const MinPosition = createParamDecorator((_: unknown, c: ExecutionContext) => minPositionOf(c.switchToHttp().getRequest<FastifyRequest>()));
