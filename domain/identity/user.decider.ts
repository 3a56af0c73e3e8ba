import type { Decider } from '../shared/event';
import { conflict, notFound, validationError } from '../shared/errors';
import { normaliseEmail } from './email';
import { IdentityErrorCode } from './identity-errors';
import type { UserEvent } from './user.events';
import { BASE_ROLE, RULES, requireArgon2idHash, requireName, requireRole, requireUuid } from './validation';
import { unreachable } from '../shared/unreachable';

/**
 * The write model of one user (stream `user-<userId>`): registration, roles,
 * disabling and password rehashing. Pure: time and ids come in the command.
 * Checking the password itself (length, common list) happens before hashing,
 * in the application, with password-policy.ts; the decider sees only the hash.
 */

export type RegisterUser = {
  readonly type: 'RegisterUser';
  readonly data: {
    readonly userId: string;
    readonly email: string;
    readonly name: string;
    readonly passwordHash: string;
    readonly now: Date;
  };
};
export type AssignRole = {
  readonly type: 'AssignRole';
  readonly data: { readonly userId: string; readonly role: string; readonly by: string; readonly now: Date };
};
export type RevokeRole = {
  readonly type: 'RevokeRole';
  readonly data: { readonly userId: string; readonly role: string; readonly by: string; readonly now: Date };
};
export type DisableUser = {
  readonly type: 'DisableUser';
  readonly data: { readonly userId: string; readonly by: string; readonly now: Date };
};
export type RehashPassword = {
  readonly type: 'RehashPassword';
  readonly data: { readonly userId: string; readonly passwordHash: string; readonly now: Date };
};

export type UserCommand = RegisterUser | AssignRole | RevokeRole | DisableUser | RehashPassword;

export type UserStatus = 'none' | 'active' | 'disabled';

export interface UserState {
  readonly status: UserStatus;
  readonly userId: string;
  readonly email: string;
  readonly name: string;
  readonly roles: readonly string[];
  readonly passwordHash: string;
}

export const initialUserState: UserState = {
  status: 'none',
  userId: '',
  email: '',
  name: '',
  roles: [],
  passwordHash: '',
};

export function evolveUser(state: UserState, event: UserEvent): UserState {
  switch (event.type) {
    case 'identity.UserRegistered': {
      const { userId, email, name, passwordHash, roles } = event.data;
      return { status: 'active', userId, email, name, roles: [...roles], passwordHash };
    }
    case 'identity.RoleAssigned':
      return state.roles.includes(event.data.role) ? state : { ...state, roles: [...state.roles, event.data.role] };
    case 'identity.RoleRevoked':
      return { ...state, roles: state.roles.filter((r) => r !== event.data.role) };
    case 'identity.UserDisabled':
      return { ...state, status: 'disabled' };
    case 'identity.PasswordRehashed':
      return { ...state, passwordHash: event.data.passwordHash };
    default:
      return unreachable(event, 'event');
  }
}

export function decideUser(command: UserCommand, state: UserState): UserEvent[] {
  switch (command.type) {
    case 'RegisterUser': {
      const d = command.data;
      // Input first, so a malformed command gets the same answer whatever the stream holds.
      const userId = requireUuid(d.userId, 'userId');
      const email = normaliseEmail(d.email);
      const name = requireName(d.name);
      const passwordHash = requireArgon2idHash(d.passwordHash, 'passwordHash', IdentityErrorCode.INVALID_PASSWORD_HASH);
      if (state.status !== 'none') throw conflict(IdentityErrorCode.USER_EXISTS, `user ${userId} already exists`);
      return [
        {
          type: 'identity.UserRegistered',
          data: { userId, email, name, passwordHash, roles: [BASE_ROLE], at: d.now.toISOString() },
        },
      ];
    }
    case 'AssignRole': {
      const { userId, by, now } = command.data;
      const role = requireRole(command.data.role);
      requireExisting(state, userId);
      requireActive(state, userId);
      if (state.roles.includes(role)) return [];
      return [{ type: 'identity.RoleAssigned', data: { userId, role, by, at: now.toISOString() } }];
    }
    case 'RevokeRole': {
      const { userId, by, now } = command.data;
      const role = requireRole(command.data.role);
      if (role === BASE_ROLE)
        throw validationError(IdentityErrorCode.ROLE_PROTECTED, RULES.baseRole, [
          { field: 'role', rule: RULES.baseRole },
        ]);
      requireExisting(state, userId);
      // Allowed on a disabled user: taking privileges away is always safe.
      if (!state.roles.includes(role)) return [];
      return [{ type: 'identity.RoleRevoked', data: { userId, role, by, at: now.toISOString() } }];
    }
    case 'DisableUser': {
      const { userId, by, now } = command.data;
      requireExisting(state, userId);
      if (state.status === 'disabled') return [];
      return [{ type: 'identity.UserDisabled', data: { userId, by, at: now.toISOString() } }];
    }
    case 'RehashPassword': {
      const { userId, now } = command.data;
      const passwordHash = requireArgon2idHash(
        command.data.passwordHash,
        'passwordHash',
        IdentityErrorCode.INVALID_PASSWORD_HASH,
      );
      requireExisting(state, userId);
      requireActive(state, userId);
      if (passwordHash === state.passwordHash) return [];
      return [{ type: 'identity.PasswordRehashed', data: { userId, passwordHash, at: now.toISOString() } }];
    }
    default:
      return unreachable(command, 'command');
  }
}

function requireExisting(state: UserState, userId: string): void {
  if (state.status === 'none') throw notFound(IdentityErrorCode.USER_NOT_FOUND, `no user ${userId}`);
}

function requireActive(state: UserState, userId: string): void {
  if (state.status === 'disabled') throw conflict(IdentityErrorCode.USER_DISABLED, `user ${userId} is disabled`);
}

export const userDecider: Decider<UserCommand, UserEvent, UserState> = {
  initialState: initialUserState,
  evolve: evolveUser,
  decide: decideUser,
};
