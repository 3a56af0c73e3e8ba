import type { Type } from '@nestjs/common';
import { IdentityModule } from './identity/identity.module';
import { SalesModule } from './sales/sales.module';
import { TelemetryModule } from './telemetry/telemetry.module';

/** The bounded contexts the application runs: each a NestJS module under src/<context>/. */
export const contextModules: readonly Type[] = [IdentityModule, TelemetryModule, SalesModule];
