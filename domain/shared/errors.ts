/**
 * The one small set of errors the platform speaks. Each has a stable string
 * `code` and a kind; the HTTP layer maps kinds to status codes (RFC 9457).
 */
export type ErrorKind =
  'validation' | 'unauthenticated' | 'forbidden' | 'not_found' | 'conflict' | 'rate_limited' | 'unavailable';

export interface FieldError {
  /** Dotted path of the offending field, e.g. `items.0.quantity`. */
  readonly field: string;
  /** The rule it broke, in words a client developer can act on. */
  readonly rule: string;
}

export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    readonly fields: readonly FieldError[] = [],
    readonly extra: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const validationError = (code: string, message: string, fields: readonly FieldError[]) =>
  new DomainError('validation', code, message, fields);
export const notFound = (code: string, message: string) => new DomainError('not_found', code, message);
export const conflict = (code: string, message: string, extra: Record<string, unknown> = {}) =>
  new DomainError('conflict', code, message, [], extra);
