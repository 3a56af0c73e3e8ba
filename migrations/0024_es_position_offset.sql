-- Positions that survive a logical restore (pg_dump / pg_restore into another cluster).
--
-- Positions derive from transaction ids (0001), and transaction ids belong to
-- the cluster, not to the data: restored into a fresh cluster, whose ids start
-- low, a new event would get a position far below every projection checkpoint
-- and never reach a read model. So positions are (xid + xid_offset) << 16 +
-- index, where xid_offset is kept here (a dump carries it along), and the read
-- horizon is (xmin + xid_offset) << 16. With a constant offset this is the
-- scheme of 0001 shifted, so its gap safety is unchanged.
--
-- es_align_positions() raises the offset when the store does not match its
-- cluster (restored from another one), so that every transaction that may still
-- append gets a position above every stored one. The application runs it at
-- start; an append that finds the store misaligned is refused (ES001) and the
-- adapter runs it, then retries. It takes advisory lock 724024
-- exclusively; every append holds it shared until its transaction ends. Why
-- that keeps readers exact while the offset changes:
--   * No append straddles the change: appends that read the old offset ended
--     before the raise got its lock, and later ones read the new offset (they
--     must run in READ COMMITTED, so their statements after the lock see it).
--   * A reader computes its horizon and reads below it in one snapshot. If that
--     snapshot predates the raise, every new-offset append is in flight or not
--     yet begun (its xid >= the reader's xmin), so its positions are >= the
--     reader's horizon, which uses the smaller old offset: none is skipped. If
--     it sees the raise, every old-offset append has ended, and new-offset ones
--     are the ordinary case of 0001.
--   * A checkpoint is the position of an event read (or skipped by type), so it
--     is <= the newest stored position, and every new position is above that:
--     the raise makes (oldest xid in flight + offset) << 16 exceed it.
-- Positions stay below 2^53 (JS numbers) until xid + offset reaches 2^37: the
-- offset adds the ids the previous clusters used, as if the store had stayed.

CREATE TABLE es_position_offset (
  singleton         boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  xid_offset        bigint      NOT NULL DEFAULT 0 CHECK (xid_offset >= 0),
  -- The cluster (pg_control_system()) whose transaction ids the offset was set for;
  -- another one means the data was restored there. NULL where that is not readable.
  system_identifier text,
  aligned_at        timestamptz NOT NULL DEFAULT now()
);

-- The cluster's identity, or NULL where the role may not read it (then only the
-- transaction-id check of es_positions_misaligned() applies).
CREATE FUNCTION es_cluster_id() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT system_identifier::text FROM pg_control_system());
EXCEPTION WHEN insufficient_privilege OR undefined_function THEN
  RETURN NULL;
END $$;

-- A store that exists already was written by this cluster (restores before this
-- migration are still caught by the transaction-id check).
INSERT INTO es_position_offset (system_identifier) VALUES (es_cluster_id());

-- True when the store's positions do not match this cluster's transaction ids:
-- restored from another cluster, or a new transaction would sort below stored
-- events (never true for a store that stayed in its cluster). One statement, so
-- xmax and the newest position come from one snapshot.
CREATE FUNCTION es_positions_misaligned() RETURNS boolean LANGUAGE sql AS $$
  SELECT coalesce((SELECT o.system_identifier IS DISTINCT FROM es_cluster_id()
                       OR ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint + o.xid_offset) << 16)
                          <= coalesce((SELECT max(e.position) FROM events e), -1)
                     FROM es_position_offset o), true)
$$;

-- Everything below this is final: see 0001. STABLE: it runs in the calling
-- statement's snapshot, the one that statement reads the events with.
CREATE FUNCTION es_horizon() RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + o.xid_offset) << 16 FROM es_position_offset o
$$;

-- Called first by every append: holds the offset steady until the transaction
-- ends and returns it. A misaligned store is refused with SQLSTATE ES001 (the
-- adapter then aligns it and retries). The full check (es_positions_misaligned:
-- a file read and an index probe) runs once per session, which covers a restore
-- before the app starts and a switch of DATABASE_URL (new sessions); on every
-- append the offset row's cluster is compared with the session's, which covers
-- a dump of another cluster restored under open sessions.
CREATE FUNCTION es_append_offset() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  off     bigint;
  cluster text;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    -- A transaction snapshot taken before a raise would show the old offset after it.
    RAISE EXCEPTION 'appends must run in READ COMMITTED transactions' USING ERRCODE = 'invalid_transaction_state';
  END IF;
  PERFORM pg_advisory_xact_lock_shared(724024);
  IF coalesce(current_setting('es.cluster', true), '') = '' THEN
    IF es_positions_misaligned() THEN
      RAISE EXCEPTION 'event store positions do not match this cluster''s transaction ids (restored from another cluster?)'
        USING ERRCODE = 'ES001', HINT = 'SELECT * FROM es_align_positions() repairs it; the application does so at start';
    END IF;
    PERFORM set_config('es.cluster', 'id:' || coalesce(es_cluster_id(), '?'), false);
  END IF;
  SELECT o.xid_offset, 'id:' || coalesce(o.system_identifier, '?') INTO off, cluster FROM es_position_offset o;
  IF cluster IS DISTINCT FROM current_setting('es.cluster') THEN
    RAISE EXCEPTION 'event store positions were set in another cluster (restored from there?)'
      USING ERRCODE = 'ES001', HINT = 'SELECT * FROM es_align_positions() repairs it; the application does so at start';
  END IF;
  RETURN off;
