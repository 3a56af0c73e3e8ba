import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * A development secret generated at first start and kept under
 * DATA_DIR/secrets (mode 600, git-ignored with the rest of DATA_DIR).
 */
export function generatedSecret(dataDir: string, name: string, bytes = 24): string {
  const dir = join(resolve(dataDir), 'secrets');
  // The data dir must stay traversable: PostgreSQL runs as its own OS user when we are root.
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, name);
  if (!existsSync(file)) writeFileSync(file, randomBytes(bytes).toString('hex'), { mode: 0o600 });
  chmodSync(file, 0o600);
  return readFileSync(file, 'utf8').trim();
}

export function secretPath(dataDir: string, name: string): string {
  return join(resolve(dataDir), 'secrets', name);
}
