import type { Event } from '../shared/event';

/**
 * Events of a user stream (`user-<userId>`). Types are stable wire names;
 * data is plain JSON (times as ISO 8601 strings). `passwordHash` is always an
 * argon2id PHC string, never a plaintext.
 */

export type UserRegistered = Event<
  'identity.UserRegistered',
  {
    readonly userId: string;
    /** Normalised (see email.ts). */
    readonly email: string;
    readonly name: string;
    readonly passwordHash: string;
    readonly roles: readonly string[];
    readonly at: string;
  }
>;

export type RoleAssigned = Event<
  'identity.RoleAssigned',
  { readonly userId: string; readonly role: string; readonly by: string; readonly at: string }
>;

export type RoleRevoked = Event<
  'identity.RoleRevoked',
  { readonly userId: string; readonly role: string; readonly by: string; readonly at: string }
>;

export type UserDisabled = Event<
  'identity.UserDisabled',
  { readonly userId: string; readonly by: string; readonly at: string }
>;

export type PasswordRehashed = Event<
  'identity.PasswordRehashed',
  { readonly userId: string; readonly passwordHash: string; readonly at: string }
>;

export type UserEvent = UserRegistered | RoleAssigned | RoleRevoked | UserDisabled | PasswordRehashed;

export const USER_EVENT_TYPES = [
  'identity.UserRegistered',
  'identity.RoleAssigned',
  'identity.RoleRevoked',
  'identity.UserDisabled',
  'identity.PasswordRehashed',
] as const satisfies readonly UserEvent['type'][];

export const userStreamId = (userId: string): string => `user-${userId}`;
