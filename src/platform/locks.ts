/**
 * Every PostgreSQL advisory lock id the platform takes, in one registry, so
 * two subsystems cannot pick the same one by accident (the saga runner and
 * projection rebuilds once both used 724003). test/unit/locks.spec.ts checks
 * that the ids are distinct and that no other file spells one out.
 *
 * Two kinds share PostgreSQL's lock space: `pg_advisory_lock(id)` (one bigint
 * key) and `pg_advisory_lock(class, hashtext(name))` (two int4 keys, one lock
 * per projection or saga name within a class). Ids already in use by running
 * instances must keep their value: an instance still running the old version
 * during a rolling upgrade would otherwise hold a different lock for the same
 * work. A new lock gets the next free id.
 */
export const ADVISORY_LOCKS = {
  /** `pg_advisory_lock(id)`: one instance applies migrations at a time. */
  migrations: 724_001,
  /**
   * `(class, hashtext(name))`: the one active runner of a projection across instances. The
   * processor runtime takes one class per kind of processor (LOCK_CLASS in
   * src/platform/processing/processor.ts): this one, sagaRunner and reactorRunner.
   */
  projectionRunner: 724_002,
  /** `(class, hashtext(name))`: the one active runner of a saga across instances. */
  sagaRunner: 724_003,
  /**
   * `(class, hashtext(projection))`, transaction-level: serialises the first registration of a
   * projection. Must differ from projectionRunner: a transaction-level lock in the runner's class
   * would wait for as long as any process runs the projection.
   */
  projectionRegister: 724_004,
  /** `(class, hashtext(projection))`: one rebuild of a projection at a time (was 724003, the saga's). */
  projectionRebuild: 724_005,
  /** `(class, hashtext(name))`: the one active runner of any other reactor across instances. */
  reactorRunner: 724_006,
  /**
   * `pg_advisory_xact_lock[_shared](id)`, taken in SQL (migrations/0024): every append holds it
   * shared, raising the position offset after a restore holds it exclusively.
   */
  eventStorePositions: 724_024,
  /**
   * `pg_advisory_xact_lock_shared(id)`, taken in SQL (migrations/0027, es_declare_no_append): marks a
   * transaction that will not append, so the read horizon (es_horizon) can read past it.
   */
  eventStoreNoAppend: 724_025,
  /**
   * `pg_advisory_xact_lock(id, es_xid_key(xid))`, taken in SQL (migrations/0031, es_declare_no_append):
   * held exclusively by a declared transaction on its own id, so es_horizon asks about one
   * transaction (pg_try_advisory_lock_shared) instead of reading pg_locks.
   */
  eventStoreNoAppendXid: 724_026,
} as const;

export type AdvisoryLockName = keyof typeof ADVISORY_LOCKS;
