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

-- Human members have user_id, agent members agent_id (seed page 06).
CREATE TABLE {schema}.project_members (
    id              UUID PRIMARY KEY,
    project_id      UUID NOT NULL,
    user_id         UUID NULL,
    project_role_id UUID NOT NULL,
    member_type     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    agent_id        UUID NULL,
    UNIQUE (project_id, user_id),
    CHECK ((member_type = 'agent') = (agent_id IS NOT NULL AND user_id IS NULL))
);
CREATE INDEX project_members_user_idx ON {schema}.project_members (user_id);
CREATE INDEX project_members_agent_idx ON {schema}.project_members (agent_id) WHERE agent_id IS NOT NULL;

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

CREATE TABLE {schema}.tasks (
    id             UUID PRIMARY KEY,
    project_id     UUID NOT NULL,
    task_number    BIGINT NOT NULL,
    title          TEXT NOT NULL,
    task_type_id   UUID NULL,
    status_id      UUID NULL,
    sprint_id      UUID NULL,
    parent_task_id UUID NULL,
    description    JSONB NULL,
    importance     BIGINT NOT NULL,
    story_points   BIGINT NULL,
    assignee_ids   JSONB NOT NULL,
    reporter_id    UUID NULL,
    custom_fields  JSONB NOT NULL,
    start_date     DATE NULL,
    due_date       DATE NULL,
    tags           JSONB NOT NULL,
    version        BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    deleted_at     TIMESTAMPTZ NULL,
    -- {plugin, key} of a task a plugin created (task_create's origin_key).
    origin         JSONB NULL
)
-- Room on each page for a row's next version: a PATCH changes no indexed
-- column, so with free space on the page PostgreSQL updates it in place
-- (HOT) instead of inserting into all six indexes again.
WITH (fillfactor = 80);
-- The list's keyset order, and the common filters.
CREATE INDEX tasks_list_idx ON {schema}.tasks (project_id, created_at, id) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX tasks_number_idx ON {schema}.tasks (project_id, task_number);
-- A filter on one sprint or one status walks its own keyset in list order
-- (LIMIT page + 1 rows) whatever share of the project it matches, instead
-- of the planner choosing between filtering the list order and sorting
-- every match, a choice that flipped with the statistics.
CREATE INDEX tasks_sprint_idx ON {schema}.tasks (project_id, sprint_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_status_idx ON {schema}.tasks (project_id, status_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_parent_idx ON {schema}.tasks (parent_task_id) WHERE parent_task_id IS NOT NULL;
CREATE INDEX tasks_assignees_idx ON {schema}.tasks USING gin (assignee_ids);

-- The activity feed: one row per task event, comments included.
CREATE TABLE {schema}.task_activities (
    id            UUID PRIMARY KEY,
    task_id       UUID NOT NULL,
    project_id    UUID NOT NULL,
    actor_user_id UUID NULL,
    -- Set instead of actor_user_id when an agent acted (X-Agent-ID).
    actor_agent_id UUID NULL,
    -- The plugin that acted for actor_user_id (orchestration host APIs).
    actor_plugin  TEXT NULL,
    activity_type TEXT NOT NULL,
    content       JSONB NOT NULL,
    -- The event that recorded this entry (for diffs, reverts, history).
    event_id      UUID NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    deleted_at    TIMESTAMPTZ NULL
);
CREATE INDEX task_activities_task_idx ON {schema}.task_activities (task_id, created_at, id);

-- Links between tasks of one project, listed from either side.
CREATE TABLE {schema}.task_links (
    id             UUID PRIMARY KEY,
    project_id     UUID NOT NULL,
    source_task_id UUID NOT NULL,
    target_task_id UUID NOT NULL,
    link_type      TEXT NOT NULL,
    created_by     UUID NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_links_source_idx ON {schema}.task_links (source_task_id);
CREATE INDEX task_links_target_idx ON {schema}.task_links (target_task_id);

-- Sprints (soft-deleted: the task side lists live ones by deleted_at).
CREATE TABLE {schema}.sprints (
    id         UUID PRIMARY KEY,
    project_id UUID NOT NULL,
    name       TEXT NOT NULL,
    start_date TIMESTAMPTZ NULL,
    end_date   TIMESTAMPTZ NULL,
    goal       TEXT NULL,
    status     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ NULL
);
CREATE INDEX sprints_project_idx ON {schema}.sprints (project_id, created_at, id) WHERE deleted_at IS NULL;

-- Saved interaction views (seed page 05): sprint tabs, backlog, timeline.
CREATE TABLE {schema}.sprint_views (
    id           UUID PRIMARY KEY,
    project_id   UUID NOT NULL,
    view_context TEXT NOT NULL,
    sprint_id    UUID NULL,
    name         TEXT NOT NULL,
    view_type    TEXT NOT NULL,
    config       JSONB NOT NULL,
    position     FLOAT8 NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX sprint_views_context_idx ON {schema}.sprint_views (project_id, view_context, sprint_id, position);

-- Manual task order per view. `id` is the uuid v5 of (view_id, task_id), so
-- every statement on a row is keyed by a single uuid (replay batching).
CREATE TABLE {schema}.view_task_positions (
    id         UUID PRIMARY KEY,
    view_id    UUID NOT NULL,
    task_id    UUID NOT NULL,
    position   FLOAT8 NOT NULL,
    group_key  TEXT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (view_id, task_id)
);

-- AI agents (seed pages 06, 12): configuration without secrets.
CREATE TABLE {schema}.agents (
    id              UUID PRIMARY KEY,
    project_id      UUID NOT NULL,
    member_id       UUID NOT NULL,
    handle          TEXT NOT NULL,
    name            TEXT NOT NULL,
    -- agent.created's settings (name, llm_*, prompts, limits, git identity).
    settings        JSONB NOT NULL,
    has_llm_api_key BOOLEAN NOT NULL,
    created_by      UUID NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    deleted_at      TIMESTAMPTZ NULL
);
CREATE INDEX agents_project_idx ON {schema}.agents (project_id, created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE {schema}.agent_mcp_servers (
    id          UUID PRIMARY KEY,
    agent_id    UUID NOT NULL,
    server_name TEXT NOT NULL,
    transport   TEXT NOT NULL,
    command     TEXT NULL,
    args        JSONB NOT NULL,
    url         TEXT NULL,
    -- Secret-like keys hold '***'; their values are in agent_credentials.
    env         JSONB NOT NULL,
    is_enabled  BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_mcp_servers_agent_idx ON {schema}.agent_mcp_servers (agent_id, created_at);

CREATE TABLE {schema}.agent_skills (
    id            UUID PRIMARY KEY,
    agent_id      UUID NOT NULL,
    skill_name    TEXT NOT NULL,
    skill_source  TEXT NOT NULL,
    skill_content TEXT NOT NULL,
    source_url    TEXT NULL,
    triggers      JSONB NOT NULL,
    is_enabled    BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_skills_agent_idx ON {schema}.agent_skills (agent_id, created_at);

CREATE TABLE {schema}.agent_conversations (
    id                     UUID PRIMARY KEY,
    project_id             UUID NOT NULL,
    agent_id               UUID NOT NULL,
    trigger_type           TEXT NOT NULL,
    task_id                UUID NULL,
    doc_id                 UUID NULL,
    comment_id             UUID NULL,
    chat_session_id        UUID NULL,
    triggered_by_member_id UUID NULL,
    actor_user_id          UUID NULL,
    message                TEXT NULL,
    status                 TEXT NOT NULL,
    error_message          TEXT NULL,
    event_count            BIGINT NOT NULL,
    agent_name             TEXT NOT NULL,
    agent_handle           TEXT NOT NULL,
    started_at             TIMESTAMPTZ NULL,
    finished_at            TIMESTAMPTZ NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_conversations_list_idx ON {schema}.agent_conversations (project_id, created_at DESC, id DESC);
CREATE INDEX agent_conversations_agent_idx ON {schema}.agent_conversations (agent_id);

-- The agent's own events, one row per conversation.agent_event (id = the
-- log event id, derived from the agent-server's event id).
CREATE TABLE {schema}.agent_conversation_events (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL,
    event_index     BIGINT NOT NULL,
    sdk_event_id    TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    event_source    TEXT NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (conversation_id, event_index)
);

CREATE TABLE {schema}.agent_chat_sessions (
    id              UUID PRIMARY KEY,
    project_id      UUID NOT NULL,
    agent_id        UUID NOT NULL,
    member_id       UUID NULL,
    actor_user_id   UUID NULL,
    title           TEXT NOT NULL,
    last_message_at TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_chat_sessions_agent_idx ON {schema}.agent_chat_sessions (agent_id, created_at DESC);

-- Installed plugins (seed page 07). `id` is derived from the name
-- (domain::plugin::plugin_id), so a reinstall reuses the row id.
CREATE TABLE {schema}.plugins (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    manifest     JSONB NOT NULL,
    enabled      BOOLEAN NOT NULL,
    installed_at TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- Super-admin overrides per extension point; `id` is the uuid v5 of
-- (plugin_id, extension_point).
CREATE TABLE {schema}.plugin_extension_settings (
    id              UUID PRIMARY KEY,
    plugin_id       UUID NOT NULL,
    extension_point TEXT NOT NULL,
    settings        JSONB NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_extension_settings_plugin_idx ON {schema}.plugin_extension_settings (plugin_id);
-- Project documentation (issue 9). Folders and documents are
-- soft-deleted; deleting a folder deletes its subtree (each with its own event).
CREATE TABLE {schema}.doc_folders (
    id         UUID PRIMARY KEY,
    project_id UUID NOT NULL,
    parent_id  UUID NULL,
    name       TEXT NOT NULL,
    position   BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ NULL
);
CREATE INDEX doc_folders_project_idx ON {schema}.doc_folders (project_id) WHERE deleted_at IS NULL;
CREATE INDEX doc_folders_parent_idx ON {schema}.doc_folders (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE {schema}.docs (
    id         UUID PRIMARY KEY,
    project_id UUID NOT NULL,
    folder_id  UUID NULL,
    title      TEXT NOT NULL,
    content    JSONB NOT NULL,
    position   DOUBLE PRECISION NOT NULL,
    created_by UUID NULL,
    updated_by UUID NULL,
    version    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ NULL
);
CREATE INDEX docs_project_idx ON {schema}.docs (project_id, position, created_at) WHERE deleted_at IS NULL;
CREATE INDEX docs_folder_idx ON {schema}.docs (folder_id) WHERE folder_id IS NOT NULL;

-- One row per version of a document; the id is the event that made it.
CREATE TABLE {schema}.doc_snapshots (
    id                   UUID PRIMARY KEY,
    document_id          UUID NOT NULL,
    project_id           UUID NOT NULL,
    snapshot_number      BIGINT NOT NULL,
    title                TEXT NOT NULL,
    content              JSONB NOT NULL,
    created_by           UUID NULL,
    created_by_agent     UUID NULL,
    restored_from        UUID NULL,
    restored_from_number BIGINT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (document_id, snapshot_number)
);

-- The doc feed: one row per doc event, comments included; folder events
-- have no document.
CREATE TABLE {schema}.doc_activities (
    id             UUID PRIMARY KEY,
    document_id    UUID NULL,
    folder_id      UUID NULL,
    project_id     UUID NOT NULL,
    actor_user_id  UUID NULL,
    actor_agent_id UUID NULL,
    activity_type  TEXT NOT NULL,
    content        JSONB NOT NULL,
    event_id       UUID NOT NULL,
    version        BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    deleted_at     TIMESTAMPTZ NULL,
    -- The plugin that acted for actor_user_id (orchestration host APIs).
    actor_plugin   TEXT NULL
);
CREATE INDEX doc_activities_doc_idx ON {schema}.doc_activities (document_id, created_at, id);

-- Files attached to documents (id = the file id).
CREATE TABLE {schema}.doc_files (
    id           UUID PRIMARY KEY,
    document_id  UUID NOT NULL,
    project_id   UUID NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    file_size    BIGINT NOT NULL,
    created_by   UUID NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX doc_files_doc_idx ON {schema}.doc_files (document_id, created_at);

-- Files attached to tasks (the bytes are in object storage).
CREATE TABLE {schema}.task_attachments (
    id           UUID PRIMARY KEY,
    task_id      UUID NOT NULL,
    project_id   UUID NOT NULL,
    file_id      UUID NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    file_size    BIGINT NOT NULL,
    created_by   UUID NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_attachments_task_idx ON {schema}.task_attachments (task_id, created_at);

-- Users' notifications: the projection of the recipients' inbox streams
-- (id = the notification id, the `notification.created` event's id).
CREATE TABLE {schema}.notifications (
    id                UUID        PRIMARY KEY,
    recipient_user_id UUID        NOT NULL,
    type              TEXT        NOT NULL,
    project_id        UUID        NOT NULL,
    task_id           UUID        NULL,
    doc_id            UUID        NULL,
    comment_id        UUID        NULL,
    actor_user_id     UUID        NULL,
    actor_agent_id    UUID        NULL,
    actor_member_id   UUID        NULL,
    source_event_id   UUID        NOT NULL,
    read_at           TIMESTAMPTZ NULL,
    created_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX notifications_recipient_idx ON {schema}.notifications (recipient_user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON {schema}.notifications (recipient_user_id) WHERE read_at IS NULL;

-- Orchestration summaries a plugin wrote about a task or a project
-- (`paca.summary_set`); id = v5(plugin activity stream, target).
CREATE TABLE {schema}.plugin_summaries (
    id         UUID PRIMARY KEY,
    plugin     TEXT NOT NULL,
    project_id UUID NOT NULL,
    task_id    UUID NULL,
    summary    JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_summaries_task_idx ON {schema}.plugin_summaries (task_id) WHERE task_id IS NOT NULL;

-- Plugin wakeups (`paca.wakeup_schedule`): one stream each. The scheduler
-- reads the due ones; firing is claimed on the stream, not here.
CREATE TABLE {schema}.plugin_wakeups (
    id         UUID PRIMARY KEY,
    plugin     TEXT NOT NULL,
    project_id UUID NOT NULL,
    user_id    UUID NOT NULL,
    due_at     TIMESTAMPTZ NOT NULL,
    payload    JSONB NOT NULL,
    -- scheduled, fired, cancelled
    state      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_wakeups_due_idx ON {schema}.plugin_wakeups (due_at) WHERE state = 'scheduled';
