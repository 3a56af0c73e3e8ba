import { readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { randomUUID } from 'node:crypto';
import { IdentityServices } from '../../src/identity/identity.services';
import { startTestApp, type HttpResult, type TestApp } from '../support/app';
import { eventually } from '../support/events';

/**
 * A login storm is bounded: password hashing runs in a child process of the
 * lowest CPU priority (src/identity/auth/hasher-process.ts), at most
 * ARGON2_CONCURRENCY at once with ARGON2_MAX_QUEUE waiting; the next login gets
 * a clear 503 AUTH.BUSY problem with Retry-After instead of an ever longer
 * queue, the process stays up and every other route keeps answering. A hashing
 * process that dies fails only the logins it was computing and is started again.
 */
const password = 'a perfectly long passphrase 9';
const MAX_QUEUE = 3;
let app: TestApp;
let hasher: IdentityServices['hasher'];

beforeAll(async () => {
  app = await startTestApp({
    env: {
      ARGON2_CONCURRENCY: '1',
      ARGON2_MAX_QUEUE: String(MAX_QUEUE),
      // The storm logs in with wrong passwords from one address on purpose.
      LOGIN_MAX_PER_ACCOUNT: '1000000',
      LOGIN_MAX_PER_ADDRESS: '1000000',
      LOGIN_MAX_PER_ACCOUNT_ADDRESS: '1000000',
    },
  });
  hasher = app.app.get(IdentityServices).hasher;
});
afterAll(async () => {
  await app.stop();
});

async function account(): Promise<{ email: string; authorization: string }> {
  const email = `storm-${randomUUID().slice(0, 8)}@example.test`;
  expect((await app.http('POST', '/auth/signup', { email, password, name: 'Storm' })).status).toBe(201);
  return { email, authorization: (await app.login(email, password)).authorization };
}

const login = (email: string, p = password) => app.http('POST', '/auth/login', { email, password: p });

it('hashes in a separate process at the lowest CPU priority (nice 19, SCHED_IDLE)', async () => {
  await account(); // the process has hashed something
  const pid = hasher.processId ?? 0;
  expect(pid).toBeGreaterThan(0);
  expect(pid).not.toBe(process.pid);
  expect(getPriority(pid)).toBe(19);
  // SCHED_IDLE (5) through util-linux's chrt (Essential on Debian): preempted at once by any waking thread.
  expect(readFileSync(`/proc/${pid}/sched`, 'utf8')).toMatch(/^policy\s*:\s*5$/m);
});

it('a storm past the queue gets 503 AUTH.BUSY with Retry-After; other routes answer meanwhile; the process stays up', async () => {
  const user = await account();
  const storm: Promise<HttpResult>[] = Array.from({ length: 40 }, (_, i) =>
    login(user.email, i % 2 === 0 ? password : `${password}-wrong`),
  );
  // While the storm is on: authenticated and public routes answer.
  const others = await Promise.all([
    ...Array.from({ length: 10 }, () => app.http('GET', '/users/me', undefined, { authorization: user.authorization })),
    app.http('GET', '/health'),
    app.http('GET', '/.well-known/jwks.json'),
  ]);
  expect(others.map((r) => r.status)).toEqual(others.map(() => 200));

  const answers = await Promise.all(storm);
  const busy = answers.filter((r) => r.status === 503);
  const decided = answers.filter((r) => r.status === 200 || r.status === 401);
  expect(busy.length + decided.length).toBe(answers.length); // nothing else: no 500, no hang
  expect(busy.length).toBeGreaterThan(0);
  expect(decided.length).toBeGreaterThanOrEqual(1 + MAX_QUEUE); // the running one and the queue were served
  for (const r of busy) {
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body).toMatchObject({ status: 503, code: 'AUTH.BUSY', type: 'urn:problem:AUTH.BUSY' });
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  }
  for (const r of decided) expect(r.status === 200 ? r.body.accessToken : r.body.code).toBeTruthy();

  // After the storm: the same process logs in as before.
  expect(hasher.waiting).toBe(0);
  expect((await login(user.email)).status).toBe(200);
  expect((await app.http('GET', '/health')).status).toBe(200);
});

it('a hashing process that dies fails the logins it was computing (503) and is started again for the next', async () => {
  const user = await account();
  const pid = hasher.processId!;
  // One login hashing and the queue full behind it: the process is busy from first to last.
  const inFlight = Array.from({ length: 1 + MAX_QUEUE }, () => login(user.email));
  await eventually(() => hasher.running === 1, 'a login is hashing');
  process.kill(pid, 'SIGKILL');
  const answers = await Promise.all(inFlight);
  const statuses = answers.map((r) => r.status);
  expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
  expect(statuses).toContain(503);
  for (const r of answers.filter((a) => a.status === 503)) expect(r.body).toMatchObject({ code: 'AUTH.BUSY' });
  expect((await login(user.email)).status).toBe(200);
  expect(hasher.processId).toBeDefined();
  expect(hasher.processId).not.toBe(pid);
  expect((await app.http('GET', '/users/me', undefined, { authorization: user.authorization })).status).toBe(200);
});
