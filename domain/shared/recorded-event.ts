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

export interface RecordedEvent {
  readonly id: string;
  readonly streamId: string;
  readonly revision: number;
  /** Global position: strictly increasing in the order readers of `$all` see events. */
  readonly position: number;
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly metadata: EventMetadata;
  /** The schema version after upcasting (the stored version is in metadata.storedSchemaVersion when it differs). */
  readonly schemaVersion: number;
  readonly recordedAt: Date;
}
