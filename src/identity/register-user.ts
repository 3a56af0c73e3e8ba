import { randomUUID } from 'node:crypto';
import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { DomainError } from '../../domain/shared/errors';
import { EMAIL_MAX_LENGTH, normaliseEmail } from '../../domain/identity/email';
import { emailReservationDecider } from '../../domain/identity/email-reservation.decider';
import { emailStreamId, type EmailEvent } from '../../domain/identity/email-reservation.events';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';
import { checkPassword, PASSWORD_MAX_LENGTH, PASSWORD_RULES } from '../../domain/identity/password-policy';
import { initialUserState, userDecider } from '../../domain/identity/user.decider';
import { userStreamId, type UserEvent } from '../../domain/identity/user.events';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { eventId } from '../platform/commands/command-handling';
import { defineCommand } from '../platform/commands/command-registry';
import { ConcurrencyError } from '../platform/event-store/event-store';
import { PlatformErrorCode } from '../platform/platform-errors';
import { IdentityServices } from './identity.services';

/** Register a user (sign-up): anyone, rate limited per address. The first account to reserve an email owns it. */

export const signupSchema = z
  .object({
    email: z.string().max(EMAIL_MAX_LENGTH, `must be at most ${EMAIL_MAX_LENGTH} characters`),
    // Any string over twice the maximum in UTF-16 units has more code points than the maximum:
    // refused here, before the password policy reads it (the policy counts code points exactly).
    password: z.string().max(PASSWORD_MAX_LENGTH * 2, PASSWORD_RULES.maxLength),
    name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
  })
  .strict();

type Signup = z.infer<typeof signupSchema>;
type Registered = CommandResult & { userId: string; email: string };

export class RegisterUser extends Command<Registered> {
  constructor(
    readonly input: Signup,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

const keyReused = () =>
  new DomainError(
    'conflict',
    PlatformErrorCode.IDEMPOTENCY_KEY_REUSED,
    'this Idempotency-Key was already used for a different sign-up; send a new key with a new request',
    [{ field: 'Idempotency-Key', rule: 'must not be reused with a different request' }],
  );

const emailTaken = (email: string) =>
  new DomainError(
    'conflict',
    IdentityErrorCode.EMAIL_TAKEN,
    'an account with this email exists',
    [{ field: 'email', rule: 'must not belong to an existing account' }],
    { email },
  );

@CommandHandler(RegisterUser)
export class RegisterUserHandler implements ICommandHandler<RegisterUser> {
  constructor(private readonly identity: IdentityServices) {}

  async execute({ input, ctx }: RegisterUser): Promise<Registered> {
    const { platform, hasher, signupLimiter } = this.identity;
    const store = platform.store;
    const email = normaliseEmail(input.email);
    checkPassword(input.password, { email, name: input.name });
    // After the cheap checks, before any lookup or hash. System sign-ups (ADMIN_EMAIL) have no address.
    if (ctx.clientAddress !== undefined) await signupLimiter.take(ctx.clientAddress);
    const key = ctx.idempotencyKey;
    // Anonymous callers share one key space: scoped by the address being registered, two strangers'
    // keys never meet, and a key can only ever answer with the account of that same address.
    const userId = key ? eventId(ctx.actor, key, `signup:${email}`, 0) : randomUUID();
    // A taken address is either this very sign-up sent again (same key) or someone else's account.
    const takenOrReplay = async (): Promise<Registered> => {
      const original = key
        ? await store.findAppend(userStreamId(userId), eventId(ctx.actor, key, userStreamId(userId), 0))
        : undefined;
      if (original) return this.replay(userId, email, input, original);
      throw emailTaken(email);
    };
    if ((await store.readStream(emailStreamId(email), 0, 1)).length > 0) return takenOrReplay();
    const passwordHash = await hasher.hash(input.password, 'create');
    const emailEvents: readonly EmailEvent[] = emailReservationDecider.decide(
      { type: 'ReserveEmail', data: { email, userId, now: ctx.now } },
      emailReservationDecider.initialState,
    );
    const userEvents: readonly UserEvent[] = userDecider.decide(
      { type: 'RegisterUser', data: { userId, email, name: input.name, passwordHash, now: ctx.now } },
      initialUserState,
    );
    const meta = {
      correlationId: ctx.correlationId,
      causationId: ctx.causationId,
      actor: ctx.actor,
      command: 'RegisterUser',
    };
    const id = (stream: string, i: number) => (key ? eventId(ctx.actor, key, stream, i) : randomUUID());
    try {
      // One transaction: the email reservation (unique through "no stream") and the user's first events.
      const [, user] = await store.appendMulti([
        {
          streamId: emailStreamId(email),
          expected: 'no_stream',
          events: emailEvents.map((e, i) => ({ ...e, id: id(emailStreamId(email), i), metadata: meta })),
        },
        {
          streamId: userStreamId(userId),
          expected: 'no_stream',
          events: userEvents.map((e, i) => ({ ...e, id: id(userStreamId(userId), i), metadata: meta })),
        },
      ]);
      // A concurrent request with this key got there first: answer as a replay, after the same checks.
      if (user!.duplicate) return await this.replay(userId, email, input, user!);
      return { userId, email, position: user!.position, revision: user!.nextRevision, duplicate: false };
    } catch (e) {
      if (e instanceof ConcurrencyError && e.streamId === emailStreamId(email)) return takenOrReplay();
      throw e;
    }
  }

  /**
   * The Idempotency-Key of this sign-up was used before for this address: the original result
   * only for the same request (same name, and the password verifies against the account's hash),
   * else 409 PLATFORM.IDEMPOTENCY_KEY_REUSED. The password is compared with argon2, never kept:
   * a fingerprint of it in an event would be a fast hash of a password.
   */
  private async replay(
    userId: string,
    email: string,
    input: { password: string; name: string },
    original: { position: number; nextRevision: number },
  ): Promise<Registered> {
    const user = await this.identity.loadUser(userId);
    const same =
      (user.status === 'active' || user.status === 'disabled') &&
      user.name === input.name.trim() &&
      (await this.identity.hasher.verify(user.passwordHash, input.password, 'create'));
    if (!same) throw keyReused();
    return { userId, email, position: original.position, revision: original.nextRevision, duplicate: true };
  }
}

/** POST /commands/RegisterUser (the resource route is POST /auth/signup). */
export const registerUserCommand = defineCommand({
  name: 'RegisterUser',
  schema: signupSchema,
  access: 'public',
  create: (i, ctx) => new RegisterUser(i, ctx),
});
