import type { Pool } from 'pg';
import { DomainError } from '../../domain/shared/errors';
import { deviceStreamId, type DeviceEvent } from '../../domain/identity/device.events';
import { userStreamId, type UserEvent } from '../../domain/identity/user.events';
import { telemetryStreamId } from '../../domain/telemetry/reading.events';
import {
  decideIngest,
  type DeviceStatus,
  type IngestDecision,
  type Reading,
} from '../../domain/telemetry/reading.decider';
import { eventId } from '../platform/commands/command-handling';
import type { EventMetadata, EventStore, EventToAppend } from '../platform/event-store/event-store';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';

/**
 * IngestReading with group commit: submissions that arrive while an append
 * is in flight are appended together, in one transaction, by the next one
 * (one es_append_skip_known call for all their devices). Each submission
 * (an MQTT message, an HTTP batch) is one `telemetry.ReadingsRecorded` event
 * whose id derives from the device and its readings, and the store skips ids
 * it already holds, so a resent message is stored once. A reading repeated
 * in a later message is dropped by the read model.
 *
 * Backpressure: at most `maxPending` readings wait or are being appended;
 * a submission beyond that waits for room. Over MQTT that wait delays the
 * PUBACK, and aedes reads no more from that connection until it is answered,
 * so the broker or the device holds the messages, not this process.
 */

/**
 * Each device's status from its identity stream and its owner's from the owner's
 * user stream, in one round trip ($1: device stream ids, $2: the user stream
 * prefix). The owner check is one probe of events_user_disabled_idx (migration
 * 0030), not a scan of the events table.
 */
export const DEVICE_STATUS_SQL = `WITH d AS (
   SELECT stream_id, bool_or(type = 'identity.DeviceRevoked') AS revoked, bool_or(type = 'identity.DeviceRegistered') AS registered,
          max(data->>'ownerId') FILTER (WHERE type = 'identity.DeviceRegistered') AS owner_id
     FROM events WHERE stream_id = ANY($1) GROUP BY stream_id)
 SELECT d.stream_id, d.revoked, d.registered,
        EXISTS (SELECT 1 FROM events u WHERE u.stream_id = $2 || d.owner_id AND u.type = 'identity.UserDisabled') AS owner_disabled
   FROM d`;

export interface IngestOutcome {
  /** Readings stored by this command (in its event). */
  readonly accepted: number;
  /**
   * Readings not stored by this command: repeated within it, or the whole message when it is a
   * resend of a stored one. (A reading repeated from an earlier, different message is counted as
   * accepted here and dropped by the read model, which keeps each reading once.)
   */
  readonly duplicates: number;
  /** Global position of the device's last stored reading after this command (read-your-writes). */
  readonly position: number;
  /** The device's telemetry stream revision after this command. */
  readonly revision: number;
  /** True when nothing new was stored (a resend of a stored message). */
  readonly duplicate: boolean;
}

export interface IngestOptions {
  readonly maxBatch: number;
  readonly maxPending: number;
  /** Appends in flight at once (each a group of submissions). */
  readonly concurrency?: number;
  readonly onBatch?: (readings: number, stored: number) => void;
}

/** An event's metadata, or how to make it from the event's id (an MQTT message is correlated by its event id). */
export type IngestMetadata = EventMetadata | ((eventId: string) => EventMetadata);

interface Submission {
  readonly deviceId: string;
  readonly readings: readonly Reading[];
  readonly meta: IngestMetadata;
  resolve(o: IngestOutcome): void;
  reject(e: unknown): void;
}

