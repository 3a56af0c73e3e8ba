import { randomUUID } from 'node:crypto';
import { emailStreamId } from '../../domain/identity/email-reservation.events';
import { normaliseEmail } from '../../domain/identity/email';
import { userDecider } from '../../domain/identity/user.decider';
import { userStreamId } from '../../domain/identity/user.events';
import { notFound } from '../../domain/shared/errors';
import { handleCommand } from '../platform/commands/command-handling';
import type { EventStore } from '../platform/event-store/event-store';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';

/** `npm run cli -- users:grant-admin <email>`: AssignRole admin, as the system, on an existing account. */
export async function grantAdmin(store: EventStore, rawEmail: string, retries: number): Promise<string> {
  const email = normaliseEmail(rawEmail);
  const [reserved] = await store.readStream(emailStreamId(email), 0, 1);
  const userId = reserved?.data.userId;
  if (typeof userId !== 'string') throw notFound(IdentityErrorCode.USER_NOT_FOUND, `no account with email ${email}`);
  const id = randomUUID();
  await handleCommand({
    store,
    decider: userDecider,
    streamId: userStreamId(userId),
    command: { type: 'AssignRole', data: { userId, role: 'admin', by: 'system:cli', now: new Date() } },
    ctx: { correlationId: id, causationId: 'cli:users:grant-admin', actor: 'system:cli', now: new Date() },
    retries,
  });
  return userId;
}
