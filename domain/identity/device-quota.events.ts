import type { Event } from '../shared/event';

/** Events of a user's device quota stream (`device-quota-<ownerId>`): places taken and given back. */

export type DeviceSlotTaken = Event<
  'identity.DeviceSlotTaken',
  { readonly ownerId: string; readonly deviceId: string; readonly at: string }
>;
export type DeviceSlotReleased = Event<
  'identity.DeviceSlotReleased',
  { readonly ownerId: string; readonly deviceId: string; readonly at: string }
>;
export type DeviceQuotaEvent = DeviceSlotTaken | DeviceSlotReleased;
export const DEVICE_QUOTA_EVENT_TYPES = [
  'identity.DeviceSlotTaken',
  'identity.DeviceSlotReleased',
] as const satisfies readonly DeviceQuotaEvent['type'][];

export const deviceQuotaStreamId = (ownerId: string): string => `device-quota-${ownerId}`;
