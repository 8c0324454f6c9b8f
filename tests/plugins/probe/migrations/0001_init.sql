-- Runs as the plugin's own role, in its schema (search_path).
CREATE TABLE notes (
    id         BIGSERIAL PRIMARY KEY,
    project_id UUID NOT NULL,
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE seen_events (
    id      BIGSERIAL PRIMARY KEY,
    topic   TEXT NOT NULL,
    payload JSONB
);
