-- Devices of a user, straight from the event store: disabling a user revokes
-- every device they registered (src/identity/session-watch.ts devicesOwnedBy).
-- A read model could lag behind the disable; a scan of `events` would read
-- every event ever stored. Partial: only device registrations are indexed.
CREATE INDEX events_device_registered_by_owner ON events ((data->>'ownerId'))
  WHERE type = 'identity.DeviceRegistered';
