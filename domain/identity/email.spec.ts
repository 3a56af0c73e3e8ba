import { DomainError } from '../shared/errors';
import { EMAIL_RULE, normaliseEmail } from './email';

function emailError(raw: string): DomainError {
  try {
    normaliseEmail(raw);
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

describe('identity email normalisation', () => {
  it.each([
    ['  Ada@Example.COM ', 'ada@example.com'],
    ['ADA.LOVELACE+signup@mail.example.co.uk', 'ada.lovelace+signup@mail.example.co.uk'],
    ["o'brien_#1@x-y.io", "o'brien_#1@x-y.io"],
    ['a@b.cd', 'a@b.cd'],
    ['user@xn--80ak6aa92e.com', 'user@xn--80ak6aa92e.com'],
    ['user@sub.domain.xn--p1ai', 'user@sub.domain.xn--p1ai'],
  ])('normalises %j to %j', (raw, normalised) => {
    expect(normaliseEmail(raw)).toBe(normalised);
    expect(normaliseEmail(normalised)).toBe(normalised);
  });

  it.each([
    '',
    '   ',
    'plainaddress',
    '@example.com',
    'ada@',
    'ada@localhost',
    'ada@@example.com',
    'ada@exa mple.com',
    'ad a@example.com',
    '.ada@example.com',
    'ada.@example.com',
    'a..da@example.com',
    'ada@-example.com',
    'ada@example-.com',
    'ada@example..com',
    'ada@example.c',
    'ada@127.0.0.1',
    'ada@[127.0.0.1]',
    '"ada"@example.com',
    'ada@exam_ple.com',
    'ädä@example.com',
    '\u212Aate@example.com',
    'ada@example.com\u0000',
    `${'a'.repeat(65)}@example.com`,
    `ada@${'l'.repeat(64)}.com`,
  ])('refuses %j, naming the email field', (raw) => {
    const e = emailError(raw);
    expect({ kind: e.kind, code: e.code, fields: e.fields }).toEqual({
      kind: 'validation',
      code: 'IDENTITY.INVALID_EMAIL',
      fields: [{ field: 'email', rule: EMAIL_RULE }],
    });
  });

  it('accepts 254 characters and refuses 255', () => {
    const ok = `${'a'.repeat(64)}@${'d'.repeat(61)}.${'e'.repeat(61)}.${'f'.repeat(61)}.com`;
    expect(ok.length).toBe(254);
    expect(normaliseEmail(ok)).toBe(ok);
    // Same shape, one label one character longer (still under 63): refused for the total length alone.
    const tooLong = `${'a'.repeat(64)}@${'d'.repeat(62)}.${'e'.repeat(61)}.${'f'.repeat(61)}.com`;
    expect(tooLong.length).toBe(255);
    expect(emailError(tooLong).code).toBe('IDENTITY.INVALID_EMAIL');
  });
});
