-- Dead-letter retention (TELEMETRY_DEAD_LETTER_RETENTION_DAYS) deletes the oldest rows by
-- received_at in bounded chunks; without this index each chunk would scan the whole table.
CREATE INDEX telemetry_dead_letters_received_at ON telemetry_dead_letters (received_at);
