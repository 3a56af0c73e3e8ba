import type { ServerResponse } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import { DomainError } from '../../domain/shared/errors';
import type { Principal } from '../platform/http/access';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';

/**
 * Live SSE streams of this instance: how many each principal holds (a cap, so one
 * user cannot hold thousands of connections and their database reads), and a
 * writer that respects the socket's backpressure: it stops producing while the
 * client does not read, and drops a client that stops reading for good, so a
 * stream never makes the server buffer a device's history.
 */

/** 'client closed', 'stalled', 'shutdown', 'failed', or why the session's access was withdrawn (SessionEndReason). */
export type StreamEndReason = string;

const METRIC_REASONS = new Set([
  'client closed',
  'stalled',
  'shutdown',
  'failed',
  'token expired',
  'token revoked',
  'session ended',
  'access withdrawn',
  'user disabled',
  'role revoked',
  'device revoked',
  'device owner disabled',
  'access unverifiable',
]);

export interface LiveStreamsOptions {
  readonly maxPerPrincipal: number;
  readonly maxTotal: number;
  readonly stallTimeoutMs: number;
  readonly registry: Registry;
}

export class LiveStreams {
  private readonly held = new Map<string, number>();
  private total = 0;
  private pausedNow = 0;
  private readonly ended: Counter<'reason'>;

  constructor(private readonly options: LiveStreamsOptions) {
    const registers = [options.registry];
    const open: Gauge = new Gauge({
      name: 'telemetry_streams_open',
      help: 'Live SSE streams open in this instance',
      registers,
      collect: () => open.set(this.total),
    });
    const paused: Gauge = new Gauge({
      name: 'telemetry_streams_paused',
      help: 'Live SSE streams waiting for their client to read (socket buffer full)',
      registers,
      collect: () => paused.set(this.pausedNow),
    });
    this.ended = new Counter({
      name: 'telemetry_streams_ended_total',
      help: 'Live SSE streams ended, by reason',
      labelNames: ['reason'],
      registers,
    });
  }

  /** Takes a stream slot for `principal`, or throws 429. Returns the release function (idempotent). */
  acquire(principal: Pick<Principal, 'kind' | 'id'>): () => void {
    const key = `${principal.kind}:${principal.id}`;
    const mine = this.held.get(key) ?? 0;
    if (mine >= this.options.maxPerPrincipal) {
      throw new DomainError(
        'rate_limited',
        TelemetryErrorCode.TOO_MANY_STREAMS,
        `at most ${this.options.maxPerPrincipal} live streams per ${principal.kind} at once; close one first`,
        [],
        { limit: this.options.maxPerPrincipal, retryAfterSeconds: 5 },
      );
    }
    if (this.total >= this.options.maxTotal) {
      throw new DomainError(
        'rate_limited',
        TelemetryErrorCode.TOO_MANY_STREAMS,
        'this instance holds as many live streams as it may; try again later',
        [],
        { retryAfterSeconds: 5 },
      );
    }
    this.held.set(key, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const n = (this.held.get(key) ?? 1) - 1;
      if (n > 0) this.held.set(key, n);
      else this.held.delete(key);
    };
  }

  /** A writer for one stream's response, counted in the metrics. */
  writer(raw: ServerResponse): SseWriter {
    return new SseWriter(raw, this.options.stallTimeoutMs, {
      paused: (on) => {
        this.pausedNow += on ? 1 : -1;
      },
      ended: (reason) => this.ended.inc({ reason }),
    });
  }
}

/**
 * Writes events to one SSE response. `send` resolves once the chunk is handed
 * to the socket and the socket has room for more: when `write` says the buffer
 * is above its high-water mark, it waits for 'drain' (so the producer stops
 * reading the database), and when no drain comes within the stall timeout the
 * client is dropped. The buffer thus never holds more than the high-water mark
 * plus one event.
 */
export class SseWriter {
  private closedWith: StreamEndReason | undefined;
  private readonly aborter = new AbortController();

  constructor(
    private readonly raw: ServerResponse,
    private readonly stallTimeoutMs: number,
    private readonly hooks: { paused(on: boolean): void; ended(reason: StreamEndReason): void },
  ) {
    raw.on('close', () => this.closed('client closed'));
    // A client gone while the route was still checking access: its 'close' has passed already.
    if (!raw.socket || raw.socket.destroyed) this.closed('client closed');
  }

  get open(): boolean {
    return this.closedWith === undefined;
  }

  /** Aborts when the stream ends, for whatever reason (to stop waiting for new readings). */
  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  /** True while the stream is open (after waiting for room when the client reads slowly). */
  async send(chunk: string): Promise<boolean> {
    if (!this.open) return false;
    if (this.raw.write(chunk)) return true;
    return this.waitForRoom();
  }

  /** Ends the stream politely (what is buffered is still delivered). */
  end(reason: StreamEndReason): void {
    if (!this.closed(reason)) return;
    this.raw.end();
  }

  /** Ends the stream at once, dropping what is buffered (a client that does not read). */
  drop(reason: StreamEndReason): void {
    if (!this.closed(reason)) return;
    this.raw.destroy();
  }

  private waitForRoom(): Promise<boolean> {
    this.hooks.paused(true);
    return new Promise<boolean>((resolve) => {
      let waiting = true;
      const done = () => {
        if (!waiting) return; // the stall timer drops the stream, which aborts: both call this
        waiting = false;
        clearTimeout(timer);
        this.raw.off('drain', done);
        this.aborter.signal.removeEventListener('abort', done);
        this.hooks.paused(false);
        resolve(this.open);
      };
      const timer = setTimeout(() => {
        this.drop('stalled');
        done();
      }, this.stallTimeoutMs);
      this.raw.on('drain', done);
      this.aborter.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Marks the stream closed; true the first time. */
  private closed(reason: StreamEndReason): boolean {
    if (this.closedWith !== undefined) return false;
    this.closedWith = reason;
    this.hooks.ended(metricReason(reason));
    this.aborter.abort();
    return true;
  }
}

/** Reasons as metric labels: a small fixed set. */
function metricReason(reason: StreamEndReason): string {
  return METRIC_REASONS.has(reason) ? reason : 'other';
}
