import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { startTestApp, type HttpResult, type TestApp } from '../support/app';
import { orderIn } from '../support/sales';
import { VAR, matchPath, readmeCurls, readmeProseRoutes } from '../support/readme-routes';

/**
 * GET /openapi.json against the running app: a valid OpenAPI 3.1 document,
 * served without a token, naming every route Fastify registered and every
 * route the README shows, with request schemas the README's bodies satisfy
 * and response schemas the app's real answers (successes and problems) satisfy.
 * And /docs: the page and every file it loads, from this app.
 */

const ROOT = join(__dirname, '../..');
type Doc = {
  openapi: string;
  paths: Record<string, Record<string, any>>;
  components: Record<string, unknown>;
};

let app: TestApp;
let doc: Doc;
let served: HttpResult;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const validators = new Map<string, ValidateFunction>();

/** Validates data against a schema of the document (its $refs resolve into the document's components). */
function validatorFor(key: string, schema: unknown): ValidateFunction {
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile({ ...(schema as object), components: doc.components });
    validators.set(key, v);
  }
  return v;
}

/** The answer conforms to what the document says this operation answers with that status. */
function check(method: string, template: string, res: HttpResult, status?: number): HttpResult {
  if (status !== undefined && res.status !== status)
    throw new Error(`${method} ${template}: ${res.status} (expected ${status}) ${JSON.stringify(res.body)}`);
  const op = doc.paths[template]?.[method.toLowerCase()];
  if (!op) throw new Error(`${method} ${template} is not in the document`);
  const response = op.responses[String(res.status)];
  if (!response)
    throw new Error(`${method} ${template} answered ${res.status}, not documented: ${JSON.stringify(res.body)}`);
  if (!response.content) {
    if (res.body !== undefined) throw new Error(`${method} ${template} ${res.status}: a body, none documented`);
    return res;
  }
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  const media = response.content?.[type];
  if (!media) throw new Error(`${method} ${template} ${res.status}: ${type} not documented`);
  const validate = validatorFor(`${method} ${template} ${res.status} ${type}`, media.schema);
  if (!validate(res.body))
    throw new Error(
      `${method} ${template} ${res.status}: ${JSON.stringify(validate.errors)}\nbody: ${JSON.stringify(res.body)}`,
    );
  return res;
}

beforeAll(async () => {
  app = await startTestApp();
  served = await app.http('GET', '/openapi.json');
  doc = served.body as Doc;
});
afterAll(async () => {
  await app?.stop();
});

