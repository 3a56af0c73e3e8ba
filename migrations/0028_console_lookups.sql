-- Lookups the operator console makes (src/platform/event-explorer.http.ts,
-- GET /admin/dead-letters?deviceId=): without these each would scan a whole table.
--
-- "What did this event cause?": events whose causation id is its id.
-- "Everything of this correlation": one request's, message's or job's events.
CREATE INDEX IF NOT EXISTS events_causation_idx ON events ((metadata->>'causationId'));
CREATE INDEX IF NOT EXISTS events_correlation_idx ON events ((metadata->>'correlationId'));
-- One device's dead letters, newest first (keyset on id, as the listing pages).
CREATE INDEX IF NOT EXISTS telemetry_dead_letters_device_idx ON telemetry_dead_letters (device_id, id DESC);
