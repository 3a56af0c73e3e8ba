import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { IdentityErrorCode } from '../../domain/identity/identity-errors';
import { SalesErrorCode } from '../../domain/sales/sales-errors';
import { TelemetryErrorCode } from '../../domain/telemetry/telemetry-errors';
import { AuthErrorCode } from '../../src/platform/http/auth-errors';
import { PlatformErrorCode } from '../../src/platform/platform-errors';

/**
 * Error codes: one catalogue per context (`*-errors.ts`). ESLint forbids code
 * literals outside them (eslint.config.mjs); this checks the catalogues
 * themselves, and that every code the code base or its tests spell out is one
 * a catalogue holds (a code asserted by a test but in no catalogue is a typo).
 */
const ROOT = join(__dirname, '../..');
const CATALOGUES = {
  AUTH: AuthErrorCode,
  PLATFORM: PlatformErrorCode,
  IDENTITY: IdentityErrorCode,
  SALES: SalesErrorCode,
  TELEMETRY: TelemetryErrorCode,
} as const;
/** Made-up codes that tests use to exercise the error mapping itself, not codes a client can meet. */
const MADE_UP_IN_TESTS = new Set(['AUTH.SLOW_DOWN']);
const CODE = /['"`]((?:AUTH|PLATFORM|IDENTITY|SALES|TELEMETRY)\.[A-Z_]+)['"`]/g;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (name === 'node_modules') return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

describe('error catalogues', () => {
  it.each(Object.entries(CATALOGUES))(
    '%s: every code is <CONTEXT>.<KEY>, named after its key, and distinct',
    (context, catalogue) => {
      for (const [key, code] of Object.entries(catalogue)) expect(code).toBe(`${context}.${key}`);
      expect(new Set(Object.values(catalogue)).size).toBe(Object.values(catalogue).length);
    },
  );

  it('every code spelled out in src, domain, projections, bench or test is in a catalogue', () => {
    const known = new Set(Object.values(CATALOGUES).flatMap((c) => Object.values(c) as string[]));
    const unknown: string[] = [];
    for (const dir of ['src', 'domain', 'projections', 'bench', 'test']) {
      for (const file of tsFiles(join(ROOT, dir))) {
        for (const m of readFileSync(file, 'utf8').matchAll(CODE)) {
          if (!known.has(m[1]!) && !MADE_UP_IN_TESTS.has(m[1]!)) unknown.push(`${relative(ROOT, file)}: ${m[1]}`);
        }
      }
    }
    expect(unknown).toEqual([]);
  });
});
