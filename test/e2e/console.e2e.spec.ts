import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { TelemetryServices } from '../../src/telemetry/telemetry.services';
import { accountsProjection, ACCOUNT_EVENTS, type AccountsControl } from '../fixtures/accounts-projection';
import { startTestApp, type TestApp } from '../support/app';
import { eventually, testEvent } from '../support/events';
import { customer, orderIn, placeOrder, product } from '../support/sales';
import { connectDevice, deviceToken, publishAcked } from '../support/telemetry';

/**
 * The operator console (/console) in a real browser: Debian's chromium driven
 * by playwright-core, against the real app (PostgreSQL, Redis, the embedded
 * MQTT broker). One browser and one app for the file; each scenario waits on
 * what the page shows, never on time. Screenshots of each page go to
 * .data/artifacts/console (git-ignored).
 */
const ROOT = join(__dirname, '../..');
const ARTIFACTS = join(ROOT, '.data/artifacts/console');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const PASSWORD = 'a perfectly long passphrase 9';
const FIXTURE = 'console_accts';

let app: TestApp;
let browser: Browser;
let mqttPort: number;
const control: AccountsControl = { failOn: new Set() };
const contexts: BrowserContext[] = [];
/** Pages that broke the Content-Security-Policy or threw: there must be none. */
const pageErrors: string[] = [];

beforeAll(async () => {
  // `npm test` builds the console in scripts/setup.sh; a bare `npx jest` of this file builds it here (well under a second).
  if (!existsSync(join(ROOT, 'dist/console/index.html')))
    execFileSync('node', [join(ROOT, 'scripts/build-console.mjs')], { stdio: 'inherit' });
  mkdirSync(ARTIFACTS, { recursive: true });
  app = await startTestApp({
    projections: [accountsProjection(FIXTURE, { control })],
    env: { SHIPPING_INTERVAL_MS: '3600000', PROJECTION_MAX_ATTEMPTS: '1' },
  });
  mqttPort = app.app.get(TelemetryServices).mqttPort;
  // Root in CI: Chromium's sandbox needs an unprivileged user, so it is off (the page is our own, on localhost).
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
});

afterAll(async () => {
  await browser?.close();
  await app?.stop();
});

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
  expect(pageErrors.splice(0)).toEqual([]);
});

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) pageErrors.push(m.text());
  });
  return page;
}

/** A page of the console's navigation bar. */
const nav = (page: Page, name: string) => page.getByRole('navigation').getByRole('link', { name, exact: true });

async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto(`${app.url}/console`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter'); // the keyboard submits the form
  await page.getByTestId('who').filter({ hasText: email }).waitFor();
}

const signInAdmin = (page: Page) => signIn(page, app.admin.email, app.admin.password);

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** A user with a device: email, the device's id and a device token. */
async function userWithDevice() {
  const email = `console-${randomUUID().slice(0, 8)}@example.test`;
  const s = await app.http('POST', '/auth/signup', { email, password: PASSWORD, name: 'Console user' });
  if (s.status !== 201) throw new Error(`signup: ${s.status}`);
  const { authorization } = await app.login(email, PASSWORD);
  const d = await app.http('POST', '/devices', { name: 'boiler sensor' }, { authorization });
  if (d.status !== 201) throw new Error(`device: ${d.status}`);
  const token = await deviceToken(app.http, d.body.deviceId, d.body.secret);
  return { email, authorization, userId: s.body.userId as string, deviceId: d.body.deviceId as string, token };
}

async function publishReading(deviceId: string, token: string, value: number): Promise<void> {
  const c = await connectDevice(mqttPort, deviceId, token);
  try {
    await publishAcked(
      c,
      `devices/${deviceId}/readings`,
      JSON.stringify({ metric: 'temp', value, ts: new Date().toISOString() }),
    );
  } finally {
    c.end(true);
  }
}

