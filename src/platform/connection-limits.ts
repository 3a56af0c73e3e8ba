import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';
import type { Counter } from 'prom-client';
import type { Logger } from './logger';
import { clientErrorProblem } from './http/problem-details';

/**
 * Connections one address may hold open at once (HTTP, and MQTT before its CONNECT is accepted):
 * without it one client opening thousands of idle sockets takes every file descriptor of the
 * process, and every other user (and the PostgreSQL pool) with them. A connection beyond the
 * limit is closed as it arrives. Counted by the socket's peer address (an IPv4-mapped IPv6
 * address counts as its IPv4 one), never by a header a client can write.
 */
export class PerAddressConnections {
  private readonly open = new Map<string, number>();
  private readonly held = new WeakSet<Socket>();

  constructor(
    private readonly maxPerAddress: number,
    private readonly onRefused: (address: string) => void,
  ) {}

  /** False (and the socket destroyed) when its address already holds the limit. 0 = no limit. */
  admit(socket: Socket): boolean {
    if (this.maxPerAddress <= 0) return true;
    const address = addressOf(socket);
    const n = this.open.get(address) ?? 0;
    if (n >= this.maxPerAddress) {
      this.onRefused(address);
      socket.destroy();
      return false;
    }
    this.open.set(address, n + 1);
    this.held.add(socket);
    socket.once('close', () => this.release(socket));
    return true;
  }

  /** Stops counting this socket (idempotent): on close, or once an MQTT client is authenticated. */
  release(socket: Socket): void {
    if (!this.held.delete(socket)) return;
    const address = addressOf(socket);
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }

  /** Addresses holding at least one counted connection (for tests and metrics). */
  get addresses(): number {
    return this.open.size;
  }
}

function addressOf(socket: Socket): string {
  const a = socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * What a refused connection leaves: a count by reason, and a warning naming the limit, one line
 * a second at most (a connection flood must not become a log flood).
 */
export function refusalReporter<R extends string>(
  log: Logger,
  refused: Counter<'reason'>,
  messages: Readonly<Record<R, string>>,
): (reason: R, remoteAddress: string | undefined) => void {
  let lastLog = 0;
  return (reason, remoteAddress) => {
    refused.inc({ reason });
    if (Date.now() - lastLog < 1000) return;
    lastLog = Date.now();
    log.warn({ reason, remoteAddress }, messages[reason]);
  };
}

/**
 * Applies both limits to a server: `maxConnections` overall (Node closes the extra ones on
 * arrival and emits 'drop') and `maxPerAddress` per peer address. Must run before any other
 * 'connection' listener (the HTTP server's own), so a refused socket is never parsed.
 */
export function limitConnections(
  server: Server,
  limits: { maxConnections: number; maxPerAddress: number },
  onRefused: (reason: 'max' | 'per_address', address: string | undefined) => void,
): PerAddressConnections {
  server.maxConnections = limits.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => onRefused('max', data?.remoteAddress));
  const perAddress = new PerAddressConnections(limits.maxPerAddress, (address) => onRefused('per_address', address));
  // A refused socket is destroyed here; the server's own listener then sees it closed (its close
  // handler, added in the same tick, still runs and frees the parser).
  server.prependListener('connection', (socket: Socket) => void perAddress.admit(socket));
  return perAddress;
}

/**
 * The process's open-file limit (soft), from /proc on Linux; undefined elsewhere. Node raises the
 * soft limit to the hard one at start, so this is what the process really has.
 */
export function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    const n = soft === undefined ? NaN : Number(soft);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * HTTP_MAX_CONNECTIONS when it is not configured: what the file descriptors allow after room for
 * everything else the process opens (the MQTT broker's connections, the pools, files), at least 64.
 */
export function defaultHttpMaxConnections(mqttMaxConnections: number, fdLimit: number | undefined): number {
  if (fdLimit === undefined) return 4096;
  return Math.max(64, fdLimit - mqttMaxConnections - 512);
}

/**
 * A request body must have arrived whole within `ms` of the request's start: Node's own
 * timeouts (headersTimeout, requestTimeout) stop watching once the headers are in, so a client trickling a body one
 * byte at a time would hold its connection (and the parser's buffer) for ever. Past the
 * deadline it gets 408 problem details (or, when an answer already went out, e.g. a 413, just the
 * close) and the connection is closed.
 */
export function enforceBodyDeadline(req: IncomingMessage, res: ServerResponse, ms: number): void {
  const length = req.headers['content-length'];
  const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (!hasBody || req.complete) return;
  const socket = req.socket;
  const timer = setTimeout(() => {
    clear();
    if (req.complete || socket.destroyed) return;
    if (res.headersSent) {
      socket.destroy();
      return;
    }
    clientErrorProblem(Object.assign(new Error('request body timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
  }, ms);
  timer.unref();
  // Every listener goes with the deadline: a keep-alive connection carries many requests.
  const clear = () => {
    clearTimeout(timer);
    req.off('end', clear);
    req.off('close', clear);
    socket.off('close', clear);
  };
  req.on('end', clear);
  req.on('close', clear);
  socket.on('close', clear);
}
