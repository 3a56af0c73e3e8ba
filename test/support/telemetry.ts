import { randomUUID } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { HttpResult } from './app';

/** Helpers for the telemetry tests: an owner with a device and its token, MQTT clients as a device uses them. */

type Http = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<HttpResult>;

export interface OwnedDevice {
  readonly owner: { authorization: string };
  readonly deviceId: string;
  readonly secret: string;
  /** A device token (POST /devices/:id/tokens). */
  readonly token: string;
}

export async function ownerWithDevice(http: Http): Promise<OwnedDevice> {
  const email = `owner-${randomUUID().slice(0, 8)}@example.test`;
  const password = 'a perfectly long passphrase 9';
  const s = await http('POST', '/auth/signup', { email, password, name: 'Owner' });
  if (s.status !== 201) throw new Error(`signup: ${s.status} ${JSON.stringify(s.body)}`);
  const l = await http('POST', '/auth/login', { email, password });
  const owner = { authorization: `Bearer ${l.body.accessToken}` };
  const d = await http('POST', '/devices', { name: 'sensor' }, owner);
  if (d.status !== 201) throw new Error(`device: ${d.status} ${JSON.stringify(d.body)}`);
  const token = await deviceToken(http, d.body.deviceId, d.body.secret);
  return { owner, deviceId: d.body.deviceId, secret: d.body.secret, token };
}

export async function deviceToken(http: Http, deviceId: string, secret: string): Promise<string> {
  const t = await http('POST', `/devices/${deviceId}/tokens`, { secret });
  if (t.status !== 200) throw new Error(`token: ${t.status} ${JSON.stringify(t.body)}`);
  return t.body.accessToken as string;
}

/** Connects (client id = the device id unless given); resolves with the client once CONNACK accepted, rejects with the refusal otherwise. */
export function connectDevice(
  port: number,
  username: string,
  password: string,
  options: IClientOptions = {},
): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      username,
      password,
      clientId: username,
      reconnectPeriod: 0,
      protocolVersion: 4,
      ...options,
    });
    c.once('connect', () => resolve(c));
    c.once('error', (e) => {
      c.end(true);
      reject(e);
    });
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** Publishes at QoS 1; resolves on PUBACK, rejects if the connection closes first. */
export function publishAcked(c: MqttClient, topic: string, payload: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const closed = () => reject(new Error('connection closed before PUBACK'));
    c.once('close', closed);
    c.publish(topic, payload, { qos: 1 }, (err) => {
      c.off('close', closed);
      if (err) reject(err);
      else resolve();
    });
  });
}
