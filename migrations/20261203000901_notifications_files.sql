-- Users' notifications (issue 9). Written only by the `notifications`
-- subscription (commands/src/notifications.rs) from task and doc events,
-- in the transaction that advances its checkpoint. The id is derived from
-- the source event, the recipient and the type, so a redelivered batch
-- inserts nothing twice. `read_at` is the recipient's own state.
CREATE TABLE notifications (
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
CREATE INDEX notifications_recipient_idx ON notifications (recipient_user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (recipient_user_id) WHERE read_at IS NULL;

-- Uploads (issue 9): one row per initiated upload of a task attachment or a
-- doc file. Storage bookkeeping, not domain state: the bytes live in object
-- storage (`bucket`, `storage_key`), and the attachment itself is an event
-- (`task.attachment_added`, `doc.file_added`) appended in the transaction
-- that moves the row from `pending` to `uploaded`.
CREATE TABLE files (
    id           UUID        PRIMARY KEY,
    project_id   UUID        NOT NULL,
    owner_kind   TEXT        NOT NULL CHECK (owner_kind IN ('task', 'doc')),
    owner_id     UUID        NOT NULL,
    file_name    TEXT        NOT NULL,
    content_type TEXT        NOT NULL,
    file_size    BIGINT      NOT NULL,
    storage_key  TEXT        NOT NULL,
    bucket       TEXT        NOT NULL,
    upload_id    TEXT        NULL,
    status       TEXT        NOT NULL CHECK (status IN ('pending', 'uploaded', 'deleted')),
    created_by   UUID        NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ NULL
);
CREATE INDEX files_owner_idx ON files (owner_kind, owner_id);

-- Write-side index of project documentation (see 20261202000001_write_index.sql):
-- folders and documents with their parent folder, so deleting a folder can
-- find its whole subtree inside the command's transaction. Kept by the
-- write_index inline projector.
CREATE TABLE doc_index (
    id         UUID    PRIMARY KEY,
    project_id UUID    NOT NULL,
    is_folder  BOOLEAN NOT NULL,
    parent_id  UUID    NULL,
    deleted    BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX doc_index_parent_idx ON doc_index (parent_id) WHERE NOT deleted;
