import { DomainError } from '../shared/errors';
import { COMMON_PASSWORDS } from './common-passwords';
import { PASSWORD_RULES, checkPassword, codePointLength, isCommonPassword, passwordProblems } from './password-policy';

const who = { email: 'ada.lovelace@example.com', name: 'Ada Lovelace' };

function weak(password: string, context = who): DomainError {
  try {
    checkPassword(password, context);
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error(`expected ${JSON.stringify(password)} to be refused`);
}

describe('identity password policy', () => {
  it('accepts a long, uncommon password unrelated to the user', () => {
    expect(() => checkPassword('violet-anchor-quarry-47', who)).not.toThrow();
    expect(() => checkPassword('x'.repeat(128), who)).not.toThrow();
    expect(passwordProblems('tangerine submarine ballet', who)).toEqual([]);
  });

  it('refuses a password under 12 characters with a readable rule', () => {
    const e = weak('Tr0ub4dor&3');
    expect({ kind: e.kind, code: e.code, fields: e.fields }).toEqual({
      kind: 'validation',
      code: 'IDENTITY.WEAK_PASSWORD',
      fields: [{ field: 'password', rule: 'must be at least 12 characters' }],
    });
    expect(e.message).toBe('password must be at least 12 characters');
  });

  it('counts characters as code points, not UTF-16 units', () => {
    expect(passwordProblems('\u{1F511}'.repeat(11), who)).toEqual([PASSWORD_RULES.minLength]); // 22 UTF-16 units
    expect(passwordProblems('\u{1F511}'.repeat(12), who)).toEqual([]);
    expect(passwordProblems('\u{1F511}'.repeat(129), who)).toEqual([PASSWORD_RULES.maxLength]);
  });

  it('refuses a password over 128 characters', () => {
    expect(weak('y'.repeat(129)).fields).toEqual([{ field: 'password', rule: 'must be at most 128 characters' }]);
  });

  it('refuses passwords from the common list, case-insensitively', () => {
    for (const p of ['password1234', 'QWERTYUIOP123', 'IloveYou1234', '1q2w3e4r5t6y', 'administrator']) {
      expect(weak(p).fields).toEqual([{ field: 'password', rule: 'must not be a commonly used password' }]);
    }
  });

  it('refuses a common word with only digits or symbols around it', () => {
    expect(isCommonPassword('Dragon2024!!')).toBe(true);
    expect(isCommonPassword('!!Sunshine!!2025')).toBe(true);
    expect(isCommonPassword('123456password')).toBe(true);
    expect(weak('Baseball1987!!').fields.map((f) => f.rule)).toEqual([PASSWORD_RULES.common]);
    // A short common core is not enough: random passwords start with two letters often enough.
    expect(isCommonPassword('go8$4!2&1%9@')).toBe(false);
    expect(isCommonPassword('dragonfruit-smoothie')).toBe(false);
  });

  // Issue 9: a long run of punctuation was fed to a quadratic regex before the length check.
  // test/unit/password-policy-hostile.spec.ts holds the same inputs to a deadline.
  it('refuses a password over the maximum for its length alone, whatever its size', () => {
    for (const p of ['a' + '!'.repeat(200_000) + 'b', 'a' + '\u{1F511}'.repeat(100_000) + 'b', ' '.repeat(1_000_000)]) {
      expect(passwordProblems(p, who)).toEqual([PASSWORD_RULES.maxLength]);
      expect(weak(p).fields).toEqual([{ field: 'password', rule: 'must be at most 128 characters' }]);
    }
  });

  it('finds a common core inside long runs of digits and symbols', () => {
    expect(isCommonPassword('!'.repeat(1000) + 'dragon' + '7'.repeat(1000))).toBe(true);
    expect(isCommonPassword('!'.repeat(1000) + 'dragon-fruit' + '7'.repeat(1000))).toBe(false);
  });

  it('counts code points up to a limit without reading further', () => {
    expect(codePointLength('\u{1F511}a\u{1F511}')).toBe(3);
    expect(codePointLength('\ud83d')).toBe(1); // a lone surrogate is one character
    expect(codePointLength('x'.repeat(1000), 128)).toBe(129);
  });

  it('reports every rule broken at once', () => {
    expect(weak('monkey').fields.map((f) => f.rule)).toEqual([PASSWORD_RULES.minLength, PASSWORD_RULES.common]);
  });

  it('refuses a password that is or contains the email local part (4+ characters)', () => {
    expect(weak('ada.lovelace').fields.map((f) => f.rule)).toEqual([PASSWORD_RULES.personal]);
    expect(weak('my-ADA.LOVELACE-key').fields.map((f) => f.rule)).toEqual([PASSWORD_RULES.personal]);
    // A local part under 4 characters is too generic to forbid.
    expect(passwordProblems('bob-rides-the-tram-99', { email: 'bob@example.com', name: 'B' })).toEqual([]);
  });

  it('refuses a password that is or contains the name (4+ characters), with or without spaces', () => {
    const context = { email: 'al@example.com', name: '  Grace Hopper ' };
    expect(weak('grace hopper', context).fields.map((f) => f.rule)).toEqual([PASSWORD_RULES.personal]);
    expect(weak('xx-GraceHopper-xx', context).fields.map((f) => f.rule)).toEqual([PASSWORD_RULES.personal]);
    expect(passwordProblems('ann-rides-the-tram-99', { email: 'x@example.com', name: 'Ann' })).toEqual([]);
  });

  it('ships a list of at least 1000 distinct lowercase common passwords', () => {
    expect(COMMON_PASSWORDS.length).toBeGreaterThanOrEqual(1000);
    expect(new Set(COMMON_PASSWORDS).size).toBe(COMMON_PASSWORDS.length);
    expect(COMMON_PASSWORDS.filter((p) => p !== p.toLowerCase() || p !== p.trim() || p === '')).toEqual([]);
    expect(COMMON_PASSWORDS).toEqual(
      expect.arrayContaining(['123456', 'password', 'qwerty', 'iloveyou', 'letmein', 'trustno1']),
    );
  });
});
