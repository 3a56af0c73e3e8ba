import { validationError } from '../shared/errors';
import { IdentityErrorCode } from './identity-errors';

/**
 * Email addresses: one normal form. The reservation that makes an address
 * unique across accounts is email-reservation.decider.ts.
 */

export const EMAIL_MAX_LENGTH = 254;
export const EMAIL_RULE = `must be a valid email address of at most ${EMAIL_MAX_LENGTH} characters`;

// RFC 5321 4.5.3.1.1: local part at most 64 octets. The dot-atom of RFC 5322 3.2.3, ASCII only:
// quoted local parts and address literals are legal but not accepted for sign-up.
const LOCAL_PART = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
// RFC 1035 labels; the top-level label must not be all digits (that would be an IP address).
const DOMAIN_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const TOP_LABEL = /^(?=.*[a-z])[a-z0-9-]{2,63}$/;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/**
 * Trims and lowercases an address and checks its shape. Non-ASCII input is
 * refused before lowercasing: `toLowerCase` maps some non-ASCII letters
 * (the Kelvin sign) onto ASCII ones, which would make two different inputs
 * collide silently.
 */
export function normaliseEmail(raw: string): string {
  const trimmed = raw.trim();
  const fail = () =>
    validationError(IdentityErrorCode.INVALID_EMAIL, `email ${EMAIL_RULE}`, [{ field: 'email', rule: EMAIL_RULE }]);
  if (trimmed.length === 0 || trimmed.length > EMAIL_MAX_LENGTH || !PRINTABLE_ASCII.test(trimmed)) throw fail();
  const email = trimmed.toLowerCase();
  const at = email.lastIndexOf('@');
  if (at <= 0) throw fail();
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (local.length > 64 || !LOCAL_PART.test(local)) throw fail();
  const labels = domain.split('.');
  if (
    labels.length < 2 ||
    domain.length > 253 ||
    !labels.every((l) => DOMAIN_LABEL.test(l)) ||
    !TOP_LABEL.test(labels[labels.length - 1]!)
  ) {
    throw fail();
  }
  return email;
}
