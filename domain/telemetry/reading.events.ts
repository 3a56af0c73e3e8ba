import type { Event } from '../shared/event';

/**
 * Events of a device's telemetry stream (`telemetry-<deviceId>`). One event
 * per accepted reading; its id derives from the reading's dedup key, so a
 * resent reading is stored once.
 */
export type ReadingRecorded = Event<
  'telemetry.ReadingRecorded',
  {
    readonly deviceId: string;
    readonly metric: string;
    readonly value: number;
    /** When the device measured it (ISO-8601, UTC, ms); the receive time when the device sent none. */
    readonly ts: string;
    /** The device-side unique id, when it sent one. */
    readonly readingId?: string;
  }
>;

export type TelemetryEvent = ReadingRecorded;

export const TELEMETRY_EVENT_TYPES = ['telemetry.ReadingRecorded'] as const satisfies readonly TelemetryEvent['type'][];

export const telemetryStreamId = (deviceId: string): string => `telemetry-${deviceId}`;
