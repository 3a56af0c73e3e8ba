import { given } from '../shared/given-when-then';
import type { DeviceEvent } from './device.events';
import { deviceDecider, type DeviceCommand } from './device.decider';

const deviceId = '5d1c3a2b-7e6f-4a09-b8c7-d6e5f4a3b2c1';
const ownerId = '0b7e3f3c-6a43-4b0e-9d1f-2f3a4b5c6d7e';
const now = new Date('2025-03-01T10:00:00.000Z');
const at = now.toISOString();
const hash = '$argon2id$v=19$m=65536,t=3,p=4$ZGV2aWNlc2FsdA$Qm9ndXNkZXZpY2VoYXNoMDEyMzQ1Njc4OQ';
const newHash = '$argon2id$v=19$m=65536,t=3,p=4$bmV3c2FsdA$TmV3ZGV2aWNlaGFzaDAxMjM0NTY3ODk';

const registerDevice = (
  over: Partial<Extract<DeviceCommand, { type: 'RegisterDevice' }>['data']> = {},
): DeviceCommand => ({
  type: 'RegisterDevice',
  data: { deviceId, ownerId, name: 'Boiler sensor', secretHash: hash, now, ...over },
});
const revokeDevice: DeviceCommand = { type: 'RevokeDevice', data: { deviceId, by: ownerId, now } };
const rotate = (secretHash: string): DeviceCommand => ({
  type: 'RotateDeviceSecret',
  data: { deviceId, secretHash, by: ownerId, now },
});

const registered: DeviceEvent = {
  type: 'identity.DeviceRegistered',
  data: { deviceId, ownerId, name: 'Boiler sensor', secretHash: hash, at },
};
const revoked: DeviceEvent = { type: 'identity.DeviceRevoked', data: { deviceId, by: ownerId, at } };

describe('identity device decider: RegisterDevice', () => {
  it('registers a device for its owner, with the name trimmed', () => {
    given(deviceDecider, [])
      .when(registerDevice({ name: '  Boiler sensor  ' }))
      .then([registered]);
  });

  it('refuses to register a device id twice', () => {
    given(deviceDecider, [registered])
      .when(registerDevice())
      .thenThrows('IDENTITY.DEVICE_EXISTS', { kind: 'conflict' });
    given(deviceDecider, [registered, revoked])
      .when(registerDevice())
      .thenThrows('IDENTITY.DEVICE_EXISTS', { kind: 'conflict' });
  });

  it('accepts names of 1 and 100 characters', () => {
    for (const name of ['x', 'n'.repeat(100)]) {
      given(deviceDecider, [])
        .when(registerDevice({ name }))
        .then([{ ...registered, data: { ...registered.data, name } }]);
    }
  });

  it.each([
    ['empty', ''],
    ['blank', ' \t '],
    ['101 characters', 'n'.repeat(101)],
    ['with a newline', 'line\nbreak'],
  ])('refuses a name that is %s, naming the field', (_what, name) => {
    given(deviceDecider, [])
      .when(registerDevice({ name }))
      .thenThrows('IDENTITY.INVALID_NAME', { kind: 'validation', fields: ['name'] });
  });

  it.each([
    ['a plaintext secret', 's3cr3t-device-secret'],
    ['an argon2i hash', '$argon2i$v=19$m=65536,t=3,p=4$ZGV2$Qm9n'],
    ['an empty string', ''],
  ])('refuses %s as the secret hash', (_what, secretHash) => {
    given(deviceDecider, [])
      .when(registerDevice({ secretHash }))
      .thenThrows('IDENTITY.INVALID_SECRET_HASH', { kind: 'validation', fields: ['secretHash'] });
  });

  it('refuses ids that are not lowercase UUIDs', () => {
    given(deviceDecider, [])
      .when(registerDevice({ deviceId: 'boiler-1' }))
      .thenThrows('IDENTITY.INVALID_ID', { fields: ['deviceId'] });
    given(deviceDecider, [])
      .when(registerDevice({ ownerId: 'someone' }))
      .thenThrows('IDENTITY.INVALID_ID', { fields: ['ownerId'] });
  });
});

describe('identity device decider: RevokeDevice', () => {
  it('revokes an active device', () => {
    given(deviceDecider, [registered]).when(revokeDevice).then([revoked]);
  });

  it('records nothing when revoked twice', () => {
    given(deviceDecider, [registered, revoked]).when(revokeDevice).thenNothing();
  });

  it('answers not found for a missing device', () => {
    given(deviceDecider, []).when(revokeDevice).thenThrows('IDENTITY.DEVICE_NOT_FOUND', { kind: 'not_found' });
  });
});

describe('identity device decider: RotateDeviceSecret', () => {
  it('records the new secret hash', () => {
    given(deviceDecider, [registered])
      .when(rotate(newHash))
      .then([{ type: 'identity.DeviceSecretRotated', data: { deviceId, secretHash: newHash, by: ownerId, at } }]);
  });

  it('refuses to rotate the secret of a revoked device', () => {
    given(deviceDecider, [registered, revoked])
      .when(rotate(newHash))
      .thenThrows('IDENTITY.DEVICE_REVOKED', { kind: 'conflict' });
  });

  it('refuses a secret hash that is not argon2id', () => {
    given(deviceDecider, [registered])
      .when(rotate('plain-secret'))
      .thenThrows('IDENTITY.INVALID_SECRET_HASH', { kind: 'validation', fields: ['secretHash'] });
  });

  it('answers not found for a missing device', () => {
    given(deviceDecider, []).when(rotate(newHash)).thenThrows('IDENTITY.DEVICE_NOT_FOUND', { kind: 'not_found' });
  });

  it('folds registration, rotation and revocation into the state', () => {
    given(deviceDecider, [
      registered,
      { type: 'identity.DeviceSecretRotated', data: { deviceId, secretHash: newHash, by: ownerId, at } },
    ])
      .when(revokeDevice)
      .thenState((s) =>
        expect(s).toEqual({ status: 'revoked', deviceId, ownerId, name: 'Boiler sensor', secretHash: newHash }),
      );
  });
});
