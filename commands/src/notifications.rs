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
//! Each decision is recorded as `notification.created` in the recipient's
//! inbox stream (domain/src/notification.rs); the read model is the inbox
//! events' projection, so a rebuild reproduces notifications and their
//! read state. The events are appended in their own transaction before the
//! checkpoint moves; the event id is derived from the source event, the
//! recipient and the type, so a redelivered batch (a crash between the two
//! commits, a restart, a standby taking over) appends nothing twice and
//! skips nothing.
//!
//! Reading is the recipient's own command ([`Commands::mark_notification_read`],
//! [`Commands::mark_all_notifications_read`]) on the same stream.

use std::collections::BTreeSet;

use domain::DomainEvent;
use domain::doc::DocEvent;
use domain::notification::{Inbox, InboxCommand, InboxEvent, NotificationBody, inbox_id};
use domain::project::Project;
use domain::task::{FieldValue, TaskEvent, TaskField};
use eventstore::subscription::{HandlerError, SubscriptionHandler};
use eventstore::{ExpectedVersion, Metadata, RecordedEvent, StreamRef};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::triggers::{actor_of, caused_by, comment_text, mentions};
use crate::{CommandResult, Commands, new_event};

pub const SUBSCRIPTION: &str = "notifications";
pub use domain::notification::{ASSIGNED, MENTIONED};

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
        let mut decided: Vec<(Uuid, NotificationBody, Metadata)> = Vec::new();
        for event in events {
            let pending = self
                .on_event(tx, event)
                .await
                .map_err(|e| Box::new(e) as HandlerError)?;
            if pending.is_empty() {
                continue;
            }
            let actor = actor_of(event);
            let Some(project_id) = event.project_id else {
                continue;
            };
            let actor_member = match (actor.member_id, actor.user_id) {
                (Some(m), _) => Some(m),
                (None, Some(user_id)) => self
                    .commands
                    .project_state(tx, project_id)
                    .await
                    .map_err(|e| Box::new(e) as HandlerError)?
                    .member_by_user(user_id)
                    .map(|(id, _)| id),
                _ => None,
            };
            let meta = caused_by(event);
            for p in pending {
                let body = NotificationBody {
                    notification_id: notification_id(event.event_id, p.recipient, p.kind),
                    recipient_user_id: p.recipient,
                    kind: p.kind.to_owned(),
                    project_id,
                    task_id: p.target.task_id,
                    doc_id: p.target.doc_id,
                    comment_id: p.target.comment_id,
                    actor_user_id: actor.user_id,
                    actor_agent_id: actor.agent_id,
                    actor_member_id: actor_member,
                    source_event_id: event.event_id,
                    created_at: event.recorded_at,
                };
                decided.push((p.recipient, body, meta.clone()));
            }
        }
        if decided.is_empty() {
            return Ok(());
        }
        self.commands
            .record_notifications(&decided)
            .await
            .map_err(|e| Box::new(e) as HandlerError)
    }
}

impl Commands {
    /// Appends each decided notification to its recipient's inbox, in one
    /// transaction. The event id is the notification id, so a batch
    /// redelivered after a crash (these events commit before the
    /// subscription's checkpoint moves) is an idempotent append.
    async fn record_notifications(
        &self,
        decided: &[(Uuid, NotificationBody, Metadata)],
    ) -> CommandResult<()> {
        let commands = self;
        transact!(commands, tx => async {
            for (recipient, body, meta) in decided {
                let mut event = new_event(&InboxEvent::Created(body.clone()), meta);
                event.event_id = body.notification_id;
                let stream = StreamRef {
                    stream_type: InboxEvent::STREAM_TYPE,
                    stream_id: inbox_id(*recipient),
                    // Inbox events belong to no project's feed: the
                    // project is in the payload.
                    project_id: None,
                };
                let appended = tx.append(stream, ExpectedVersion::Any, vec![event]).await?;
                if !appended.idempotent {
                    tracing::debug!(notification_id = %body.notification_id, %recipient, kind = %body.kind, "notification created");
                }
            }
            Ok(())
        }
        .await)
    }

    async fn inbox(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        command: InboxCommand,
    ) -> CommandResult<()> {
        let commands = self;
        transact!(commands, tx => async {
            let mut decide = |inbox: &Inbox| Ok((inbox.decide(command.clone())?, vec![]));
            commands
                .execute_in(tx, inbox_id(user_id), None, Inbox::evolve, meta, &mut decide, None)
                .await
                .map(|_| ())
        }
        .await)
    }

    /// Marks one of the caller's notifications read (`NOTIFICATION_NOT_FOUND`
    /// when it is not theirs). Marking twice keeps the first time.
    pub async fn mark_notification_read(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        notification_id: Uuid,
    ) -> CommandResult<()> {
        let command = InboxCommand::MarkRead {
            recipient_user_id: user_id,
            notification_id,
        };
        self.inbox(meta, user_id, command).await
    }

    pub async fn mark_all_notifications_read(
        &self,
        meta: &Metadata,
        user_id: Uuid,
    ) -> CommandResult<()> {
        let command = InboxCommand::MarkAllRead {
            recipient_user_id: user_id,
        };
        self.inbox(meta, user_id, command).await
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
