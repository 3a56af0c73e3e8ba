import { z } from 'zod';
import type { CommandResult } from '../platform/commands/command-context';

/**
 * Input pieces shared by the sales use cases (src/sales/<use-case>.ts) and
 * their read routes: one definition of a valid id, code, price or delivery,
 * so the resource route and POST /commands/:name refuse the same input.
 */

export const uuid = z.string().uuid('must be a UUID');
export const code = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,31}$/, 'must be 1-32 characters: lowercase letters, digits, _ . -');
export const price = z
  .number('must be a number')
  .finite()
  .min(0, 'must not be negative')
  .max(10_000_000, 'must be at most 10000000')
  .refine((v) => Math.abs(Math.round(v * 100) - v * 100) < 1e-6, 'must have at most 2 decimals');
export const currency = z.string().regex(/^[A-Z]{3}$/, 'must be a 3-letter ISO 4217 code such as EUR');
export const discountPct = z
  .number('must be a number')
  .min(0, 'must be from 0 to 100')
  .max(100, 'must be from 0 to 100');
export const paymentMethods = z
  .array(code)
  .min(1, 'must list at least one payment method')
  .max(10, 'must list at most 10 payment methods');
export const delivery = z
  .object({
    method: z.string().trim().min(1, 'must not be empty').max(50, 'must be at most 50 characters'),
    days: z
      .number('must be a number')
      .int('must be a whole number of days')
      .min(0, 'must be from 0 to 365')
      .max(365, 'must be from 0 to 365'),
  })
  .strict();
export const productName = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');

/** The HTTP layer speaks decimals; events hold minor units (cents) so sums are exact. */
export const cents = (v: number) => Math.round(v * 100);

/** What a sales command answers: the resource's id and the command result (position for read-your-writes, revision, duplicate). */
export type Created<K extends string> = CommandResult & Record<K, string>;

export const created = <K extends string>(key: K, id: string, r: CommandResult) =>
  ({ [key]: id, position: r.position, revision: r.revision, duplicate: r.duplicate }) as Created<K>;
