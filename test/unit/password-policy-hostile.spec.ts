import { runInNewContext } from 'node:vm';
import { PASSWORD_RULES, isCommonPassword, passwordProblems } from '../../domain/identity/password-policy';

/**
 * Issue 9: a sign-up with the password "a" + "!"×200,000 + "b" froze the event loop for 22 s
 * (the common-password check ran a quadratic regex before the length limit). A synchronous
 * call cannot be timed out by Jest, so each call runs under vm's watchdog, which interrupts
 * even a running regex. Linear code answers in milliseconds; the deadline is 100× that and
 * more, so a loaded machine passes and quadratic code fails instead of hanging the run.
 */
const DEADLINE_MS = 15_000;

function withinDeadline<T>(what: string, work: () => T): T {
  try {
    return runInNewContext('work()', { work }, { timeout: DEADLINE_MS }) as T;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT')
      throw new Error(`${what} ran past ${DEADLINE_MS} ms: not linear in its input`);
    throw e;
  }
}

const who = { email: 'ada.lovelace@example.com', name: 'Ada Lovelace' };
const HOSTILE: [string, string][] = [
  ['"a" + "!"×200,000 + "b"', 'a' + '!'.repeat(200_000) + 'b'],
  ['"a" + "1 "×100,000 + "b"', 'a' + '1 '.repeat(100_000) + 'b'],
  ['"a" + emoji×100,000 + "b"', 'a' + '\u{1F511}'.repeat(100_000) + 'b'],
  ['"a" + "!"×1,000,000 + "b"', 'a' + '!'.repeat(1_000_000) + 'b'],
];

describe('password policy against hostile input', () => {
  it.each(HOSTILE)('isCommonPassword(%s) answers in linear time', (what, password) => {
    expect(withinDeadline(`isCommonPassword(${what})`, () => isCommonPassword(password))).toBe(false);
  });

  it.each(HOSTILE)('passwordProblems(%s) refuses the length, in linear time', (what, password) => {
    expect(withinDeadline(`passwordProblems(${what})`, () => passwordProblems(password, who))).toEqual([
      PASSWORD_RULES.maxLength,
    ]);
  });
});
