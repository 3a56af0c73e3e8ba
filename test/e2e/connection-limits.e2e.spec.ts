import { connect, type Server, type Socket } from 'node:net';
import { Agent, request } from 'node:http';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { metric, RawMqtt } from '../support/mqtt-raw';
import { ownerWithDevice } from '../support/telemetry';

/**
 * A client that opens connections by the thousand (and never sends a request, or never sends
 * its MQTT CONNECT) must not take the file descriptors every other client needs. The hostile
 * client connects from 127.0.0.2, everyone else from 127.0.0.1: two machines as the app sees them.
 */
const HOSTILE = '127.0.0.2';
let app: TestApp;
const sockets: Socket[] = [];

beforeAll(async () => {
  app = await startTestApp({
    env: {
      HTTP_MAX_CONNECTIONS_PER_ADDRESS: '8',
      MQTT_MAX_PENDING_PER_ADDRESS: '4',
      MQTT_CONNECT_TIMEOUT_MS: '120000',
      HTTP_REQUEST_TIMEOUT_MS: '2000',
    },
  });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await app.stop();
});

/** An idle TCP connection from `localAddress`; resolves once connected, with a promise of its close. */
function idle(port: number, localAddress: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress }, () => {
      socket.off('error', reject);
      resolve({ socket, closed: new Promise((r) => socket.once('close', () => r())) });
    });
    socket.once('error', reject);
    socket.on('error', () => undefined);
    sockets.push(socket);
  });
}

/** One GET over a fresh connection from `localAddress`: the status line, or 'closed' when the server hung up. */
function getFrom(port: number, localAddress: string, path: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress }, () =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`),
    );
    sockets.push(socket);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text ? text.split('\r\n')[0]! : 'closed'));
  });
}

const metrics = async () => (await app.http('GET', '/metrics')).body as string;

it('HTTP: one address holds at most HTTP_MAX_CONNECTIONS_PER_ADDRESS connections; other addresses are served; room comes back', async () => {
  const port = Number(new URL(app.url).port);
  const held = await Promise.all(Array.from({ length: 8 }, () => idle(port, HOSTILE)));
  // The ninth from that address is closed on arrival, without an answer.
  expect(await getFrom(port, HOSTILE, '/health')).toBe('closed');
  expect(metric(await metrics(), 'http_connections_refused_total', 'reason="per_address"')).toBeGreaterThanOrEqual(1);
  // Another address is served as usual.
  expect(await getFrom(port, '127.0.0.1', '/health')).toBe('HTTP/1.1 200 OK');
  // The held connections were accepted (not refused): one closed makes room for one more.
  held[0]!.socket.destroy();
  await held[0]!.closed;
  await eventually(
    async () => (await getFrom(port, HOSTILE, '/health')) === 'HTTP/1.1 200 OK',
    'room for the address once one of its connections closed',
  );
  for (const h of held) h.socket.destroy();
});

it('MQTT: one address holds at most MQTT_MAX_PENDING_PER_ADDRESS connections before CONNECT; authenticated devices do not count', async () => {
  const port = app.app.get(TelemetryServices).mqttPort;
  // Devices behind one address (a NAT) are not limited once their CONNECT is accepted.
  const devices = await Promise.all(Array.from({ length: 5 }, () => ownerWithDevice(app.http)));
  const connected: RawMqtt[] = [];
  for (const d of devices) {
    const { c, returnCode } = await RawMqtt.connectAs(port, d.deviceId, d.deviceId, d.token, {}, HOSTILE);
    expect(returnCode).toBe(0);
    connected.push(c);
  }
  // Four idle connections that never send CONNECT are held …
  const pending = await Promise.all(Array.from({ length: 4 }, () => RawMqtt.open(port, HOSTILE)));
  // … the fifth is closed on arrival and counted.
  const extra = await RawMqtt.open(port, HOSTILE);
  await extra.closedByBroker('pending connections per address');
  expect(
    metric(await metrics(), 'mqtt_connections_refused_total', 'reason="pending_per_address"'),
  ).toBeGreaterThanOrEqual(1);
  expect(pending.every((p) => !p.closed)).toBe(true);
  expect(connected.every((c) => !c.closed)).toBe(true);
  // A device from another address still connects.
  const other = await ownerWithDevice(app.http);
  const { c: fromElsewhere, returnCode } = await RawMqtt.connectAs(port, other.deviceId, other.deviceId, other.token);
  expect(returnCode).toBe(0);
  // Once one pending connection goes, that address may open one again.
  pending[0]!.end();
  await pending[0]!.whenClosed;
  await eventually(async () => {
    const again = await RawMqtt.open(port, HOSTILE);
    const refused = await Promise.race([
      again.whenClosed.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 200)),
    ]);
    if (!refused) pending.push(again);
    return !refused;
  }, 'room for a pending connection once one closed');
  for (const c of [...connected, ...pending, fromElsewhere]) c.end();
});

it.each([
  // One header line now and then, never the blank line that ends them (Node's headersTimeout).
  ['headers', 'GET /health HTTP/1.1\r\nHost: t\r\n', 'X-Pad: 1\r\n'],
  // The headers whole, then one byte of the body now and then (enforceBodyDeadline).
  [
    'body',
    'POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
    ' ',
  ],
])(
  'HTTP: a request whose %s trickle past HTTP_REQUEST_TIMEOUT_MS gets 408 problem details and its connection closed',
  async (_part, start, drip) => {
    const port = Number(new URL(app.url).port);
    const socket = connect({ port, host: '127.0.0.1' });
    sockets.push(socket);
    socket.on('error', () => undefined);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.write(start);
    // The connection is closed, not held.
    const trickle = setInterval(() => socket.writable && socket.write(drip), 300);
    await closed;
    clearInterval(trickle);
    const [head, body] = text.split('\r\n\r\n');
    expect(head!.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
    expect(JSON.parse(body!)).toMatchObject({
      status: 408,
      code: 'PLATFORM.MALFORMED_REQUEST',
      errors: [{ field: '(request)' }],
    });
  },
);

it('HTTP: the body deadline leaves nothing behind on a keep-alive connection that carries many requests', async () => {
  const server = (app.app.getHttpAdapter().getInstance() as { server: Server }).server;
  const accepted: Socket[] = [];
  const onConnection = (s: Socket) => accepted.push(s);
  server.on('connection', onConnection);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const post = () =>
    new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: Number(new URL(app.url).port),
          method: 'POST',
          path: '/commands/DropDatabase',
          agent,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.setHeader('content-type', 'application/json');
      req.end('{}');
    });
  try {
    expect(await post()).toBe(404);
    expect(accepted).toHaveLength(1);
    const listeners = () => accepted[0]!.listenerCount('close') + accepted[0]!.listenerCount('end');
    const afterOne = listeners();
    for (let i = 0; i < 30; i++) expect(await post()).toBe(404);
    expect(accepted).toHaveLength(1); // one connection carried them all
    expect(listeners()).toBe(afterOne);
  } finally {
    server.off('connection', onConnection);
    agent.destroy();
  }
});
