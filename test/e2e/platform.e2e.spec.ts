import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { startTestApp, type TestApp } from '../support/app';
import { eventually } from '../support/events';
import { NotesModule, notesProjection } from './fixtures/notes';

/** The application shell over HTTP, as a client sees it, with a fixture bounded context (notes). */
let app: TestApp;
let adminHeader: { authorization: string };
const admin = () => adminHeader;
const newId = () => randomUUID().slice(0, 8);

beforeAll(async () => {
  app = await startTestApp({
    modules: [NotesModule],
    projections: [notesProjection],
    env: { READ_WAIT_TIMEOUT_MS: '1000' },
  });
  adminHeader = await app.adminAuth();
});
afterAll(async () => {
  await app.stop();
});

describe('health and metrics', () => {
  it('reports every component green', async () => {
    const r = await app.http('GET', '/health');
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ok');
    for (const c of ['postgres', 'redis', 'eventStore', 'projections', 'jobs'])
      expect(r.body.components[c].status).toBe('ok');
  });

  it('exposes appends, projection lag, parked projections and request latency to Prometheus', async () => {
    await app.http('POST', '/notes', { noteId: `m-${newId()}`, title: 'metrics' });
    const r = await app.http('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    expect(r.body).toMatch(/^es_events_appended_total [1-9]/m);
    expect(r.body).toMatch(/^projection_lag_events\{projection="notes"\} \d+/m);
    expect(r.body).toMatch(/^projection_parked\{projection="notes"\} 0/m);
    expect(r.body).toMatch(/^http_request_duration_seconds_count\{method="POST",route="\/notes",status="201"\} [1-9]/m);
  });

  it("echoes the caller's correlation id and stores it in the event metadata", async () => {
    const correlationId = randomUUID();
    const noteId = `c-${newId()}`;
    const r = await app.http('POST', '/notes', { noteId, title: 'x' }, { 'x-correlation-id': correlationId });
    expect(r.headers.get('x-correlation-id')).toBe(correlationId);
    const [event] = await app.platform.store.readStream(`note-${noteId}`);
    expect(event?.metadata).toMatchObject({ correlationId, actor: 'anonymous', command: 'CreateNote' });
  });
});

describe('commands', () => {
  it('a resource route answers with the position, and a query can wait for it (read-your-writes)', async () => {
    const noteId = `n-${newId()}`;
    const created = await app.http('POST', '/notes', { noteId, title: 'first' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ noteId, duplicate: false });
    expect(created.body.position).toBeGreaterThan(0);
    const read = await app.http('GET', `/notes/${noteId}?minPosition=${created.body.position}`);
    expect(read).toMatchObject({ status: 200, body: { noteId, title: 'first', renames: 0 } });
    const renamed = await app.http('POST', '/commands/RenameNote', { noteId, title: 'second' });
    const viaHeader = await app.http('GET', `/notes/${noteId}`, undefined, {
      'x-min-position': String(renamed.body.position),
    });
    expect(viaHeader.body).toMatchObject({ title: 'second', renames: 1 });
  });

  it('a query asking for a position the read model has not reached answers 503 with Retry-After', async () => {
    const head = await app.platform.store.headPosition();
    const r = await app.http('GET', `/notes/anything?minPosition=${head + 1_000_000_000}`);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.body.code).toBe('PLATFORM.READ_MODEL_BEHIND');
  });

  it("the generic route validates the body against that command's schema and names the field", async () => {
    const r = await app.http('POST', '/commands/CreateNote', { noteId: 'Bad Id!', title: '' });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body).toMatchObject({
      status: 400,
      code: 'PLATFORM.INVALID_INPUT',
      type: expect.any(String),
      title: 'Bad Request',
    });
    expect(r.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['noteId', 'title']);
    const extra = await app.http('POST', '/commands/CreateNote', { noteId: 'ok', title: 't', admin: true });
    expect(extra.status).toBe(400);
    expect(JSON.stringify(extra.body.errors)).toContain('admin');
  });

  it('rejects unknown commands, malformed JSON and bad read positions with problem details', async () => {
    const unknown = await app.http('POST', '/commands/DropDatabase', {});
    expect(unknown).toMatchObject({ status: 404, body: { code: 'PLATFORM.UNKNOWN_COMMAND' } });
    expect((await app.http('GET', '/commands')).body.commands).toEqual(
      expect.arrayContaining(['CreateNote', 'RenameNote', 'RegisterUser']),
    );
    const malformed = await app.http('POST', '/commands/CreateNote', '{"noteId": ');
    expect(malformed).toMatchObject({ status: 400, body: { code: 'PLATFORM.MALFORMED_JSON' } });
    const badPos = await app.http('GET', '/notes/x?minPosition=-4');
    expect(badPos).toMatchObject({ status: 400, body: { errors: [{ field: 'minPosition' }] } });
  });

  it('requests refused before routing (bad percent-encoding, oversized headers, bad framing) get problem details too', async () => {
    // The raw path is not echoed back (Fastify's own answer put it into its JSON unescaped).
    const badUrl = await app.http('GET', '/notes/%ff%22x');
    expect(badUrl.status).toBe(400);
    expect(badUrl.headers.get('content-type')).toContain('application/problem+json');
    expect(badUrl.body).toMatchObject({ code: 'PLATFORM.MALFORMED_URL', errors: [{ field: '(url)' }] });
    expect(JSON.stringify(badUrl.body.detail)).not.toContain('%ff');

    const raw = async (request: string) => {
      const { hostname, port } = new URL(app.url);
      const socket = connect(Number(port), hostname);
      socket.end(request);
      const chunks: Buffer[] = [];
      for await (const chunk of socket) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, body] = text.split('\r\n\r\n');
      return { statusLine: head!.split('\r\n')[0], head: head!, body: JSON.parse(body!) };
    };
    const tooLarge = await raw(`GET /notes?${'x=1&'.repeat(5000)} HTTP/1.1\r\nHost: t\r\n\r\n`);
    expect(tooLarge.statusLine).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    expect(tooLarge.head).toContain('Content-Type: application/problem+json');
    expect(tooLarge.body).toMatchObject({
      status: 431,
      code: 'PLATFORM.MALFORMED_REQUEST',
      errors: [{ field: '(headers)' }],
    });
    const badFraming = await raw('POST /notes HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n');
    expect(badFraming.statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect(badFraming.body).toMatchObject({
      status: 400,
      code: 'PLATFORM.MALFORMED_REQUEST',
      errors: [{ field: '(request)' }],
    });
    expect((await app.http('GET', '/health')).status).toBe(200);
  });

  it('a domain rule violation changes nothing and answers with its code', async () => {
    const r = await app.http('POST', '/commands/RenameNote', { noteId: `nope-${newId()}`, title: 'x' });
    expect(r).toMatchObject({ status: 404, body: { code: 'NOTES.NOT_FOUND' } });
  });

  it('an Idempotency-Key makes a retried command return the original result without storing anything', async () => {
    const noteId = `i-${newId()}`;
    const key = randomUUID();
    const first = await app.http('POST', '/notes', { noteId, title: 'once' }, { 'idempotency-key': key });
    const again = await app.http('POST', '/notes', { noteId, title: 'once' }, { 'idempotency-key': key });
    expect(first.body.duplicate).toBe(false);
    expect(again.body).toMatchObject({ position: first.body.position, duplicate: true });
    const viaGeneric = await app.http(
      'POST',
      '/commands/CreateNote',
      { noteId, title: 'once' },
      { 'idempotency-key': key },
    );
    expect(viaGeneric).toMatchObject({ status: 200, body: { position: first.body.position, duplicate: true } });
    expect(await app.platform.store.readStream(`note-${noteId}`)).toHaveLength(1);
  });

  it('concurrent commands on one stream are retried on conflict and all land', async () => {
    const noteId = `r-${newId()}`;
    await app.http('POST', '/notes', { noteId, title: 'start' });
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => app.http('POST', '/commands/RenameNote', { noteId, title: `t${i}` })),
    );
    expect(results.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    const last = Math.max(...results.map((r) => r.body.position as number));
    const read = await app.http('GET', `/notes/${noteId}?minPosition=${last}`);
    expect(read.body.renames).toBe(4);
  });
});

