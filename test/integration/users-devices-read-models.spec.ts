import type { DeviceEvent } from '../../domain/identity/device.events';
import type { UserEvent } from '../../domain/identity/user.events';
import { devicesProjection } from '../../projections/devices.projection';
import {
  findDevice,
  findDeviceCredentials,
  listAllDevices,
  listDevicesByOwner,
} from '../../projections/devices.queries';
import { usersProjection } from '../../projections/users.projection';
import { findCredentialsByEmail, findUserByEmail, findUserById, listUsers } from '../../projections/users.queries';
import { readModel } from '../support/read-model';

/**
 * The users and devices read models, given identity events, then rows and
 * query answers (test/support/read-model.ts). identity-projections.spec.ts
 * covers the same models through the command path and the live runner.
 */

// Fixed ids in order, so that pages and keysets are predictable.
const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const at = (s: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, s)).toISOString();
const hash = (label: string) => `$argon2id$v=19$m=65536,t=3,p=4$${label}$aGFzaA`;
const admin = id(99);

describe('users read model', () => {
  const users = readModel(usersProjection);

  const registered = (
    n: number,
    email: string,
    name: string,
    s: number,
    roles: string[] = ['customer'],
  ): UserEvent => ({
    type: 'identity.UserRegistered',
    data: { userId: id(n), email, name, passwordHash: hash(`u${n}`), roles, at: at(s) },
  });

  it('a registration gives a profile and credentials; the hash is only in user_credentials', async () => {
    const s = users.given(registered(1, 'ada@example.com', 'Ada', 1));
    await s.thenRows('users', [
      {
        user_id: id(1),
        email: 'ada@example.com',
        name: 'Ada',
        roles: ['customer'],
        status: 'active',
        registered_at: new Date(at(1)),
        updated_at: new Date(at(1)),
      },
    ]);
    await s.thenRows('user_credentials', [
      { user_id: id(1), email: 'ada@example.com', password_hash: hash('u1'), status: 'active' },
    ]);
    await s.thenQuery((db) => findUserById(db, id(1)), {
      userId: id(1),
      email: 'ada@example.com',
      name: 'Ada',
      roles: ['customer'],
      status: 'active',
      registeredAt: new Date(at(1)),
      updatedAt: new Date(at(1)),
    });
    await s.thenQuery((db) => findUserByEmail(db, '  ADA@example.com '), expect.objectContaining({ userId: id(1) }));
    await s.thenQuery((db) => findCredentialsByEmail(db, 'ada@example.com'), {
      userId: id(1),
      email: 'ada@example.com',
      passwordHash: hash('u1'),
      status: 'active',
    });
    await s.thenQuery((db) => findUserById(db, id(2)), undefined);
    await s.thenQuery((db) => findUserById(db, 'not-a-uuid'), undefined);
  });

  it('roles are a set: assigning twice keeps one, revoking removes it; each change moves updated_at', async () => {
    const s = users.given(
      registered(1, 'ada@example.com', 'Ada', 1),
      { type: 'identity.RoleAssigned', data: { userId: id(1), role: 'admin', by: admin, at: at(2) } },
      { type: 'identity.RoleAssigned', data: { userId: id(1), role: 'admin', by: admin, at: at(3) } },
      { type: 'identity.RoleAssigned', data: { userId: id(1), role: 'operator', by: admin, at: at(4) } },
      { type: 'identity.RoleRevoked', data: { userId: id(1), role: 'customer', by: admin, at: at(5) } },
    );
    await s.thenRows('users', [{ user_id: id(1), roles: ['admin', 'operator'], updated_at: new Date(at(5)) }], {
      columns: ['user_id', 'roles', 'updated_at'],
    });
  });

  it('disabling marks both tables; a rehash changes the credentials, not the profile', async () => {
    const s = users.given(
      registered(1, 'ada@example.com', 'Ada', 1),
      registered(2, 'bob@example.com', 'Bob', 2),
      { type: 'identity.PasswordRehashed', data: { userId: id(1), passwordHash: hash('u1-new'), at: at(3) } },
      { type: 'identity.UserDisabled', data: { userId: id(2), by: admin, at: at(4) } },
    );
    await s.thenRows(
      'users',
      [
        { user_id: id(1), status: 'active', updated_at: new Date(at(1)) },
        { user_id: id(2), status: 'disabled', updated_at: new Date(at(4)) },
      ],
      { columns: ['user_id', 'status', 'updated_at'] },
    );
    await s.thenRows(
      'user_credentials',
      [
        { user_id: id(1), password_hash: hash('u1-new'), status: 'active' },
        { user_id: id(2), password_hash: hash('u2'), status: 'disabled' },
      ],
      { columns: ['user_id', 'password_hash', 'status'] },
    );
  });

  it('applying a registration again rewrites the same rows (at-least-once safe)', async () => {
    const s = users.given(registered(1, 'ada@example.com', 'Ada', 1), registered(1, 'ada@example.com', 'Ada', 1));
    await s.thenQuery(async (db) => (await listUsers(db)).items.map((u) => u.userId), [id(1)]);
  });

  it('a second user with a taken email fails (the runtime parks the projection for an operator)', async () => {
    await users
      .given(registered(1, 'ada@example.com', 'Ada', 1), registered(2, 'ada@example.com', 'Other', 2))
      .thenFails(/duplicate key value violates unique constraint/);
  });

  it('listUsers pages in user-id order and filters by a literal substring of email or name', async () => {
    const s = users.given(
      registered(3, 'carol@example.com', 'Carol', 3),
      registered(1, 'ada@example.com', 'Ada 100%', 1),
      registered(2, 'bob@example.com', 'Bob', 2),
    );
    const ids = (p: { items: readonly { userId: string }[]; nextAfter: string | null }) => ({
      ids: p.items.map((u) => u.userId),
      next: p.nextAfter,
    });
    await s.thenQuery(async (db) => ids(await listUsers(db, { limit: 2 })), { ids: [id(1), id(2)], next: id(2) });
    await s.thenQuery(async (db) => ids(await listUsers(db, { limit: 2, after: id(2) })), { ids: [id(3)], next: null });
    await s.thenQuery(async (db) => ids(await listUsers(db, { q: 'BOB' })), { ids: [id(2)], next: null });
    await s.thenQuery(async (db) => ids(await listUsers(db, { q: '100%' })), { ids: [id(1)], next: null });
    await s.thenQuery(async (db) => ids(await listUsers(db, { q: '%' })), { ids: [id(1)], next: null });
    await expect(s.read((db) => listUsers(db, { limit: 0 }))).rejects.toMatchObject({ code: 'IDENTITY.INVALID_QUERY' });
    await expect(s.read((db) => listUsers(db, { after: 'x' }))).rejects.toMatchObject({
      code: 'IDENTITY.INVALID_QUERY',
    });
  });
});

