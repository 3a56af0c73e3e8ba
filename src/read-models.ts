import { catalogueProjection } from '../projections/catalogue.projection';
import { devicesProjection } from '../projections/devices.projection';
import type { Projection } from '../projections/projection';
import { ordersProjection } from '../projections/orders.projection';
import { telemetryProjection } from '../projections/telemetry.projection';
import { usersProjection } from '../projections/users.projection';

/** Every projection the application runs. Each bounded context adds its read models here. */
export const allProjections: readonly Projection[] = [
  usersProjection,
  devicesProjection,
  telemetryProjection,
  catalogueProjection,
  ordersProjection,
];
