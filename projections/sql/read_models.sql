-- Read models, created in schema {schema}. Live reads resolve them through
-- the connection search_path ("rm, public"); a rebuild creates them in a new
-- schema, replays the log into it and renames it to "rm" (blue/green).
-- Only the projector in src/projector.rs writes to these tables.

CREATE TABLE {schema}.users (
    id                   UUID PRIMARY KEY,
    username             TEXT NOT NULL,
    full_name            TEXT NOT NULL,
    email                TEXT NULL,
    role_id              UUID NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    deleted_at           TIMESTAMPTZ NULL
);
CREATE INDEX users_username_idx ON {schema}.users (lower(username));
CREATE INDEX users_role_idx ON {schema}.users (role_id);

CREATE TABLE {schema}.global_roles (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    permissions JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ NULL
);

CREATE TABLE {schema}.api_keys (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL,
    name       TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    expires_at TIMESTAMPTZ NULL,
    revoked_at TIMESTAMPTZ NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_keys_user_idx ON {schema}.api_keys (user_id);

CREATE TABLE {schema}.projects (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    task_id_prefix TEXT NOT NULL,
    is_public      BOOLEAN NOT NULL,
    settings       JSONB NOT NULL,
    created_by     UUID NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    deleted_at     TIMESTAMPTZ NULL
);

CREATE TABLE {schema}.project_roles (
    id          UUID PRIMARY KEY,
    project_id  UUID NOT NULL,
    role_name   TEXT NOT NULL,
    permissions JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX project_roles_project_idx ON {schema}.project_roles (project_id);

CREATE TABLE {schema}.project_members (
    id              UUID PRIMARY KEY,
    project_id      UUID NOT NULL,
    user_id         UUID NOT NULL,
    project_role_id UUID NOT NULL,
    member_type     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, user_id)
);
CREATE INDEX project_members_user_idx ON {schema}.project_members (user_id);

CREATE TABLE {schema}.task_types (
    id          UUID PRIMARY KEY,
    project_id  UUID NOT NULL,
    name        TEXT NOT NULL,
    icon        TEXT NULL,
    color       TEXT NULL,
    description TEXT NULL,
    is_default  BOOLEAN NOT NULL,
    is_system   BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_types_project_idx ON {schema}.task_types (project_id);

CREATE TABLE {schema}.task_statuses (
    id         UUID PRIMARY KEY,
    project_id UUID NOT NULL,
    name       TEXT NOT NULL,
    color      TEXT NULL,
    position   BIGINT NOT NULL,
    category   TEXT NOT NULL,
    is_default BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_statuses_project_idx ON {schema}.task_statuses (project_id);

CREATE TABLE {schema}.custom_fields (
    id           UUID PRIMARY KEY,
    project_id   UUID NOT NULL,
    field_key    TEXT NOT NULL,
    display_name TEXT NOT NULL,
    field_type   TEXT NOT NULL,
    options      JSONB NOT NULL,
    is_required  BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX custom_fields_project_idx ON {schema}.custom_fields (project_id);
