import type { Decider } from '../shared/event';
import { conflict, notFound } from '../shared/errors';
import type { DeviceEvent } from './device.events';
import { IdentityErrorCode } from './identity-errors';
import { requireArgon2idHash, requireName, requireUuid } from './validation';
import { unreachable } from '../shared/unreachable';

/**
 * The write model of one device (stream `device-<deviceId>`): registration
 * by its owner, secret rotation, revocation. Who may act on a device (owner
 * or admin) is decided by the caller; the decider records who did (`by`).
 */

export type RegisterDevice = {
  readonly type: 'RegisterDevice';
  readonly data: {
    readonly deviceId: string;
    readonly ownerId: string;
    readonly name: string;
    readonly secretHash: string;
    readonly now: Date;
  };
};
export type RevokeDevice = {
  readonly type: 'RevokeDevice';
  readonly data: { readonly deviceId: string; readonly by: string; readonly now: Date };
};
export type RotateDeviceSecret = {
  readonly type: 'RotateDeviceSecret';
  readonly data: { readonly deviceId: string; readonly secretHash: string; readonly by: string; readonly now: Date };
};

export type DeviceCommand = RegisterDevice | RevokeDevice | RotateDeviceSecret;

export type DeviceStatus = 'none' | 'active' | 'revoked';

export interface DeviceState {
  readonly status: DeviceStatus;
  readonly deviceId: string;
  readonly ownerId: string;
  readonly name: string;
  readonly secretHash: string;
}

export const initialDeviceState: DeviceState = { status: 'none', deviceId: '', ownerId: '', name: '', secretHash: '' };

export function evolveDevice(state: DeviceState, event: DeviceEvent): DeviceState {
  switch (event.type) {
    case 'identity.DeviceRegistered': {
      const { deviceId, ownerId, name, secretHash } = event.data;
      return { status: 'active', deviceId, ownerId, name, secretHash };
    }
    case 'identity.DeviceRevoked':
      return { ...state, status: 'revoked' };
    case 'identity.DeviceSecretRotated':
      return { ...state, secretHash: event.data.secretHash };
    default:
      return unreachable(event, 'event');
  }
}

export function decideDevice(command: DeviceCommand, state: DeviceState): DeviceEvent[] {
  switch (command.type) {
    case 'RegisterDevice': {
      const d = command.data;
      const deviceId = requireUuid(d.deviceId, 'deviceId');
      const ownerId = requireUuid(d.ownerId, 'ownerId');
      const name = requireName(d.name);
      const secretHash = requireArgon2idHash(d.secretHash, 'secretHash', IdentityErrorCode.INVALID_SECRET_HASH);
      if (state.status !== 'none') throw conflict(IdentityErrorCode.DEVICE_EXISTS, `device ${deviceId} already exists`);
      return [
        { type: 'identity.DeviceRegistered', data: { deviceId, ownerId, name, secretHash, at: d.now.toISOString() } },
      ];
    }
    case 'RevokeDevice': {
      const { deviceId, by, now } = command.data;
      requireExisting(state, deviceId);
      if (state.status === 'revoked') return [];
      return [{ type: 'identity.DeviceRevoked', data: { deviceId, by, at: now.toISOString() } }];
    }
    case 'RotateDeviceSecret': {
      const { deviceId, by, now } = command.data;
      const secretHash = requireArgon2idHash(
        command.data.secretHash,
        'secretHash',
        IdentityErrorCode.INVALID_SECRET_HASH,
      );
      requireExisting(state, deviceId);
      if (state.status === 'revoked') throw conflict(IdentityErrorCode.DEVICE_REVOKED, `device ${deviceId} is revoked`);
      return [{ type: 'identity.DeviceSecretRotated', data: { deviceId, secretHash, by, at: now.toISOString() } }];
    }
    default:
      return unreachable(command, 'command');
  }
}

function requireExisting(state: DeviceState, deviceId: string): void {
  if (state.status === 'none') throw notFound(IdentityErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
}

export const deviceDecider: Decider<DeviceCommand, DeviceEvent, DeviceState> = {
  initialState: initialDeviceState,
  evolve: evolveDevice,
  decide: decideDevice,
};
