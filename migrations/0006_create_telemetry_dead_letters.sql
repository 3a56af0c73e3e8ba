-- MQTT messages that could not become readings (malformed JSON, a broken
-- rule, an unknown device...). Stored before the PUBACK (MQTT-4.3.2: the
-- message is acknowledged only once it is durably kept somewhere), so a bad
-- payload is never silently dropped. Not an event: nothing was decided.
CREATE TABLE telemetry_dead_letters (
  id           bigserial   PRIMARY KEY,
  device_id    text,
  topic        text        NOT NULL,
  -- The raw payload, truncated at 64 KiB; payload_size is the original length.
  payload      bytea       NOT NULL,
  payload_size integer     NOT NULL,
  code         text        NOT NULL,
  reason       text        NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);
