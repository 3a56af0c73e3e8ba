import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import type { Config } from '../../config';
import { DomainError } from '../../../domain/shared/errors';
import { AuthErrorCode } from '../../platform/http/auth-errors';

/**
 * Opaque refresh tokens (migrations/0003_create_refresh_tokens.sql).
 *
 * A token is 32 random bytes, base64url (43 characters, no dots: it can never
 * parse as a JWT). Only its SHA-256 is stored. `issue` starts a family (one
 * login session); `rotate` spends a token and returns its successor in the
 * same family. The spend is one conditional UPDATE in the same statement as
 * the successor's INSERT, so of two concurrent rotations of one token exactly
 * one gets a successor. Presenting a token that was already rotated is
 * treated as theft: the whole family is revoked (the successor too) and the
 * caller gets AUTH.REFRESH_REUSED. There is deliberately no grace period: the
 * loser of a concurrent double refresh also revokes the family.
 *
 * A family row carries the revocation every rotation checks, so a successor
 * inserted while the family is being revoked is dead as well.
 */
export interface RefreshTokenStoreOptions {
  /** Life of each token from its issue (REFRESH_TOKEN_TTL_S). */
  readonly ttlS: number;
  /** Called once per family, by the reuse that revoked it (e.g. to revoke that family's access tokens too). */
  readonly onReuse?: ((info: { familyId: string; userId: string }) => Promise<void> | void) | undefined;
}

export interface IssuedRefreshToken {
  readonly token: string;
  readonly familyId: string;
  readonly expiresAt: Date;
}

export interface RotatedRefreshToken extends IssuedRefreshToken {
  readonly userId: string;
}

const TOKEN_FORMAT = /^[A-Za-z0-9_-]{43}$/;
const UUID_FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const invalidToken = () =>
  new DomainError('unauthenticated', AuthErrorCode.INVALID_REFRESH_TOKEN, 'the refresh token is not valid');
const reused = () =>
  new DomainError(
    'unauthenticated',
    AuthErrorCode.REFRESH_REUSED,
    'the refresh token was already used; the session has been ended',
  );

export const hashRefreshToken = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

function newToken(): { token: string; hash: Buffer } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashRefreshToken(token) };
}

function checkReason(reason: string): void {
  if (typeof reason !== 'string' || reason.length < 1 || reason.length > 64)
    throw new Error('revoke reason must be 1..64 characters');
}

export class RefreshTokenStore {
  constructor(
    private readonly pool: Pick<Pool, 'query'>,
    private readonly options: RefreshTokenStoreOptions,
  ) {
    if (!Number.isInteger(options.ttlS) || options.ttlS <= 0) throw new Error('ttlS must be a positive integer');
  }

  static fromConfig(
    pool: Pick<Pool, 'query'>,
    config: Pick<Config, 'REFRESH_TOKEN_TTL_S'>,
    extra: Pick<RefreshTokenStoreOptions, 'onReuse'> = {},
  ): RefreshTokenStore {
    return new RefreshTokenStore(pool, { ttlS: config.REFRESH_TOKEN_TTL_S, onReuse: extra.onReuse });
  }

  /** A new family (login) for the user, with its first token. */
  async issue(userId: string): Promise<IssuedRefreshToken> {
    if (typeof userId !== 'string' || !userId || userId.length > 200)
      throw new Error('userId must be 1..200 characters');
    const familyId = randomUUID();
    const { token, hash } = newToken();
    const { rows } = await this.pool.query<{ expires_at: Date }>(
      `WITH f AS (
         INSERT INTO refresh_token_families (family_id, subject) VALUES ($1, $2) RETURNING family_id, subject
       )
       INSERT INTO refresh_tokens (token_hash, family_id, subject, expires_at)
       SELECT $3, family_id, subject, now() + make_interval(secs => $4) FROM f
       RETURNING expires_at`,
      [familyId, userId, hash, this.options.ttlS],
    );
    return { token, familyId, expiresAt: rows[0]!.expires_at };
  }

  /**
   * Spends `token` and returns its successor. Throws AUTH.REFRESH_REUSED (and
   * revokes the family) for a token already rotated, AUTH.INVALID_REFRESH_TOKEN
   * for an unknown, expired or revoked one.
   */
  async rotate(token: string): Promise<RotatedRefreshToken> {
    if (typeof token !== 'string' || !TOKEN_FORMAT.test(token)) throw invalidToken();
    const presented = hashRefreshToken(token);
    const next = newToken();
    // One statement, one transaction: the spend and the successor commit together or not at all.
    // A concurrent rotation of the same row waits for the row lock, re-checks `rotated_at IS NULL`, and spends nothing.
    const { rows } = await this.pool.query<{ family_id: string; subject: string; expires_at: Date }>(
      `WITH spent AS (
         UPDATE refresh_tokens t SET rotated_at = now(), replaced_by = $2
           FROM refresh_token_families f
          WHERE t.token_hash = $1 AND t.rotated_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now()
            AND f.family_id = t.family_id AND f.revoked_at IS NULL
         RETURNING t.family_id, t.subject
       )
       INSERT INTO refresh_tokens (token_hash, family_id, subject, expires_at)
       SELECT $2, family_id, subject, now() + make_interval(secs => $3) FROM spent
       RETURNING family_id, subject, expires_at`,
      [presented, next.hash, this.options.ttlS],
    );
    const row = rows[0];
    if (row) return { token: next.token, familyId: row.family_id, userId: row.subject, expiresAt: row.expires_at };

    const found = await this.pool.query<{ family_id: string; subject: string; rotated: boolean }>(
      'SELECT family_id, subject, rotated_at IS NOT NULL AS rotated FROM refresh_tokens WHERE token_hash = $1',
      [presented],
    );
    const old = found.rows[0];
    if (!old || !old.rotated) throw invalidToken();
    const revoked = await this.revokeFamilyById(old.family_id, 'reuse', undefined);
    if (revoked > 0 && this.options.onReuse)
      await this.options.onReuse({ familyId: old.family_id, userId: old.subject });
    throw reused();
  }

