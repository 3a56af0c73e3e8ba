-- es_append, insert first: the event-id lookup (idempotency) runs only when
-- it can matter: when the expected revision does not match (a re-sent append
-- usually arrives after its own events moved the stream on) or when the
-- adapter calls again after a unique violation (p_check_ids = true). In the
-- common case the unique index on event_id does that work once, in the insert.
DROP FUNCTION es_append(text, text, bigint, jsonb);

CREATE FUNCTION es_append(p_stream text, p_expected_kind text, p_expected bigint, p_events jsonb, p_check_ids boolean)
RETURNS TABLE (status text, revision bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  n           int := jsonb_array_length(p_events);
  found_count int;
  found_rev   bigint;
  found_pos   bigint;
  found_other int;
  current_rev bigint;
  last_pos    bigint;
  base        bigint;
  first_pos   bigint;
BEGIN
  -- "any" writers to one stream queue up instead of failing on each other's revisions.
  IF p_expected_kind = 'any' THEN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
  END IF;
  SELECT e.stream_revision, e.position INTO current_rev, last_pos
    FROM events e WHERE e.stream_id = p_stream ORDER BY e.stream_revision DESC LIMIT 1;
  current_rev := coalesce(current_rev, -1);
  IF p_check_ids
     OR (p_expected_kind = 'no_stream' AND current_rev <> -1)
     OR (p_expected_kind = 'stream_exists' AND current_rev = -1)
     OR (p_expected_kind = 'exact' AND current_rev <> p_expected) THEN
    SELECT count(*), max(e.stream_revision), max(e.position), count(*) FILTER (WHERE e.stream_id <> p_stream)
      INTO found_count, found_rev, found_pos, found_other
      FROM events e
     WHERE e.event_id IN (SELECT (x->>'id')::uuid FROM jsonb_array_elements(p_events) x);
    IF found_count = n AND found_other = 0 THEN
      RETURN QUERY SELECT 'duplicate'::text, found_rev, found_pos;
      RETURN;
    ELSIF found_count > 0 THEN
      RETURN QUERY SELECT 'id_conflict'::text, found_rev, found_pos;
      RETURN;
    END IF;
  END IF;
  IF (p_expected_kind = 'no_stream' AND current_rev <> -1)
     OR (p_expected_kind = 'stream_exists' AND current_rev = -1)
     OR (p_expected_kind = 'exact' AND current_rev <> p_expected) THEN
    RETURN QUERY SELECT 'conflict'::text, current_rev, NULL::bigint;
    RETURN;
  END IF;

  base := (pg_current_xact_id()::text::bigint) << 16;
  -- Only possible when the caller's transaction took its id before a newer
  -- transaction appended to this stream and committed (an append inside a
  -- longer transaction): our positions would sort before that newer append's,
  -- so readers of the global order would see this stream's revisions out of
  -- order. Refuse; the caller retries in a new transaction. (An autocommit
  -- append takes its id only after reading the stream, so it never gets here.)
  IF last_pos >= base + 65536 THEN
    RAISE EXCEPTION 'stream % holds events of a newer transaction; retry the append in a new transaction', p_stream
      USING ERRCODE = 'serialization_failure';
  END IF;
  SELECT coalesce(max(e.position) + 1, base) INTO first_pos
    FROM events e WHERE e.position >= base AND e.position < base + 65536;
  IF first_pos + n > base + 65536 THEN
    RAISE EXCEPTION 'more than 65536 events in one transaction' USING ERRCODE = 'program_limit_exceeded';
  END IF;

  INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata, schema_version)
  SELECT first_pos + x.i - 1, (x.e->>'id')::uuid, p_stream, current_rev + x.i, x.e->>'type',
         x.e->'data', x.e->'metadata', coalesce((x.e->>'v')::int, 1)
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(e, i);

  RETURN QUERY SELECT 'ok'::text, current_rev + n, first_pos + n - 1;
END $$;
