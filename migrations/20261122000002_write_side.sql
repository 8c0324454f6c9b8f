-- Write-side state that is not part of any read model.

-- Set-wide uniqueness (usernames, role names, one membership per user and
-- project, ...). Rows are inserted/deleted by command handlers inside the
-- append transaction, so two racing commands cannot both succeed.
CREATE TABLE reservations (
    scope    TEXT NOT NULL,
    key      TEXT NOT NULL,
    owner_id UUID NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX reservations_owner_idx ON reservations (owner_id);

-- Secrets never enter the event log (DESIGN.md §3). The log records that a
-- password or key changed; the hash lives only here.
CREATE TABLE user_credentials (
    user_id       UUID PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_key_secrets (
    key_id       UUID PRIMARY KEY,
    user_id      UUID NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    last_used_at TIMESTAMPTZ NULL
);
CREATE INDEX api_key_secrets_user_idx ON api_key_secrets (user_id);

-- Refresh tokens, stored as SHA-256 hashes. A token family is one login;
-- presenting a rotated token again revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   UUID NOT NULL,
    user_id     UUID NOT NULL,
    remember_me BOOLEAN NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ NULL,
    revoked_at  TIMESTAMPTZ NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Which generation of read-model tables is live (see projections::rebuild).
CREATE TABLE projection_state (
    name       TEXT PRIMARY KEY,
    version    INT  NOT NULL,
    schema     TEXT NOT NULL,
    last_tx    BIGINT NOT NULL DEFAULT 0,
    last_pos   BIGINT NOT NULL DEFAULT 0,
    rebuilt_at TIMESTAMPTZ NULL
);
