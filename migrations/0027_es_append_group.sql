-- Group commit, and a read horizon that only waits for transactions that may append.
--
-- 1. es_append_group: many appends (to distinct streams) in one call, one
--    transaction, one commit. Each append is checked against its own expected
--    revision and answered on its own ('ok' | 'duplicate' | 'conflict' |
--    'id_conflict', as es_append): a refused append writes nothing and does not
--    fail the others. The adapter (postgres-group-commit.ts) gathers the appends
--    that arrive while a group is being written, as KurrentDB does.
--
--    Positions follow 0001/0024: the transaction's block, the appends' events in
--    the order given. Every stream head is read (and every "any" stream locked,
--    in stream order, as es_append_skip_known does) BEFORE the transaction takes
--    its id, so a stream appended by a newer transaction is read after that one
--    committed and the "older transaction may not append after a newer one"
--    refusal cannot hit a group (it is still checked). A race with a writer
--    elsewhere surfaces as a unique violation for the whole statement; the
--    adapter then calls again with p_check_ids, exactly as for es_append.
--
--    Arrays instead of one JSON document: ids, types and versions are plain
--    arrays, data and metadata one JSON array each, split without building an
--    intermediate jsonb of the whole payload (each element is converted once).
--    p_counts: events per append; p_app / p_k: each event's append (1-based) and
--    place within it (1-based).
--
-- 2. The read horizon (es_horizon) no longer waits for every transaction in
--    flight in the cluster, only for those that may still append to this store:
--      * a transaction of another database can never write this events table;
--      * a transaction that declared es_declare_no_append() (a projection's batch,
--        a rebuild's batch of 5,000 events) can no longer append: es_append_offset
--        refuses it (ES002), and a transaction that has appended cannot declare.
--    Why readers stay exact: the horizon is computed from the reading statement's
--    own snapshot (its in-flight list, pg_snapshot_xip) minus transactions shown,
--    at a moment after that snapshot was taken, to be unable to append (pg_locks,
--    read once, and a backend's database, which never changes). Every other
--    transaction below the horizon had ended when the snapshot was taken, so its
--    events are in the snapshot; an excluded one has no events and never will.
--    Anything not known to be excluded (a declaration made after the lock table
--    was read, a session of this database that did not declare) holds readers
--    back as before: the scheme can only be conservative, never skip.

CREATE FUNCTION es_append_group(
  p_streams   text[],
  p_kinds     text[],
  p_expected  bigint[],
  p_counts    integer[],
  p_ids       uuid[],
  p_types     text[],
  p_versions  integer[],
  p_data      text,
  p_metadata  text,
  p_app       integer[],
  p_k         integer[],
  p_check_ids boolean)
RETURNS TABLE (status text, revision bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  n           int := coalesce(array_length(p_streams, 1), 0);
  off         bigint;
  head_rev    bigint[];
  head_pos    bigint[];
  st          text[] := '{}';
  rv          bigint[] := '{}';
  ps          bigint[] := '{}';
  slot        bigint[] := '{}';
  first_ev    int := 1;
  a           int;
  cur         bigint;
  mismatch    boolean;
  found_count int;
  found_rev   bigint;
  found_pos   bigint;
  found_other int;
  any_ok      boolean := false;
  base        bigint;
  next_pos    bigint;
BEGIN
  IF n = 0 THEN
    RETURN;
  END IF;
  IF n > 1 AND (SELECT count(DISTINCT s) FROM unnest(p_streams) s) <> n THEN
    RAISE EXCEPTION 'es_append_group: one append per stream' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  -- Before any stream lock (see 0024), and before this transaction takes its id.
  off := es_append_offset();
  -- "any" writers to one stream queue up, as in es_append; in stream order, so groups cannot deadlock.
  IF 'any' = ANY (p_kinds) THEN
    PERFORM pg_advisory_xact_lock(hashtextextended(x.s, 0))
       FROM (SELECT DISTINCT u.s FROM unnest(p_streams, p_kinds) AS u(s, k) WHERE u.k = 'any' ORDER BY u.s) x;
  END IF;

  SELECT array_agg(h.stream_revision ORDER BY u.i), array_agg(h.position ORDER BY u.i)
    INTO head_rev, head_pos
    FROM unnest(p_streams) WITH ORDINALITY AS u(s, i)
    LEFT JOIN LATERAL (SELECT e.stream_revision, e.position FROM events e
                        WHERE e.stream_id = u.s ORDER BY e.stream_revision DESC LIMIT 1) h ON true;

  FOR a IN 1 .. n LOOP
    cur := coalesce(head_rev[a], -1);
    mismatch := (p_kinds[a] = 'no_stream' AND cur <> -1)
             OR (p_kinds[a] = 'stream_exists' AND cur = -1)
             OR (p_kinds[a] = 'exact' AND cur <> p_expected[a]);
    IF p_check_ids OR mismatch THEN
      SELECT count(*), max(e.stream_revision), max(e.position), count(*) FILTER (WHERE e.stream_id <> p_streams[a])
        INTO found_count, found_rev, found_pos, found_other
        FROM events e
       WHERE e.event_id = ANY (p_ids[first_ev : first_ev + p_counts[a] - 1]);
    ELSE
      found_count := 0;
    END IF;
    first_ev := first_ev + p_counts[a];
    IF found_count = p_counts[a] AND found_other = 0 THEN
      st[a] := 'duplicate'; rv[a] := found_rev; ps[a] := found_pos;
    ELSIF found_count > 0 THEN
      st[a] := 'id_conflict'; rv[a] := found_rev; ps[a] := found_pos;
    ELSIF mismatch THEN
      st[a] := 'conflict'; rv[a] := cur; ps[a] := NULL;
    ELSE
      st[a] := 'ok'; rv[a] := cur; ps[a] := NULL;
      any_ok := true;
    END IF;
    slot[a] := NULL;
  END LOOP;

  IF any_ok THEN
    base := es_position_base(off);
    SELECT coalesce(max(e.position) + 1, base) INTO next_pos
      FROM events e WHERE e.position >= base AND e.position < base + 65536;
    FOR a IN 1 .. n LOOP
      CONTINUE WHEN st[a] <> 'ok';
      -- See 0004; cannot happen to a group called on its own (heads were read before the id was taken).
      IF head_pos[a] >= base + 65536 THEN
        RAISE EXCEPTION 'stream % holds events of a newer transaction; retry the append in a new transaction', p_streams[a]
          USING ERRCODE = 'serialization_failure';
      END IF;
      slot[a] := next_pos;
      next_pos := next_pos + p_counts[a];
      rv[a] := rv[a] + p_counts[a];
      ps[a] := next_pos - 1;
    END LOOP;
    IF next_pos > base + 65536 THEN
      RAISE EXCEPTION 'more than 65536 events in one transaction' USING ERRCODE = 'program_limit_exceeded';
    END IF;

    INSERT INTO events (position, event_id, stream_id, stream_revision, type, data, metadata, schema_version)
    SELECT slot[r.a] + r.k - 1, r.id, p_streams[r.a], coalesce(head_rev[r.a], -1) + r.k, r.type,
           r.d::jsonb, r.m::jsonb, r.v
      FROM ROWS FROM (unnest(p_ids), unnest(p_types), unnest(p_versions),
                      json_array_elements(p_data::json), json_array_elements(p_metadata::json),
                      unnest(p_app), unnest(p_k)) AS r(id, type, v, d, m, a, k)
     WHERE slot[r.a] IS NOT NULL;
  END IF;

  RETURN QUERY SELECT x.s, x.r, x.p FROM unnest(st, rv, ps) AS x(s, r, p);
END $$;

-- The decisions of es_append_group without the insert, for a caller that then writes the
-- rows itself in the same transaction with COPY (large groups: COPY inserts rows in
-- batches, several times cheaper per row than INSERT ... SELECT). first_position: where
-- an 'ok' append's events go (consecutive), its revisions run from revision - count + 1.
-- The caller must insert exactly those rows before it commits.
CREATE FUNCTION es_append_group_plan(
  p_streams   text[],
  p_kinds     text[],
  p_expected  bigint[],
  p_counts    integer[],
  p_ids       uuid[],
  p_check_ids boolean)
RETURNS TABLE (status text, revision bigint, last_position bigint, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
  n           int := coalesce(array_length(p_streams, 1), 0);
  off         bigint;
  head_rev    bigint[];
  head_pos    bigint[];
  st          text[] := '{}';
  rv          bigint[] := '{}';
  ps          bigint[] := '{}';
  slot        bigint[] := '{}';
  first_ev    int := 1;
  a           int;
  cur         bigint;
  mismatch    boolean;
  found_count int;
  found_rev   bigint;
  found_pos   bigint;
  found_other int;
  any_ok      boolean := false;
  base        bigint;
  next_pos    bigint;
BEGIN
  IF n = 0 THEN
    RETURN;
  END IF;
  IF n > 1 AND (SELECT count(DISTINCT s) FROM unnest(p_streams) s) <> n THEN
    RAISE EXCEPTION 'es_append_group: one append per stream' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  -- Before any stream lock (see 0024), and before this transaction takes its id.
  off := es_append_offset();
  -- "any" writers to one stream queue up, as in es_append; in stream order, so groups cannot deadlock.
  IF 'any' = ANY (p_kinds) THEN
    PERFORM pg_advisory_xact_lock(hashtextextended(x.s, 0))
       FROM (SELECT DISTINCT u.s FROM unnest(p_streams, p_kinds) AS u(s, k) WHERE u.k = 'any' ORDER BY u.s) x;
  END IF;

  SELECT array_agg(h.stream_revision ORDER BY u.i), array_agg(h.position ORDER BY u.i)
    INTO head_rev, head_pos
    FROM unnest(p_streams) WITH ORDINALITY AS u(s, i)
    LEFT JOIN LATERAL (SELECT e.stream_revision, e.position FROM events e
                        WHERE e.stream_id = u.s ORDER BY e.stream_revision DESC LIMIT 1) h ON true;

  FOR a IN 1 .. n LOOP
    cur := coalesce(head_rev[a], -1);
    mismatch := (p_kinds[a] = 'no_stream' AND cur <> -1)
             OR (p_kinds[a] = 'stream_exists' AND cur = -1)
             OR (p_kinds[a] = 'exact' AND cur <> p_expected[a]);
    IF p_check_ids OR mismatch THEN
      SELECT count(*), max(e.stream_revision), max(e.position), count(*) FILTER (WHERE e.stream_id <> p_streams[a])
        INTO found_count, found_rev, found_pos, found_other
        FROM events e
       WHERE e.event_id = ANY (p_ids[first_ev : first_ev + p_counts[a] - 1]);
    ELSE
      found_count := 0;
    END IF;
    first_ev := first_ev + p_counts[a];
    IF found_count = p_counts[a] AND found_other = 0 THEN
      st[a] := 'duplicate'; rv[a] := found_rev; ps[a] := found_pos;
    ELSIF found_count > 0 THEN
      st[a] := 'id_conflict'; rv[a] := found_rev; ps[a] := found_pos;
    ELSIF mismatch THEN
      st[a] := 'conflict'; rv[a] := cur; ps[a] := NULL;
    ELSE
      st[a] := 'ok'; rv[a] := cur; ps[a] := NULL;
      any_ok := true;
    END IF;
    slot[a] := NULL;
  END LOOP;

  IF any_ok THEN
    base := es_position_base(off);
    SELECT coalesce(max(e.position) + 1, base) INTO next_pos
      FROM events e WHERE e.position >= base AND e.position < base + 65536;
    FOR a IN 1 .. n LOOP
      CONTINUE WHEN st[a] <> 'ok';
      -- See 0004; cannot happen to a group called on its own (heads were read before the id was taken).
      IF head_pos[a] >= base + 65536 THEN
        RAISE EXCEPTION 'stream % holds events of a newer transaction; retry the append in a new transaction', p_streams[a]
          USING ERRCODE = 'serialization_failure';
      END IF;
      slot[a] := next_pos;
      next_pos := next_pos + p_counts[a];
      rv[a] := rv[a] + p_counts[a];
      ps[a] := next_pos - 1;
    END LOOP;
    IF next_pos > base + 65536 THEN
      RAISE EXCEPTION 'more than 65536 events in one transaction' USING ERRCODE = 'program_limit_exceeded';
    END IF;

  END IF;

  RETURN QUERY SELECT x.s, x.r, x.p, x.f FROM unnest(st, rv, ps, slot) AS x(s, r, p, f);
END $$;

-- Declares that the calling transaction will not append (a projection's or a
-- rebuild's batch): readers of the global order no longer wait for it. Refused
-- after an append in the same transaction; later appends in it are refused (ES002).
CREATE FUNCTION es_declare_no_append() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('es.appending', true) = 'on' THEN
    RAISE EXCEPTION 'this transaction has appended events; it cannot declare that it will not'
      USING ERRCODE = 'ES002';
  END IF;
  PERFORM pg_advisory_xact_lock_shared(724025);
  PERFORM set_config('es.no_append', 'on', true);
END $$;

-- es_append_offset of 0024, plus the declaration's two checks.
CREATE OR REPLACE FUNCTION es_append_offset() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  off     bigint;
  cluster text;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    -- A transaction snapshot taken before a raise would show the old offset after it.
    RAISE EXCEPTION 'appends must run in READ COMMITTED transactions' USING ERRCODE = 'invalid_transaction_state';
  END IF;
  IF current_setting('es.no_append', true) = 'on' THEN
    RAISE EXCEPTION 'this transaction declared that it will not append (es_declare_no_append)'
      USING ERRCODE = 'ES002';
  END IF;
  PERFORM pg_advisory_xact_lock_shared(724024);
  IF current_setting('es.appending', true) IS DISTINCT FROM 'on' THEN
    PERFORM set_config('es.appending', 'on', true);
  END IF;
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

-- Everything below this is final (see the top of this file and 0001/0024). STABLE: it
-- runs in the calling statement's snapshot, the one that statement reads the events with.
CREATE OR REPLACE FUNCTION es_horizon() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
  snap   pg_snapshot := pg_current_snapshot();
  lowest bigint;
  off    bigint;
BEGIN
  SELECT o.xid_offset INTO off FROM es_position_offset o;
  IF pg_snapshot_xmin(snap) = pg_snapshot_xmax(snap) THEN
    RETURN (pg_snapshot_xmax(snap)::text::bigint + off) << 16;
  END IF;
  -- The common case: nothing this snapshot sees lies at or above the oldest transaction in
  -- flight, so that horizon reads everything there is; no need to look at the lock table.
  IF NOT EXISTS (SELECT 1 FROM (SELECT e.position FROM events e
                                 WHERE e.position >= (pg_snapshot_xmin(snap)::text::bigint + off) << 16
                                 ORDER BY e.position LIMIT 1) x) THEN
    RETURN (pg_snapshot_xmin(snap)::text::bigint + off) << 16;
  END IF;
  WITH l AS MATERIALIZED (
         SELECT locktype, database, classid, objid, objsubid, virtualtransaction, transactionid, mode
           FROM pg_locks WHERE locktype IN ('advisory', 'transactionid') AND granted),
       quiet AS (
         -- A transaction holds its own id in ExclusiveLock; a ShareLock on an id is another
         -- transaction waiting for that one (granted once it ended), which says nothing about it.
         SELECT t.transactionid::text::bigint AS x32 FROM l t
          WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock'
            AND t.virtualtransaction IN (SELECT d.virtualtransaction FROM l d
                                          WHERE d.locktype = 'advisory' AND d.classid = 0 AND d.objid = 724025
                                            AND d.objsubid = 1
                                            AND d.database = (SELECT oid FROM pg_database WHERE datname = current_database())))
  SELECT min(x::text::bigint) INTO lowest
    FROM pg_snapshot_xip(snap) AS x
   WHERE (x::text::bigint % 4294967296) NOT IN (SELECT q.x32 FROM quiet q)
     AND (x::text::bigint % 4294967296) NOT IN (
           SELECT a.backend_xid::text::bigint FROM pg_stat_activity a
            WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL
              AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()));
  RETURN (coalesce(lowest, pg_snapshot_xmax(snap)::text::bigint) + off) << 16;
END $$;
