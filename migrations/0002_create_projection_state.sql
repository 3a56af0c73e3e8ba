-- Projection checkpoints live next to the read models: a projection updates
-- its rows and its checkpoint in one transaction.
CREATE TABLE projection_checkpoints (
  name            text        PRIMARY KEY,
  position        bigint      NOT NULL DEFAULT 0,
  version         integer     NOT NULL DEFAULT 1,
  status          text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'parked')),
  parked_position bigint,
  parked_event_id uuid,
  parked_event_type text,
  parked_error    text,
  parked_attempts integer,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every operator decision on a parked projection, and every rebuild swap.
CREATE TABLE projection_operator_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  projection  text        NOT NULL,
  action      text        NOT NULL CHECK (action IN ('parked', 'retry', 'skip', 'rebuilt')),
  position    bigint,
  event_id    uuid,
  error       text,
  actor       text        NOT NULL,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projection_operator_log_by_projection ON projection_operator_log (projection, id);
