import { validationError } from '../shared/errors';
import { COMMON_PASSWORDS } from './common-passwords';
import { IdentityErrorCode } from './identity-errors';

/**
 * What a new password must satisfy, checked on the plaintext before it is
 * hashed (the decider only ever sees the argon2id hash). Follows NIST SP
 * 800-63B 5.1.1.2: a length floor, a generous ceiling, a blocklist of known
 * passwords and context words, and no composition rules.
 */

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 128;
/** Email local parts and names shorter than this are too generic to forbid. */
const PERSONAL_MIN_LENGTH = 4;
/** A common word with digits or symbols around it is still that word; shorter cores are left alone. */
const CORE_MIN_LENGTH = 4;

export const PASSWORD_RULES = {
  minLength: `must be at least ${PASSWORD_MIN_LENGTH} characters`,
  maxLength: `must be at most ${PASSWORD_MAX_LENGTH} characters`,
  common: 'must not be a commonly used password',
  personal: 'must not contain your email address or name',
} as const;

export type PasswordRule = (typeof PASSWORD_RULES)[keyof typeof PASSWORD_RULES];

const COMMON = new Set(COMMON_PASSWORDS);
const AROUND_CORE = /^[\p{N}\p{P}\p{S}\s]+|[\p{N}\p{P}\p{S}\s]+$/gu;

/** Whether a password is on the common list: as is (case-insensitively), or as a common word of 4+ characters with only digits, punctuation or symbols around it ("Dragon2024!"). */
export function isCommonPassword(password: string): boolean {
  const lower = password.toLowerCase();
  if (COMMON.has(lower)) return true;
  const core = lower.replace(AROUND_CORE, '');
  return core !== lower && [...core].length >= CORE_MIN_LENGTH && COMMON.has(core);
}

/** The rules a password breaks, in the order of PASSWORD_RULES; empty when it is acceptable. */
export function passwordProblems(password: string, context: { readonly email: string; readonly name: string }): PasswordRule[] {
  const problems: PasswordRule[] = [];
  const length = [...password].length; // code points: an emoji is one character to the person typing it
  if (length < PASSWORD_MIN_LENGTH) problems.push(PASSWORD_RULES.minLength);
  if (length > PASSWORD_MAX_LENGTH) problems.push(PASSWORD_RULES.maxLength);
  if (isCommonPassword(password)) problems.push(PASSWORD_RULES.common);
  if (containsPersonal(password, context)) problems.push(PASSWORD_RULES.personal);
  return problems;
}

/** Throws a validation error (IDENTITY.WEAK_PASSWORD, one field error per broken rule, all on 'password'). */
export function checkPassword(password: string, context: { readonly email: string; readonly name: string }): void {
  const problems = passwordProblems(password, context);
  if (problems.length === 0) return;
  throw validationError(IdentityErrorCode.WEAK_PASSWORD, `password ${problems.join('; ')}`,
    problems.map((rule) => ({ field: 'password', rule })));
}

function containsPersonal(password: string, context: { readonly email: string; readonly name: string }): boolean {
  const lower = password.toLowerCase();
  const email = context.email.trim().toLowerCase();
  const at = email.lastIndexOf('@');
  const local = at >= 0 ? email.slice(0, at) : email;
  const name = context.name.trim().toLowerCase();
  // "Ada Lovelace" is also caught typed without its spaces.
  const words = [local, name, name.replace(/\s+/g, '')];
  return words.some((w) => [...w].length >= PERSONAL_MIN_LENGTH && lower.includes(w));
}
