import type { Event } from '../shared/event';

/** One reading as recorded in an event. */
export interface RecordedReading {
  /** The device-side unique id, when it sent one. */
  readonly id?: string;
  readonly metric: string;
  readonly value: number;
  /** When the device measured it (ISO-8601, UTC, ms); the receive time when the device sent none. */
  readonly ts: string;
}

/**
 * Events of a device's telemetry stream (`telemetry-<deviceId>`).
 *
 * `telemetry.ReadingsRecorded`: one event per accepted MQTT message or HTTP
 * batch, holding its readings (repeats within the message kept once). Its id
 * derives from the device and the message's normalised readings, so a QoS 1
 * resend of the same message is stored once by the event store. A reading
 * repeated in a later message is stored in both events and dropped by the
 * read model (unique keys), deterministically, so a rebuild gives the same rows.
 */
export type ReadingsRecorded = Event<
  'telemetry.ReadingsRecorded',
  {
    readonly deviceId: string;
    readonly readings: readonly RecordedReading[];
  }
>;

/**
 * The event of the first release: one per reading. No longer written; streams
 * that hold it are still read by the same projection.
 */
export type ReadingRecorded = Event<
  'telemetry.ReadingRecorded',
  {
    readonly deviceId: string;
    readonly metric: string;
    readonly value: number;
    readonly ts: string;
    readonly readingId?: string;
  }
>;

export type TelemetryEvent = ReadingsRecorded | ReadingRecorded;

export const TELEMETRY_EVENT_TYPES = [
  'telemetry.ReadingsRecorded',
  'telemetry.ReadingRecorded',
] as const satisfies readonly TelemetryEvent['type'][];

export const telemetryStreamId = (deviceId: string): string => `telemetry-${deviceId}`;
