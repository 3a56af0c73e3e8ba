import { randomUUID } from 'node:crypto';
import type { Command, Decider, Event } from '../../domain/shared/event';
import { DomainError } from '../../domain/shared/errors';
import { deviceDecider, type DeviceCommand } from '../../domain/identity/device.decider';
import { deviceStreamId } from '../../domain/identity/device.events';
import { emailReservationDecider } from '../../domain/identity/email-reservation.decider';
import { emailStreamId } from '../../domain/identity/email-reservation.events';
import { userDecider, type UserCommand } from '../../domain/identity/user.decider';
import { userStreamId } from '../../domain/identity/user.events';
import { devicesProjection } from '../../projections/devices.projection';
import {
  findDevice,
  findDeviceCredentials,
  listAllDevices,
  listDevicesByOwner,
} from '../../projections/devices.queries';
import { usersProjection } from '../../projections/users.projection';
import {
  findCredentialsByEmail,
  findUserByEmail,
  findUserById,
  listUsers,
  type UserView,
} from '../../projections/users.queries';
import type { CommandContext } from '../../src/platform/commands/command-context';
import { handleCommand } from '../../src/platform/commands/command-handling';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { Projections } from '../../src/platform/processing/projections';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * The users and devices read models against real PostgreSQL: identity events
 * written through the real command path (decider + event store), applied by
 * the projection engine, read back through the typed queries, and rebuilt
 * from the store into the same rows.
 */

let db: TestDatabase;
let store: PostgresEventStore;
let engine: Projections;

let clock = Date.parse('2025-01-01T00:00:00.000Z');
const tick = () => new Date((clock += 1000));
const hashOf = (label: string) =>
  `$argon2id$v=19$m=65536,t=3,p=4$${Buffer.from(label).toString('base64url')}$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNo`;
const adminId = randomUUID();

function ctx(now: Date): CommandContext {
  return { correlationId: randomUUID(), causationId: randomUUID(), actor: `user:${adminId}`, now };
}

/** Sends a command through the real write path; returns the position it wrote (0 when it recorded nothing). */
async function send<C extends Command, E extends Event, S>(
  decider: Decider<C, E, S>,
  streamId: string,
  command: C,
  now: Date,
): Promise<number> {
  return (await handleCommand({ store, decider, streamId, command, ctx: ctx(now), retries: 3 })).position;
}

/** Sign-up as the application does it: reserve the email (no_stream), then register the user. */
async function signUp(email: string, name: string): Promise<{ userId: string; position: number }> {
  const userId = randomUUID();
  const now = tick();
  await send(
    emailReservationDecider,
    emailStreamId(email),
    { type: 'ReserveEmail', data: { email, userId, now } },
    now,
  );
  const command: UserCommand = {
    type: 'RegisterUser',
    data: { userId, email, name, passwordHash: hashOf(userId), now },
  };
  return { userId, position: await send(userDecider, userStreamId(userId), command, now) };
}

async function user(command: UserCommand): Promise<number> {
  return send(userDecider, userStreamId(command.data.userId), command, command.data.now);
}

async function device(command: DeviceCommand): Promise<number> {
  return send(deviceDecider, deviceStreamId(command.data.deviceId), command, command.data.now);
}

async function caughtUp(name: 'users' | 'devices', position: number): Promise<void> {
  expect(await engine.waitFor(name, position, 30_000)).toBe(true);
}

async function rows(): Promise<Record<string, unknown[]>> {
  const q = async (sql: string): Promise<unknown[]> => (await db.pool.query(sql)).rows as unknown[];
  return {
    users: await q('SELECT * FROM users ORDER BY user_id'),
    credentials: await q('SELECT * FROM user_credentials ORDER BY user_id'),
    devices: await q('SELECT * FROM devices ORDER BY device_id'),
  };
}

async function invalidQuery(p: Promise<unknown>): Promise<string[]> {
  try {
    await p;
  } catch (e) {
    if (e instanceof DomainError && e.code === 'IDENTITY.INVALID_QUERY') return e.fields.map((f) => f.field);
    throw e;
  }
  throw new Error('expected IDENTITY.INVALID_QUERY');
}