it('is served with a self-only CSP; an admin signs in, sees the overview, and signs out with no token left behind', async () => {
  const res = await fetch(`${app.url}/console`);
  expect(res.status).toBe(200);
  const csp = res.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("connect-src 'self'");
  expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
  const html = await res.text();
  expect(html).not.toMatch(/https?:\/\//); // no CDN, no remote font

  const page = await newPage();
  const wrong = page.getByRole('alert');
  await page.goto(`${app.url}/console`);
  await page.getByLabel('Email').fill(app.admin.email);
  await page.getByLabel('Password').fill('not the password at all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await wrong.filter({ hasText: '401' }).waitFor();

  const session = page.waitForResponse((r) => r.url().endsWith('/auth/login') && r.status() === 200);
  await signInAdmin(page);
  await page.getByTestId('component-postgres').getByText('ok').waitFor();
  await page.getByTestId('component-eventStore').getByText('ok').waitFor();
  // Live: a second sample gives a rate (events per second) without a reload.
  await page.getByTestId('events-per-second').filter({ hasText: /^\d/ }).waitFor();
  await shot(page, '01-overview');

  // Tokens live in memory only.
  expect(await page.evaluate('localStorage.length + sessionStorage.length + document.cookie.length')).toBe(0);
  expect(await page.context().cookies()).toEqual([]);

  // Keyboard only: Tab reaches the skip link, then the page links in order; Enter follows one.
  const focused = () => page.evaluate('document.activeElement && document.activeElement.textContent');
  await page.keyboard.press('Tab');
  expect(await focused()).toBe('Skip to content');
  await page.keyboard.press('Tab');
  expect(await focused()).toBe('Overview');
  await page.keyboard.press('Tab');
  expect(await focused()).toBe('Projections');
  await page.keyboard.press('Enter');
  await page.getByTestId('projections').waitFor();

  await page.getByTestId('sign-out').click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.getByText('signed out').waitFor();
  // Sign-out revoked the session server-side: neither the access token nor the refresh token works any more.
  const { accessToken, refreshToken } = (await (await session).json()) as { accessToken: string; refreshToken: string };
  expect((await app.http('GET', '/users/me', undefined, { authorization: `Bearer ${accessToken}` })).status).toBe(401);
  expect((await app.http('POST', '/auth/refresh', { refreshToken })).status).toBe(401);
});

it('a reading published over MQTT adds a point to the live chart; another user cannot open that device', async () => {
  const owner = await userWithDevice();
  await publishReading(owner.deviceId, owner.token, 20.5);
  await eventually(
    async () =>
      (await app.http('GET', `/devices/${owner.deviceId}/metrics`, undefined, { authorization: owner.authorization }))
        .body.metrics?.length === 1,
    'the first reading is projected',
  );

  const page = await newPage();
  await signIn(page, owner.email, PASSWORD);
  await page.getByRole('link', { name: 'boiler sensor' }).click();
  await page.locator('[data-testid="latest"] [data-metric="temp"] .value').filter({ hasText: '20.5' }).waitFor();
  const chart = page.getByTestId('live-chart');
  await page.locator('[data-testid="live-chart"][data-points="1"]').waitFor();
  await page.getByTestId('stream-state').filter({ hasText: 'open' }).waitFor();
  await page.locator('[data-testid="history-chart"] canvas').waitFor();

  await publishReading(owner.deviceId, owner.token, 23.25);
  await page.locator('[data-testid="live-chart"][data-points="2"]').waitFor();
  expect(await chart.getAttribute('aria-label')).toContain('latest 23.25');
  await shot(page, '02-device-live-chart');

  // Another user, signed in, opens the owner's device page: refused, nothing of the device shown.
  const other = await userWithDevice();
  const otherPage = await newPage();
  await signIn(otherPage, other.email, PASSWORD);
  await otherPage.goto(`${app.url}/console#/devices/${owner.deviceId}`);
  await otherPage.getByTestId('no-access').filter({ hasText: 'not yours' }).waitFor();
  expect(await otherPage.getByTestId('latest').count()).toBe(0);
  expect(await otherPage.getByTestId('live-chart').count()).toBe(0);
  await shot(otherPage, '03-device-refused');
});

it('starts a projection rebuild and shows it reach 100% and swap', async () => {
  const page = await newPage();
  await signInAdmin(page);
  await nav(page, 'Projections').click();
  await page.getByTestId('projection-users').waitFor();
  await shot(page, '04-projections');
  await page.getByRole('link', { name: 'users', exact: true }).click();
  await page.getByTestId('rebuild').click();
  await page.getByTestId('rebuild-swapped').waitFor();
  expect(await page.getByTestId('rebuild-percent').textContent()).toBe('100%');
  expect(await page.getByTestId('rebuild-progress').getAttribute('data-state')).toBe('completed');
  await shot(page, '05-projection-rebuilt');
});

it('finds a rejected (oversold) order by its customer and shows its compensation steps', async () => {
  const c = await customer(app);
  const [p1, p2] = [await product(app, 10), await product(app, 1)];
  const { orderId } = await placeOrder(app, c, [
    { productId: p1, quantity: 4 },
    { productId: p2, quantity: 3 },
  ]);
  await orderIn(app, c, orderId, ['rejected'], 'stock-released');

  const page = await newPage();
  await signInAdmin(page);
  await nav(page, 'Orders & sagas').click();
  await page.getByTestId('order-search').fill(c.userId);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText(`Orders of customer ${c.userId}`).waitFor();
  const row = page.locator('[data-testid="orders"] tr[data-status="rejected"]');
  await row.waitFor();
  expect(await page.locator('[data-testid="orders"] tbody tr').count()).toBe(1);
  await shot(page, '06-orders');
  await row.getByRole('link', { name: orderId }).click();

  const released = page.locator('[data-testid="timeline"] li.compensation[data-step="stock-released"]');
  await released.waitFor();
  await page.locator('[data-testid="timeline"] li[data-step="rejected"]').getByText('not enough stock').waitFor();
  expect(await page.getByTestId('order-reason').textContent()).toMatch(
    /not enough stock of SKU-.*: 3 asked, 1 available/,
  );
  await page.getByTestId('saga-steps').waitFor();
  await shot(page, '07-order-timeline');
});

it('shows a parked projection with its event and error, and retries it', async () => {
  const poison = testEvent(ACCOUNT_EVENTS.opened, { owner: 'poison' });
  control.failOn.add(poison.id);
  await app.platform.store.append(`acct-${randomUUID()}`, [poison], 'no_stream');
  await eventually(
    async () => (await app.platform.projections.info(app.platform.projections.get(FIXTURE))).status === 'parked',
    'the fixture projection parks on the poison event',
  );

  const page = await newPage();
  await signInAdmin(page);
  await page.goto(`${app.url}/console#/projections/${FIXTURE}`);
  await page.getByTestId('parked-error').filter({ hasText: 'division by zero' }).waitFor();
  await page.getByTestId('parked').getByText('"owner": "poison"').waitFor(); // the payload
  await shot(page, '08-projection-parked');

  control.failOn.delete(poison.id);
  await page.getByTestId('retry').click();
  await page.locator('h1 [data-status="running"]').waitFor();
  await page.getByTestId('operator-log').getByText('retry').waitFor();
  expect(await page.getByTestId('parked').count()).toBe(0);
  await shot(page, '09-projection-retried');

  // The event explorer opens that event and its correlation.
  await nav(page, 'Events').click();
  await page
    .locator(`[data-testid="events"] tr[data-type="${ACCOUNT_EVENTS.opened}"]`)
    .first()
    .getByRole('link', { name: ACCOUNT_EVENTS.opened })
    .click();
  await page.getByTestId('event-type').filter({ hasText: ACCOUNT_EVENTS.opened }).waitFor();
  await shot(page, '10-event');
});

it('lists users and a user’s devices', async () => {
  const owner = await userWithDevice();
  const page = await newPage();
  await signInAdmin(page);
  await nav(page, 'Users').click();
  await page.getByTestId('user-search').fill(owner.email);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('link', { name: owner.email }).click();
  await page.getByRole('link', { name: 'boiler sensor' }).waitFor();
  expect(await page.locator('[data-testid="devices"] tbody tr').count()).toBe(1);
  await shot(page, '11-user');
});
