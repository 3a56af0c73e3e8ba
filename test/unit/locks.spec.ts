import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ADVISORY_LOCKS } from '../../src/platform/locks';

/** Advisory lock ids: one registry (src/platform/locks.ts), every id distinct, none spelled out elsewhere. */
const ROOT = join(__dirname, '../..');
const REGISTRY = 'src/platform/locks.ts';

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

describe('advisory lock registry', () => {
  it('gives every lock its own id', () => {
    const ids = Object.values(ADVISORY_LOCKS);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(Number.isSafeInteger(id) && id > 0 && id < 2 ** 31).toBe(true); // fits the int4 class key
  });

  it('is the only place an id is written down', () => {
    const literal = new RegExp(
      `\\b(${Object.values(ADVISORY_LOCKS)
        .map((id) => `${Math.floor(id / 1000)}_?${String(id % 1000).padStart(3, '0')}`)
        .join('|')})\\b`,
    );
    const offenders = ['src', 'domain', 'projections', 'test', 'bench']
      .flatMap((d) => tsFiles(join(ROOT, d)))
      .map((f) => relative(ROOT, f))
      .filter((f) => f !== REGISTRY && f !== 'test/unit/locks.spec.ts')
      .filter((f) => literal.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('holds every id the SQL migrations take', () => {
    const dir = join(ROOT, 'migrations');
    const taken = readdirSync(dir)
      .filter((f) => f.endsWith('.sql'))
      .flatMap((f) =>
        [...readFileSync(join(dir, f), 'utf8').matchAll(/pg_advisory_(?:xact_)?lock(?:_shared)?\((\d+)\)/g)].map((m) =>
          Number(m[1]),
        ),
      );
    expect(taken.length).toBeGreaterThan(0);
    for (const id of taken) expect(Object.values(ADVISORY_LOCKS)).toContain(id);
  });
});
