-- es_append_skip_known: appends to several streams in one call (one
-- transaction), storing only the events whose ids are not stored yet, and
-- says per stream which ids were new. For ingestion where a resend must be
-- stored once (telemetry readings: event ids derive from the reading's
-- dedup key), with expected revision "any".
--
-- The position rules are es_append's: positions come from the transaction id
-- (see 0001), and a stream that already holds events of a newer transaction
-- is refused with serialization_failure (the adapter retries in a new
-- transaction). Every stream's "any" lock (the same advisory key es_append
-- takes) is taken first, in stream-id order, before anything is written:
-- concurrent callers cannot deadlock, and this transaction's id is assigned
-- only after every earlier writer to these streams has committed.
--
-- p_writes: [{"stream": text, "events": [{"id","type","data","metadata","v"}]}]
-- Returns one row per stream: how many were appended, their ids, the stream's
-- revision after the call and the last position (for an all-duplicate write:
-- the newest position among the already-stored ids).
CREATE FUNCTION es_append_skip_known(p_writes jsonb)
RETURNS TABLE (stream_id text, appended int, new_ids uuid[], revision bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  s           text;
  w           jsonb;
  ids         uuid[];
  k           int;
  current_rev bigint;
  last_pos    bigint;
  dup_pos     bigint;
  base        bigint;
  first_pos   bigint;
BEGIN
  FOR s IN SELECT DISTINCT x->>'stream' FROM jsonb_array_elements(p_writes) x ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended(s, 0));
  END LOOP;

  FOR w IN SELECT x FROM jsonb_array_elements(p_writes) x ORDER BY x->>'stream' LOOP
    s := w->>'stream';
    SELECT e.stream_revision, e.position INTO current_rev, last_pos
      FROM events e WHERE e.stream_id = s ORDER BY e.stream_revision DESC LIMIT 1;
    current_rev := coalesce(current_rev, -1);

    base := (pg_current_xact_id()::text::bigint) << 16;
    IF last_pos >= base + 65536 THEN
      RAISE EXCEPTION 'stream % holds events of a newer transaction; retry the append in a new transaction', s
        USING ERRCODE = 'serialization_failure';
    END IF;
    SELECT coalesce(max(e.position) + 1, base) INTO first_pos
      FROM events e WHERE e.position >= base AND e.position < base + 65536;
    IF first_pos + jsonb_array_length(w->'events') > base + 65536 THEN
      RAISE EXCEPTION 'more than 65536 events in one transaction' USING ERRCODE = 'program_limit_exceeded';
    END IF;

    -- One statement: the events whose ids are not stored yet, numbered in order, inserted.
    WITH x AS (
      SELECT x.e, x.i FROM jsonb_array_elements(w->'events') WITH ORDINALITY AS x(e, i)
       WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = (x.e->>'id')::uuid)
    ), fresh AS (
      SELECT x.e, row_number() OVER (ORDER BY x.i) AS k FROM x
    ), ins AS (
      INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata, schema_version)
      SELECT first_pos + f.k - 1, (f.e->>'id')::uuid, s, current_rev + f.k, f.e->>'type',
             f.e->'data', f.e->'metadata', coalesce((f.e->>'v')::int, 1)
        FROM fresh f
      RETURNING event_id
    )
    SELECT count(*)::int, coalesce(array_agg(event_id), ARRAY[]::uuid[]) INTO k, ids FROM ins;

    IF k = 0 THEN
      SELECT max(e.position) INTO dup_pos FROM events e
       WHERE e.event_id IN (SELECT (x->>'id')::uuid FROM jsonb_array_elements(w->'events') x);
      RETURN QUERY SELECT s, 0, ids, current_rev, dup_pos;
    ELSE
      RETURN QUERY SELECT s, k, ids, current_rev + k, first_pos + k - 1;
    END IF;
  END LOOP;
END $$;
