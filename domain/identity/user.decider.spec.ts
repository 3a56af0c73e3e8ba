import { given } from '../shared/given-when-then';
import type { UserEvent } from './user.events';
import { userDecider, type UserCommand } from './user.decider';

const userId = '0b7e3f3c-6a43-4b0e-9d1f-2f3a4b5c6d7e';
const adminId = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';
const now = new Date('2025-03-01T10:00:00.000Z');
const at = now.toISOString();
const hash = '$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG';
const newHash = '$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$ZJx3wQy9Xo3xQ2b0k7i4d6H1Vn8Pqa0s';

const register = (over: Partial<Extract<UserCommand, { type: 'RegisterUser' }>['data']> = {}): UserCommand => ({
  type: 'RegisterUser',
  data: { userId, email: 'ada@example.com', name: 'Ada Lovelace', passwordHash: hash, now, ...over },
});
const assign = (role: string, id = userId): UserCommand => ({
  type: 'AssignRole',
  data: { userId: id, role, by: adminId, now },
});
const revoke = (role: string, id = userId): UserCommand => ({
  type: 'RevokeRole',
  data: { userId: id, role, by: adminId, now },
});
const disable = (id = userId): UserCommand => ({ type: 'DisableUser', data: { userId: id, by: adminId, now } });
const rehash = (passwordHash: string): UserCommand => ({ type: 'RehashPassword', data: { userId, passwordHash, now } });

const registered: UserEvent = {
  type: 'identity.UserRegistered',
  data: { userId, email: 'ada@example.com', name: 'Ada Lovelace', passwordHash: hash, roles: ['user'], at },
};
const adminAssigned: UserEvent = { type: 'identity.RoleAssigned', data: { userId, role: 'admin', by: adminId, at } };
const disabled: UserEvent = { type: 'identity.UserDisabled', data: { userId, by: adminId, at } };

describe('identity user decider: RegisterUser', () => {
  it('registers a new user with the base role, a normalised email and a trimmed name', () => {
    given(userDecider, [])
      .when(register({ email: '  Ada@Example.COM ', name: '  Ada Lovelace ' }))
      .then([registered]);
  });

  it('refuses to register a user twice', () => {
    given(userDecider, [registered]).when(register()).thenThrows('IDENTITY.USER_EXISTS', { kind: 'conflict' });
    given(userDecider, [registered, disabled])
      .when(register())
      .thenThrows('IDENTITY.USER_EXISTS', { kind: 'conflict' });
  });

  it.each([
    ['a plaintext password', 'correct horse battery staple'],
    ['an argon2i hash', '$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG'],
    ['an argon2d hash', '$argon2d$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG'],
    ['a bcrypt hash', '$2b$12$KIXQJQd8o2pY9m1uQK2u5eW3l2m0G8e2vH7d3Q1f9sQmX4x8a1b2c'],
    ['an empty string', ''],
    ['the prefix in upper case', '$ARGON2ID$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$Rdes'],
  ])('refuses %s as the password hash', (_what, passwordHash) => {
    given(userDecider, [])
      .when(register({ passwordHash }))
      .thenThrows('IDENTITY.INVALID_PASSWORD_HASH', { kind: 'validation', fields: ['passwordHash'] });
  });

  it('refuses an invalid email, naming the field', () => {
    given(userDecider, [])
      .when(register({ email: 'not-an-email' }))
      .thenThrows('IDENTITY.INVALID_EMAIL', { kind: 'validation', fields: ['email'] });
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['too long', 'x'.repeat(101)],
    ['with a control character', 'Ada\u0000'],
  ])('refuses a name that is %s', (_what, name) => {
    given(userDecider, [])
      .when(register({ name }))
      .thenThrows('IDENTITY.INVALID_NAME', { kind: 'validation', fields: ['name'] });
  });

  it('accepts a name of exactly 100 characters, counting code points', () => {
    const name = '\u{1F600}'.repeat(100);
    given(userDecider, [])
      .when(register({ name }))
      .then([{ ...registered, data: { ...registered.data, name } }]);
  });

  it('refuses a user id that is not a lowercase UUID', () => {
    given(userDecider, [])
      .when(register({ userId: 'ada' }))
      .thenThrows('IDENTITY.INVALID_ID', { kind: 'validation', fields: ['userId'] });
    given(userDecider, [])
      .when(register({ userId: userId.toUpperCase() }))
      .thenThrows('IDENTITY.INVALID_ID', { fields: ['userId'] });
  });
});

