import { validationError } from '../domain/shared/errors';
import { SalesErrorCode } from '../domain/sales/sales-errors';

/** Pieces the sales queries share: money as decimals, query-parameter errors, opaque keyset cursors. */

export const money = (cents: number | string): number => Number(cents) / 100;

export const invalidQuery = (field: string, rule: string) =>
  validationError(SalesErrorCode.INVALID_QUERY, `${field} ${rule}`, [{ field, rule }]);

export const PAGE_DEFAULT = 50;
export const PAGE_MAX = 200;

export function pageLimit(limit: number | undefined): number {
  const l = limit ?? PAGE_DEFAULT;
  if (!Number.isInteger(l) || l < 1 || l > PAGE_MAX)
    throw invalidQuery('limit', `must be an integer from 1 to ${PAGE_MAX}`);
  return l;
}

export function encodeCursor(values: readonly unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

/** A cursor is the JSON array of the last row's sort keys; each part is checked so a forged one is a 400, not a failed cast. */
export function decodeCursor(
  after: string | undefined,
  parts: readonly ('text' | 'timestamp' | 'uuid')[],
): string[] | null {
  if (after === undefined || after === '') return null;
  const ok = {
    text: () => true,
    timestamp: (x: string) => !Number.isNaN(Date.parse(x)),
    uuid: (x: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(x),
  };
  try {
    const v: unknown = JSON.parse(Buffer.from(after, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === parts.length && v.every((x, i) => typeof x === 'string' && ok[parts[i]!](x)))
      return v as string[];
  } catch {
    /* answered below */
  }
  throw invalidQuery('after', 'must be the nextAfter value of a previous page');
}
