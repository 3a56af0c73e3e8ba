import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { parse } from 'yaml';
import { pickPort } from '../../src/platform/local/processes';
import { eventually } from '../support/events';

/**
 * The Mosquitto service of docker/compose.yaml, run for real with the Debian mosquitto (no Docker
 * engine here): its start script, docker/mosquitto.conf and docker/mosquitto.acl as shipped, only
 * the container paths (/mosquitto/, /tmp/) moved into a temporary directory and the listener put on
 * a free local port. Checks what the compose file promises: the app's account from MQTT_PASSWORD
 * reads the shared subscription, a device account added with mosquitto_passwd publishes its own
 * readings and no other device's, a restart with a new MQTT_PASSWORD keeps the device accounts, and
 * the health check passes.
 */

const DOCKER = resolve(__dirname, '../../docker');
interface MosquittoService {
  command: string[];
  healthcheck: { test: string[] };
}
const service = (
  parse(readFileSync(join(DOCKER, 'compose.yaml'), 'utf8'), { merge: true }) as {
    services: { mosquitto: MosquittoService };
  }
).services.mosquitto;
/** Compose's $$ escape: the container sees a single $. */
const unescape = (s: string) => s.replace(/\$\$/g, '$');

let dir: string;
let port: number;
let broker: ChildProcess | undefined;
let brokerLog = '';
const clients: MqttClient[] = [];

const moved = (s: string) =>
  unescape(s).replace(/(?<![\w/.-])\/(mosquitto|tmp)\//g, (_, top: string) =>
    top === 'tmp' ? `${dir}/tmp/` : `${dir}/`,
  );

/** The compose command, run as the container would run it (it ends by exec'ing mosquitto). */
async function startBroker(mqttPassword: string): Promise<void> {
  expect(service.command.slice(0, 2)).toEqual(['sh', '-c']);
  let script = moved(service.command[2]!);
  // As root (the container's user) the script hands the files to the mosquitto user; otherwise to us.
  if (process.getuid?.() !== 0) script = script.replace(/chown mosquitto:mosquitto/g, `chown ${process.getuid?.()}`);
  brokerLog = '';
  const proc = spawn('sh', ['-c', script], {
    env: { PATH: process.env.PATH, MQTT_PASSWORD: mqttPassword },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d: Buffer) => (brokerLog += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (brokerLog += d.toString()));
  broker = proc;
  await eventually(
    () => {
      if (proc.exitCode !== null) throw new Error(`mosquitto exited ${proc.exitCode}: ${brokerLog}`);
      return healthcheck() === 0;
    },
    'the compose health check to pass',
    15_000,
  );
}

async function stopBroker(): Promise<void> {
  const proc = broker;
  broker = undefined;
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((res) => proc.once('exit', res));
  proc.kill('SIGTERM');
  await exited;
}

/** The compose health check command, run as the container would. */
function healthcheck(): number | null {
  const [kind, command] = service.healthcheck.test as [string, string];
  expect(kind).toBe('CMD-SHELL');
  const r = spawnSync('sh', ['-c', moved(command).replace('-p 1883', `-p ${port}`)], {
    env: { PATH: process.env.PATH },
    timeout: 5000,
  });
  return r.status;
}

async function connect(username: string, password: string, clientId = username): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId,
    username,
    password,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
  });
  clients.push(c);
  return c;
}

async function refused(username: string, password: string): Promise<string> {
  try {
    const c = await connect(username, password);
    c.end(true);
    return 'accepted';
  } catch (e) {
    return (e as Error).message;
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mosquitto-compose-'));
  chmodSync(dir, 0o755); // mosquitto drops to its own user when started as root
  port = await pickPort();
  mkdirSync(join(dir, 'config'));
  mkdirSync(join(dir, 'data'));
  mkdirSync(join(dir, 'tmp'));
  // The read-only bind mounts of compose: the conf (listener and log target adjusted), the ACL as is.
  const conf = moved(readFileSync(join(DOCKER, 'mosquitto.conf'), 'utf8'))
    .replace(/^listener .*$/m, `listener ${port} 127.0.0.1`)
    .replace(/^log_dest .*$/m, 'log_dest stderr');
  writeFileSync(join(dir, 'config/mosquitto.conf'), conf, { mode: 0o644 });
  copyFileSync(join(DOCKER, 'mosquitto.acl'), join(dir, 'config/mosquitto.acl'));
  chmodSync(join(dir, 'config/mosquitto.acl'), 0o644);
});

afterAll(async () => {
  for (const c of clients) c.end(true);
  await stopBroker();
  rmSync(dir, { recursive: true, force: true });
});

const FIRST = 'first0123456789abcdef0123456789';
const SECOND = 'second0123456789abcdef012345678';

it('the app account reads the shared subscription; devices publish their own readings only; restarts keep device accounts', async () => {
  await startBroker(FIRST);

  // The app, as src/telemetry/external-subscriber.ts subscribes.
  const app = await connect('platform', FIRST, 'ops-platform-1');
  const received: string[] = [];
  app.on('message', (topic, payload) => received.push(`${topic} ${payload.toString()}`));
  const granted = await app.subscribeAsync('$share/ops-platform/devices/+/readings', { qos: 1 });
  expect(granted.map((g) => g.qos)).toEqual([1]);

  // A device account, added as docker/compose.yaml says (mosquitto_passwd, then SIGHUP).
  const add = spawnSync('mosquitto_passwd', ['-b', join(dir, 'config/passwd'), 'dev-1', 'device one secret'], {
    encoding: 'utf8',
  });
  expect(add.status).toBe(0);
  broker!.kill('SIGHUP');
  await eventually(async () => (await refused('dev-1', 'device one secret')) === 'accepted', 'dev-1 to be accepted');

  const device = await connect('dev-1', 'device one secret');
  await device.publishAsync('devices/dev-1/readings', '{"metric":"t","value":1}', { qos: 1 });
  // Denied by the ACL: mosquitto acknowledges and drops it (MQTT 3.1.1 has no negative PUBACK).
  await device.publishAsync('devices/dev-2/readings', '{"metric":"t","value":2}', { qos: 1 });
  await device.publishAsync('devices/dev-1/readings', '{"metric":"t","value":3}', { qos: 1 });
  await eventually(() => received.length >= 2, 'the two allowed readings');
  await new Promise((r) => setTimeout(r, 300));
  expect(received).toEqual([
    'devices/dev-1/readings {"metric":"t","value":1}',
    'devices/dev-1/readings {"metric":"t","value":3}',
  ]);

  expect(await refused('platform', 'wrong password 0123456789')).toMatch(/Not authorized|Bad username or password/i);
  expect(await refused('nobody', FIRST)).toMatch(/Not authorized|Bad username or password/i);

  // A restart with a rotated MQTT_PASSWORD: the app's entry changes, the device's stays.
  for (const c of clients.splice(0)) c.end(true);
  await stopBroker();
  await startBroker(SECOND);
  expect(await refused('platform', FIRST)).toMatch(/Not authorized|Bad username or password/i);
  expect(await refused('platform', SECOND)).toBe('accepted');
  expect(await refused('dev-1', 'device one secret')).toBe('accepted');
  const passwd = readFileSync(join(dir, 'config/passwd'), 'utf8');
  expect(passwd.match(/^platform:/gm)).toHaveLength(1);
  expect(passwd).not.toContain(SECOND); // hashed
  expect(healthcheck()).toBe(0);
});
