import type { Event } from './event';

/**
 * An event as the store hands it to readers. A pure type, here rather than in
 * the event-store port, so that read models (projections/) and the processor
 * runtime can name it without importing src/platform: dependencies point one
 * way, domain <- projections <- src/platform. The port re-exports it.
 */

export interface EventMetadata {
  /** Ties together everything one request, MQTT message or job caused. */
  readonly correlationId: string;
  /** The id of the command or event that caused this one. */
  readonly causationId: string;
  /** Who acted: `user:<id>`, `device:<id>`, `system:<component>`. */
  readonly actor: string;
  readonly [key: string]: unknown;
}

/** Any domain event: the bound of the unions below. Domain data are type literals (plain JSON), which fit it. */
export type AnyEvent = Event;

/** What the store adds around every event, whatever its type. */
export interface RecordedEnvelope {
  readonly id: string;
  readonly streamId: string;
  readonly revision: number;
  /** Global position: strictly increasing in the order readers of `$all` see events. */
  readonly position: number;
  readonly metadata: EventMetadata;
  /** The schema version after upcasting (the stored version is in metadata.storedSchemaVersion when it differs). */
  readonly schemaVersion: number;
  readonly recordedAt: Date;
}

/**
 * A recorded event of the union `E`: the domain event itself (so it is an `E`,
 * and folds through a decider with no conversion) with the envelope the store
 * adds. The intersection distributes over the union, so checking
 * `e.type === 'sales.OrderPlaced'` (or looking a handler up by it) gives
 * `e.data` that event's shape. The default is what the store knows without a
 * union: any type string, data as a plain record.
 *
 * Nothing checks the stored JSON against E at run time: the event-store
 * adapter is the one place that asserts it (the domain wrote it through a
 * decider of that union, and upcasters bring old versions to today's shape).
 */
export type RecordedEvent<E extends AnyEvent = Event> = E & RecordedEnvelope;