export class ReadingIngestor {
  private queue: Submission[] = [];
  /** Readings queued or in an append. */
  private pending = 0;
  private flushing = 0;
  private readonly waiting: (() => void)[] = [];
  private idle: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore,
    private readonly options: IngestOptions,
  ) {}

  ingest(deviceId: string, readings: readonly Reading[], meta: IngestMetadata): Promise<IngestOutcome> {
    return this.admit(readings.length).then(
      () =>
        new Promise<IngestOutcome>((resolve, reject) => {
          this.queue.push({ deviceId, readings, meta, resolve, reject });
          this.kick();
        }),
    );
  }

  /** Readings queued or being appended (for metrics and tests). */
  get inFlight(): number {
    return this.pending;
  }

  /** Stops taking submissions, resolves once every admitted one is answered. */
  async drain(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w();
    if (this.pending === 0) return;
    await new Promise<void>((res) => this.idle.push(res));
  }

  private async admit(n: number): Promise<void> {
    // A submission larger than the bound still goes alone, once nothing else is pending.
    while (!this.closed && this.pending > 0 && this.pending + n > this.options.maxPending) {
      await new Promise<void>((res) => this.waiting.push(res));
    }
    if (this.closed)
      throw new DomainError(
        'unavailable',
        TelemetryErrorCode.SHUTTING_DOWN,
        'the platform is shutting down; send again later',
        [],
        { retryAfterSeconds: 1 },
      );
    this.pending += n;
  }

  private kick(): void {
    while (this.flushing < (this.options.concurrency ?? 2) && this.queue.length > 0) {
      const batch: Submission[] = [];
      let n = 0;
      while (
        this.queue.length > 0 &&
        (batch.length === 0 || n + this.queue[0]!.readings.length <= this.options.maxBatch)
      ) {
        const s = this.queue.shift()!;
        batch.push(s);
        n += s.readings.length;
      }
      this.flushing++;
      void this.flush(batch).finally(() => {
        this.flushing--;
        this.pending -= n;
        for (const w of this.waiting.splice(0)) w();
        if (this.pending === 0) for (const r of this.idle.splice(0)) r();
        this.kick();
      });
    }
  }

  private async flush(batch: readonly Submission[]): Promise<void> {
    try {
      const devices = [...new Set(batch.map((s) => s.deviceId))];
      const status = await this.deviceStatuses(devices);
      // One event per submission; a resend (same event id) is stored once, by the first submission that holds it.
      const byStream = new Map<string, EventToAppend[]>();
      const owner = new Map<string, Submission>();
      const decided = new Map<Submission, { id: string; readings: number; repeated: number }>();
      for (const s of batch) {
        let decision: IngestDecision;
        try {
          decision = decideIngest(
            { type: 'IngestReading', data: { deviceId: s.deviceId, readings: s.readings } },
            status.get(s.deviceId) ?? { status: 'none' },
          );
        } catch (e) {
          s.reject(e);
          continue;
        }
        const stream = telemetryStreamId(s.deviceId);
        const id = eventId('telemetry', decision.key, stream, 0);
        decided.set(s, { id, readings: decision.event.data.readings.length, repeated: decision.repeated });
        if (owner.has(id)) continue;
        owner.set(id, s);
        const list = byStream.get(stream) ?? [];
        byStream.set(stream, list);
        list.push({
          id,
          type: decision.event.type,
          data: decision.event.data,
          metadata: { ...(typeof s.meta === 'function' ? s.meta(id) : s.meta), command: 'IngestReading' },
        });
      }
      const writes = [...byStream].map(([streamId, events]) => ({ streamId, events }));
      if (writes.length === 0) return;
      const results = await this.store.appendSkippingKnown(writes);
      const fresh = new Set(results.flatMap((r) => r.newIds));
      const byId = new Map(results.map((r) => [r.streamId, r]));
      let offered = 0;
      let stored = 0;
      for (const [s, d] of decided) {
        offered += s.readings.length;
        const accepted = fresh.has(d.id) && owner.get(d.id) === s ? d.readings : 0;
        stored += accepted;
        const r = byId.get(telemetryStreamId(s.deviceId));
        s.resolve({
          accepted,
          duplicates: s.readings.length - accepted,
          position: r?.position ?? 0,
          revision: r?.nextRevision ?? -1,
          duplicate: accepted === 0,
        });
      }
      this.options.onBatch?.(offered, stored);
    } catch (e) {
      for (const s of batch) s.reject(e);
    }
  }

  /**
   * The device's status from identity's device stream, and its owner's from the
   * owner's user stream, read in the same round trip for every device of the batch
   * (the event store, not a read model that may lag: a device revoked, or an owner
   * disabled, a moment ago is refused now). On a store other than PostgreSQL
   * the same answer comes from reading each device's stream, then its owner's.
   */
  private async deviceStatuses(deviceIds: readonly string[]): Promise<Map<string, DeviceStatus>> {
    if (this.store.kind !== 'postgresql') return this.deviceStatusesFromStreams(deviceIds);
    const res = await this.pool.query<{
      stream_id: string;
      revoked: boolean;
      registered: boolean;
      owner_disabled: boolean;
    }>(DEVICE_STATUS_SQL, [deviceIds.map(deviceStreamId), userStreamId('')]);
    const out = new Map<string, DeviceStatus>();
    for (const id of deviceIds) {
      const row = res.rows.find((r) => r.stream_id === deviceStreamId(id));
      out.set(id, {
        status: !row?.registered ? 'none' : row.revoked ? 'revoked' : row.owner_disabled ? 'owner_disabled' : 'active',
      });
    }
    return out;
  }

  private async deviceStatusesFromStreams(deviceIds: readonly string[]): Promise<Map<string, DeviceStatus>> {
    const devices = await Promise.all(
      deviceIds.map(async (id) => {
        const events = await this.store.readStream<DeviceEvent>(deviceStreamId(id));
        const registered = events.find((e) => e.type === 'identity.DeviceRegistered');
        return {
          id,
          ownerId: registered?.type === 'identity.DeviceRegistered' ? registered.data.ownerId : undefined,
          revoked: events.some((e) => e.type === 'identity.DeviceRevoked'),
        };
      }),
    );
    const owners = [...new Set(devices.flatMap((d) => (d.ownerId ? [d.ownerId] : [])))];
    const disabled = new Set(
      (
        await Promise.all(
          owners.map(async (o) => {
            const events = await this.store.readStream<UserEvent>(userStreamId(o));
            return events.some((e) => e.type === 'identity.UserDisabled') ? [o] : [];
          }),
        )
      ).flat(),
    );
    return new Map(
      devices.map((d): [string, DeviceStatus] => [
        d.id,
        {
          status: !d.ownerId ? 'none' : d.revoked ? 'revoked' : disabled.has(d.ownerId) ? 'owner_disabled' : 'active',
        },
      ]),
    );
  }
}
