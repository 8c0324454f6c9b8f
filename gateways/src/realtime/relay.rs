//! The realtime relay: a checkpointed subscription that turns log events
//! into the seeds' realtime messages `{type, payload}` (seed page 17) and
//! publishes them on the bus (Valkey `paca.events`, or in-process).
//!
//! The checkpoint advances only in the transaction that follows a
//! successful publish of the whole batch: with Valkey down, or with a node
//! that has not (re)subscribed yet, the batch fails, is retried, and
//! nothing is skipped. Delivery is at least once; every message carries a
//! stable `id` (source event id and index) so the fan-out drops repeats.

use std::time::Duration;

use commands::directory::{Directory, Roster};
use domain::DomainEvent;
use domain::conversation::ConversationEvent;
use domain::notification::InboxEvent;
use domain::task::TaskEvent;
use eventstore::subscription::{HandlerError, SubscriptionHandler};
use eventstore::{EventStore, RecordedEvent, Subscription};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use super::Message;
use super::bus::Bus;

pub const SUBSCRIPTION: &str = "realtime_relay";

pub struct RelayHandler {
    bus: Bus,
    directory: Directory,
}

impl RelayHandler {
    pub fn new(bus: Bus, directory: Directory) -> Self {
        Self { bus, directory }
    }
}

#[async_trait::async_trait]
impl SubscriptionHandler for RelayHandler {
    /// Publishes only; the checkpoint needs no transaction of its own.
    fn transactional(&self) -> bool {
        false
    }

    async fn handle(
        &self,
        _tx: &mut sqlx::PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let mut batch = Vec::new();
        for event in events {
            batch.extend(messages(event, &self.directory));
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.bus
            .publish(&batch)
            .await
            .map_err(|e| Box::new(e) as HandlerError)
    }
}

fn uuid_at(value: &Value, pointer: &str) -> Option<Uuid> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn member_of_user(project: Option<&Roster>, user_id: Option<Uuid>) -> Option<Uuid> {
    project?.member_by_user(user_id?).map(|(id, _)| id)
}

/// The project member who acted (seed: `actor_id` is a member id).
fn actor_member(event: &RecordedEvent, project: Option<&Roster>) -> Option<Uuid> {
    uuid_at(&event.metadata, "/actor/member_id")
        .or_else(|| member_of_user(project, uuid_at(&event.metadata, "/actor/user_id")))
}

fn activity(
    event: &RecordedEvent,
    project: Option<&Roster>,
    kind: &str,
    id: Uuid,
    activity_type: &str,
    content: Value,
) -> Value {
    let at = event
        .recorded_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "id": id,
        "task_id": event.stream_id,
        "project_id": event.project_id,
        "activity_type": activity_type,
        // Seed page 17: `content` is the JSON-encoded activity body.
        "content": content.to_string(),
        "actor_id": actor_member(event, project),
        "actor_user_id": uuid_at(&event.metadata, "/actor/user_id"),
        "version": event.version,
        "event_type": kind,
        "created_at": at,
        "updated_at": at,
    })
}

