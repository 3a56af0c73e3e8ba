-- Telemetry ingestion at a lower cost per event (issue 12).
--
-- 1. es_append_skip_known_group: es_append_skip_known (0005/0024) with arrays
--    instead of one jsonb document: several streams in one call, storing only
--    the events whose ids are not stored yet (a resend is stored once), each
--    stream's fresh events at its next revisions, answered per stream (how many
--    were appended, their ids, the revision after the call and the last
--    position; for a stream whose events were all stored already: its revision
--    and the newest position among those ids). Expected revision "any": every
--    stream's advisory lock (es_append's key) is taken first, in stream order.
--    As in es_append_group (0027), heads are read and ids looked up before the
--    transaction takes its id, so the "newer transaction" refusal cannot hit a
--    call on its own (it is still checked). Ids: one index probe for the whole
--    call (event_id = ANY), not one per event.
--
--    p_streams: distinct; p_counts: events per stream; p_ids, p_types,
--    p_versions: one per event, stream after stream; p_data / p_metadata: a
--    JSON array each, one element per event (json, split without building a
--    jsonb of the whole payload; each element is converted to jsonb once).
--    With p_types NULL nothing is inserted: the call only decides (first_position:
--    where a stream's fresh events go, consecutive, in the order given, revisions
--    revision - appended + 1 ..), and the caller must insert exactly those rows
--    (COPY) before it commits, in the same transaction (the adapter does so for
--    large groups, as es_append_group_plan's caller does).
--
-- 2. The console's causation and correlation indexes (0028) cost every append
--    two expression-index entries. Telemetry is the bulk of the events, and
--    neither lookup needs most of them indexed:
--    * "What did this event cause?" looks up events whose causation id is that
--      event's id, always a 36-character UUID text: only events whose causation
--      id has 36 characters can match, and only they are indexed (telemetry's
--      causation ids are `mqtt:<uuid>` / `http:<request id>`).
--    * "Everything of this correlation": an event whose correlation id is its own
--      id (MQTT telemetry from now on: a message's events are correlated by the
--      message's event id) is found by the unique event_id index; every other
--      event is in the partial index. The explorer asks both (event-explorer.ts).

CREATE FUNCTION es_append_skip_known_group(
  p_streams  text[],
  p_counts   integer[],
  p_ids      uuid[],
  p_types    text[],
  p_versions integer[],
  p_data     text,
  p_metadata text)
RETURNS TABLE (stream_id text, appended int, new_ids uuid[], revision bigint, last_position bigint, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  n        int := coalesce(array_length(p_streams, 1), 0);
  off      bigint;
  app      int[];
  fresh    boolean[];
  known    bigint[];
  head_rev bigint[];
  head_pos bigint[];
  nfresh   bigint[];
  dup_pos  bigint[];
  rv       bigint[] := '{}';
  lp       bigint[] := '{}';
  fp       bigint[] := '{}';
  a        int;
  base     bigint;
  next_pos bigint;
BEGIN
  IF n = 0 THEN
    RETURN;
  END IF;
  IF n > 1 AND (SELECT count(DISTINCT s) FROM unnest(p_streams) s) <> n THEN
    RAISE EXCEPTION 'es_append_skip_known_group: one write per stream' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF array_length(p_counts, 1) IS DISTINCT FROM n
     OR (SELECT sum(c) FROM unnest(p_counts) c) IS DISTINCT FROM coalesce(array_length(p_ids, 1), 0)::bigint
     OR EXISTS (SELECT 1 FROM unnest(p_counts) c WHERE c IS NULL OR c < 1) THEN
    RAISE EXCEPTION 'es_append_skip_known_group: counts do not match the ids' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  -- Before any stream lock (see 0024), and before this transaction takes its id.
  off := es_append_offset();
  PERFORM pg_advisory_xact_lock(hashtextextended(x.s, 0))
     FROM (SELECT DISTINCT u.s FROM unnest(p_streams) AS u(s) ORDER BY u.s) x;

  SELECT array_agg(h.stream_revision ORDER BY u.i), array_agg(h.position ORDER BY u.i)
    INTO head_rev, head_pos
    FROM unnest(p_streams) WITH ORDINALITY AS u(s, i)
    LEFT JOIN LATERAL (SELECT e.stream_revision, e.position FROM events e
                        WHERE e.stream_id = u.s ORDER BY e.stream_revision DESC LIMIT 1) h ON true;

  -- Each event's write, and whether its id is stored already (one probe for all).
  SELECT array_agg(w.a ORDER BY w.a, j) INTO app
    FROM generate_series(1, n) AS w(a), generate_series(1, p_counts[w.a]) AS j;
  SELECT array_agg(k.position IS NULL ORDER BY u.i), array_agg(k.position ORDER BY u.i)
    INTO fresh, known
    FROM unnest(p_ids) WITH ORDINALITY AS u(id, i)
    LEFT JOIN (SELECT e.event_id, e.position FROM events e WHERE e.event_id = ANY (p_ids)) k ON k.event_id = u.id;
  SELECT array_agg(coalesce(c.nfresh, 0) ORDER BY w.a), array_agg(c.dup ORDER BY w.a)
    INTO nfresh, dup_pos
    FROM generate_series(1, n) AS w(a)
    LEFT JOIN (SELECT x.a, count(*) FILTER (WHERE x.f) AS nfresh, max(x.p) AS dup
                 FROM unnest(app, fresh, known) AS x(a, f, p) GROUP BY x.a) c ON c.a = w.a;

  FOR a IN 1 .. n LOOP
    rv[a] := coalesce(head_rev[a], -1);
    lp[a] := dup_pos[a];
    fp[a] := NULL;
  END LOOP;
  IF EXISTS (SELECT 1 FROM unnest(nfresh) c WHERE c > 0) THEN
    base := es_position_base(off);
    SELECT coalesce(max(e.position) + 1, base) INTO next_pos
      FROM events e WHERE e.position >= base AND e.position < base + 65536;
    FOR a IN 1 .. n LOOP
      CONTINUE WHEN nfresh[a] = 0;
      -- See 0004; cannot happen to a call on its own (heads were read before the id was taken).
      IF head_pos[a] >= base + 65536 THEN
        RAISE EXCEPTION 'stream % holds events of a newer transaction; retry the append in a new transaction', p_streams[a]
          USING ERRCODE = 'serialization_failure';
      END IF;
      fp[a] := next_pos;
      next_pos := next_pos + nfresh[a];
      rv[a] := rv[a] + nfresh[a];
      lp[a] := next_pos - 1;
    END LOOP;
    IF next_pos > base + 65536 THEN
      RAISE EXCEPTION 'more than 65536 events in one transaction' USING ERRCODE = 'program_limit_exceeded';
    END IF;

    IF p_types IS NOT NULL THEN
      INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata, schema_version)
      SELECT fp[r.a] + r.j - 1, r.id, p_streams[r.a], rv[r.a] - nfresh[r.a] + r.j, r.type, r.d::jsonb, r.m::jsonb, r.v
        FROM (SELECT x.*, row_number() OVER (PARTITION BY x.a ORDER BY x.i) AS j
                FROM ROWS FROM (unnest(p_ids), unnest(p_types), unnest(p_versions),
                                json_array_elements(p_data::json), json_array_elements(p_metadata::json),
                                unnest(app), unnest(fresh)) WITH ORDINALITY AS x(id, type, v, d, m, a, f, i)
               WHERE x.f) r;
    END IF;
  END IF;

  RETURN QUERY
    SELECT p_streams[w.a], nfresh[w.a]::int, coalesce(ids.ids, ARRAY[]::uuid[]), rv[w.a], lp[w.a], fp[w.a]
      FROM generate_series(1, n) AS w(a)
      LEFT JOIN (SELECT x.a, array_agg(x.id ORDER BY x.i) AS ids
                   FROM unnest(p_ids, app, fresh) WITH ORDINALITY AS x(id, a, f, i)
                  WHERE x.f GROUP BY x.a) ids ON ids.a = w.a
     ORDER BY w.a;
END $$;

DROP INDEX IF EXISTS events_causation_idx;
DROP INDEX IF EXISTS events_correlation_idx;
CREATE INDEX events_caused_by_event_idx ON events ((metadata->>'causationId'))
  WHERE length(metadata->>'causationId') = 36;
CREATE INDEX events_correlation_idx ON events ((metadata->>'correlationId'))
  WHERE metadata->>'correlationId' IS DISTINCT FROM event_id::text;