  /**
   * The family of a refresh token (or a family id), when it exists and, with
   * `subject`, belongs to that user. Logout uses it to end the family's access tokens too.
   */
  async familyOf(familyIdOrToken: string, options: { subject?: string | undefined } = {}): Promise<string | undefined> {
    let row: { family_id: string } | undefined;
    if (typeof familyIdOrToken === 'string' && UUID_FORMAT.test(familyIdOrToken)) {
      ({
        rows: [row],
      } = await this.pool.query<{ family_id: string }>(
        'SELECT family_id FROM refresh_token_families WHERE family_id = $1 AND ($2::text IS NULL OR subject = $2)',
        [familyIdOrToken.toLowerCase(), options.subject ?? null],
      ));
    } else if (typeof familyIdOrToken === 'string' && TOKEN_FORMAT.test(familyIdOrToken)) {
      ({
        rows: [row],
      } = await this.pool.query<{ family_id: string }>(
        'SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND ($2::text IS NULL OR subject = $2)',
        [hashRefreshToken(familyIdOrToken), options.subject ?? null],
      ));
    }
    return row?.family_id;
  }

  /**
   * Which of these families have been revoked (or no longer exist): the periodic
   * re-check of long-lived sessions, one query for all of them.
   */
  async endedFamilies(familyIds: readonly string[]): Promise<Set<string>> {
    const ids = [...new Set(familyIds.filter((f) => UUID_FORMAT.test(f)).map((f) => f.toLowerCase()))];
    if (ids.length === 0) return new Set();
    const { rows } = await this.pool.query<{ family_id: string }>(
      'SELECT family_id FROM refresh_token_families WHERE family_id = ANY($1::uuid[]) AND revoked_at IS NULL',
      [ids],
    );
    const live = new Set(rows.map((r) => r.family_id));
    return new Set(ids.filter((f) => !live.has(f)));
  }

  /**
   * Revokes a family, named by its id or by any token in it (e.g. logout).
   * With `subject`, only a family of that user is revoked. True when a family
   * was revoked by this call.
   */
  async revokeFamily(
    familyIdOrToken: string,
    reason: string,
    options: { subject?: string | undefined } = {},
  ): Promise<boolean> {
    checkReason(reason);
    let familyId: string | undefined;
    if (typeof familyIdOrToken === 'string' && UUID_FORMAT.test(familyIdOrToken)) {
      familyId = familyIdOrToken.toLowerCase();
    } else if (typeof familyIdOrToken === 'string' && TOKEN_FORMAT.test(familyIdOrToken)) {
      const { rows } = await this.pool.query<{ family_id: string }>(
        'SELECT family_id FROM refresh_tokens WHERE token_hash = $1',
        [hashRefreshToken(familyIdOrToken)],
      );
      familyId = rows[0]?.family_id;
    }
    if (!familyId) return false;
    return (await this.revokeFamilyById(familyId, reason, options.subject)) > 0;
  }

  /** Revokes every family of the user (disable, logout everywhere); returns how many. */
  async revokeAllForUser(userId: string, reason: string): Promise<number> {
    checkReason(reason);
    const { rows } = await this.pool.query<{ n: number }>(
      `WITH f AS (
         UPDATE refresh_token_families SET revoked_at = now(), revoke_reason = $2
          WHERE subject = $1 AND revoked_at IS NULL
         RETURNING family_id
       ), t AS (
         UPDATE refresh_tokens SET revoked_at = now(), revoke_reason = $2
          WHERE family_id IN (SELECT family_id FROM f) AND revoked_at IS NULL
       )
       SELECT count(*)::int AS n FROM f`,
      [userId, reason],
    );
    return rows[0]?.n ?? 0;
  }

  /** Deletes families whose newest token expired more than `graceS` ago; returns how many. */
  async purgeExpired(graceS = 86_400): Promise<number> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM refresh_token_families f
        WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t
                           WHERE t.family_id = f.family_id AND t.expires_at > now() - make_interval(secs => $1))`,
      [graceS],
    );
    return rowCount ?? 0;
  }

  private async revokeFamilyById(familyId: string, reason: string, subject: string | undefined): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `WITH f AS (
         UPDATE refresh_token_families SET revoked_at = now(), revoke_reason = $2
          WHERE family_id = $1 AND revoked_at IS NULL AND ($3::text IS NULL OR subject = $3)
         RETURNING family_id
       ), t AS (
         UPDATE refresh_tokens SET revoked_at = now(), revoke_reason = $2
          WHERE family_id IN (SELECT family_id FROM f) AND revoked_at IS NULL
       )
       SELECT count(*)::int AS n FROM f`,
      [familyId, reason, subject ?? null],
    );
    return rows[0]?.n ?? 0;
  }
}
