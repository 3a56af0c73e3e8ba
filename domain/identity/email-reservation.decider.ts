import type { Decider } from '../shared/event';
import { conflict } from '../shared/errors';
import { unreachable } from '../shared/unreachable';
import { normaliseEmail } from './email';
import type { EmailEvent } from './email-reservation.events';
import { IdentityErrorCode } from './identity-errors';
import { requireUuid } from './validation';

/**
 * The reservation that makes an address unique across accounts. The
 * application appends it with expected revision 'no_stream', so of two
 * concurrent sign-ups with one address the event store lets exactly one
 * through; this decider only answers the sequential case.
 */

export type ReserveEmail = {
  readonly type: 'ReserveEmail';
  readonly data: { readonly email: string; readonly userId: string; readonly now: Date };
};
export type EmailCommand = ReserveEmail;

export type EmailReservationState =
  { readonly reserved: false } | { readonly reserved: true; readonly email: string; readonly userId: string };

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
