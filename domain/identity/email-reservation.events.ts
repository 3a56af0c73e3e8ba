import type { Event } from '../shared/event';
import { normaliseEmail } from './email';

/**
 * Events of an address's reservation stream (`user-email-<address>`): the
 * first account to reserve an address owns it.
 */

export type EmailReserved = Event<
  'identity.EmailReserved',
  { readonly email: string; readonly userId: string; readonly at: string }
>;
export type EmailEvent = EmailReserved;
export const EMAIL_EVENT_TYPES = ['identity.EmailReserved'] as const satisfies readonly EmailEvent['type'][];

/** The reservation stream of an address. Normalises again (idempotent) so a raw address can never pick a different stream. */
export function emailStreamId(normalised: string): string {
  return `user-email-${normaliseEmail(normalised)}`;
}
