import { Module } from '@nestjs/common';
import { DeadLettersController, IngestReadingHandler, TelemetryCommands, TelemetryController } from './telemetry.http';
import { TelemetryServices } from './telemetry.services';

/** Telemetry: MQTT ingestion (embedded broker or external subscription), IngestReading, sensor history. */
@Module({
  controllers: [TelemetryController, DeadLettersController],
  providers: [TelemetryServices, TelemetryCommands, IngestReadingHandler],
  exports: [TelemetryServices],
})
export class TelemetryModule {}
