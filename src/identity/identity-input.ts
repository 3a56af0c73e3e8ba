import { z } from 'zod';

/** Input pieces shared by identity's use cases (src/identity/<use-case>.ts) and its read routes. */

export const uuid = z.string().uuid('must be a UUID');

/** The body of POST /commands/AssignRole and /commands/RevokeRole. */
export const userRoleSchema = z.object({ userId: uuid, role: z.string().min(1).max(32) }).strict();

/** Parses a route's `:id` as a UUID (400 naming `id` otherwise). */
export const idSchema = z.object({ id: uuid });