describe('GET /openapi.json', () => {
  it('is served without a token and is a valid OpenAPI 3.1 document', async () => {
    expect(served.status).toBe(200);
    expect(doc.openapi).toBe('3.1.0');
    const file = join(mkdtempSync(join(tmpdir(), 'openapi-')), 'openapi.json');
    writeFileSync(file, JSON.stringify(doc));
    const cli = join(
      dirname(require.resolve('@seriousme/openapi-schema-validator/package.json')),
      'bin/validate-api-cli.js',
    );
    const run = await promisify(execFile)(process.execPath, [cli, file]).catch((e: { stdout: string }) => e);
    expect(JSON.parse(run.stdout)).toEqual(expect.objectContaining({ valid: true }));
  });

  it('documents every route Fastify registered, and no route it did not', () => {
    const registered = app.routes
      .filter((r) => r.method !== 'HEAD')
      .map((r) => `${r.method} ${r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
    expect(registered.length).toBeGreaterThan(40);
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(registered.filter((r) => !documented.includes(r))).toEqual([]);
    // Expansions of a registered template (POST /commands/{name} into one per command) are routes too.
    const templates = registered.map((r) => r.split(' ')[1]!);
    const phantom = documented.filter((d) => {
      const [method, path] = d.split(' ') as [string, string];
      const t = matchPath(templates, path);
      return !t || !registered.includes(`${method} ${t}`);
    });
    expect(phantom).toEqual([]);
    expect(documented).toContain('POST /commands/RegisterUser');
  });

  it("states each route's authentication: none, user token (with the role it needs) or device token", () => {
    const sec = (m: string, p: string) => doc.paths[p]![m]!.security as Record<string, string[]>[];
    expect(sec('post', '/auth/login')).toEqual([]);
    expect(sec('get', '/openapi.json')).toEqual([]);
    expect(sec('get', '/users/me')).toEqual([{ userToken: [] }]);
    expect(sec('get', '/admin/projections')).toEqual([{ userToken: ['admin'] }]);
    expect(sec('get', '/devices/me/identity')).toEqual([{ deviceToken: [] }]);
    expect(sec('post', '/devices/{id}/readings')).toEqual([{ userToken: [] }, { deviceToken: [] }]);
    expect(sec('post', '/commands/RegisterUser')).toEqual([]);
    expect(sec('post', '/commands/AssignRole')).toEqual([{ userToken: ['admin'] }]);
    expect(Object.keys(doc.components.securitySchemes as object).sort()).toEqual(['deviceToken', 'userToken']);
    // Problem answers name their codes: a route behind a role can answer 403 AUTH.FORBIDDEN.
    const forbidden = doc.paths['/admin/projections']!.get.responses['403'];
    expect(JSON.stringify(forbidden)).toContain('AUTH.FORBIDDEN');
  });

  it('takes request schemas from the same zod schemas that validate the requests', async () => {
    const body = doc.paths['/auth/signup']!.post.requestBody.content['application/json'].schema;
    expect(body).toMatchObject({
      type: 'object',
      required: ['email', 'password', 'name'],
      additionalProperties: false,
      properties: { name: { minLength: 1, maxLength: 100 } },
    });
    // What the document refuses, the route refuses, naming the field.
    const tooLong = { email: 'a@example.test', password: 'analytical engine 1843', name: 'x'.repeat(101) };
    expect(validatorFor('signup body', body)(tooLong)).toBe(false);
    const r = check('POST', '/auth/signup', await app.http('POST', '/auth/signup', tooLong));
    expect(r.status).toBe(400);
    expect(r.body.errors).toEqual([expect.objectContaining({ field: 'name' })]);
  });

  it('does not carry a secret of the running app', () => {
    const text = JSON.stringify(doc);
    const config = app.platform.config as unknown as Record<string, unknown>;
    const secrets = Object.entries(config).filter(
      ([k, v]) => /PASSWORD|SECRET|KEY|URL|TOKEN/.test(k) && typeof v === 'string' && v.length >= 8,
    );
    expect(secrets.length).toBeGreaterThan(0);
    for (const [k, v] of secrets) expect({ [k]: text.includes(v as string) }).toEqual({ [k]: false });
    expect(text).not.toContain(app.admin.password);
  });
});

describe('real answers conform to the document', () => {
  it('identity, telemetry, sales and operator routes, successes and problems', async () => {
    const password = 'analytical engine 1843';
    const email = `ada-${Date.now().toString(36)}@example.test`;
    const signup = check(
      'POST',
      '/auth/signup',
      await app.http('POST', '/auth/signup', { email, password, name: 'Ada' }),
    );
    expect(signup.status).toBe(201);
    expect(
      check('POST', '/auth/signup', await app.http('POST', '/auth/signup', { email, password, name: 'Ada' })).body.code,
    ).toBe('IDENTITY.EMAIL_TAKEN');
    const bad = check('POST', '/auth/login', await app.http('POST', '/auth/login', { email, password: 'wrong one' }));
    expect(bad.status).toBe(401);
    const session = check('POST', '/auth/login', await app.http('POST', '/auth/login', { email, password }), 200);
    const refreshed = check(
      'POST',
      '/auth/refresh',
      await app.http('POST', '/auth/refresh', { refreshToken: session.body.refreshToken }),
      200,
    );
    const user = { authorization: `Bearer ${refreshed.body.accessToken}` };
    check('GET', '/users/me', await app.http('GET', '/users/me', undefined, user), 200);
    expect(check('GET', '/users/me', await app.http('GET', '/users/me')).status).toBe(401);
    check('GET', '/.well-known/jwks.json', await app.http('GET', '/.well-known/jwks.json'), 200);
    const admin = await app.adminAuth();
    expect(
      check('GET', '/admin/projections', await app.http('GET', '/admin/projections', undefined, user)).status,
    ).toBe(403);

    // a device and its readings
    const dev = check('POST', '/devices', await app.http('POST', '/devices', { name: 'press-7' }, user), 201);
    const { deviceId, secret } = dev.body as { deviceId: string; secret: string };
    const token = check(
      'POST',
      '/devices/{id}/tokens',
      await app.http('POST', `/devices/${deviceId}/tokens`, { secret }),
      200,
    );
    const device = { authorization: `Bearer ${token.body.accessToken}` };
    check('GET', '/devices/me/identity', await app.http('GET', '/devices/me/identity', undefined, device), 200);
    const ingest = check(
      'POST',
      '/devices/{id}/readings',
      await app.http(
        'POST',
        `/devices/${deviceId}/readings`,
        [
          { metric: 'temp', value: 21.5 },
          { metric: 'hum', value: 40, id: 'h-1' },
        ],
        device,
      ),
    );
    expect(ingest.status).toBe(202);
    expect(
      check(
        'POST',
        '/devices/{id}/readings',
        await app.http('POST', `/devices/${deviceId}/readings`, { metric: 'Temp!', value: 1 }, device),
      ).body.code,
    ).toBe('TELEMETRY.INVALID_READING');
    const pos = ingest.body.position as number;
    check('GET', '/devices', await app.http('GET', `/devices?minPosition=${pos}`, undefined, user), 200);
    check(
      'GET',
      '/devices/{id}/metrics',
      await app.http('GET', `/devices/${deviceId}/metrics?minPosition=${pos}`, undefined, user),
      200,
    );
    check(
      'GET',
      '/devices/{id}/metrics/{metric}/latest',
      await app.http('GET', `/devices/${deviceId}/metrics/temp/latest`, undefined, user),
      200,
    );
    check(
      'GET',
      '/devices/{id}/metrics/{metric}',
      await app.http('GET', `/devices/${deviceId}/metrics/temp`, undefined, user),
      200,
    );
    check(
      'GET',
      '/devices/{id}/metrics/{metric}',
      await app.http('GET', `/devices/${deviceId}/metrics/temp?bucket=5m&agg=max`, undefined, user),
      200,
    );
    expect(
      check(
        'GET',
        '/devices/{id}/metrics/{metric}/latest',
        await app.http('GET', `/devices/${deviceId}/metrics/none/latest`, undefined, user),
      ).status,
    ).toBe(404);
    check('GET', '/admin/dead-letters', await app.http('GET', '/admin/dead-letters', undefined, admin), 200);

    // the catalogue, an order and its saga
    const channel = {
      channel: 'web',
      price: 49.9,
      currency: 'EUR',
      discountPct: 10,
      paymentMethods: ['card'],
      delivery: { method: 'parcel', days: 3 },
    };
    const sku = `KB-${Date.now().toString(36)}`;
    const product = check(
      'POST',
      '/products',
      await app.http('POST', '/products', { sku, name: 'Keyboard', unit: 'piece', channels: [channel] }, admin),
      201,
    );
    const productId = product.body.productId as string;
    const receipt = check(
      'POST',
      '/products/{id}/stock-receipts',
      await app.http('POST', `/products/${productId}/stock-receipts`, { quantity: 5, reference: 'PO-1' }, admin),
      201,
    );
    const after = receipt.body.position as number;
    check(
      'GET',
      '/products',
      await app.http('GET', `/products?channel=web&minPosition=${after}`, undefined, user),
      200,
    );
    check('GET', '/products/{id}', await app.http('GET', `/products/${productId}`, undefined, user), 200);
    check('GET', '/products/{id}/stock', await app.http('GET', `/products/${productId}/stock`, undefined, admin), 200);
    const order = check(
      'POST',
      '/orders',
      await app.http(
        'POST',
        '/orders',
        { channel: 'web', paymentMethod: 'card', items: [{ productId, quantity: 2 }] },
        user,
      ),
      202,
    );
    const orderId = order.body.orderId as string;
    check(
      'GET',
      '/orders/{id}',
      await app.http('GET', `/orders/${orderId}?minPosition=${order.body.position}`, undefined, user),
      200,
    );
    check('GET', '/orders', await app.http('GET', '/orders', undefined, user), 200);
    expect(check('GET', '/orders/{id}', await app.http('GET', `/orders/${productId}`, undefined, user)).body.code).toBe(
      'SALES.ORDER_NOT_FOUND',
    );
    expect(check('GET', '/orders/{id}', await app.http('GET', '/orders/not-a-uuid', undefined, user)).status).toBe(400);

    // operators
    check('GET', '/admin/users', await app.http('GET', '/admin/users?q=ada', undefined, admin), 200);
    check(
      'GET',
      '/admin/users/{id}',
      await app.http('GET', `/admin/users/${signup.body.userId}`, undefined, admin),
      200,
    );
    check('GET', '/admin/projections', await app.http('GET', '/admin/projections', undefined, admin), 200);
    check('GET', '/admin/projections/{name}', await app.http('GET', '/admin/projections/users', undefined, admin), 200);
    expect(
      check('GET', '/admin/projections/{name}', await app.http('GET', '/admin/projections/nope', undefined, admin))
        .status,
    ).toBe(404);
    const rebuild = check(
      'POST',
      '/admin/projections/{name}/rebuild',
      await app.http('POST', '/admin/projections/users/rebuild', undefined, admin),
      202,
    );
    check('GET', '/admin/jobs/{id}', await app.http('GET', `/admin/jobs/${rebuild.body.jobId}`, undefined, admin), 200);
    check('GET', '/health', await app.http('GET', '/health'), 200);
    // the event explorer
    const page = check('GET', '/admin/events', await app.http('GET', '/admin/events?limit=5', undefined, admin), 200);
    const first = (page.body.events as { id: string; streamId: string }[])[0]!;
    check('GET', '/admin/events/{id}', await app.http('GET', `/admin/events/${first.id}`, undefined, admin), 200);
    check(
      'GET',
      '/admin/streams/{streamId}/events',
      await app.http('GET', `/admin/streams/${encodeURIComponent(first.streamId)}/events`, undefined, admin),
      200,
    );
    check('GET', '/console', await app.http('GET', '/console'));
    check('GET', '/commands', await app.http('GET', '/commands'), 200);
    const viaCommand = check(
      'POST',
      '/commands/RegisterUser',
      await app.http('POST', '/commands/RegisterUser', { email: `b-${email}`, password, name: 'B' }),
    );
    expect(viaCommand.status).toBe(201);
    expect(check('POST', '/commands/{name}', await app.http('POST', '/commands/Nope', {})).body.code).toBe(
      'PLATFORM.UNKNOWN_COMMAND',
    );
    expect(check('GET', '/metrics', await app.http('GET', '/metrics')).status).toBe(200);
    expect(check('POST', '/auth/logout', await app.http('POST', '/auth/logout', undefined, user)).status).toBe(204);
  });
});

describe('real answers of the other write and operator routes conform too', () => {
  it('roles, devices, products, an order through its saga, shipping, sandbox payments', async () => {
    const admin = await app.adminAuth();
    const password = 'a perfectly long passphrase 9';
    const email = `grace-${Date.now().toString(36)}@example.test`;
    const signup = check(
      'POST',
      '/auth/signup',
      await app.http('POST', '/auth/signup', { email, password, name: 'Grace' }),
    );
    const userId = signup.body.userId as string;
    const { authorization } = await app.login(email, password);
    const user = { authorization };

    const dev = check('POST', '/devices', await app.http('POST', '/devices', { name: 'lathe' }, user));
    expect(dev.status).toBe(201);
    check(
      'POST',
      '/devices/{id}/revoke',
      await app.http('POST', `/devices/${dev.body.deviceId}/revoke`, undefined, user),
      200,
    );
    const spent = check(
      'POST',
      '/devices/{id}/tokens',
      await app.http('POST', `/devices/${dev.body.deviceId}/tokens`, { secret: dev.body.secret }),
    );
    expect({ status: spent.status, body: spent.body }).toEqual({
      status: 401,
      body: expect.objectContaining({ code: 'AUTH.INVALID_DEVICE_CREDENTIALS' }),
    });

    check(
      'POST',
      '/admin/users/{id}/roles',
      await app.http('POST', `/admin/users/${userId}/roles`, { role: 'auditor' }, admin),
      201,
    );
    check(
      'DELETE',
      '/admin/users/{id}/roles/{role}',
      await app.http('DELETE', `/admin/users/${userId}/roles/auditor`, undefined, admin),
      200,
    );
    expect(
      check(
        'DELETE',
        '/admin/users/{id}/roles/{role}',
        await app.http('DELETE', `/admin/users/${userId}/roles/${'r'.repeat(33)}`, undefined, admin),
      ).status,
    ).toBe(400);
    // A role change ends the user's sessions: a fresh token for the rest.
    user.authorization = (await app.login(email, password)).authorization;
    const channel = {
      channel: 'web',
      price: 10,
      currency: 'EUR',
      paymentMethods: ['card'],
      delivery: { method: 'parcel', days: 2 },
    };
    const product = check(
      'POST',
      '/products',
      await app.http(
        'POST',
        '/products',
        { sku: `MS-${Date.now().toString(36)}`, name: 'Mouse', unit: 'piece', channels: [channel] },
        admin,
      ),
    );
    const productId = product.body.productId as string;
    check(
      'PATCH',
      '/products/{id}',
      await app.http('PATCH', `/products/${productId}`, { name: 'Mouse 2' }, admin),
      200,
    );
    check(
      'POST',
      '/products/{id}/stock-receipts',
      await app.http('POST', `/products/${productId}/stock-receipts`, { quantity: 3, reference: 'PO-2' }, admin),
      201,
    );
    const order = check(
      'POST',
      '/orders',
      await app.http(
        'POST',
        '/orders',
        { channel: 'web', paymentMethod: 'card', items: [{ productId, quantity: 1 }] },
        user,
      ),
    );
    const orderId = order.body.orderId as string;
    const settled = await orderIn(app, user, orderId);
    expect(settled.status).toBe('confirmed');
    check('GET', '/admin/sagas/{orderId}', await app.http('GET', `/admin/sagas/${orderId}`, undefined, admin), 200);
    check(
      'GET',
      '/admin/sandbox/payments/{orderId}',
      await app.http('GET', `/admin/sandbox/payments/${orderId}`, undefined, admin),
      200,
    );
    check(
      'POST',
      '/admin/sandbox/payments/{orderId}/capture',
      await app.http('POST', `/admin/sandbox/payments/${orderId}/capture`, undefined, admin),
    );
    const cancel = check(
      'POST',
      '/orders/{id}/cancel',
      await app.http('POST', `/orders/${orderId}/cancel`, { reason: 'changed my mind' }, user),
    );
    expect(cancel.status).toBe(202);
    check('POST', '/admin/shipping/run', await app.http('POST', '/admin/shipping/run', undefined, admin), 200);
    check(
      'POST',
      '/admin/users/{id}/disable',
      await app.http('POST', `/admin/users/${userId}/disable`, undefined, admin),
      200,
    );
  });
});

describe("the README's calls", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

  it('every curl is a documented route, and its JSON body fits the documented request schema', () => {
    const calls = readmeCurls(readme);
    expect(calls.length).toBeGreaterThan(30);
    const paths = Object.keys(doc.paths);
    const problems: string[] = [];
    let bodies = 0;
    for (const c of calls) {
      const template = matchPath(paths, c.path);
      const op = template ? doc.paths[template]![c.method.toLowerCase()] : undefined;
      if (!op) {
        problems.push(`README line ${c.line}: ${c.method} ${c.path} is not in the document`);
        continue;
      }
      // A call the README shows failing (`# -> 400`) may well break the schema: that is its point.
      if (c.body === undefined || (c.expected.length && c.expected.every((s) => s >= 400))) continue;
      const schema = op.requestBody?.content?.['application/json']?.schema;
      if (!schema) {
        problems.push(`README line ${c.line}: ${c.method} ${template} takes no JSON body`);
        continue;
      }
      const validate = validatorFor(`request ${c.method} ${template}`, schema);
      const data: unknown = JSON.parse(c.body);
      bodies++;
      validate(data);
      // A shell variable's value is unknown here: errors about it are not the README's.
      const errors = (validate.errors ?? []).filter((e) => valueAt(data, e.instancePath) !== VAR);
      if (errors.length)
        problems.push(`README line ${c.line}: ${c.method} ${template} body: ${JSON.stringify(errors)}`);
    }
    expect(problems).toEqual([]);
    expect(bodies).toBeGreaterThan(10);
  });

  it('every route the README names in prose is documented', () => {
    const routes = readmeProseRoutes(readme);
    expect(routes.length).toBeGreaterThan(30);
    const paths = Object.keys(doc.paths);
    const missing = routes.filter((r) => {
      const t = matchPath(paths, r.path);
      return !t || !doc.paths[t]![r.method.toLowerCase()];
    });
    expect(missing).toEqual([]);
  });
});

