-- The read horizon (0027) without reading the whole lock table.
--
-- es_horizon asked pg_locks which in-flight transactions had declared that they
-- will not append. pg_locks copies every backend's locks while holding every
-- lock-manager partition, so each read of the global order cost ~0.56 ms of
-- PostgreSQL time under load (bench:orders with pg_stat_statements: 9,525
-- calls, 5.3 s, the largest single cost after the appends themselves) and
-- stalled every backend taking a lock meanwhile.
--
-- Now a declaring transaction also holds an exclusive advisory lock keyed by
-- its own transaction id (724026, the id's low 32 bits), and es_horizon asks
-- about one transaction at a time with pg_try_advisory_lock_shared: refused
-- exactly while that transaction holds its declaration. Readers take the lock
-- shared, so they never refuse one another, and release it at once (a session
-- lock); a declaring transaction only tries its lock, so a reader's question
-- never holds it back (it then goes unrecognised, and readers wait for it as
-- for any transaction). Exactness is as in 0027: a transaction counts as unable to
-- append only when shown so at a moment after the reading statement's
-- snapshot was taken (the declaration is held from before its first write to
-- its end, and a declared transaction cannot append); one of another database
-- is still recognised by pg_stat_activity (a backend's database never
-- changes), now asked only about the transaction that would hold readers back.
-- The in-flight transactions are visited oldest first and the walk stops at
-- the first one above which this snapshot sees no event (reading up to it
-- holds nothing back), so a read usually asks nothing at all.
--
-- The shared lock on 724025 stays: it is what 0027's es_horizon looked for.

-- The advisory-lock key of a transaction id: its low 32 bits as an int4 (in-flight ids are unique in them).
CREATE FUNCTION es_xid_key(x bigint) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ((x % 4294967296) - 2147483648)::integer
$$;

CREATE OR REPLACE FUNCTION es_declare_no_append() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('es.appending', true) = 'on' THEN
    RAISE EXCEPTION 'this transaction has appended events; it cannot declare that it will not'
      USING ERRCODE = 'ES002';
  END IF;
  PERFORM pg_advisory_xact_lock_shared(724025);
  -- Takes the transaction's id now if it has none yet: the lock names it before the id is of use to anyone.
  -- Tried, never waited for: a reader asking about this id at this instant (or a session left holding
  -- the question by a statement cancelled mid-question) must not hold a declaration back. Without the
  -- lock, readers simply wait for this transaction as for any other (conservative, never a skip).
  PERFORM pg_try_advisory_xact_lock(724026, es_xid_key(pg_current_xact_id()::text::bigint));
  PERFORM set_config('es.no_append', 'on', true);
END $$;

-- Everything below this is final (see 0001, 0024, 0027). STABLE: it runs in the calling
-- statement's snapshot, the one that statement reads the events with.
CREATE OR REPLACE FUNCTION es_horizon() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
  snap pg_snapshot := pg_current_snapshot();
  off  bigint;
  x    bigint;
  mydb oid;
BEGIN
  SELECT o.xid_offset INTO off FROM es_position_offset o;
  IF pg_snapshot_xmin(snap) = pg_snapshot_xmax(snap) THEN
    RETURN (pg_snapshot_xmax(snap)::text::bigint + off) << 16;
  END IF;
  FOR x IN SELECT v::text::bigint FROM pg_snapshot_xip(snap) AS v ORDER BY 1 LOOP
    -- Nothing this snapshot sees lies at or above x: stopping here reads everything there is.
    IF NOT EXISTS (SELECT 1 FROM (SELECT e.position FROM events e
                                   WHERE e.position >= (x + off) << 16
                                   ORDER BY e.position LIMIT 1) y) THEN
      RETURN (x + off) << 16;
    END IF;
    IF pg_try_advisory_lock_shared(724026, es_xid_key(x)) THEN
      PERFORM pg_advisory_unlock_shared(724026, es_xid_key(x));
      -- Not declared: it may still append, unless it is a transaction of another database.
      IF mydb IS NULL THEN
        SELECT d.oid INTO mydb FROM pg_database d WHERE d.datname = current_database();
      END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                      WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL AND a.datid <> mydb
                        AND a.backend_xid::text::bigint = x % 4294967296) THEN
        RETURN (x + off) << 16;
      END IF;
    END IF;
    -- Declared (or of another database): it will never append here; look at the next one.
  END LOOP;
  RETURN (pg_snapshot_xmax(snap)::text::bigint + off) << 16;
END $$;
