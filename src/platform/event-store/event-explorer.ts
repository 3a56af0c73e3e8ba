import type { Pool } from 'pg';
import type { RecordedEvent } from './event-store';
import { EVENT_COLUMNS as COLUMNS, storedEvent as toEvent, type EventRow as Row } from './postgres-event-store';

/**
 * Reads for the operator console's event explorer, straight from the
 * PostgreSQL `events` table: newest-first paging of `$all`, one event by id,
 * and the causation and correlation links between events (indexed by
 * migrations/0029). Not for processing: these reads may show an event that
 * committed while an older transaction is still in flight, which an operator
 * wants to see and a checkpointed reader must not (it reads below the horizon).
 * Data is shown as stored (schemaVersion is the stored one, not upcast).
 */

/** An event as stored (not upcast): the store's own row mapping. */
export type ExplorerEvent = RecordedEvent;

/** A page of `$all`: newest first below `before`, or oldest first above `after`; returned in position order. */
export async function pageAll(
  pool: Pool,
  o: { before?: number | undefined; after?: number | undefined; limit: number; type?: string | undefined },
): Promise<ExplorerEvent[]> {
  const ascending = o.after !== undefined;
  const res = await pool.query<Row>(
    `SELECT ${COLUMNS} FROM events
      WHERE ($1::bigint IS NULL OR position < $1) AND ($2::bigint IS NULL OR position > $2) AND ($3::text IS NULL OR type = $3)
      ORDER BY position ${ascending ? 'ASC' : 'DESC'} LIMIT $4`,
    [o.before ?? null, o.after ?? null, o.type ?? null, o.limit],
  );
  const events = res.rows.map(toEvent);
  return ascending ? events : events.reverse();
}

export async function findEvent(pool: Pool, id: string): Promise<ExplorerEvent | undefined> {
  const res = await pool.query<Row>(`SELECT ${COLUMNS} FROM events WHERE event_id = $1`, [id]);
  const row = res.rows[0];
  return row ? toEvent(row) : undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A UUID as PostgreSQL writes one (lowercase): the only text `event_id::text` can equal. */
const isCanonicalUuid = (s: string) => UUID.test(s) && s === s.toLowerCase();

/** What caused the event (when its causation id is an event's id), what it caused, and its correlation's events. */
export async function relatedEvents(
  pool: Pool,
  event: ExplorerEvent,
  limit: number,
): Promise<{ causedBy: ExplorerEvent | null; caused: ExplorerEvent[]; correlated: ExplorerEvent[] }> {
  const causation = event.metadata.causationId;
  const isUuid = UUID.test(causation);
  const [causedBy, caused, correlated] = await Promise.all([
    isUuid ? findEvent(pool, causation) : Promise.resolve(undefined),
    // Only a 36-character causation id can be an event's id: the partial index holds exactly those.
    pool.query<Row>(
      `SELECT ${COLUMNS} FROM events
        WHERE metadata->>'causationId' = $1 AND length(metadata->>'causationId') = 36 ORDER BY position LIMIT $2`,
      [event.id, limit],
    ),
    // An event whose correlation id is its own id (an MQTT message's) is found by its id; every other
    // event with this correlation id is in the partial index.
    pool.query<Row>(
      `SELECT ${COLUMNS} FROM (
         SELECT ${COLUMNS} FROM events
          WHERE metadata->>'correlationId' = $1 AND metadata->>'correlationId' IS DISTINCT FROM event_id::text
         UNION ALL
         SELECT ${COLUMNS} FROM events
          WHERE $2::uuid IS NOT NULL AND event_id = $2::uuid AND metadata->>'correlationId' = $1) x
        ORDER BY position LIMIT $3`,
      [
        event.metadata.correlationId,
        isCanonicalUuid(event.metadata.correlationId) ? event.metadata.correlationId : null,
        limit,
      ],
    ),
  ]);
  return {
    causedBy: causedBy ?? null,
    caused: caused.rows.map(toEvent),
    correlated: correlated.rows.map(toEvent),
  };
}