function valueAt(data: unknown, pointer: string): unknown {
  return pointer
    .split('/')
    .slice(1)
    .reduce<unknown>(
      (v, k) => (v as Record<string, unknown> | undefined)?.[k.replace(/~1/g, '/').replace(/~0/g, '~')],
      data,
    );
}

describe('GET /docs', () => {
  it('serves the page and every file it loads from this app, without a token', async () => {
    const page = await fetch(`${app.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(4);
    for (const ref of refs) {
      expect(ref).toMatch(/^\/docs\//);
      const r = await fetch(`${app.url}${ref}`);
      expect({ ref, status: r.status }).toEqual({ ref, status: 200 });
      const bytes = Buffer.from(await r.arrayBuffer());
      expect(bytes.length).toBeGreaterThan(0);
      if (ref.endsWith('.js')) expect(r.headers.get('content-type')).toMatch(/javascript/);
      if (ref.endsWith('.css')) expect(r.headers.get('content-type')).toMatch(/^text\/css/);
      // Nothing the page loads reaches out of this app (no CDN, no remote validator).
      if (ref === '/docs/docs.js') {
        expect(bytes.toString()).toContain("url: '/openapi.json'");
        expect(bytes.toString()).toContain('validatorUrl: null');
      }
    }
    const bundle = await fetch(`${app.url}/docs/swagger-ui-bundle.js`);
    const dist = dirname(require.resolve('swagger-ui-dist/package.json'));
    expect(Buffer.from(await bundle.arrayBuffer()).equals(readFileSync(join(dist, 'swagger-ui-bundle.js')))).toBe(true);
    const unknown = await app.http('GET', '/docs/..%2Fpackage.json');
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});
