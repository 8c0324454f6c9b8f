//! The notifications subscription: one checkpointed consumer of the log
//! that writes users' in-app notifications (seed pages 04, 06, 15, 17):
//!
//! - `assigned`: a human member becomes an assignee of a task;
//! - `mentioned`: a human member's `@username` appears in a task comment or
//!   a doc comment.
//!
//! Never to the actor themselves, and never to agent members (their
//! assignments and mentions are agent triggers, see `triggers.rs`).
//!
//! Rows are written in the batch's own transaction (the one that moves the
//! checkpoint), and each row's id is derived from the source event, the
//! recipient and the type, so a redelivered batch (a crash between commit
//! and acknowledgement, a restart, a standby taking over) inserts nothing
//! twice and skips nothing: the checkpoint and the rows commit together.
//!
//! `read_at` is the recipient's own state, changed by [`Commands::mark_notification_read`]
//! and [`Commands::mark_all_notifications_read`]; the subscription never
//! touches it.

use std::collections::BTreeSet;

use domain::DomainEvent;
use domain::doc::DocEvent;
use domain::project::Project;
use domain::task::{FieldValue, TaskEvent, TaskField};
use eventstore::subscription::{HandlerError, SubscriptionHandler};
use eventstore::{Actor, RecordedEvent};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::triggers::{comment_text, mentions};
use crate::{CommandResult, Commands};

pub const SUBSCRIPTION: &str = "notifications";
pub const ASSIGNED: &str = "assigned";
pub const MENTIONED: &str = "mentioned";

/// The stream types the subscription reads.
pub fn stream_types() -> Vec<String> {
    vec![
        TaskEvent::STREAM_TYPE.to_owned(),
        DocEvent::STREAM_TYPE.to_owned(),
    ]
}

/// Namespace of notification ids (`v5(source event, recipient:type)`).
const NAMESPACE: Uuid = Uuid::from_u128(0x6e6f_7469_6669_6361_7469_6f6e_7300_0009);

pub fn notification_id(source_event_id: Uuid, recipient: Uuid, kind: &str) -> Uuid {
    let name = format!("{source_event_id}:{recipient}:{kind}");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

pub struct NotificationHandler {
    commands: Commands,
}

impl NotificationHandler {
    pub fn new(commands: Commands) -> Self {
        Self { commands }
    }
}

fn actor_of(event: &RecordedEvent) -> Actor {
    serde_json::from_value(event.metadata.get("actor").cloned().unwrap_or(Value::Null))
        .unwrap_or_default()
}

/// What a notification points at.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    task_id: Option<Uuid>,
    doc_id: Option<Uuid>,
    comment_id: Option<Uuid>,
}

struct Pending {
    recipient: Uuid,
    kind: &'static str,
    target: Target,
}

impl NotificationHandler {
    /// The notifications one event causes.
    async fn on_event(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> CommandResult<Vec<Pending>> {
        let Some(project_id) = event.project_id else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        if event.stream_type == TaskEvent::STREAM_TYPE {
            let Ok(task_event) = TaskEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(vec![]);
            };
            let target = Target {
                task_id: Some(event.stream_id),
                ..Target::default()
            };
            match task_event {
                TaskEvent::Created { fields, .. } if !fields.assignee_ids.is_empty() => {
                    let project = self.commands.project_state(conn, project_id).await?;
                    assigned(&project, &fields.assignee_ids, target, &mut out);
                }
                TaskEvent::Updated { changes } => {
                    let mut added = Vec::new();
                    for change in changes.iter().filter(|c| c.field == TaskField::Assignee) {
                        if let (Ok(FieldValue::Ids(old)), Ok(FieldValue::Ids(new))) =
                            (change.old_value(), change.new_value())
                        {
                            let old: BTreeSet<Uuid> = old.into_iter().collect();
                            added.extend(new.into_iter().filter(|id| !old.contains(id)));
                        }
                    }
                    if !added.is_empty() {
                        let project = self.commands.project_state(conn, project_id).await?;
                        assigned(&project, &added, target, &mut out);
                    }
                }
                TaskEvent::CommentAdded {
                    comment_id,
                    content,
                    ..
                } => {
                    let project = self.commands.project_state(conn, project_id).await?;
                    let target = Target {
                        comment_id: Some(comment_id),
                        ..target
                    };
                    self.mentioned(&project, &content, target, &mut out);
                }
                _ => {}
            }
        } else if event.stream_type == DocEvent::STREAM_TYPE
            && let Ok(DocEvent::CommentAdded {
                comment_id,
                content,
                ..
            }) = DocEvent::from_stored(&event.event_type, &event.payload)
        {
            let project = self.commands.project_state(conn, project_id).await?;
            let target = Target {
                doc_id: Some(event.stream_id),
                comment_id: Some(comment_id),
                ..Target::default()
            };
            self.mentioned(&project, &content, target, &mut out);
        }
        // Never to the actor themselves.
        let actor = actor_of(event);
        out.retain(|p| actor.user_id != Some(p.recipient));
        Ok(out)
    }

