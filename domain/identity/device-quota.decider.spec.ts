import { given } from '../shared/given-when-then';
import { deviceQuotaDecider, type DeviceQuotaCommand } from './device-quota.decider';
import { type DeviceQuotaEvent } from './device-quota.events';

const ownerId = '0b7e3f3c-6a43-4b0e-9d1f-2f3a4b5c6d7e';
const ids = [
  '5d1c3a2b-7e6f-4a09-b8c7-d6e5f4a3b2c1',
  '6e2d4b3c-8f70-4b1a-89d8-e7f6a5b4c3d2',
  '7f3e5c4d-9081-4c2b-9ae9-f8a7b6c5d4e3',
] as const;
const now = new Date('2025-03-01T10:00:00.000Z');
const at = now.toISOString();

const take = (deviceId: string, max = 2): DeviceQuotaCommand => ({
  type: 'TakeDeviceSlot',
  data: { ownerId, deviceId, max, now },
});
const release = (deviceId: string): DeviceQuotaCommand => ({
  type: 'ReleaseDeviceSlot',
  data: { ownerId, deviceId, now },
});
const taken = (deviceId: string): DeviceQuotaEvent => ({
  type: 'identity.DeviceSlotTaken',
  data: { ownerId, deviceId, at },
});
const released = (deviceId: string): DeviceQuotaEvent => ({
  type: 'identity.DeviceSlotReleased',
  data: { ownerId, deviceId, at },
});

describe('identity device quota decider', () => {
  it('gives a device a place while the owner is under the maximum', () => {
    given(deviceQuotaDecider, [])
      .when(take(ids[0]))
      .then([taken(ids[0])]);
    given(deviceQuotaDecider, [taken(ids[0])])
      .when(take(ids[1]))
      .then([taken(ids[1])]);
  });

  it('refuses a device over the maximum with a conflict naming the maximum', () => {
    const e = given(deviceQuotaDecider, [taken(ids[0]), taken(ids[1])])
      .when(take(ids[2]))
      .thenThrows('IDENTITY.TOO_MANY_DEVICES', { kind: 'conflict' });
    expect(e.extra).toEqual({ max: 2 });
  });

  it('a retried registration of a device that holds a place records nothing, even at the maximum', () => {
    given(deviceQuotaDecider, [taken(ids[0]), taken(ids[1])])
      .when(take(ids[1]))
      .thenNothing();
  });

  it('a revoked device gives its place back', () => {
    given(deviceQuotaDecider, [taken(ids[0]), taken(ids[1])])
      .when(release(ids[0]))
      .then([released(ids[0])]);
    given(deviceQuotaDecider, [taken(ids[0]), taken(ids[1]), released(ids[0])])
      .when(take(ids[2]))
      .then([taken(ids[2])]);
  });

  it('releasing a device without a place (registered before places were counted, or twice) records nothing', () => {
    given(deviceQuotaDecider, [taken(ids[0])])
      .when(release(ids[1]))
      .thenNothing();
    given(deviceQuotaDecider, [taken(ids[0]), released(ids[0])])
      .when(release(ids[0]))
      .thenNothing();
  });

  it('refuses ids that are not lowercase UUIDs', () => {
    given(deviceQuotaDecider, [])
      .when(take('press-7'))
      .thenThrows('IDENTITY.INVALID_ID', { fields: ['deviceId'] });
  });
});
