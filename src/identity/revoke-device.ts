import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { DomainError, notFound } from '../../domain/shared/errors';
import { deviceDecider } from '../../domain/identity/device.decider';
import { deviceStreamId } from '../../domain/identity/device.events';
import { deviceQuotaDecider } from '../../domain/identity/device-quota.decider';
import { deviceQuotaStreamId } from '../../domain/identity/device-quota.events';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { handleCommand } from '../platform/commands/command-handling';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { AuthErrorCode } from '../platform/http/auth-errors';
import { uuid } from './identity-input';
import { IdentityServices } from './identity.services';

/** Revoke a device: its owner or an admin. Its tokens end at once and its place in the owner's quota is given back. */

export class RevokeDevice extends Command<CommandResult> {
  constructor(
    readonly input: { deviceId: string },
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(RevokeDevice)
export class RevokeDeviceHandler implements ICommandHandler<RevokeDevice> {
  constructor(private readonly identity: IdentityServices) {}

  async execute({ input: { deviceId }, by, ctx }: RevokeDevice): Promise<CommandResult> {
    const { platform, revocation } = this.identity;
    const device = await this.identity.loadDevice(deviceId);
    if (device.status === 'none') throw notFound(IdentityErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
    if (device.ownerId !== by.id && !by.roles.includes('admin')) {
      throw new DomainError('forbidden', AuthErrorCode.FORBIDDEN, 'only the device owner or an admin may revoke it');
    }
    const r = await handleCommand({
      store: platform.store,
      decider: deviceDecider,
      streamId: deviceStreamId(deviceId),
      command: { type: 'RevokeDevice', data: { deviceId, by: by.id, now: ctx.now } },
      ctx,
      retries: platform.config.COMMAND_RETRIES,
    });
    await revocation.revokeSubject(deviceId);
    // Also after a repeated revoke (nothing new above): a crash between the two appends is repaired by retrying.
    // Without the key: the decider makes the release idempotent, and the key may have named a registration on this stream.
    const unkeyed: CommandContext = {
      correlationId: ctx.correlationId,
      causationId: ctx.causationId,
      actor: ctx.actor,
      now: ctx.now,
    };
    await handleCommand({
      store: platform.store,
      decider: deviceQuotaDecider,
      streamId: deviceQuotaStreamId(device.ownerId),
      command: { type: 'ReleaseDeviceSlot', data: { ownerId: device.ownerId, deviceId, now: ctx.now } },
      ctx: unkeyed,
      retries: platform.config.COMMAND_RETRIES,
    });
    return r;
  }
}

/** POST /commands/RevokeDevice (the resource route is POST /devices/:id/revoke). */
export const revokeDeviceCommand = defineCommand({
  name: 'RevokeDevice',
  schema: z.object({ deviceId: uuid }).strict(),
  access: 'authenticated',
  create: (i, ctx, by) => new RevokeDevice(i, by!, ctx),
});
