import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { userRoleSchema } from './identity-input';
import { IdentityServices } from './identity.services';

/** Revoke a role from a user. Admins only; the base role `user` stays. Takes effect at once. */

export class RevokeRole extends Command<CommandResult> {
  constructor(
    readonly input: { userId: string; role: string },
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(RevokeRole)
export class RevokeRoleHandler implements ICommandHandler<RevokeRole> {
  constructor(private readonly identity: IdentityServices) {}

  async execute({ input: { userId, role }, by, ctx }: RevokeRole): Promise<CommandResult> {
    const r = await this.identity.userCommand(
      { type: 'RevokeRole', data: { userId, role, by: by.id, now: ctx.now } },
      ctx,
    );
    // Tokens carry roles: end the current ones so the loss takes effect now (the next refresh carries the new roles).
    await this.identity.revocation.revokeSubject(userId);
    return r;
  }
}

/** POST /commands/RevokeRole (the resource route is DELETE /admin/users/:id/roles/:role). */
export const revokeRoleCommand = defineCommand({
  name: 'RevokeRole',
  schema: userRoleSchema,
  access: 'admin',
  create: (i, ctx, by) => new RevokeRole(i, by!, ctx),
});
