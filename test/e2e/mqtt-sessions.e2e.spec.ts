import type { MqttClient } from 'mqtt';
import { startTestApp, type TestApp } from '../support/app';
import { connectDevice, ownerWithDevice, type OwnedDevice } from '../support/telemetry';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';

/**
 * An MQTT session of the embedded broker lasts only as long as the access it
 * was opened with (issue 9): revoking the device or disabling its owner closes
 * a connection that is already open, on the instance that holds it. The
 * periodic re-check is set to an hour, so what ends these sessions is the
 * revocation notice itself.
 */

let app: TestApp;
const clients: MqttClient[] = [];

beforeAll(async () => {
  app = await startTestApp({ env: { SESSION_RECHECK_INTERVAL_S: '3600' } });
});
afterAll(async () => {
  for (const c of clients) c.end(true);
  await app.stop();
});

async function connected(owned: OwnedDevice): Promise<{ client: MqttClient; closed: Promise<void> }> {
  const client = await connectDevice(app.app.get(TelemetryServices).mqttPort, owned.deviceId, owned.token);
  clients.push(client);
  const closed = new Promise<void>((res) => client.once('close', () => res()));
  return { client, closed };
}

async function userIdOf(owned: OwnedDevice): Promise<string> {
  return ((await app.http('GET', '/users/me', undefined, owned.owner)).body as { userId: string }).userId;
}

it('revoking a device closes its open MQTT connection, and it cannot connect again', async () => {
  const owned = await ownerWithDevice(app.http);
  const bystander = await ownerWithDevice(app.http);
  const { closed } = await connected(owned);
  const other = await connected(bystander);
  expect((await app.http('POST', `/devices/${owned.deviceId}/revoke`, undefined, owned.owner)).status).toBe(200);
  await closed;
  await expect(connectDevice(app.app.get(TelemetryServices).mqttPort, owned.deviceId, owned.token)).rejects.toThrow();
  // Another device's session is not touched.
  expect(other.client.connected).toBe(true);
});

it("disabling a user closes their devices' open MQTT connections", async () => {
  const owned = await ownerWithDevice(app.http);
  const bystander = await ownerWithDevice(app.http);
  const { closed } = await connected(owned);
  const other = await connected(bystander);
  const userId = await userIdOf(owned);
  expect((await app.http('POST', `/admin/users/${userId}/disable`, undefined, await app.adminAuth())).status).toBe(200);
  await closed;
  expect(other.client.connected).toBe(true);
});