END $$;

-- The first position of the calling transaction's block.
CREATE FUNCTION es_position_base(p_offset bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  block bigint := pg_current_xact_id()::text::bigint + p_offset;
BEGIN
  IF block >= 137438953472 THEN -- 2^37: positions would pass 2^53
    RAISE EXCEPTION 'event store positions exhausted (transaction id % + offset %)', block - p_offset, p_offset
      USING ERRCODE = 'program_limit_exceeded';
  END IF;
  RETURN block << 16;
END $$;

-- Repairs a misaligned store: waits for every append in flight to end, then
-- raises the offset so that the oldest transaction still in flight (and so
-- every later one) gets positions above every stored one. Does nothing to a
-- store that matches its cluster. Returns the offsets before and after.
CREATE FUNCTION es_align_positions()
RETURNS TABLE (previous_offset bigint, xid_offset bigint, raised boolean)
LANGUAGE plpgsql AS $$
DECLARE
  cluster  text := es_cluster_id();
  off      bigint;
  oldest   bigint;
  head     bigint;
  next_off bigint;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    -- Under a transaction snapshot it could miss appends that ended while it waited for the lock.
    RAISE EXCEPTION 'es_align_positions() must run in a READ COMMITTED transaction' USING ERRCODE = 'invalid_transaction_state';
  END IF;
  -- The common case, a store in its own cluster, without waiting for appends in flight
  -- (only a raise makes a misaligned store aligned, and a raise holds the lock).
  IF NOT es_positions_misaligned() THEN
    RETURN QUERY SELECT o.xid_offset, o.xid_offset, false FROM es_position_offset o;
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(724024);
  INSERT INTO es_position_offset (system_identifier) VALUES (NULL) ON CONFLICT DO NOTHING;
  -- Statements from here on see every append that ended before the lock was granted.
  IF NOT es_positions_misaligned() THEN
    RETURN QUERY SELECT o.xid_offset, o.xid_offset, false FROM es_position_offset o;
    RETURN;
  END IF;
  SELECT o.xid_offset INTO off FROM es_position_offset o FOR UPDATE;
  SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, max(e.position) INTO oldest, head FROM events e;
  next_off := off;
  IF head IS NOT NULL AND ((oldest + off) << 16) <= head THEN
    next_off := (head >> 16) + 1 - oldest;
  END IF;
  UPDATE es_position_offset o SET xid_offset = next_off, system_identifier = cluster, aligned_at = now();
  RETURN QUERY SELECT off, next_off, next_off <> off;
END $$;

-- es_append of 0004, with positions from es_position_base and the offset held steady.
CREATE OR REPLACE FUNCTION es_append(p_stream text, p_expected_kind text, p_expected bigint, p_events jsonb, p_check_ids boolean)
RETURNS TABLE (status text, revision bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  n           int := jsonb_array_length(p_events);
  off         bigint;
  found_count int;
  found_rev   bigint;
  found_pos   bigint;
  found_other int;
  current_rev bigint;
  last_pos    bigint;
  base        bigint;
  first_pos   bigint;
BEGIN
  -- Before any stream lock: appends take the offset lock first, then stream locks, so no cycle.
  off := es_append_offset();
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

  base := es_position_base(off);
  -- See 0004: an older transaction may not append after a newer one's events.
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

-- es_append_skip_known of 0005, likewise.
CREATE OR REPLACE FUNCTION es_append_skip_known(p_writes jsonb)
RETURNS TABLE (stream_id text, appended int, new_ids uuid[], revision bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  off         bigint;
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
  off := es_append_offset();
  FOR s IN SELECT DISTINCT x->>'stream' FROM jsonb_array_elements(p_writes) x ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended(s, 0));
  END LOOP;

  FOR w IN SELECT x FROM jsonb_array_elements(p_writes) x ORDER BY x->>'stream' LOOP
    s := w->>'stream';
    SELECT e.stream_revision, e.position INTO current_rev, last_pos
      FROM events e WHERE e.stream_id = s ORDER BY e.stream_revision DESC LIMIT 1;
    current_rev := coalesce(current_rev, -1);

    base := es_position_base(off);
    IF last_pos >= base + 65536 THEN
      RAISE EXCEPTION 'stream % holds events of a newer transaction; retry the append in a new transaction', s
        USING ERRCODE = 'serialization_failure';
    END IF;
    SELECT coalesce(max(e.position) + 1, base) INTO first_pos
      FROM events e WHERE e.position >= base AND e.position < base + 65536;
    IF first_pos + jsonb_array_length(w->'events') > base + 65536 THEN
      RAISE EXCEPTION 'more than 65536 events in one transaction' USING ERRCODE = 'program_limit_exceeded';
    END IF;

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
