-- Notifications become events (issue 9 follow-up). Until now the
-- `notifications` subscription wrote rows into `public.notifications` and
-- "mark read" updated them in place, so neither was in the log and a
-- rebuild could not reproduce them. Now each notification is a
-- `notification.created` event in its recipient's `inbox` stream (stream id
-- = the user's id with the UUID version digit set to 8, see
-- domain::notification::inbox_id; event id = the notification's id) and
-- reading is a `notification.read` event; `rm.notifications` is their
-- projection.
--
-- Existing rows are carried over as those events, so an upgrade loses no
-- notification and no read state: per recipient, the created events in
-- creation order, then one read event per read notification (with the
-- original read time in its payload). The read models are rebuilt on the
-- next start (their fingerprint changed), which projects these events.

INSERT INTO streams (stream_id, stream_type, version)
SELECT overlay(recipient_user_id::text PLACING '8' FROM 15 FOR 1)::uuid, 'inbox',
       count(*) + count(read_at)
FROM notifications
GROUP BY recipient_user_id;

WITH numbered AS (
    SELECT n.*,
           row_number() OVER (PARTITION BY recipient_user_id ORDER BY created_at, id) AS created_no,
           count(*) OVER (PARTITION BY recipient_user_id) AS created_count,
           CASE WHEN read_at IS NULL THEN NULL ELSE
               row_number() OVER (PARTITION BY recipient_user_id, read_at IS NULL ORDER BY read_at, id)
           END AS read_no
    FROM notifications n
),
meta AS (
    SELECT jsonb_build_object('actor', jsonb_build_object('kind', 'system'),
                              'source', 'migration',
                              'occurred_at', to_jsonb(now())) AS m
)
INSERT INTO events (stream_type, stream_id, project_id, version, event_id, event_type,
                    schema_version, payload, metadata)
SELECT 'inbox', overlay(recipient_user_id::text PLACING '8' FROM 15 FOR 1)::uuid, NULL, version, event_id, event_type, 1, payload, meta.m
FROM meta, (
    SELECT recipient_user_id, created_no AS version, id AS event_id,
           'notification.created' AS event_type,
           jsonb_strip_nulls(jsonb_build_object(
               'notification_id', id, 'recipient_user_id', recipient_user_id, 'type', type, 'project_id', project_id,
               'task_id', task_id, 'doc_id', doc_id, 'comment_id', comment_id,
               'actor_user_id', actor_user_id, 'actor_agent_id', actor_agent_id,
               'actor_member_id', actor_member_id, 'source_event_id', source_event_id,
               'created_at', created_at)) AS payload
    FROM numbered
    UNION ALL
    SELECT recipient_user_id, created_count + read_no, gen_random_uuid(),
           'notification.read',
           jsonb_build_object('notification_id', id, 'recipient_user_id', recipient_user_id,
                              'read_at', read_at)
    FROM numbered
    WHERE read_at IS NOT NULL
) carried
ORDER BY recipient_user_id, version;

DROP TABLE notifications;
