import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startLocalRedis } from '../../src/platform/local/local-services';

/** The local Redis the app starts with no REDIS_URL: started once, reused by its own data dir, never confused with a stranger on the port. */
const freePort = () => new Promise<number>((res) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const a = s.address();
    s.close(() => res(typeof a === 'object' && a ? a.port : 0));
  });
});

describe('local Redis', () => {
  it('starts, is reused by the same data dir, and stops', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'local-redis-'));
    const port = await freePort();
    const first = await startLocalRedis(dir, port, () => undefined);
    const again = await startLocalRedis(dir, port, () => undefined);
    expect(again.url).toBe(first.url);
    const client = new Redis(again.url, { maxRetriesPerRequest: 1 });
    try {
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
    }
    await again.stop();
    await first.stop();
  });

  it('refuses a port taken by something else, naming the setting to change', async () => {
    const port = await freePort();
    const stranger: Server = await new Promise((res) => { const s = createServer().listen(port, '127.0.0.1', () => res(s)); });
    try {
      await expect(startLocalRedis(mkdtempSync(join(tmpdir(), 'local-redis-')), port, () => undefined)).rejects.toThrow(/EMBEDDED_REDIS_PORT/);
    } finally {
      await new Promise((r) => stranger.close(r));
    }
  });
});