/// The realtime messages one log event produces (none for most streams).
pub fn messages(event: &RecordedEvent, directory: &Directory) -> Vec<Message> {
    if event.stream_type == InboxEvent::STREAM_TYPE {
        return inbox(event);
    }
    let Some(project_id) = event.project_id else {
        return Vec::new();
    };
    // Only the members are read (actor ids): the roster is enough.
    let project = directory.project_roster(project_id);
    let project = project.as_ref();
    let mut out = Vec::new();
    let mut push = |kind: &str, payload: Value| {
        let id = format!("{}:{}", event.event_id, out.len());
        out.push(Message {
            kind: kind.to_owned(),
            payload,
            id: Some(id),
            offset: Some(super::recovery::offset_of(event)),
        });
    };
    match event.stream_type.as_str() {
        TaskEvent::STREAM_TYPE => {
            let Ok(task_event) = TaskEvent::from_stored(&event.event_type, &event.payload) else {
                return Vec::new();
            };
            match task_event {
                TaskEvent::Created { fields, .. } => {
                    let content = json!({ "title": fields.title });
                    push(
                        "task.created",
                        activity(
                            event,
                            project,
                            "task.created",
                            event.event_id,
                            "task.created",
                            content,
                        ),
                    );
                }
                TaskEvent::Updated { changes } => {
                    let content = json!({ "changes": changes });
                    push(
                        "task.updated",
                        activity(
                            event,
                            project,
                            "task.updated",
                            event.event_id,
                            "task.updated",
                            content,
                        ),
                    );
                }
                TaskEvent::Deleted {} => push(
                    "task.deleted",
                    activity(
                        event,
                        project,
                        "task.deleted",
                        event.event_id,
                        "task.deleted",
                        json!({}),
                    ),
                ),
                TaskEvent::CommentAdded {
                    comment_id,
                    content,
                    ..
                } => push(
                    "task.comment.added",
                    activity(
                        event,
                        project,
                        "task.comment.added",
                        comment_id,
                        "comment",
                        content,
                    ),
                ),
                TaskEvent::CommentEdited {
                    comment_id,
                    content,
                    ..
                } => push(
                    "task.comment.updated",
                    activity(
                        event,
                        project,
                        "task.comment.updated",
                        comment_id,
                        "comment",
                        content,
                    ),
                ),
                TaskEvent::CommentDeleted { comment_id } => push(
                    "task.comment.deleted",
                    activity(
                        event,
                        project,
                        "task.comment.deleted",
                        comment_id,
                        "comment",
                        json!({}),
                    ),
                ),
                // Links and attachments change what a task shows: clients
                // refresh it on `task.updated`, with the activity's own type.
                TaskEvent::LinkAdded {
                    target_task_id,
                    link_type,
                    ..
                } => push(
                    "task.updated",
                    activity(
                        event,
                        project,
                        "task.updated",
                        event.event_id,
                        "task.link.added",
                        json!({ "target_task_id": target_task_id, "link_type": link_type }),
                    ),
                ),
                TaskEvent::LinkRemoved { link_id } => push(
                    "task.updated",
                    activity(
                        event,
                        project,
                        "task.updated",
                        event.event_id,
                        "task.link.removed",
                        json!({ "link_id": link_id }),
                    ),
                ),
                TaskEvent::AttachmentAdded {
                    attachment_id,
                    file_name,
                    file_size,
                    ..
                } => push(
                    "task.updated",
                    activity(
                        event,
                        project,
                        "task.updated",
                        event.event_id,
                        "task.attachment.added",
                        json!({ "attachment_id": attachment_id, "file_name": file_name,
                                "file_size": file_size }),
                    ),
                ),
                TaskEvent::AttachmentRemoved {
                    attachment_id,
                    file_name,
                    ..
                } => push(
                    "task.updated",
                    activity(
                        event,
                        project,
                        "task.updated",
                        event.event_id,
                        "task.attachment.removed",
                        json!({ "attachment_id": attachment_id, "file_name": file_name }),
                    ),
                ),
            }
        }
        ConversationEvent::STREAM_TYPE => {
            let Ok(conversation) =
                ConversationEvent::from_stored(&event.event_type, &event.payload)
            else {
                return Vec::new();
            };
            // Seed page 17: minimal monitoring signals; bodies stay in REST.
            let kind = match &conversation {
                ConversationEvent::AgentEvent { event: sdk, .. } => {
                    format!("agent.{}", sdk.event_type.to_lowercase())
                }
                _ => format!("agent.{}", event.event_type),
            };
            let task_id = match &conversation {
                ConversationEvent::Created { origin } => origin.task_id,
                _ => None,
            };
            push(
                &kind,
                json!({
                    "project_id": project_id,
                    "conversation_id": event.stream_id,
                    "task_id": task_id,
                    "created_at": event.recorded_at,
                }),
            );
        }
        // Documents, folders and notifications from features that publish
        // their own events: `doc.*` goes to the docs room as an activity,
        // `notification.*` to its recipient, with the event's payload.
        _ if event.event_type.starts_with("doc.") => {
            // The seeds' names for comment events (`doc.comment.added`, ...).
            let kind = event
                .event_type
                .replace("comment_added", "comment.added")
                .replace("comment_edited", "comment.updated")
                .replace("comment_deleted", "comment.deleted");
            let mut payload = activity(
                event,
                project,
                &kind,
                event.event_id,
                &kind,
                event.payload.clone(),
            );
            if let Some(map) = payload.as_object_mut() {
                map.remove("task_id");
                map.insert("doc_id".into(), json!(event.stream_id));
                map.insert("stream_type".into(), json!(event.stream_type));
            }
            push(&kind, payload);
        }
        _ => {}
    }
    out
}

