import { Module } from '@nestjs/common';
import { registersCommands } from '../platform/commands/command-registry';
import { IngestReadingHandler, ingestReadingCommand } from './ingest-reading';
import { DeadLettersController, TelemetryController } from './telemetry.http';
import { TelemetryServices } from './telemetry.services';

/**
 * Telemetry: MQTT ingestion (embedded broker or external subscription), IngestReading, sensor history.
 * The write use case is ingest-reading.ts: its input schema, command, handler and POST /commands/:name entry.
 */
@Module({
  controllers: [TelemetryController, DeadLettersController],
  providers: [TelemetryServices, IngestReadingHandler, registersCommands(ingestReadingCommand)],
  exports: [TelemetryServices],
})
export class TelemetryModule {}
