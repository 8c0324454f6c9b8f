-- Runs as the plugin's own role, in its schema (search_path).
CREATE TABLE smoke_runs (
    id         BIGSERIAL PRIMARY KEY,
    task_id    UUID NOT NULL,
    child_id   UUID NOT NULL,
    run_key    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- No key on wakeup_id: a wakeup delivered twice shows as two rows.
CREATE TABLE smoke_wakeups (
    wakeup_id  TEXT NOT NULL,
    project_id UUID,
    payload    JSONB,
    fired_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
