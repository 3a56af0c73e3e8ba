import { randomBytes, randomUUID } from 'node:crypto';
import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { DomainError } from '../../domain/shared/errors';
import { deviceDecider, initialDeviceState } from '../../domain/identity/device.decider';
import { deviceStreamId } from '../../domain/identity/device.events';
import { deviceQuotaDecider } from '../../domain/identity/device-quota.decider';
import { deviceQuotaStreamId } from '../../domain/identity/device-quota.events';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';
import type { CommandContext, CommandResult } from '../platform/commands/command-context';
import { eventId } from '../platform/commands/command-handling';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { ConcurrencyError } from '../platform/event-store/event-store';
import { IdentityServices } from './identity.services';

/**
 * Register a device for the caller: answers its id and a secret, shown this
 * once, which the device exchanges for tokens (POST /devices/:id/tokens).
 */

export const deviceSchema = z
  .object({ name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters') })
  .strict();

type Registered = CommandResult & { deviceId: string; secret: string };

export class RegisterDevice extends Command<Registered> {
  constructor(
    readonly input: { name: string },
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

/**
 * Registers a device and takes one of its owner's DEVICES_MAX_PER_USER places, in one append
 * (the place at the quota stream's expected revision). The cap is checked once before hashing
 * the secret, so a user at the cap costs no argon2 work, and again in the append.
 */
@CommandHandler(RegisterDevice)
export class RegisterDeviceHandler implements ICommandHandler<RegisterDevice> {
  constructor(private readonly identity: IdentityServices) {}

  async execute({ input: { name }, by: owner, ctx }: RegisterDevice): Promise<Registered> {
    const { platform, hasher } = this.identity;
    const key = ctx.idempotencyKey;
    const deviceId = key ? eventId(ctx.actor, key, 'device', 0) : randomUUID();
    const deviceStream = deviceStreamId(deviceId);
    const secretShown = () =>
      new DomainError(
        'conflict',
        IdentityErrorCode.DEVICE_SECRET_SHOWN,
        'this device was registered by an earlier request with the same Idempotency-Key; its secret was shown then',
        [],
        { deviceId },
      );
    if (key && (await platform.store.findAppend(deviceStream, eventId(ctx.actor, key, deviceStream, 0))))
      throw secretShown();
    const quotaStream = deviceQuotaStreamId(owner.id);
    const max = platform.config.DEVICES_MAX_PER_USER;
    const take = { type: 'TakeDeviceSlot', data: { ownerId: owner.id, deviceId, max, now: ctx.now } } as const;
    deviceQuotaDecider.decide(take, (await this.identity.loadDeviceQuota(owner.id)).state);
    const secret = randomBytes(32).toString('base64url');
    const secretHash = await hasher.hash(secret, 'create');
    const deviceEvents = deviceDecider.decide(
      { type: 'RegisterDevice', data: { deviceId, ownerId: owner.id, name, secretHash, now: ctx.now } },
      initialDeviceState,
    );
    const meta = {
      correlationId: ctx.correlationId,
      causationId: ctx.causationId,
      actor: ctx.actor,
      command: 'RegisterDevice',
    };
    const id = (stream: string, i: number) => (key ? eventId(ctx.actor, key, stream, i) : randomUUID());
    const toAppend = (stream: string, events: readonly { type: string; data: object }[]) =>
      events.map((e, i) => ({
        type: e.type,
        data: e.data as Record<string, unknown>,
        id: id(stream, i),
        metadata: meta,
      }));
    for (let attempt = 0; ; attempt++) {
      const quota = await this.identity.loadDeviceQuota(owner.id);
      const slotEvents = deviceQuotaDecider.decide(take, quota.state);
      try {
        const results = await platform.store.appendMulti([
          ...(slotEvents.length
            ? [
                {
                  streamId: quotaStream,
                  expected: quota.revision < 0 ? ('no_stream' as const) : quota.revision,
                  events: toAppend(quotaStream, slotEvents),
                },
              ]
            : []),
          { streamId: deviceStream, expected: 'no_stream', events: toAppend(deviceStream, deviceEvents) },
        ]);
        const device = results[results.length - 1]!;
        if (device.duplicate) throw secretShown();
        return { deviceId, secret, position: device.position, revision: device.nextRevision, duplicate: false };
      } catch (e) {
        // Another registration of this owner took a place meanwhile: count again.
        if (e instanceof ConcurrencyError && e.streamId === quotaStream && attempt < platform.config.COMMAND_RETRIES)
          continue;
        if (e instanceof ConcurrencyError && e.streamId === deviceStream) throw secretShown();
        throw e;
      }
    }
  }
}

/** POST /commands/RegisterDevice (the resource route is POST /devices). */
export const registerDeviceCommand = defineCommand({
  name: 'RegisterDevice',
  schema: deviceSchema,
  access: 'authenticated',
  create: (i, ctx, by) => new RegisterDevice(i, by!, ctx),
});
