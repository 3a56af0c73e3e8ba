-- Ingest asks, for every batch, whether each device's owner is disabled
-- (src/telemetry/ingest.ts, deviceStatuses): EXISTS an identity.UserDisabled
-- event in the owner's stream. The owner's stream id is only known per row, so
-- PostgreSQL estimates the rows of "one stream" as the table's rows ÷ its
-- distinct streams; with millions of telemetry events in a few device streams
-- that estimate is large and the planner scans the whole events table on every
-- batch, a cost that grows with the store. This index holds only the
-- UserDisabled events (a handful), so the check is one index probe however
-- many events the store holds.
CREATE INDEX events_user_disabled_idx ON events (stream_id) WHERE type = 'identity.UserDisabled';
