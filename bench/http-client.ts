import { Agent, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { Redis } from 'ioredis';

/**
 * What the benchmarks that drive the real app over HTTP share: a keep-alive
 * client to 127.0.0.1, and the clean-up of a run's Redis keys.
 */
export interface Target {
  readonly port: number;
  readonly agent: Agent;
  readonly timeoutMs: number;
}

export interface Reply {
  status: number;
  body: string;
}

export function target(url: string, sockets: number, timeoutMs: number): Target {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1') throw new Error(`bench requests go to 127.0.0.1 only, not ${u.hostname}`);
  return {
    port: Number(u.port),
    agent: new Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets }),
    timeoutMs,
  };
}

export function send(
  t: Target,
  method: string,
  path: string,
  headers: OutgoingHttpHeaders = {},
  body?: string,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: t.port,
        agent: t.agent,
        method,
        path,
        headers:
          body === undefined
            ? headers
            : { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(t.timeoutMs, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

export async function sendJson(
  t: Target,
  method: string,
  path: string,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
): Promise<{ status: number; json: any }> {
  const r = await send(t, method, path, headers, JSON.stringify(body));
  let json: unknown;
  try {
    json = r.body ? JSON.parse(r.body) : undefined;
  } catch {
    json = r.body;
  }
  return { status: r.status, json };
}

/** Deletes a run's keys (`<prefix>:*`) from Redis. */
export async function dropRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    let rounds = 0;
    do {
      const [c, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = c;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0' && ++rounds < 100_000);
  } finally {
    redis.disconnect();
  }
}
