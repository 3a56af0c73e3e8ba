import { defaultCheckpointFile, parseCopyArgs, type CopyArgs } from '../../src/platform/event-store/copy-cli';

const PG_A = 'postgres://u:secret@db-a:5432/platform';
const PG_B = 'postgresql://u:secret@db-b:5432/platform';
const KDB = 'kurrentdb://127.0.0.1:2113?tls=false';

function ok(args: string[], env: { DATABASE_URL?: string; KURRENTDB_URL?: string } = {}): CopyArgs {
  const r = parseCopyArgs(args, env);
  if ('errors' in r) throw new Error(r.errors.join('; '));
  return r.ok;
}

function errors(args: string[], env: { DATABASE_URL?: string; KURRENTDB_URL?: string } = {}): string[] {
  const r = parseCopyArgs(args, env);
  return 'errors' in r ? r.errors : [];
}

describe('events:copy arguments', () => {
  it('takes postgres from DATABASE_URL (or the embedded one when unset) and kurrentdb from KURRENTDB_URL', () => {
    expect(ok(['--from', 'postgres', '--to', 'kurrentdb'], { DATABASE_URL: PG_A, KURRENTDB_URL: KDB })).toEqual({
      from: 'postgres',
      to: 'kurrentdb',
      fromUrl: PG_A,
      toUrl: KDB,
      batchSize: 500,
      checkpoint: undefined,
    });
    expect(ok(['--from', 'kurrentdb', '--to', 'postgres', '--from-url', 'esdb://h:2113?tls=false'])).toMatchObject({
      fromUrl: 'esdb://h:2113?tls=false',
      toUrl: undefined,
    });
    expect(
      ok(['--from=postgres', '--to=postgres', `--from-url=${PG_A}`, `--to-url=${PG_B}`, '--batch-size=2000']),
    ).toMatchObject({ fromUrl: PG_A, toUrl: PG_B, batchSize: 2000 });
  });

  it('names the flag and the rule for each bad argument', () => {
    expect(errors([])).toEqual([
      '--from: required, one of postgres, kurrentdb',
      '--to: required, one of postgres, kurrentdb',
    ]);
    expect(
      errors(['--from', 'mysql', '--to', 'kurrentdb', '--batch-size', '10001', '--limit', '3', '--from-url']),
    ).toEqual([
      '--limit: unknown argument (expected one of --from, --to, --from-url, --to-url, --batch-size, --checkpoint)',
      '3: unknown argument (expected one of --from, --to, --from-url, --to-url, --batch-size, --checkpoint)',
      '--from-url: needs a value',
      '--from: must be one of postgres, kurrentdb (got "mysql")',
      '--to-url: required for kurrentdb when KURRENTDB_URL is not set',
      '--batch-size: must be an integer from 1 to 10000 (got "10001")',
    ]);
    expect(errors(['--from', 'postgres', '--to', 'kurrentdb', '--to-url', PG_A, '--batch-size', '1.5'])).toEqual([
      '--to-url: a kurrentdb URL starts with kurrentdb:// or kurrentdb+discover:// or esdb:// or esdb+discover:// (got postgres://)',
      '--batch-size: must be an integer from 1 to 10000 (got "1.5")',
    ]);
    expect(
      errors(['--from', 'postgres', '--to', 'kurrentdb'], { DATABASE_URL: 'not a url', KURRENTDB_URL: KDB }),
    ).toEqual(['DATABASE_URL: must be a URL (postgres://, postgresql://)']);
    expect(errors(['--from', 'postgres', '--from', 'postgres', '--to', 'kurrentdb', '--to-url', KDB])).toEqual([
      '--from: given more than once',
    ]);
  });

  it('refuses to copy a store onto itself: --from and --to differ unless the URLs do', () => {
    expect(errors(['--from', 'postgres', '--to', 'postgres'])).toEqual([
      '--to: must differ from --from unless --from-url and --to-url name different stores (both are postgres at the embedded PostgreSQL)',
    ]);
    expect(errors(['--from', 'postgres', '--to', 'postgres', '--to-url', PG_A], { DATABASE_URL: PG_A })).toEqual([
      '--to: must differ from --from unless --from-url and --to-url name different stores (both are postgres at the same URL)',
    ]);
    expect(ok(['--from', 'postgres', '--to', 'postgres', '--to-url', PG_B], { DATABASE_URL: PG_A }).toUrl).toBe(PG_B);
    expect(errors(['--from', 'kurrentdb', '--to', 'kurrentdb', '--to-url', KDB], { KURRENTDB_URL: KDB }).length).toBe(
      1,
    );
  });

  it('keeps one checkpoint file per pair of stores, named without the URLs (they hold passwords)', () => {
    const a = ok(['--from', 'postgres', '--to', 'kurrentdb'], { DATABASE_URL: PG_A, KURRENTDB_URL: KDB });
    const f = defaultCheckpointFile('/data', a, PG_A, KDB);
    expect(f).toMatch(/^\/data\/events-copy\/postgres-to-kurrentdb-[0-9a-f]{16}\.json$/);
    expect(f).not.toContain('secret');
    expect(defaultCheckpointFile('/data', a, PG_B, KDB)).not.toBe(f);
    expect(defaultCheckpointFile('/data', a, PG_A, KDB)).toBe(f);
  });
});
