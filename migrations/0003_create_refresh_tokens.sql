-- Refresh tokens: opaque random values, stored only as SHA-256 hashes.
-- A family is one login session; every rotation adds a row to it. Revoking a
-- family (logout, reuse of a rotated token, disabled user) marks the family
-- row, which every rotation checks, and every token row in it.
CREATE TABLE refresh_token_families (
  family_id     uuid        PRIMARY KEY,
  subject       text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz,
  revoke_reason text        CHECK (length(revoke_reason) <= 64),
  CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX refresh_token_families_by_subject ON refresh_token_families (subject) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
  token_hash    bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
  family_id     uuid        NOT NULL REFERENCES refresh_token_families (family_id) ON DELETE CASCADE,
  subject       text        NOT NULL,
  issued_at     timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  rotated_at    timestamptz,
  replaced_by   bytea       CHECK (octet_length(replaced_by) = 32),
  revoked_at    timestamptz,
  revoke_reason text        CHECK (length(revoke_reason) <= 64),
  CHECK ((rotated_at IS NULL) = (replaced_by IS NULL)),
  CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
