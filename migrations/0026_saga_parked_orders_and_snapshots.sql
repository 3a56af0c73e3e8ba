-- Issue 13: a processor that runs its events by key (the order-fulfilment saga, one
-- queue per order) parks one key, not the whole processor; an operator retries or
-- skips it. And snapshots of long streams (a product's inventory), a cache only.

-- One row per parked key: the event it failed on (first in processor_parked_events),
-- why, and whether an operator asked to resume it ('resuming': retry or skip decided,
-- the runner has not finished handling the held events yet).
CREATE TABLE processor_parked_keys (
  processor  text        NOT NULL,
  key        text        NOT NULL,
  status     text        NOT NULL CHECK (status IN ('parked', 'resuming')),
  position   bigint      NOT NULL,
  event_id   uuid        NOT NULL,
  event_type text        NOT NULL,
  error      text        NOT NULL,
  attempts   integer     NOT NULL,
  parked_at  timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (processor, key)
);

-- The events of a parked key not handled yet, in order: the one that failed and every
-- later one of the same key. Stored before the checkpoint moves past them, so the
-- checkpoint never waits for a parked key and a crash loses none of them.
CREATE TABLE processor_parked_events (
  processor text   NOT NULL,
  key       text   NOT NULL,
  position  bigint NOT NULL,
  event     jsonb  NOT NULL,
  PRIMARY KEY (processor, key, position)
);

-- The operator log records actions on one key of a processor too (NULL: the processor).
ALTER TABLE processor_operator_log ADD COLUMN key text;
CREATE INDEX processor_operator_log_by_key ON processor_operator_log (processor, key, id) WHERE key IS NOT NULL;

-- The sandbox payment provider's switch for tests and demos: charges and refunds of
-- these orders fail, as a provider that is down for one customer would.
CREATE TABLE sandbox_payment_outages (
  order_id   uuid        PRIMARY KEY,
  since      timestamptz NOT NULL DEFAULT now()
);

-- Snapshots of long streams: the folded state at a revision, so a decision reads the
-- snapshot and the events after it. A cache: deleting a row changes no decision, and a
-- row whose `version` (the state's shape) is not the current one is ignored.
CREATE TABLE stream_snapshots (
  stream_id  text        PRIMARY KEY,
  revision   bigint      NOT NULL,
  version    integer     NOT NULL,
  state      jsonb       NOT NULL,
  taken_at   timestamptz NOT NULL DEFAULT now()
);
