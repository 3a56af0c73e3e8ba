-- One checkpoint table for every processor on the runtime (src/platform/processing/):
-- projections and the order-fulfilment saga kept theirs apart (projection_checkpoints,
-- saga_checkpoints). A deployed database keeps every position: the projections' table is
-- renamed in place (rows, positions, versions and parked events stay as they are), the
-- saga's rows move in, and the operator log, which now records any processor, follows.

ALTER TABLE projection_checkpoints RENAME TO processor_checkpoints;
ALTER TABLE processor_checkpoints RENAME CONSTRAINT projection_checkpoints_pkey TO processor_checkpoints_pkey;
-- What kind of processor owns the row ('projection', 'saga', 'reactor'): names are one
-- namespace, and the runtime refuses to run a processor on another kind's row. Every row
-- so far is a projection's; new rows always say their kind (no default).
ALTER TABLE processor_checkpoints ADD COLUMN kind text NOT NULL DEFAULT 'projection';
ALTER TABLE processor_checkpoints ALTER COLUMN kind DROP DEFAULT;

-- A saga named like a projection would fail here on the primary key, loudly, rather than
-- share its row: no such pair exists (the saga is 'order-fulfilment').
INSERT INTO processor_checkpoints (name, kind, position, version, status, updated_at)
SELECT name, 'saga', position, 1, 'running', updated_at FROM saga_checkpoints;
DROP TABLE saga_checkpoints;

ALTER TABLE projection_operator_log RENAME TO processor_operator_log;
ALTER TABLE processor_operator_log RENAME COLUMN projection TO processor;
ALTER TABLE processor_operator_log RENAME CONSTRAINT projection_operator_log_pkey TO processor_operator_log_pkey;
ALTER INDEX projection_operator_log_by_projection RENAME TO processor_operator_log_by_processor;
-- The names PostgreSQL derived from the old table names follow too, so a fresh database
-- and an upgraded one have the same schema.
ALTER TABLE processor_checkpoints RENAME CONSTRAINT projection_checkpoints_status_check TO processor_checkpoints_status_check;
ALTER TABLE processor_operator_log RENAME CONSTRAINT projection_operator_log_action_check TO processor_operator_log_action_check;
ALTER SEQUENCE projection_operator_log_id_seq RENAME TO processor_operator_log_id_seq;
