import type { ZodType } from 'zod';
import { validationError } from '../../../domain/shared/errors';
import { PlatformErrorCode } from '../platform-errors';

/** Parses input with a zod schema; failures become a 400 naming each field and rule. */
export function parseInput<T>(schema: ZodType<T>, input: unknown, code: string = PlatformErrorCode.INVALID_INPUT): T {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const fields = r.error.issues.map((i) => ({ field: i.path.length ? i.path.join('.') : '(body)', rule: i.message }));
  throw validationError(code, `invalid input: ${fields.map((f) => `${f.field}: ${f.rule}`).join('; ')}`, fields);
}
