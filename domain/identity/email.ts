import type { Decider, Event } from '../shared/event';
import { conflict, validationError } from '../shared/errors';
import { IdentityErrorCode } from './identity-errors';
import { requireUuid, unreachable } from './validation';

/**
 * Email addresses: one normal form, and the reservation stream that makes an
 * address unique across accounts. The application appends the reservation
 * with expected revision 'no_stream', so of two concurrent sign-ups with one
 * address the event store lets exactly one through; the decider below only
 * answers the sequential case.
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
  const fail = () => validationError(IdentityErrorCode.INVALID_EMAIL, `email ${EMAIL_RULE}`, [{ field: 'email', rule: EMAIL_RULE }]);
  if (trimmed.length === 0 || trimmed.length > EMAIL_MAX_LENGTH || !PRINTABLE_ASCII.test(trimmed)) throw fail();
  const email = trimmed.toLowerCase();
  const at = email.lastIndexOf('@');
  if (at <= 0) throw fail();
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (local.length > 64 || !LOCAL_PART.test(local)) throw fail();
  const labels = domain.split('.');
  if (labels.length < 2 || domain.length > 253 || !labels.every((l) => DOMAIN_LABEL.test(l)) || !TOP_LABEL.test(labels[labels.length - 1]!)) {
    throw fail();
  }
  return email;
}

/** The reservation stream of an address. Normalises again (idempotent) so a raw address can never pick a different stream. */
export function emailStreamId(normalised: string): string {
  return `user-email-${normaliseEmail(normalised)}`;
}

export type EmailReserved = Event<'identity.EmailReserved', { readonly email: string; readonly userId: string; readonly at: string }>;
export type EmailEvent = EmailReserved;
export const EMAIL_EVENT_TYPES = ['identity.EmailReserved'] as const satisfies readonly EmailEvent['type'][];

export type ReserveEmail = { readonly type: 'ReserveEmail'; readonly data: { readonly email: string; readonly userId: string; readonly now: Date } };
export type EmailCommand = ReserveEmail;

export type EmailReservationState =
  | { readonly reserved: false }
  | { readonly reserved: true; readonly email: string; readonly userId: string };

export const emailReservationDecider: Decider<EmailCommand, EmailEvent, EmailReservationState> = {
  initialState: { reserved: false },
  evolve(_state, event) {
    switch (event.type) {
      case 'identity.EmailReserved':
        return { reserved: true, email: event.data.email, userId: event.data.userId };
      default:
        return unreachable(event.type, 'event');
    }
  },
  decide(command, state) {
    switch (command.type) {
      case 'ReserveEmail': {
        const email = normaliseEmail(command.data.email);
        const userId = requireUuid(command.data.userId, 'userId');
        if (state.reserved) {
          // The same user reserving again is a retried sign-up step: nothing new to record.
          if (state.userId === userId) return [];
          throw conflict(IdentityErrorCode.EMAIL_TAKEN, 'this email address is already registered');
        }
        return [{ type: 'identity.EmailReserved', data: { email, userId, at: command.data.now.toISOString() } }];
      }
      default:
        return unreachable(command.type, 'command');
    }
  },
};
