-- Write-side indexes (DESIGN.md §4): the facts commands decide on that span
-- aggregates (which tasks are in a sprint, a task's project and parent, a
-- scope's views, who holds a global role). Maintained by an inline projector
-- in the append transaction, so a command reading them under the lock that
-- guards its invariant sees every committed write. Never part of the
-- read-model rebuild, and never read by queries: read models can be
-- mid-rebuild, these cannot. `write_index_state` records which version of
-- the projector filled them; a server with a newer one refills them from the
-- log on start.
CREATE TABLE task_index (
    task_id     UUID    PRIMARY KEY,
    project_id  UUID    NOT NULL,
    task_number BIGINT  NOT NULL,
    parent_id   UUID    NULL,
    sprint_id   UUID    NULL,
    status_id   UUID    NULL,
    type_id     UUID    NULL,
    assignee_ids UUID[] NOT NULL DEFAULT '{}',
    deleted     BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX task_index_project_idx ON task_index (project_id) WHERE NOT deleted;
CREATE INDEX task_index_sprint_idx ON task_index (sprint_id) WHERE NOT deleted;
CREATE INDEX task_index_status_idx ON task_index (status_id) WHERE NOT deleted;
CREATE INDEX task_index_type_idx ON task_index (type_id) WHERE NOT deleted;

CREATE TABLE view_index (
    view_id    UUID             PRIMARY KEY,
    project_id UUID             NOT NULL,
    context    TEXT             NOT NULL,
    sprint_id  UUID             NULL,
    position   DOUBLE PRECISION NOT NULL,
    -- creation order (the log's position), the tie-break of equal positions
    created    BIGINT           NOT NULL,
    deleted    BOOLEAN          NOT NULL DEFAULT false
);
CREATE INDEX view_index_scope_idx ON view_index (project_id, context, sprint_id) WHERE NOT deleted;

CREATE TABLE user_roles (
    user_id UUID PRIMARY KEY,
    role_id UUID NOT NULL
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

CREATE TABLE write_index_state (
    name    TEXT PRIMARY KEY,
    version INT  NOT NULL
);
