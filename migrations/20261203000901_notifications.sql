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
