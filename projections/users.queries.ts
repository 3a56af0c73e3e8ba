import { validationError } from '../domain/shared/errors';
import { IdentityErrorCode } from '../domain/identity/identity-errors';
import { isUuid } from '../domain/identity/validation';
import type { Queryable } from './projection';

/**
 * Typed reads of the users read model (projections/users.projection.ts).
 * Only `findCredentialsByEmail` touches `user_credentials`; nothing else can
 * return a password hash.
 */

export type UserStatus = 'active' | 'disabled';

export interface UserView {
  readonly userId: string;
  readonly email: string;
  readonly name: string;
  readonly roles: readonly string[];
  readonly status: UserStatus;
  readonly registeredAt: Date;
  readonly updatedAt: Date;
}

export interface UserCredentials {
  readonly userId: string;
  readonly email: string;
  readonly passwordHash: string;
  readonly status: UserStatus;
}

export interface UserPage {
  readonly items: readonly UserView[];
  /** Pass as `after` for the next page; null on the last page. */
  readonly nextAfter: string | null;
}

export interface ListUsersOptions {
  /** 1..200, default 50. */
  readonly limit?: number;
  /** Keyset cursor: the last user id of the previous page. */
  readonly after?: string;
  /** Case-insensitive substring of the email or the name. */
  readonly q?: string;
}

export const USERS_DEFAULT_LIMIT = 50;
export const USERS_MAX_LIMIT = 200;
const Q_MAX_LENGTH = 254;

const USER_COLUMNS = `user_id::text AS "userId", email, name, roles, status, registered_at AS "registeredAt", updated_at AS "updatedAt"`;

export async function findUserById(db: Queryable, userId: string): Promise<UserView | undefined> {
  if (!isUuid(userId.toLowerCase())) return undefined; // not an id we could have issued; spares PostgreSQL a cast error
  const res = await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE user_id = $1`, [userId]);
  return res.rows[0] as UserView | undefined;
}

/** By normalised email (trimmed and lowercased here as well). */
export async function findUserByEmail(db: Queryable, email: string): Promise<UserView | undefined> {
  const res = await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE email = $1`, [email.trim().toLowerCase()]);
  return res.rows[0] as UserView | undefined;
}

/** For login. The caller must refuse a disabled account, and treat "no row" exactly like a wrong password. */
export async function findCredentialsByEmail(db: Queryable, email: string): Promise<UserCredentials | undefined> {
  const res = await db.query(
    `SELECT user_id::text AS "userId", email, password_hash AS "passwordHash", status FROM user_credentials WHERE email = $1`,
    [email.trim().toLowerCase()],
  );
  return res.rows[0] as UserCredentials | undefined;
}

/** Keyset pagination in user-id order: stable under concurrent sign-ups, no OFFSET scans. */
export async function listUsers(db: Queryable, options: ListUsersOptions = {}): Promise<UserPage> {
  const limit = options.limit ?? USERS_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > USERS_MAX_LIMIT) {
    throw invalidQuery('limit', `must be an integer from 1 to ${USERS_MAX_LIMIT}`);
  }
  const after = options.after === undefined || options.after === '' ? null : options.after.toLowerCase();
  if (after !== null && !isUuid(after)) throw invalidQuery('after', 'must be a user id from a previous page');
  const q = options.q?.trim() ?? '';
  if (q.length > Q_MAX_LENGTH) throw invalidQuery('q', `must be at most ${Q_MAX_LENGTH} characters`);
  // strpos rather than LIKE: a '%' or '_' typed by an admin is matched literally.
  const res = await db.query(
    `SELECT ${USER_COLUMNS} FROM users
      WHERE ($1::uuid IS NULL OR user_id > $1::uuid)
        AND ($2::text = '' OR strpos(lower(email), lower($2::text)) > 0 OR strpos(lower(name), lower($2::text)) > 0)
      ORDER BY user_id
      LIMIT $3`,
    [after, q, limit + 1],
  );
  const rows = res.rows as unknown as UserView[];
  const items = rows.slice(0, limit);
  return { items, nextAfter: rows.length > limit ? items[items.length - 1]!.userId : null };
}

function invalidQuery(field: string, rule: string) {
  return validationError(IdentityErrorCode.INVALID_QUERY, `${field} ${rule}`, [{ field, rule }]);
}
