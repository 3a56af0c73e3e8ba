import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { userRoleSchema } from './identity-input';
import { IdentityServices } from './identity.services';

/** Assign a role to a user. Admins only; the user's next token carries it. */

export const roleSchema = z
  .object({ role: z.string().min(1, 'must not be empty').max(32, 'must be at most 32 characters') })
  .strict();

export class AssignRole extends Command<CommandResult> {
  constructor(
    readonly input: { userId: string; role: string },
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(AssignRole)
export class AssignRoleHandler implements ICommandHandler<AssignRole> {
  constructor(private readonly identity: IdentityServices) {}

  execute({ input: { userId, role }, by, ctx }: AssignRole): Promise<CommandResult> {
    return this.identity.userCommand({ type: 'AssignRole', data: { userId, role, by: by.id, now: ctx.now } }, ctx);
  }
}

/** POST /commands/AssignRole (the resource route is POST /admin/users/:id/roles). */
export const assignRoleCommand = defineCommand({
  name: 'AssignRole',
  schema: userRoleSchema,
  access: 'admin',
  create: (i, ctx, by) => new AssignRole(i, by!, ctx),
});
