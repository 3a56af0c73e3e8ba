import { validationError } from '../shared/errors';
import { IdentityErrorCode } from './identity-errors';

/**
 * Input checks shared by the identity deciders. Each throws a validation
 * DomainError naming the field and the rule, in words a client can act on.
 */

/** Every stored credential hash is argon2id (PHC string format); anything else is a plaintext or a weaker hash slipping through. */
export const ARGON2ID_PREFIX = '$argon2id$';

/** The base role every account has from registration on. */
export const BASE_ROLE = 'user';

export const ROLE_PATTERN = /^[a-z][a-z0-9_-]{1,31}$/;

/** Canonical lowercase UUID: the same text in the stream id, the event and the read model's uuid column. */
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const NAME_MAX_LENGTH = 100;

export const RULES = {
  argon2id: `must be an argon2id hash (starting with ${ARGON2ID_PREFIX})`,
  role: 'must be 2-32 characters: a lowercase letter, then lowercase letters, digits, _ or -',
  baseRole: `the '${BASE_ROLE}' role cannot be revoked`,
  uuid: 'must be a lowercase UUID',
  name: `must be 1-${NAME_MAX_LENGTH} characters without control characters`,
} as const;

export function isArgon2idHash(value: string): boolean {
  return value.startsWith(ARGON2ID_PREFIX);
}

export function requireArgon2idHash(value: string, field: string, code: string): string {
  if (!isArgon2idHash(value))
    throw validationError(code, `${field} ${RULES.argon2id}`, [{ field, rule: RULES.argon2id }]);
  return value;
}

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

export function requireUuid(value: string, field: string): string {
  if (!isUuid(value))
    throw validationError(IdentityErrorCode.INVALID_ID, `${field} ${RULES.uuid}`, [{ field, rule: RULES.uuid }]);
  return value;
}

export function requireRole(role: string): string {
  if (!ROLE_PATTERN.test(role)) {
    throw validationError(IdentityErrorCode.INVALID_ROLE, `role ${RULES.role}`, [{ field: 'role', rule: RULES.role }]);
  }
  return role;
}

/** A display name (person or device): trimmed, 1-100 characters (code points), no control characters. Returns the trimmed name. */
export function requireName(raw: string, field = 'name'): string {
  const name = raw.trim();
  const length = [...name].length;
  if (length < 1 || length > NAME_MAX_LENGTH || /\p{Cc}/u.test(name)) {
    throw validationError(IdentityErrorCode.INVALID_NAME, `${field} ${RULES.name}`, [{ field, rule: RULES.name }]);
  }
  return name;
}
