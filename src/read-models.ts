import type { Projection } from '../projections/projection';

/** Every projection the application runs. Each bounded context adds its read models here. */
export const allProjections: readonly Projection[] = [];
