import type { UserEvent } from '../domain/identity/user.events';
import { sqlProjection, type EventHandlers } from './projection';

/**
 * The users read model: `users` for profiles, roles and status (what admins
 * list and `/users/me` shows) and `user_credentials` for login. The password
 * hash lives only in `user_credentials`, so no query over `users` can leak it.
 *
 * Every statement takes its values from the event alone (times from the
 * event's `at`, never now()), so a rebuild produces the same rows.
 */

const handlers: EventHandlers<UserEvent> = {
  'identity.UserRegistered': (e) => {
    const { data: d } = e;
    return [
      {
        // Upsert by user id: re-applying the event rewrites the same row. A second user with the
        // same email still fails on the UNIQUE constraint, which parks the projection for an operator.
        text: `INSERT INTO users (user_id, email, name, roles, status, registered_at, updated_at)
               VALUES ($1, $2, $3, $4, 'active', $5, $5)
               ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name, roles = EXCLUDED.roles,
                 status = EXCLUDED.status, registered_at = EXCLUDED.registered_at, updated_at = EXCLUDED.updated_at`,
        values: [d.userId, d.email, d.name, [...d.roles], d.at],
      },
      {
        text: `INSERT INTO user_credentials (user_id, email, password_hash, status) VALUES ($1, $2, $3, 'active')
               ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, password_hash = EXCLUDED.password_hash, status = EXCLUDED.status`,
        values: [d.userId, d.email, d.passwordHash],
      },
    ];
  },
  'identity.RoleAssigned': (e) => {
    const { data: d } = e;
    return {
      text: `UPDATE users SET roles = CASE WHEN $2 = ANY(roles) THEN roles ELSE array_append(roles, $2) END, updated_at = $3
             WHERE user_id = $1`,
      values: [d.userId, d.role, d.at],
    };
  },
  'identity.RoleRevoked': (e) => {
    const { data: d } = e;
    return {
      text: 'UPDATE users SET roles = array_remove(roles, $2), updated_at = $3 WHERE user_id = $1',
      values: [d.userId, d.role, d.at],
    };
  },
  'identity.UserDisabled': (e) => {
    const { data: d } = e;
    return [
      { text: `UPDATE users SET status = 'disabled', updated_at = $2 WHERE user_id = $1`, values: [d.userId, d.at] },
      { text: `UPDATE user_credentials SET status = 'disabled' WHERE user_id = $1`, values: [d.userId] },
    ];
  },
  // A rehash on login is not a profile change: `users.updated_at` stays.
  'identity.PasswordRehashed': (e) => {
    const { data: d } = e;
    return {
      text: 'UPDATE user_credentials SET password_hash = $2 WHERE user_id = $1',
      values: [d.userId, d.passwordHash],
    };
  },
};

export const usersProjection = sqlProjection({
  name: 'users',
  version: 1,
  tables: ['users', 'user_credentials'],
  setup: [
    `CREATE TABLE users (
       user_id uuid PRIMARY KEY,
       email text NOT NULL UNIQUE,
       name text NOT NULL,
       roles text[] NOT NULL,
       status text NOT NULL CHECK (status IN ('active', 'disabled')),
       registered_at timestamptz NOT NULL,
       updated_at timestamptz NOT NULL
     )`,
    `CREATE TABLE user_credentials (
       user_id uuid PRIMARY KEY,
       email text NOT NULL UNIQUE,
       password_hash text NOT NULL,
       status text NOT NULL CHECK (status IN ('active', 'disabled'))
     )`,
  ],
  handlers,
});
