import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { z } from 'zod';
import { notFound } from '../../domain/shared/errors';
import { parseReadings } from '../../domain/telemetry/reading.decider';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';
import type { CommandContext } from '../platform/commands/command-context';
import { defineCommand, type Caller } from '../platform/commands/command-registry';
import { IdentityServices } from '../identity/identity.services';
import type { IngestOutcome } from './ingest';
import { TelemetryServices } from './telemetry.services';

/**
 * Ingest readings over HTTP: one or many readings of one device, sent by the
 * device itself (device token) or its owner. Validated here, then
 * group-committed with every other submission (ingest.ts, where the decider
 * runs against the device's current status). MQTT messages take the same
 * ingestor from mqtt-ingest.ts.
 */

export const deviceIdSchema = z
  .string()
  .uuid('must be a UUID')
  .transform((s) => s.toLowerCase());

export class IngestReading extends Command<IngestOutcome> {
  constructor(
    readonly input: { deviceId: string; readings: unknown },
    readonly by: Caller,
    readonly ctx: CommandContext,
  ) {
    super();
  }
}

@CommandHandler(IngestReading)
export class IngestReadingHandler implements ICommandHandler<IngestReading> {
  constructor(
    private readonly telemetry: TelemetryServices,
    private readonly identity: IdentityServices,
  ) {}

  async execute({ input: { deviceId, readings: payload }, by, ctx }: IngestReading): Promise<IngestOutcome> {
    await this.ensureMayWrite(deviceId, by);
    const readings = parseReadings(payload, ctx.now, this.telemetry.sinks.maxPastDays);
    return this.telemetry.ingestor.ingest(deviceId, readings, {
      correlationId: ctx.correlationId,
      causationId: ctx.causationId,
      actor: ctx.actor,
    });
  }

  /** The device itself or its owner may send readings; to anyone else the device does not exist. */
  private async ensureMayWrite(deviceId: string, by: Caller): Promise<void> {
    if (by.kind === 'device') {
      if (by.id !== deviceId) throw notFound(TelemetryErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
      return;
    }
    const device = await this.identity.loadDevice(deviceId);
    if (device.status === 'none' || device.ownerId !== by.id)
      throw notFound(TelemetryErrorCode.DEVICE_NOT_FOUND, `no device ${deviceId}`);
  }
}

/** POST /commands/IngestReading (the resource route is POST /devices/:id/readings). */
export const ingestReadingCommand = defineCommand({
  name: 'IngestReading',
  // readings: validated by the domain rules (parseReadings), which name each failing field.
  schema: z
    .object({ deviceId: deviceIdSchema, readings: z.unknown().refine((v) => v !== undefined, 'is required') })
    .strict() as z.ZodType<{ deviceId: string; readings: unknown }>,
  access: 'authenticated',
  create: (i, ctx, by) => new IngestReading(i, by!, ctx),
});
