import { DomainError } from '../shared/errors';
import { given } from '../shared/given-when-then';
import { emailReservationDecider } from './email-reservation.decider';
import { emailStreamId, type EmailEvent } from './email-reservation.events';

describe('identity email reservation decider', () => {
  const userId = '0b7e3f3c-6a43-4b0e-9d1f-2f3a4b5c6d7e';
  const otherId = '1c8f4a4d-7b54-4c1f-8e2a-3a4b5c6d7e8f';
  const now = new Date('2025-03-01T10:00:00.000Z');
  const reserved: EmailEvent = {
    type: 'identity.EmailReserved',
    data: { email: 'ada@example.com', userId, at: now.toISOString() },
  };

  it('names the reservation stream after the normalised address', () => {
    expect(emailStreamId('ada@example.com')).toBe('user-email-ada@example.com');
    expect(emailStreamId(' Ada@Example.com')).toBe('user-email-ada@example.com');
    expect(() => emailStreamId('nope')).toThrow(DomainError);
  });

  it('reserves a free address for a user, normalised', () => {
    given(emailReservationDecider, [])
      .when({ type: 'ReserveEmail', data: { email: 'Ada@Example.com', userId, now } })
      .then([reserved]);
  });

  it('refuses an address another user reserved', () => {
    given(emailReservationDecider, [reserved])
      .when({ type: 'ReserveEmail', data: { email: 'ada@example.com', userId: otherId, now } })
      .thenThrows('IDENTITY.EMAIL_TAKEN', { kind: 'conflict' });
  });

  it('records nothing when the same user reserves its address again (a retried sign-up)', () => {
    given(emailReservationDecider, [reserved])
      .when({ type: 'ReserveEmail', data: { email: 'ada@example.com', userId, now } })
      .thenNothing();
  });

  it('refuses an invalid address or user id', () => {
    given(emailReservationDecider, [])
      .when({ type: 'ReserveEmail', data: { email: 'nope', userId, now } })
      .thenThrows('IDENTITY.INVALID_EMAIL', { kind: 'validation', fields: ['email'] });
    given(emailReservationDecider, [])
      .when({ type: 'ReserveEmail', data: { email: 'ada@example.com', userId: 'u1', now } })
      .thenThrows('IDENTITY.INVALID_ID', { kind: 'validation', fields: ['userId'] });
  });
});
