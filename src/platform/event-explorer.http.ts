import { Controller, Get, Param, Query } from '@nestjs/common';
import { z } from 'zod';
import { DomainError, notFound } from '../../domain/shared/errors';
import { Roles } from './http/access';
import { parseInput } from './http/validation';
import { Platform } from './platform';
import { PlatformErrorCode } from './platform-errors';
import { ApiDoc } from './http/openapi';
import { eventPageSchema, eventWithRelationsSchema, streamPageSchema } from './platform.responses';
import { findEvent, pageAll, relatedEvents } from './event-store/event-explorer';

/**
 * The event explorer's reads (admins only): browse `$all` and one stream, open
 * an event, follow its causation and correlation both ways. Limits first: page
 * sizes are bounded, positions and ids are checked before any query runs.
 */

const position = z.coerce.number().int('must be an integer').min(0, 'must be 0 or more').max(Number.MAX_SAFE_INTEGER);
export const allEventsQuery = z
  .object({
    limit: z.coerce.number().int().min(1, 'must be 1 to 200').max(200, 'must be 1 to 200').default(50),
    before: position.optional(),
    after: position.optional(),
    type: z.string().max(200, 'must be at most 200 characters').optional(),
  })
  .strict()
  .refine((q) => q.before === undefined || q.after === undefined, {
    message: 'give before or after, not both',
    path: ['before'],
  });
export const streamParam = z.object({
  streamId: z
    .string()
    .min(1, 'must not be empty')
    // Fastify answers 404 to a longer path parameter (maxParamLength 100) before this runs.
    .max(100, 'must be at most 100 characters')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
});
export const streamEventsQuery = z
  .object({
    from: z.coerce.number().int().min(0, 'must be 0 or more').max(Number.MAX_SAFE_INTEGER).default(0),
    limit: z.coerce.number().int().min(1, 'must be 1 to 200').max(200, 'must be 1 to 200').default(50),
  })
  .strict();
export const eventIdParam = z.object({
  id: z
    .string()
    .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be an event id (a UUID)'),
});
/** Each list of related events is cut at this many. */
const RELATED_LIMIT = 200;

@Controller('admin')
@Roles('admin')
export class EventExplorerController {
  constructor(private readonly platform: Platform) {}

  /** `$all`: the newest page, or the page before/after a position; events in position order. */
  @ApiDoc({
    summary: 'Browse $all: the newest page, or the page before/after a position',
    query: allEventsQuery,
    responses: { 200: eventPageSchema },
    errors: { 404: [PlatformErrorCode.NOT_SUPPORTED_BY_STORE] },
  })
  @Get('events')
  async all(@Query() query: unknown) {
    const q = parseInput(allEventsQuery, query ?? {});
    const store = this.platform.store;
    const head = await store.headPosition();
    if (store.kind !== 'postgresql') {
      // The port reads forward only: from `after` (default the start).
      if (q.before !== undefined || q.type !== undefined) throw this.unsupported('before and type');
      return { head, events: await store.readAll(q.after ?? 0, q.limit) };
    }
    return { head, events: await pageAll(this.platform.pool, q) };
  }

  @ApiDoc({
    summary: "One stream's events from a revision",
    params: streamParam,
    query: streamEventsQuery,
    responses: { 200: streamPageSchema },
  })
  @Get('streams/:streamId/events')
  async stream(@Param('streamId') streamId: string, @Query() query: unknown) {
    const p = parseInput(streamParam, { streamId });
    const q = parseInput(streamEventsQuery, query ?? {});
    return { streamId: p.streamId, events: await this.platform.store.readStream(p.streamId, q.from, q.limit) };
  }

  /** One event with what caused it, what it caused, and the other events of its correlation. */
  @ApiDoc({
    summary: 'One event with what caused it, what it caused and the rest of its correlation',
    params: eventIdParam,
    responses: { 200: eventWithRelationsSchema },
    errors: { 404: [PlatformErrorCode.EVENT_NOT_FOUND, PlatformErrorCode.NOT_SUPPORTED_BY_STORE] },
  })
  @Get('events/:id')
  async event(@Param('id') id: string) {
    const p = parseInput(eventIdParam, { id });
    if (this.platform.store.kind !== 'postgresql') throw this.unsupported('event lookups by id');
    const event = await findEvent(this.platform.pool, p.id);
    if (!event) throw notFound(PlatformErrorCode.EVENT_NOT_FOUND, `no event ${p.id}`);
    return { event, ...(await relatedEvents(this.platform.pool, event, RELATED_LIMIT)) };
  }

  private unsupported(what: string) {
    return new DomainError(
      'not_found',
      PlatformErrorCode.NOT_SUPPORTED_BY_STORE,
      `${what}: not available with the ${this.platform.store.kind} event store`,
    );
  }
}
