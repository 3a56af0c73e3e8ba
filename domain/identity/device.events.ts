import type { Event } from '../shared/event';

/**
 * Events of a device stream (`device-<deviceId>`). `secretHash` is the
 * argon2id hash of the device secret; the secret itself is shown once to the
 * owner and never stored.
 */

export type DeviceRegistered = Event<
  'identity.DeviceRegistered',
  {
    readonly deviceId: string;
    readonly ownerId: string;
    readonly name: string;
    readonly secretHash: string;
    readonly at: string;
  }
>;

export type DeviceRevoked = Event<
  'identity.DeviceRevoked',
  { readonly deviceId: string; readonly by: string; readonly at: string }
>;

export type DeviceSecretRotated = Event<
  'identity.DeviceSecretRotated',
  { readonly deviceId: string; readonly secretHash: string; readonly by: string; readonly at: string }
>;

export type DeviceEvent = DeviceRegistered | DeviceRevoked | DeviceSecretRotated;

export const DEVICE_EVENT_TYPES = [
  'identity.DeviceRegistered',
  'identity.DeviceRevoked',
  'identity.DeviceSecretRotated',
] as const satisfies readonly DeviceEvent['type'][];

export const deviceStreamId = (deviceId: string): string => `device-${deviceId}`;
