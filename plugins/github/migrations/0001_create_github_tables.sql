-- com.paca.github: runs as the plugin's own role in plugin_data_com_paca_github.
--
-- Deviation from the seed's schema: no foreign keys to projects(id) or
-- tasks(id). The plugin's role cannot reference core tables (it owns only its
-- schema) and the core read models are projections that can be rebuilt, so
-- project_id / task_id are plain indexed UUID columns. Their cleanup is done
-- by the plugin's HandleEvent on task.deleted / project.deleted (payload
-- task_id / project_id). Foreign keys between the plugin's own tables stay.
CREATE TABLE IF NOT EXISTS github_integrations (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id       UUID NOT NULL UNIQUE,
    access_token_enc TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS github_repositories (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id         UUID NOT NULL,
    integration_id     UUID NOT NULL REFERENCES github_integrations(id) ON DELETE CASCADE,
    owner              TEXT NOT NULL,
    repo_name          TEXT NOT NULL,
    full_name          TEXT NOT NULL,
    webhook_id         BIGINT,
    webhook_secret_enc TEXT,
    default_branch     TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, full_name)
);
CREATE INDEX IF NOT EXISTS github_repositories_project_idx ON github_repositories (project_id);
CREATE INDEX IF NOT EXISTS github_repositories_full_name_idx ON github_repositories (lower(full_name));

CREATE TABLE IF NOT EXISTS github_pull_requests (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id   UUID NOT NULL,
    repo_id      UUID NOT NULL REFERENCES github_repositories(id) ON DELETE CASCADE,
    pr_number    INT NOT NULL,
    github_pr_id BIGINT,
    title        TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL DEFAULT 'open',
    html_url     TEXT NOT NULL DEFAULT '',
    head_branch  TEXT NOT NULL DEFAULT '',
    base_branch  TEXT NOT NULL DEFAULT '',
    author       TEXT NOT NULL DEFAULT '',
    merged_at    TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repo_id, pr_number)
);
CREATE INDEX IF NOT EXISTS github_pull_requests_project_idx ON github_pull_requests (project_id);

CREATE TABLE IF NOT EXISTS github_task_pr_links (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id         UUID NOT NULL,
    pull_request_id UUID NOT NULL REFERENCES github_pull_requests(id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (task_id, pull_request_id)
);
CREATE INDEX IF NOT EXISTS github_task_pr_links_task_idx ON github_task_pr_links (task_id);

CREATE TABLE IF NOT EXISTS github_task_branches (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id     UUID NOT NULL,
    repo_id     UUID NOT NULL REFERENCES github_repositories(id) ON DELETE CASCADE,
    branch_name TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (task_id, repo_id, branch_name)
);
CREATE INDEX IF NOT EXISTS github_task_branches_task_idx ON github_task_branches (task_id);
CREATE INDEX IF NOT EXISTS github_task_branches_repo_branch_idx ON github_task_branches (repo_id, branch_name);

-- Not in the seed: the webhook route is public (GitHub calls it without a
-- Paca user), so the host's project_get / tasks_list, which check the
-- caller's permission, refuse it for private projects. The plugin therefore
-- keeps its own index of task references: the project's task-id prefix
-- (refreshed on every authenticated call) and task numbers (from task.created
-- events, and backfilled from tasks_list when a repository is linked).
CREATE TABLE IF NOT EXISTS github_project_refs (
    project_id     UUID PRIMARY KEY,
    task_id_prefix TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS github_task_refs (
    task_id     UUID PRIMARY KEY,
    project_id  UUID NOT NULL,
    task_number BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS github_task_refs_number_idx ON github_task_refs (project_id, task_number);