describe('identity user decider: AssignRole', () => {
  it('assigns a role the user lacks', () => {
    given(userDecider, [registered]).when(assign('admin')).then([adminAssigned]);
  });

  it('is idempotent: assigning a role the user has records nothing', () => {
    given(userDecider, [registered, adminAssigned]).when(assign('admin')).thenNothing();
    given(userDecider, [registered]).when(assign('user')).thenNothing();
  });

  it.each(['ab', 'a'.repeat(32), 'ops_admin', 'fleet-manager', 'r2d2'])('accepts the role name %s', (role) => {
    given(userDecider, [registered])
      .when(assign(role))
      .then([{ type: 'identity.RoleAssigned', data: { userId, role, by: adminId, at } }]);
  });

  it.each(['', 'a', 'a'.repeat(33), 'Admin', '1admin', '_admin', 'ad min', 'admin!', 'admin\n', 'rôle'])(
    'refuses the role name %j, naming the field',
    (role) => {
      given(userDecider, [registered])
        .when(assign(role))
        .thenThrows('IDENTITY.INVALID_ROLE', { kind: 'validation', fields: ['role'] });
    },
  );

  it('answers not found for a missing user', () => {
    given(userDecider, []).when(assign('admin')).thenThrows('IDENTITY.USER_NOT_FOUND', { kind: 'not_found' });
  });

  it('refuses to assign a role to a disabled user', () => {
    given(userDecider, [registered, disabled])
      .when(assign('admin'))
      .thenThrows('IDENTITY.USER_DISABLED', { kind: 'conflict' });
  });
});

describe('identity user decider: RevokeRole', () => {
  it('revokes a role the user has', () => {
    given(userDecider, [registered, adminAssigned])
      .when(revoke('admin'))
      .then([{ type: 'identity.RoleRevoked', data: { userId, role: 'admin', by: adminId, at } }]);
  });

  it('is idempotent: revoking a role the user lacks records nothing', () => {
    given(userDecider, [registered]).when(revoke('admin')).thenNothing();
    given(userDecider, [
      registered,
      adminAssigned,
      { type: 'identity.RoleRevoked', data: { userId, role: 'admin', by: adminId, at } },
    ])
      .when(revoke('admin'))
      .thenNothing();
  });

  it("refuses to revoke the base role 'user', naming the field", () => {
    const error = given(userDecider, [registered])
      .when(revoke('user'))
      .thenThrows('IDENTITY.ROLE_PROTECTED', { kind: 'validation', fields: ['role'] });
    expect(error.fields[0]?.rule).toBe("the 'user' role cannot be revoked");
  });

  it('refuses a malformed role name', () => {
    given(userDecider, [registered])
      .when(revoke('Admin'))
      .thenThrows('IDENTITY.INVALID_ROLE', { kind: 'validation', fields: ['role'] });
  });

  it('answers not found for a missing user', () => {
    given(userDecider, []).when(revoke('admin')).thenThrows('IDENTITY.USER_NOT_FOUND', { kind: 'not_found' });
  });

  it('still takes a role away from a disabled user', () => {
    given(userDecider, [registered, adminAssigned, disabled])
      .when(revoke('admin'))
      .then([{ type: 'identity.RoleRevoked', data: { userId, role: 'admin', by: adminId, at } }]);
  });
});

describe('identity user decider: DisableUser', () => {
  it('disables an active user', () => {
    given(userDecider, [registered]).when(disable()).then([disabled]);
  });

  it('records nothing when the user is already disabled', () => {
    given(userDecider, [registered, disabled]).when(disable()).thenNothing();
  });

  it('answers not found for a missing user', () => {
    given(userDecider, []).when(disable()).thenThrows('IDENTITY.USER_NOT_FOUND', { kind: 'not_found' });
  });
});

describe('identity user decider: RehashPassword', () => {
  it('records the new hash', () => {
    given(userDecider, [registered])
      .when(rehash(newHash))
      .then([{ type: 'identity.PasswordRehashed', data: { userId, passwordHash: newHash, at } }]);
  });

  it('records nothing when the hash is unchanged', () => {
    given(userDecider, [registered]).when(rehash(hash)).thenNothing();
  });

  it('refuses a hash that is not argon2id', () => {
    given(userDecider, [registered])
      .when(rehash('hunter2hunter2'))
      .thenThrows('IDENTITY.INVALID_PASSWORD_HASH', { kind: 'validation', fields: ['passwordHash'] });
  });

  it('answers not found for a missing user', () => {
    given(userDecider, []).when(rehash(newHash)).thenThrows('IDENTITY.USER_NOT_FOUND', { kind: 'not_found' });
  });

  it('refuses to rehash for a disabled user', () => {
    given(userDecider, [registered, disabled])
      .when(rehash(newHash))
      .thenThrows('IDENTITY.USER_DISABLED', { kind: 'conflict' });
  });
});

describe('identity user decider: evolve', () => {
  it('folds the whole history into the state', () => {
    given(userDecider, [
      registered,
      adminAssigned,
      { type: 'identity.RoleAssigned', data: { userId, role: 'ops', by: adminId, at } },
    ])
      .when(revoke('admin'))
      .thenState((s) =>
        expect(s).toEqual({
          status: 'active',
          userId,
          email: 'ada@example.com',
          name: 'Ada Lovelace',
          roles: ['user', 'ops'],
          passwordHash: hash,
        }),
      );
    given(userDecider, [registered])
      .when(rehash(newHash))
      .thenState((s) => expect(s.passwordHash).toBe(newHash));
    given(userDecider, [registered])
      .when(disable())
      .thenState((s) => expect(s.status).toBe('disabled'));
  });

  it('stops on an event type it does not know instead of deciding on a wrong state', () => {
    const unknown = { type: 'identity.UserRenamed', data: { userId } } as unknown as UserEvent;
    expect(() => given(userDecider, [registered, unknown]).when(disable()).then([])).toThrow(
      'unknown event type identity.UserRenamed',
    );
  });
});