describe('devices read model', () => {
  const devices = readModel(devicesProjection);
  const owner = id(50);
  const other = id(51);

  const registered = (n: number, ownerId: string, s: number): DeviceEvent => ({
    type: 'identity.DeviceRegistered',
    data: { deviceId: id(n), ownerId, name: `sensor ${n}`, secretHash: hash(`d${n}`), at: at(s) },
  });

  it('a registration gives an active device with its secret hash; revoking keeps the first revocation time', async () => {
    const s = devices.given(
      registered(1, owner, 1),
      { type: 'identity.DeviceRevoked', data: { deviceId: id(1), by: owner, at: at(2) } },
      { type: 'identity.DeviceRevoked', data: { deviceId: id(1), by: admin, at: at(3) } },
    );
    await s.thenRows('devices', [
      {
        device_id: id(1),
        owner_id: owner,
        name: 'sensor 1',
        status: 'revoked',
        secret_hash: hash('d1'),
        registered_at: new Date(at(1)),
        revoked_at: new Date(at(2)),
      },
    ]);
    await s.thenQuery((db) => findDevice(db, id(1)), {
      deviceId: id(1),
      ownerId: owner,
      name: 'sensor 1',
      status: 'revoked',
      registeredAt: new Date(at(1)),
      revokedAt: new Date(at(2)),
    });
    await s.thenQuery((db) => findDevice(db, id(2)), undefined);
  });

  it('a rotation replaces the secret hash that device-token requests check', async () => {
    const s = devices.given(registered(1, owner, 1), {
      type: 'identity.DeviceSecretRotated',
      data: { deviceId: id(1), secretHash: hash('d1-rotated'), by: owner, at: at(2) },
    });
    await s.thenQuery((db) => findDeviceCredentials(db, id(1)), {
      deviceId: id(1),
      ownerId: owner,
      status: 'active',
      secretHash: hash('d1-rotated'),
    });
    await s.thenQuery((db) => findDeviceCredentials(db, 'nope'), undefined);
  });

  it('an owner sees only their devices, in id order, a page at a time; an admin sees all', async () => {
    const s = devices.given(
      registered(3, owner, 1),
      registered(1, owner, 2),
      registered(2, other, 3),
      registered(4, owner, 4),
    );
    const ids = (p: { items: readonly { deviceId: string }[]; nextAfter: string | null }) => ({
      ids: p.items.map((d) => d.deviceId),
      next: p.nextAfter,
    });
    await s.thenQuery(async (db) => ids(await listDevicesByOwner(db, owner, { limit: 2 })), {
      ids: [id(1), id(3)],
      next: id(3),
    });
    await s.thenQuery(async (db) => ids(await listDevicesByOwner(db, owner, { limit: 2, after: id(3) })), {
      ids: [id(4)],
      next: null,
    });
    await s.thenQuery(async (db) => ids(await listDevicesByOwner(db, 'not-a-uuid')), { ids: [], next: null });
    await s.thenQuery(async (db) => ids(await listAllDevices(db)), { ids: [id(1), id(2), id(3), id(4)], next: null });
    await expect(s.read((db) => listAllDevices(db, { limit: 201 }))).rejects.toMatchObject({
      code: 'IDENTITY.INVALID_QUERY',
    });
  });
});
