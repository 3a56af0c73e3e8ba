import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a real server (Redis), so that one app
 * instance can lose its link while the others keep theirs:
 *
 * - `freeze()`: a silent partition: connections stay open, nothing is forwarded
 *   either way (what arrives is held), until `thaw()` delivers it in order;
 * - `cut()`: every connection is reset and new ones are closed as they arrive,
 *   until `restore()`.
 */
export interface TcpProxy {
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  freeze(): void;
  thaw(): void;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Link {
  readonly client: Socket;
  readonly upstream: Socket;
  readonly held: { to: Socket; chunk: Buffer }[];
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const links = new Set<Link>();
  let frozen = false;
  let severed = false;
  const server: Server = createServer((client) => {
    if (severed) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    const link: Link = { client, upstream, held: [] };
    links.add(link);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (frozen) link.held.push({ to, chunk });
        else to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const destroyAll = () => {
    for (const l of [...links]) {
      l.client.resetAndDestroy();
      l.upstream.destroy();
    }
    links.clear();
  };
  return {
    port,
    via(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const l of links) {
        for (const { to, chunk } of l.held.splice(0)) to.write(chunk);
      }
    },
    cut() {
      severed = true;
      destroyAll();
    },
    restore() {
      severed = false;
    },
    async close() {
      destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
