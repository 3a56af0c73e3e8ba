import { randomUUID } from 'node:crypto';
import { startTestApp, type TestApp } from '../support/app';
import { NotesModule, notesProjection } from './fixtures/notes';

/**
 * Shutdown while commands are in flight: every command the client saw
 * acknowledged (201) is stored; no acknowledged append is lost.
 */
let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ modules: [NotesModule], projections: [notesProjection] });
});
afterAll(async () => {
  await app.db.drop();
});

it('finishes in-flight appends, then refuses new work', async () => {
  const prefix = randomUUID().slice(0, 8);
  let closeStarted = false;
  let firstAck: () => void = () => undefined;
  const acked = new Promise<void>((r) => {
    firstAck = r;
  });
  const sends = Array.from({ length: 200 }, (_, i) =>
    app.http('POST', '/notes', { noteId: `${prefix}-${i}`, title: 't' }).then(
      (r) => {
        if (r.status === 201) firstAck();
        return { i, status: r.status, afterClose: closeStarted };
      },
      () => ({ i, status: 0, afterClose: closeStarted }),
    ),
  );
  await acked;
  const inspect = await createInspector(app);
  closeStarted = true;
  await app.close();
  const results = await Promise.all(sends);
  const acknowledged = results.filter((r) => r.status === 201);
  const stored = await inspect(prefix);
  // Requests already in flight when shutdown began were answered, not cut off...
  expect(acknowledged.filter((r) => r.afterClose).length).toBeGreaterThan(0);
  // ...every acknowledged command is stored, and nothing is stored twice.
  for (const r of acknowledged) expect(stored).toContain(`note-${prefix}-${r.i}`);
  expect(new Set(stored).size).toBe(stored.length);
  // Anything else was refused visibly (503 while closing, or connection refused) and not stored.
  for (const r of results) {
    expect([0, 201, 503]).toContain(r.status);
    if (r.status === 503) expect(stored).not.toContain(`note-${prefix}-${r.i}`);
  }
  await expect(fetch(`${app.url}/health`)).rejects.toThrow();
});

async function createInspector(a: TestApp) {
  const { Pool } = await import('pg');
  return async (prefix: string) => {
    const pool = new Pool({ connectionString: a.db.url, max: 1 });
    try {
      const r = await pool.query<{ stream_id: string }>(`SELECT stream_id FROM events WHERE stream_id LIKE $1`, [
        `note-${prefix}-%`,
      ]);
      return r.rows.map((x) => x.stream_id);
    } finally {
      await pool.end();
    }
  };
}
