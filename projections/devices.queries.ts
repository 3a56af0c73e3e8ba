import { validationError } from '../domain/shared/errors';
import { IdentityErrorCode } from '../domain/identity/identity-errors';
import { isUuid } from '../domain/identity/validation';
import type { Queryable } from './projection';

/**
 * Typed reads of the devices read model (projections/devices.projection.ts).
 * Listings and `findDevice` never return the secret hash; only
 * `findDeviceCredentials`, for the device-token endpoint, does.
 */

export type DeviceStatus = 'active' | 'revoked';

export interface DeviceView {
  readonly deviceId: string;
  readonly ownerId: string;
  readonly name: string;
  readonly status: DeviceStatus;
  readonly registeredAt: Date;
  readonly revokedAt: Date | null;
}

export interface DeviceCredentials {
  readonly deviceId: string;
  readonly ownerId: string;
  readonly status: DeviceStatus;
  readonly secretHash: string;
}

export interface DevicePage {
  readonly items: readonly DeviceView[];
  /** Pass as `after` for the next page; null on the last page. */
  readonly nextAfter: string | null;
}

export interface ListDevicesOptions {
  /** 1..200, default 50. */
  readonly limit?: number;
  /** Keyset cursor: the last device id of the previous page. */
  readonly after?: string;
}

export const DEVICES_DEFAULT_LIMIT = 50;
export const DEVICES_MAX_LIMIT = 200;

const DEVICE_COLUMNS = `device_id::text AS "deviceId", owner_id::text AS "ownerId", name, status,
  registered_at AS "registeredAt", revoked_at AS "revokedAt"`;

export async function findDevice(db: Queryable, deviceId: string): Promise<DeviceView | undefined> {
  if (!isUuid(deviceId.toLowerCase())) return undefined;
  const res = await db.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE device_id = $1`, [deviceId]);
  return res.rows[0] as DeviceView | undefined;
}

/** For device-token requests. The caller must refuse a revoked device and answer a missing one like a wrong secret. */
export async function findDeviceCredentials(db: Queryable, deviceId: string): Promise<DeviceCredentials | undefined> {
  if (!isUuid(deviceId.toLowerCase())) return undefined;
  const res = await db.query(
    `SELECT device_id::text AS "deviceId", owner_id::text AS "ownerId", status, secret_hash AS "secretHash" FROM devices WHERE device_id = $1`,
    [deviceId],
  );
  return res.rows[0] as DeviceCredentials | undefined;
}

/** An owner's devices in device-id order (keyset pagination over the (owner_id, device_id) index). */
export async function listDevicesByOwner(
  db: Queryable,
  ownerId: string,
  options: ListDevicesOptions = {},
): Promise<DevicePage> {
  const { limit, after } = pageArgs(options);
  if (!isUuid(ownerId.toLowerCase())) return { items: [], nextAfter: null };
  const res = await db.query(
    `SELECT ${DEVICE_COLUMNS} FROM devices WHERE owner_id = $1 AND ($2::uuid IS NULL OR device_id > $2::uuid) ORDER BY device_id LIMIT $3`,
    [ownerId, after, limit + 1],
  );
  return page(res.rows as unknown as DeviceView[], limit);
}

/** Every device (admin), in device-id order. */
export async function listAllDevices(db: Queryable, options: ListDevicesOptions = {}): Promise<DevicePage> {
  const { limit, after } = pageArgs(options);
  const res = await db.query(
    `SELECT ${DEVICE_COLUMNS} FROM devices WHERE ($1::uuid IS NULL OR device_id > $1::uuid) ORDER BY device_id LIMIT $2`,
    [after, limit + 1],
  );
  return page(res.rows as unknown as DeviceView[], limit);
}

function pageArgs(options: ListDevicesOptions): { limit: number; after: string | null } {
  const limit = options.limit ?? DEVICES_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > DEVICES_MAX_LIMIT) {
    throw invalidQuery('limit', `must be an integer from 1 to ${DEVICES_MAX_LIMIT}`);
  }
  const after = options.after === undefined || options.after === '' ? null : options.after.toLowerCase();
  if (after !== null && !isUuid(after)) throw invalidQuery('after', 'must be a device id from a previous page');
  return { limit, after };
}

function page(rows: DeviceView[], limit: number): DevicePage {
  const items = rows.slice(0, limit);
  return { items, nextAfter: rows.length > limit ? items[items.length - 1]!.deviceId : null };
}

function invalidQuery(field: string, rule: string) {
  return validationError(IdentityErrorCode.INVALID_QUERY, `${field} ${rule}`, [{ field, rule }]);
}