beforeAll(async () => {
  db = await createTestDatabase('idproj');
  store = new PostgresEventStore(db.pool, { listenConnectionString: db.url });
  engine = new Projections(db.pool, store, [usersProjection, devicesProjection], {
    connectionString: db.url,
    batchSize: 100,
    maxAttempts: 3,
    standbyRetryMs: 50,
    log: () => undefined,
  });
  expect(await engine.register()).toEqual([]);
  engine.start();
});

afterAll(async () => {
  await engine.stop();
  await store.close();
  await db.drop();
});

describe('identity read models: users', () => {
  it('builds users and user_credentials from user events; the hash lives only in user_credentials', async () => {
    const ada = await signUp('  Ada@Example.com ', 'Ada Lovelace');
    const grace = await signUp('grace@example.com', 'Grace Hopper');
    await user({ type: 'AssignRole', data: { userId: ada.userId, role: 'admin', by: adminId, now: tick() } });
    await user({ type: 'AssignRole', data: { userId: ada.userId, role: 'ops', by: adminId, now: tick() } });
    expect(
      await user({ type: 'AssignRole', data: { userId: ada.userId, role: 'ops', by: adminId, now: tick() } }),
    ).toBe(0); // idempotent
    const revokedAt = tick();
    await user({ type: 'RevokeRole', data: { userId: ada.userId, role: 'admin', by: adminId, now: revokedAt } });
    const rehashAt = tick();
    await user({
      type: 'RehashPassword',
      data: { userId: ada.userId, passwordHash: hashOf('ada-rehashed'), now: rehashAt },
    });
    const disabledAt = tick();
    const last = await user({ type: 'DisableUser', data: { userId: grace.userId, by: adminId, now: disabledAt } });
    await caughtUp('users', last);

    const a = await findUserById(db.pool, ada.userId);
    expect(a).toEqual({
      userId: ada.userId,
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      roles: ['user', 'ops'],
      status: 'active',
      registeredAt: expect.any(Date),
      updatedAt: revokedAt, // a rehash is not a profile change
    });
    expect(a!.registeredAt.getTime()).toBeLessThan(revokedAt.getTime());
    expect(await findUserById(db.pool, ada.userId.toUpperCase())).toEqual(a);
    expect(await findUserByEmail(db.pool, 'ADA@example.com')).toEqual(a);
    expect(await findUserById(db.pool, grace.userId)).toMatchObject({
      status: 'disabled',
      roles: ['user'],
      updatedAt: disabledAt,
    });
    expect(await findUserById(db.pool, randomUUID())).toBeUndefined();
    expect(await findUserById(db.pool, 'not-a-uuid')).toBeUndefined();

    expect(await findCredentialsByEmail(db.pool, ' ADA@EXAMPLE.COM')).toEqual({
      userId: ada.userId,
      email: 'ada@example.com',
      passwordHash: hashOf('ada-rehashed'),
      status: 'active',
    });
    expect(await findCredentialsByEmail(db.pool, 'grace@example.com')).toEqual({
      userId: grace.userId,
      email: 'grace@example.com',
      passwordHash: hashOf(grace.userId),
      status: 'disabled',
    });
    expect(await findCredentialsByEmail(db.pool, 'nobody@example.com')).toBeUndefined();

    const columns = await db.pool.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position`,
    );
    expect(columns.rows.map((r) => r.column_name)).toEqual([
      'user_id',
      'email',
      'name',
      'roles',
      'status',
      'registered_at',
      'updated_at',
    ]);
    const leaked = await db.pool.query(`SELECT 1 FROM users u WHERE row_to_json(u)::text LIKE '%$argon2id$%'`);
    expect(leaked.rowCount).toBe(0);
  });

  it('lets exactly one of 20 concurrent sign-ups reserve an email', async () => {
    const email = 'race@example.com';
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, () => {
        const userId = randomUUID();
        const now = tick();
        return handleCommand({
          store,
          decider: emailReservationDecider,
          streamId: emailStreamId(email),
          command: { type: 'ReserveEmail', data: { email, userId, now } },
          ctx: ctx(now),
          retries: 3,
        });
      }),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    for (const o of outcomes) {
      if (o.status === 'rejected')
        expect((o.reason as DomainError).code).toMatch(/^(IDENTITY\.EMAIL_TAKEN|PLATFORM\.CONCURRENCY_CONFLICT)$/);
    }
    expect(await store.readStream(emailStreamId(email))).toHaveLength(1);
  });

  it('lists users with keyset pagination and a case-insensitive filter on email or name', async () => {
    let last = 0;
    for (let i = 1; i <= 25; i++) {
      const n = String(i).padStart(2, '0');
      last = (await signUp(`member-${n}@fleet.example`, `Fleet Member ${n}`)).position;
    }
    await caughtUp('users', last);

    // Every user, page by page, in user-id order, each exactly once.
    const all = (await db.pool.query<{ user_id: string }>('SELECT user_id::text FROM users ORDER BY user_id')).rows.map(
      (r) => r.user_id,
    );
    const seen: UserView[] = [];
    let after: string | undefined;
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(10);
      const page = await listUsers(db.pool, { limit: 7, ...(after ? { after } : {}) });
      seen.push(...page.items);
      if (page.nextAfter === null) break;
      expect(page.items).toHaveLength(7);
      after = page.nextAfter;
    }
    expect(seen.map((u) => u.userId)).toEqual(all);

    // The filter, combined with pagination: 25 matches as 10 + 10 + 5.
    const fleet: UserView[] = [];
    const p1 = await listUsers(db.pool, { limit: 10, q: 'FLEET.example' });
    const p2 = await listUsers(db.pool, { limit: 10, q: 'FLEET.example', after: p1.nextAfter! });
    const p3 = await listUsers(db.pool, { limit: 10, q: 'FLEET.example', after: p2.nextAfter! });
    fleet.push(...p1.items, ...p2.items, ...p3.items);
    expect([p1.items.length, p2.items.length, p3.items.length, p3.nextAfter]).toEqual([10, 10, 5, null]);
    expect(fleet.map((u) => u.email).sort()).toEqual(
      Array.from({ length: 25 }, (_, i) => `member-${String(i + 1).padStart(2, '0')}@fleet.example`),
    );
    expect(fleet.map((u) => u.userId)).toEqual([...fleet.map((u) => u.userId)].sort());

    const byName = await listUsers(db.pool, { q: '  member 1' });
    expect(byName.items.map((u) => u.name).sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `Fleet Member ${10 + i}`),
    );
    expect((await listUsers(db.pool, { q: 'lovelace' })).items.map((u) => u.email)).toEqual(['ada@example.com']);
    expect((await listUsers(db.pool, { q: '%' })).items).toEqual([]); // matched literally, not as a LIKE wildcard
    expect((await listUsers(db.pool, { q: '_' })).items).toEqual([]);
    expect((await listUsers(db.pool)).items).toHaveLength(all.length); // default limit 50

    for (const limit of [0, 201, 1.5, -1]) expect(await invalidQuery(listUsers(db.pool, { limit }))).toEqual(['limit']);
    expect(await invalidQuery(listUsers(db.pool, { after: 'x' }))).toEqual(['after']);
    expect(await invalidQuery(listUsers(db.pool, { q: 'q'.repeat(255) }))).toEqual(['q']);
    expect((await listUsers(db.pool, { limit: 200 })).items).toHaveLength(all.length);
  });
});

describe('identity read models: devices', () => {
  it('builds devices from device events; listings never carry the secret hash', async () => {
    const alice = randomUUID();
    const bob = randomUUID();
    const owned: Record<string, string[]> = { [alice]: [], [bob]: [] };
    let last = 0;
    for (const [owner, count] of [
      [alice, 3],
      [bob, 2],
    ] as const) {
      for (let i = 0; i < count; i++) {
        const deviceId = randomUUID();
        owned[owner]!.push(deviceId);
        last = await device({
          type: 'RegisterDevice',
          data: { deviceId, ownerId: owner, name: `  sensor ${i} `, secretHash: hashOf(deviceId), now: tick() },
        });
      }
    }
    const [rotated, revoked] = owned[alice] as [string, string, string];
    last = await device({
      type: 'RotateDeviceSecret',
      data: { deviceId: rotated, secretHash: hashOf('rotated'), by: `user:${alice}`, now: tick() },
    });
    const revokedAt = tick();
    last = await device({ type: 'RevokeDevice', data: { deviceId: revoked, by: `user:${alice}`, now: revokedAt } });
    expect(await device({ type: 'RevokeDevice', data: { deviceId: revoked, by: `user:${alice}`, now: tick() } })).toBe(
      0,
    );
    await caughtUp('devices', last);

    expect(await findDevice(db.pool, revoked)).toEqual({
      deviceId: revoked,
      ownerId: alice,
      name: 'sensor 1',
      status: 'revoked',
      registeredAt: expect.any(Date),
      revokedAt,
    });
    expect(await findDevice(db.pool, rotated)).toMatchObject({ status: 'active', revokedAt: null });
    expect(await findDevice(db.pool, randomUUID())).toBeUndefined();
    expect(await findDevice(db.pool, 'nope')).toBeUndefined();
    expect(await findDeviceCredentials(db.pool, rotated)).toEqual({
      deviceId: rotated,
      ownerId: alice,
      status: 'active',
      secretHash: hashOf('rotated'),
    });
    expect(await findDeviceCredentials(db.pool, revoked)).toMatchObject({
      status: 'revoked',
      secretHash: hashOf(revoked),
    });

    const p1 = await listDevicesByOwner(db.pool, alice, { limit: 2 });
    const p2 = await listDevicesByOwner(db.pool, alice, { limit: 2, after: p1.nextAfter! });
    expect([p1.items.length, p2.items.length, p2.nextAfter]).toEqual([2, 1, null]);
    expect([...p1.items, ...p2.items].map((d) => d.deviceId)).toEqual([...owned[alice]!].sort());
    expect((await listDevicesByOwner(db.pool, bob)).items.map((d) => d.deviceId)).toEqual([...owned[bob]!].sort());
    expect(await listDevicesByOwner(db.pool, 'nobody')).toEqual({ items: [], nextAfter: null });

    const everything = await listAllDevices(db.pool, { limit: 4 });
    const rest = await listAllDevices(db.pool, { limit: 4, after: everything.nextAfter! });
    expect([...everything.items, ...rest.items].map((d) => d.deviceId)).toEqual(
      [...owned[alice]!, ...owned[bob]!].sort(),
    );
    expect(rest.nextAfter).toBeNull();
    for (const d of [...everything.items, ...rest.items]) expect(Object.keys(d)).not.toContain('secretHash');
    expect(await invalidQuery(listAllDevices(db.pool, { limit: 0 }))).toEqual(['limit']);
    expect(await invalidQuery(listDevicesByOwner(db.pool, alice, { after: 'x' }))).toEqual(['after']);
  });
});

describe('identity read models: rebuild', () => {
  it('rebuilds users and devices from the event store into the same rows, and keeps following afterwards', async () => {
    const before = await rows();
    expect(before.users!.length).toBeGreaterThan(25);
    expect(before.devices!.length).toBe(5);

    const users = await engine.rebuild('users', 'test:identity');
    const devices = await engine.rebuild('devices', 'test:identity');
    expect(users.events).toBeGreaterThan(25);
    expect(devices.events).toBe(7);
    expect(await rows()).toEqual(before);
    const indexes = await db.pool.query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'devices' ORDER BY indexname`,
    );
    expect(indexes.rows.map((r) => r.indexname)).toEqual(['devices_owner_id_idx', 'devices_pkey']);

    const late = await signUp('late@example.com', 'Late Comer');
    await caughtUp('users', late.position);
    expect(await findUserById(db.pool, late.userId)).toMatchObject({ email: 'late@example.com', status: 'active' });
  });
});
