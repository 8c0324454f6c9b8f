-- The event log (DESIGN.md §3). Append-only: nothing updates or deletes rows here.
CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Readers order by (tx_id, global_position) and only take rows with
    -- tx_id < pg_snapshot_xmin(pg_current_snapshot()), so a transaction that
    -- commits late is never skipped (identity values are not commit-ordered).
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_type     TEXT        NOT NULL,
    stream_id       UUID        NOT NULL,
    version         BIGINT      NOT NULL,
    event_id        UUID        NOT NULL UNIQUE,
    event_type      TEXT        NOT NULL,
    schema_version  SMALLINT    NOT NULL DEFAULT 1,
    project_id      UUID        NULL,
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);
CREATE INDEX events_tx_pos_idx ON events (tx_id, global_position);
CREATE INDEX events_type_tx_pos_idx ON events (stream_type, tx_id, global_position);
CREATE INDEX events_project_idx ON events (project_id, global_position) WHERE project_id IS NOT NULL;

-- One row per stream: the optimistic-concurrency check updates this row
-- before any event is inserted, so a conflict costs no identity value.
CREATE TABLE streams (
    stream_id   UUID   PRIMARY KEY,
    stream_type TEXT   NOT NULL,
    version     BIGINT NOT NULL
);

-- Subscription checkpoints: a batch and its checkpoint commit together.
CREATE TABLE checkpoints (
    name        TEXT        PRIMARY KEY,
    last_tx     BIGINT      NOT NULL DEFAULT 0,
    last_pos    BIGINT      NOT NULL DEFAULT 0,
    status      TEXT        NOT NULL DEFAULT 'idle',
    last_error  TEXT        NULL,
    failures    INT         NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
