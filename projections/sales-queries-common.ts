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
  if (!Number.isInteger(l) || l < 1 || l > PAGE_MAX) throw invalidQuery('limit', `must be an integer from 1 to ${PAGE_MAX}`);
  return l;
}

export function encodeCursor(values: readonly unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

export function decodeCursor(after: string | undefined, arity: number): unknown[] | null {
  if (after === undefined || after === '') return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(after, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === arity && v.every((x) => typeof x === 'string')) return v;
  } catch { /* answered below */ }
  throw invalidQuery('after', 'must be the nextAfter value of a previous page');
}
