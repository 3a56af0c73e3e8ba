import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { uuid } from './identity-input';
import { IdentityServices } from './identity.services';
import { devicesOwnedBy } from './session-watch';

/** Disable a user. Admins only; their sessions, tokens and devices stop with them. */

export class DisableUser extends Command<CommandResult> {
  constructor(
    readonly input: { userId: string },
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(DisableUser)
export class DisableUserHandler implements ICommandHandler<DisableUser> {
  constructor(private readonly identity: IdentityServices) {}

  async execute({ input: { userId }, by, ctx }: DisableUser): Promise<CommandResult> {
    const { revocation, refresh, platform } = this.identity;
    const r = await this.identity.userCommand({ type: 'DisableUser', data: { userId, by: by.id, now: ctx.now } }, ctx);
    await revocation.revokeSubject(userId);
    await refresh.revokeAllForUser(userId, 'user disabled');
    // Their devices stop with them: current device tokens end here; minting, MQTT CONNECT and
    // ingestion check the owner's status themselves.
    await Promise.all(
      (await devicesOwnedBy(platform.store, platform.pool, userId)).map((deviceId) =>
        revocation.revokeSubject(deviceId),
      ),
    );
    return r;
  }
}

/** POST /commands/DisableUser (the resource route is POST /admin/users/:id/disable). */
export const disableUserCommand = defineCommand({
  name: 'DisableUser',
  schema: z.object({ userId: uuid }).strict(),
  access: 'admin',
  create: (i, ctx, by) => new DisableUser(i, by!, ctx),
});
