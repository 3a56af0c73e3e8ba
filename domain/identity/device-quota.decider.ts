import type { Decider } from '../shared/event';
import { DomainError } from '../shared/errors';
import { unreachable } from '../shared/unreachable';
import type { DeviceQuotaEvent } from './device-quota.events';
import { IdentityErrorCode } from './identity-errors';
import { requireUuid } from './validation';

/**
 * How many active devices one user has (stream `device-quota-<ownerId>`).
 * A registration takes a place here in the same append as the device's own
 * first event, at the expected revision of this stream: of two concurrent
 * registrations at the last free place the event store lets one through, as
 * the email reservation does for addresses. A revocation gives the place back.
 * The maximum comes in with the command: it is configuration, not history.
 */

export type TakeDeviceSlot = {
  readonly type: 'TakeDeviceSlot';
  readonly data: { readonly ownerId: string; readonly deviceId: string; readonly max: number; readonly now: Date };
};
export type ReleaseDeviceSlot = {
  readonly type: 'ReleaseDeviceSlot';
  readonly data: { readonly ownerId: string; readonly deviceId: string; readonly now: Date };
};
export type DeviceQuotaCommand = TakeDeviceSlot | ReleaseDeviceSlot;

/** The ids of the owner's devices holding a place, oldest first. */
export interface DeviceQuotaState {
  readonly active: readonly string[];
}

export const tooManyDevices = (max: number) =>
  new DomainError(
    'conflict',
    IdentityErrorCode.TOO_MANY_DEVICES,
    `a user may have at most ${max} active devices; revoke one first`,
    [],
    { max },
  );

export const deviceQuotaDecider: Decider<DeviceQuotaCommand, DeviceQuotaEvent, DeviceQuotaState> = {
  initialState: { active: [] },
  evolve(state, event) {
    switch (event.type) {
      case 'identity.DeviceSlotTaken':
        return state.active.includes(event.data.deviceId) ? state : { active: [...state.active, event.data.deviceId] };
      case 'identity.DeviceSlotReleased':
        return { active: state.active.filter((id) => id !== event.data.deviceId) };
      default:
        return unreachable(event, 'event');
    }
  },
  decide(command, state) {
    switch (command.type) {
      case 'TakeDeviceSlot': {
        const ownerId = requireUuid(command.data.ownerId, 'ownerId');
        const deviceId = requireUuid(command.data.deviceId, 'deviceId');
        // A retried registration of the same device already holds its place.
        if (state.active.includes(deviceId)) return [];
        if (state.active.length >= command.data.max) throw tooManyDevices(command.data.max);
        return [{ type: 'identity.DeviceSlotTaken', data: { ownerId, deviceId, at: command.data.now.toISOString() } }];
      }
      case 'ReleaseDeviceSlot': {
        const { ownerId, deviceId, now } = command.data;
        // Devices registered before places were counted hold none: nothing to give back.
        if (!state.active.includes(deviceId)) return [];
        return [{ type: 'identity.DeviceSlotReleased', data: { ownerId, deviceId, at: now.toISOString() } }];
      }
      default:
        return unreachable(command, 'command');
    }
  },
};