    /// Human members whose username is mentioned in `content`.
    fn mentioned(
        &self,
        project: &Project,
        content: &Value,
        target: Target,
        out: &mut Vec<Pending>,
    ) {
        let handles = mentions(&comment_text(content));
        if handles.is_empty() {
            return;
        }
        for member in project.members.values() {
            if member.agent_id.is_some() {
                continue;
            }
            let Some(user) = self.commands.directory.user(member.user_id) else {
                continue;
            };
            if handles.contains(&user.username.to_lowercase()) {
                out.push(Pending {
                    recipient: member.user_id,
                    kind: MENTIONED,
                    target,
                });
            }
        }
    }
}

/// Human members among the new assignees (member ids).
fn assigned(project: &Project, member_ids: &[Uuid], target: Target, out: &mut Vec<Pending>) {
    let mut seen = BTreeSet::new();
    for member_id in member_ids {
        let Some(member) = project.members.get(member_id) else {
            continue;
        };
        if member.agent_id.is_some() || member.user_id.is_nil() || !seen.insert(member.user_id) {
            continue;
        }
        out.push(Pending {
            recipient: member.user_id,
            kind: ASSIGNED,
            target,
        });
    }
}

#[async_trait::async_trait]
impl SubscriptionHandler for NotificationHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            let pending = self
                .on_event(tx, event)
                .await
                .map_err(|e| Box::new(e) as HandlerError)?;
            if pending.is_empty() {
                continue;
            }
            let actor = actor_of(event);
            let project_id = event.project_id;
            let actor_member = match (actor.member_id, actor.user_id, project_id) {
                (Some(m), _, _) => Some(m),
                (None, Some(user_id), Some(project_id)) => self
                    .commands
                    .project_state(tx, project_id)
                    .await
                    .map_err(|e| Box::new(e) as HandlerError)?
                    .member_by_user(user_id)
                    .map(|(id, _)| id),
                _ => None,
            };
            for p in pending {
                let id = notification_id(event.event_id, p.recipient, p.kind);
                let inserted = sqlx::query(
                    "INSERT INTO notifications (id, recipient_user_id, type, project_id, task_id,
                         doc_id, comment_id, actor_user_id, actor_agent_id, actor_member_id,
                         source_event_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(p.recipient)
                .bind(p.kind)
                .bind(project_id)
                .bind(p.target.task_id)
                .bind(p.target.doc_id)
                .bind(p.target.comment_id)
                .bind(actor.user_id)
                .bind(actor.agent_id)
                .bind(actor_member)
                .bind(event.event_id)
                .bind(event.recorded_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted > 0 {
                    tracing::debug!(notification_id = %id, recipient = %p.recipient, kind = p.kind, "notification created");
                }
            }
        }
        Ok(())
    }
}

impl Commands {
    /// Marks one of `user_id`'s notifications read; `false` when there is
    /// no such notification of theirs. Marking twice keeps the first time.
    pub async fn mark_notification_read(&self, user_id: Uuid, id: Uuid) -> CommandResult<bool> {
        let found = sqlx::query(
            "UPDATE notifications SET read_at = COALESCE(read_at, now())
             WHERE id = $1 AND recipient_user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .execute(self.store.pool())
        .await?
        .rows_affected();
        Ok(found > 0)
    }

    pub async fn mark_all_notifications_read(&self, user_id: Uuid) -> CommandResult<u64> {
        Ok(sqlx::query(
            "UPDATE notifications SET read_at = now()
             WHERE recipient_user_id = $1 AND read_at IS NULL",
        )
        .bind(user_id)
        .execute(self.store.pool())
        .await?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_event_recipient_and_type() {
        let (e, u) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            notification_id(e, u, ASSIGNED),
            notification_id(e, u, ASSIGNED)
        );
        assert_ne!(
            notification_id(e, u, ASSIGNED),
            notification_id(e, u, MENTIONED)
        );
    }
}
