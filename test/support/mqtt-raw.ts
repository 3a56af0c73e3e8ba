import { connect, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

/**
 * A raw MQTT 3.1.1 connection for hostile tests: writes any packet (or any
 * bytes) and records what the broker answers, with none of a client
 * library's manners (no PUBREL unless told, no keep-alive, no reconnect).
 */
export class RawMqtt {
  readonly received: Packet[] = [];
  closed = false;
  readonly whenClosed: Promise<void>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      this.received.push(p);
      this.wake();
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (d: Buffer) => parser.parse(d));
    socket.on('error', () => undefined);
    this.whenClosed = new Promise((res) =>
      socket.once('close', () => {
        this.closed = true;
        this.wake();
        res();
      }),
    );
  }

  /** `localAddress`: another loopback address (127.0.0.2 …) to connect from, as a second client machine would. */
  static open(port: number, localAddress?: string): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) }, () => {
        s.off('error', reject);
        resolve(new RawMqtt(s));
      });
      s.once('error', reject);
    });
  }

  /** Opens and sends CONNECT; resolves with the CONNACK's return code (the connection stays open when 0). */
  static async connectAs(
    port: number,
    clientId: string,
    username?: string,
    password?: string,
    extra: Partial<mqttPacket.IConnectPacket> = {},
    localAddress?: string,
  ): Promise<{ c: RawMqtt; returnCode: number; sessionPresent: boolean }> {
    const c = await RawMqtt.open(port, localAddress);
    c.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepalive: 0,
      clientId,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password: Buffer.from(password) } : {}),
      ...extra,
    });
    const ack = (await c.next((p) => p.cmd === 'connack', 'CONNACK')) as mqttPacket.IConnackPacket;
    return { c, returnCode: ack.returnCode ?? -1, sessionPresent: ack.sessionPresent };
  }

  send(packet: Packet): void {
    if (!this.socket.destroyed) this.socket.write(mqttPacket.generate(packet));
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** The first received packet matching `pred` (already received or yet to come); rejects when the connection closes first. */
  async next(pred: (p: Packet) => boolean, what: string, timeoutMs = 30_000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(pred);
      if (found) return found;
      if (this.closed) throw new Error(`connection closed before ${what}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, 200);
        this.waiters.add(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  /** Resolves once the broker has closed the connection (rejects after `timeoutMs`). */
  async closedByBroker(what: string, timeoutMs = 30_000): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.whenClosed,
        new Promise((_, rej) => {
          t = setTimeout(
            () => rej(new Error(`broker did not close the connection (${what}) within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(t);
    }
  }

  end(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }
}

/** A counter's value in Prometheus text (0 when absent). */
export function metric(text: string, name: string, labels = ''): number {
  const escaped = `${name}${labels ? `{${labels}}` : ''}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}
