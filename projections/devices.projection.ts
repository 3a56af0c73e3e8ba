import type { DeviceEvent } from '../domain/identity/device.events';
import { sqlProjection, type EventHandlers } from './projection';

/**
 * The devices read model: one row per device with its owner and status, and
 * the argon2id hash of its secret for device-token requests (read only
 * through `findDeviceCredentials`). Values come from the event alone, so a
 * rebuild produces the same rows.
 */

const handlers: EventHandlers<DeviceEvent> = {
  'identity.DeviceRegistered': (e) => {
    const { data: d } = e;
    return {
      text: `INSERT INTO devices (device_id, owner_id, name, status, secret_hash, registered_at, revoked_at)
             VALUES ($1, $2, $3, 'active', $4, $5, NULL)
             ON CONFLICT (device_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, name = EXCLUDED.name, status = EXCLUDED.status,
               secret_hash = EXCLUDED.secret_hash, registered_at = EXCLUDED.registered_at, revoked_at = EXCLUDED.revoked_at`,
      values: [d.deviceId, d.ownerId, d.name, d.secretHash, d.at],
    };
  },
  'identity.DeviceRevoked': (e) => {
    const { data: d } = e;
    // COALESCE keeps the first revocation time should the event ever be applied again.
    return {
      text: `UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1`,
      values: [d.deviceId, d.at],
    };
  },
  'identity.DeviceSecretRotated': (e) => {
    const { data: d } = e;
    return { text: 'UPDATE devices SET secret_hash = $2 WHERE device_id = $1', values: [d.deviceId, d.secretHash] };
  },
};

export const devicesProjection = sqlProjection({
  name: 'devices',
  version: 1,
  tables: ['devices'],
  setup: [
    `CREATE TABLE devices (
       device_id uuid PRIMARY KEY,
       owner_id uuid NOT NULL,
       name text NOT NULL,
       status text NOT NULL CHECK (status IN ('active', 'revoked')),
       secret_hash text NOT NULL,
       registered_at timestamptz NOT NULL,
       revoked_at timestamptz
     )`,
    // Serves "devices of an owner" in device-id order (the keyset of listDevicesByOwner).
    'CREATE INDEX devices_owner_id_idx ON devices (owner_id, device_id)',
  ],
  handlers,
});
