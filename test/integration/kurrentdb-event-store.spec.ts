import { UpcasterRegistry } from '../../src/platform/event-store/event-store';
import { KurrentDbEventStore } from '../../src/platform/event-store/kurrentdb-event-store';
import { openEventStore } from '../../src/platform/event-store/open-event-store';
import { createTestDatabase, type TestDatabase } from '../support/services';
import { testEvent } from '../support/events';
import { eventStoreContract } from './event-store.contract';

/**
 * The KurrentDB adapter. Its contract run needs a server (KurrentDB 25.1+ for
 * the multi-stream cases), which no build machine here has: it runs only with
 * KURRENTDB_URL set (README, "Event store: KurrentDB"). What needs no server
 * (choosing the store, refusing a bad URL or an absent server) always runs.
 */

const url = process.env.KURRENTDB_URL;
if (!url) process.stderr.write('\nKurrentDB contract: NOT RUN — set KURRENTDB_URL to run it\n\n');

describe('choosing and connecting the event store (no KurrentDB server needed)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('kdb_select');
  });
  afterAll(async () => {
    await db.drop();
  });

  it('takes PostgreSQL when KURRENTDB_URL is unset', async () => {
    const store = await openEventStore(
      { KURRENTDB_URL: undefined, KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM: false },
      { pool: db.pool, databaseUrl: db.url },
      { log: () => undefined },
    );
    try {
      expect(store.kind).toBe('postgresql');
      const r = await store.append('select-1', [testEvent('test.Selected')], 'no_stream');
      expect((await store.readStream('select-1'))[0]?.position).toBe(r.position);
    } finally {
      await store.close();
    }
  });

  it('refuses a URL of another scheme before connecting, naming KURRENTDB_URL', async () => {
    await expect(KurrentDbEventStore.connect('postgres://127.0.0.1:5432/db')).rejects.toThrow(
      /^KURRENTDB_URL must start with kurrentdb:\/\/, kurrentdb\+discover:\/\/, esdb:\/\/, esdb\+discover:\/\//,
    );
    await expect(KurrentDbEventStore.connect('kurrentdb://?tls=false')).rejects.toThrow(/KURRENTDB_URL must name/);
  });

  it('fails at connect, naming KURRENTDB_URL and without the password, when no server answers', async () => {
    const logs: string[] = [];
    const err = await KurrentDbEventStore.connect('kurrentdb://admin:s3cret@127.0.0.1:1?tls=false', {
      log: (m) => logs.push(m),
    }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /^KURRENTDB_URL: no answer from KurrentDB at kurrentdb:\/\/admin:\*\*\*@127\.0\.0\.1:1/,
    );
    expect((err as Error).message).not.toContain('s3cret');
  });

  it('through openEventStore too: a set KURRENTDB_URL never falls back to PostgreSQL', async () => {
    await expect(
      openEventStore(
        { KURRENTDB_URL: 'esdb://127.0.0.1:1?tls=false', KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM: true },
        { pool: db.pool, databaseUrl: db.url },
        { log: () => undefined },
      ),
    ).rejects.toThrow(/no answer from KurrentDB at kurrentdb:\/\/127\.0\.0\.1:1/);
  });
});

if (url) {
  let store: KurrentDbEventStore;
  const upcasters = new UpcasterRegistry().register({
    type: 'test.KdbRenamed',
    fromVersion: 1,
    upcast: (d) => ({ fullName: d.name }),
  });
  beforeAll(async () => {
    store = await KurrentDbEventStore.connect(url, { upcasters, log: (m) => process.stderr.write(`${m}\n`) });
  });
  afterAll(async () => {
    await store?.close();
  });

  eventStoreContract('kurrentdb', () => store);

  describe('kurrentdb event store specifics', () => {
    it('upcasts old schema versions on read', async () => {
      const s = `kdb-upcast-${Date.now()}`;
      await store.append(s, [{ ...testEvent('test.KdbRenamed', { name: 'Ada' }), schemaVersion: 1 }], 'no_stream');
      const [e] = await store.readStream(s);
      expect(e?.data).toEqual({ fullName: 'Ada' });
      expect(e?.schemaVersion).toBe(2);
      expect(e?.metadata.storedSchemaVersion).toBe(1);
    });

    it('finds the whole original append from its first id (appendOf tags)', async () => {
      const s = `kdb-find-${Date.now()}`;
      const events = [testEvent('test.A'), testEvent('test.B'), testEvent('test.C')];
      const r = await store.append(s, events, 'no_stream');
      await store.append(s, [testEvent('test.D')], r.nextRevision);
      expect(await store.findAppend(s, events[0]!.id)).toEqual({ ...r, duplicate: true });
    });
  });
}