/// A user's inbox events, to that user (seed page 17's
/// `notification.created` envelope; `notification.read` lets the user's other
/// tabs clear their badge).
fn inbox(event: &RecordedEvent) -> Vec<Message> {
    let Ok(inbox_event) = InboxEvent::from_stored(&event.event_type, &event.payload) else {
        return Vec::new();
    };
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (kind, payload) = match inbox_event {
        InboxEvent::Created(n) => (
            "notification.created",
            json!({
                "id": n.notification_id,
                "recipient_user_id": n.recipient_user_id,
                "actor_member_id": n.actor_member_id,
                "type": n.kind,
                "task_id": n.task_id,
                "doc_id": n.doc_id,
                "comment_id": n.comment_id,
                "project_id": n.project_id,
                "created_at": at(n.created_at),
            }),
        ),
        InboxEvent::Read {
            notification_id,
            recipient_user_id,
            read_at,
        } => (
            "notification.read",
            json!({
                "ids": [notification_id],
                "recipient_user_id": recipient_user_id,
                "read_at": at(read_at.unwrap_or(event.recorded_at)),
            }),
        ),
        InboxEvent::AllRead {
            notification_ids,
            recipient_user_id,
        } => (
            "notification.read",
            json!({
                "ids": notification_ids,
                "recipient_user_id": recipient_user_id,
                "read_at": at(event.recorded_at),
            }),
        ),
    };
    vec![Message {
        kind: kind.to_owned(),
        payload,
        id: Some(format!("{}:0", event.event_id)),
        offset: Some(super::recovery::offset_of(event)),
    }]
}

/// A fresh relay starts at the log's head: clients get what happens from
/// now on, not history (which the REST activity feed serves).
pub async fn init_checkpoint(store: &EventStore) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkpoints (name, last_tx, last_pos)
         SELECT $1, COALESCE(MAX(tx_id::text::bigint), 0), COALESCE(MAX(global_position), 0)
         FROM (SELECT tx_id, global_position FROM events
               WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
               ORDER BY tx_id DESC, global_position DESC LIMIT 1) head
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(SUBSCRIPTION)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Runs the relay until `shutdown` (as a standby while another node holds
/// it).
pub async fn run(
    store: EventStore,
    bus: Bus,
    directory: Directory,
    shutdown: watch::Receiver<bool>,
) {
    let subscription = Subscription::new(SUBSCRIPTION, store, RelayHandler::new(bus, directory))
        .poll_interval(Duration::from_millis(250))
        // Under a stream of writes, one read and one checkpoint write per
        // 5 ms instead of per commit; an event after a quiet spell still
        // goes out at once (the realtime p99 is measured on those).
        .coalesce(Duration::from_millis(5))
        // Valkey back within a second of its restart means events flow
        // again within a second.
        .max_backoff(Duration::from_secs(1));
    if let Err(error) = subscription.run(shutdown).await {
        tracing::error!(%error, "realtime relay stopped");
    }
}
