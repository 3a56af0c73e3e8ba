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
/** One code point that may surround a common core: a digit, punctuation, a symbol or white space. */
const AROUND_CORE_CHAR = /^[\p{N}\p{P}\p{S}\s]$/u;

/**
 * The password without its leading and trailing digits, punctuation, symbols and spaces.
 * A loop over code points, not a regex: `[…]+$` retried at every start of a long run
 * ("a" + "!"×200,000 + "b") is quadratic and froze the event loop for 22 s.
 */
function stripAroundCore(text: string): string {
  const chars = Array.from(text);
  let start = 0;
  let end = chars.length;
  while (start < end && AROUND_CORE_CHAR.test(chars[start]!)) start++;
  while (end > start && AROUND_CORE_CHAR.test(chars[end - 1]!)) end--;
  return start === 0 && end === chars.length ? text : chars.slice(start, end).join('');
}

/**
 * Code points in `text`, counting no further than `limit + 1` (enough to say "too long"),
 * so a megabyte of input costs nothing more than reading past the limit.
 */
export function codePointLength(text: string, limit = Number.MAX_SAFE_INTEGER): number {
  let n = 0;
  for (let i = 0; i < text.length && n <= limit; i++, n++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}

/** Whether a password is on the common list: as is (case-insensitively), or as a common word of 4+ characters with only digits, punctuation or symbols around it ("Dragon2024!"). Linear in the length of the password. */
export function isCommonPassword(password: string): boolean {
  const lower = password.toLowerCase();
  if (COMMON.has(lower)) return true;
  const core = stripAroundCore(lower);
  return core !== lower && codePointLength(core) >= CORE_MIN_LENGTH && COMMON.has(core);
}

/**
 * The rules a password breaks, in the order of PASSWORD_RULES; empty when it is acceptable.
 * A password over the maximum length is refused for that alone: nothing else is checked on
 * input that is refused anyway, so its cost stays bounded by the limit, not by the input.
 */
export function passwordProblems(
  password: string,
  context: { readonly email: string; readonly name: string },
): PasswordRule[] {
  // Code points: an emoji is one character to the person typing it.
  const length = codePointLength(password, PASSWORD_MAX_LENGTH);
  if (length > PASSWORD_MAX_LENGTH) return [PASSWORD_RULES.maxLength];
  const problems: PasswordRule[] = [];
  if (length < PASSWORD_MIN_LENGTH) problems.push(PASSWORD_RULES.minLength);
  if (isCommonPassword(password)) problems.push(PASSWORD_RULES.common);
  if (containsPersonal(password, context)) problems.push(PASSWORD_RULES.personal);
  return problems;
}

/** Throws a validation error (IDENTITY.WEAK_PASSWORD, one field error per broken rule, all on 'password'). */
export function checkPassword(password: string, context: { readonly email: string; readonly name: string }): void {
  const problems = passwordProblems(password, context);
  if (problems.length === 0) return;
  throw validationError(
    IdentityErrorCode.WEAK_PASSWORD,
    `password ${problems.join('; ')}`,
    problems.map((rule) => ({ field: 'password', rule })),
  );
}

function containsPersonal(password: string, context: { readonly email: string; readonly name: string }): boolean {
  const lower = password.toLowerCase();
  const email = context.email.trim().toLowerCase();
  const at = email.lastIndexOf('@');
  const local = at >= 0 ? email.slice(0, at) : email;
  const name = context.name.trim().toLowerCase();
  // "Ada Lovelace" is also caught typed without its spaces.
  const words = [local, name, name.replace(/\s+/g, '')];
  return words.some((w) => codePointLength(w) >= PERSONAL_MIN_LENGTH && lower.includes(w));
}