describe('admin', () => {
  it('needs an admin: 401 with WWW-Authenticate without a valid token, 403 for a plain user', async () => {
    const none = await app.http('GET', '/admin/projections');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    const wrong = await app.http('GET', '/admin/projections', undefined, { authorization: 'Bearer nope' });
    expect(wrong).toMatchObject({ status: 401, body: { code: 'AUTH.INVALID_TOKEN' } });
    const email = `plain-${newId()}@example.test`;
    await app.http('POST', '/auth/signup', { email, password: 'a long enough passphrase 7', name: 'Plain' });
    const user = await app.login(email, 'a long enough passphrase 7');
    expect((await app.http('GET', '/admin/projections', undefined, { authorization: user.authorization })).status).toBe(
      403,
    );
  });

  it('lists projections with checkpoint, lag and status', async () => {
    const r = await app.http('GET', '/admin/projections', undefined, admin());
    expect(r.status).toBe(200);
    const notes = r.body.projections.find((p: { name: string }) => p.name === 'notes');
    expect(notes).toMatchObject({
      name: 'notes',
      status: 'running',
      lagEvents: expect.any(Number),
      checkpoint: expect.any(Number),
    });
  });

  it('rebuilds a projection as a job with visible progress, giving the same rows', async () => {
    let last = 0;
    for (let i = 0; i < 20; i++)
      last = (await app.http('POST', '/notes', { noteId: `b-${newId()}`, title: `t${i}` })).body.position;
    expect(await app.platform.projections.waitFor('notes', last, 10_000)).toBe(true);
    const before = (await app.db.pool.query('SELECT * FROM notes ORDER BY note_id')).rows;
    const started = await app.http('POST', '/admin/projections/notes/rebuild', undefined, admin());
    expect(started.status).toBe(202);
    let job: any;
    await eventually(async () => {
      job = (await app.http('GET', `/admin/jobs/${started.body.jobId}`, undefined, admin())).body;
      return job.state === 'completed' || job.state === 'failed';
    }, 'rebuild job to finish');
    expect(job).toMatchObject({
      state: 'completed',
      progress: { percent: 100 },
      data: { projection: 'notes', requestedBy: expect.stringMatching(/^user:/) },
    });
    expect(job.result.events).toBeGreaterThanOrEqual(before.length);
    const after = (await app.db.pool.query('SELECT * FROM notes ORDER BY note_id')).rows;
    expect(after).toEqual(before);
    const detail = await app.http('GET', '/admin/projections/notes', undefined, admin());
    expect(detail.body.operatorLog[0]).toMatchObject({ action: 'rebuilt', actor: expect.stringMatching(/^user:/) });
  });

  it('answers 404 for an unknown projection or job', async () => {
    expect((await app.http('POST', '/admin/projections/nope/rebuild', undefined, admin())).body.code).toBe(
      'PLATFORM.PROJECTION_NOT_FOUND',
    );
    expect((await app.http('GET', '/admin/jobs/999999', undefined, admin())).body.code).toBe('PLATFORM.JOB_NOT_FOUND');
  });
});
