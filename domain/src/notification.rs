//! A user's inbox: the notifications sent to them and which of them they
//! have read. One stream per user (the stream id is the user's id), so the
//! read model `notifications` is a projection of the log like every other
//! and a rebuild reproduces read state exactly.
//!
//! Who gets notified of what is decided by the `notifications` subscription
//! (commands/src/notifications.rs) from task and doc events; it records each
//! decision here as `notification.created`, whose event id is the
//! notification's id (derived from the source event, the recipient and the
//! type), so a redelivered batch appends nothing twice.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Decision, DomainError, DomainEvent, ErrorCode};

pub const ASSIGNED: &str = "assigned";
pub const MENTIONED: &str = "mentioned";

/// What a notification is about and who caused it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationBody {
    pub notification_id: Uuid,
    /// `assigned` or `mentioned`.
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_agent_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_member_id: Option<Uuid>,
    /// The log event the notification is about.
    pub source_event_id: Uuid,
    /// When the source event happened (the notification's `created_at`).
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum InboxEvent {
    #[serde(rename = "notification.created")]
    Created(NotificationBody),
    /// `read_at` is set only by the migration that turned pre-event rows
    /// into events; live reads are read when the event was recorded.
    #[serde(rename = "notification.read")]
    Read {
        notification_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_at: Option<DateTime<Utc>>,
    },
    /// "Mark all read": the ids that were unread, so a replay marks exactly
    /// those whatever arrives later.
    #[serde(rename = "notification.all_read")]
    AllRead { notification_ids: Vec<Uuid> },
}

impl DomainEvent for InboxEvent {
    const STREAM_TYPE: &'static str = "inbox";
}

/// The notifications of one user: id -> read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inbox {
    pub notifications: BTreeMap<Uuid, bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InboxCommand {
    MarkRead { notification_id: Uuid },
    MarkAllRead,
}

impl Inbox {
    pub fn evolve(mut self, event: &InboxEvent) -> Self {
        match event {
            InboxEvent::Created(body) => {
                self.notifications.insert(body.notification_id, false);
            }
            InboxEvent::Read {
                notification_id, ..
            } => {
                if let Some(read) = self.notifications.get_mut(notification_id) {
                    *read = true;
                }
            }
            InboxEvent::AllRead { notification_ids } => {
                for id in notification_ids {
                    if let Some(read) = self.notifications.get_mut(id) {
                        *read = true;
                    }
                }
            }
        }
        self
    }

    /// Marking a read notification again keeps the first time (no event);
    /// marking all with nothing unread appends nothing.
    pub fn decide(&self, command: InboxCommand) -> Decision<InboxEvent> {
        match command {
            InboxCommand::MarkRead { notification_id } => {
                match self.notifications.get(&notification_id) {
                    None => Err(DomainError::new(
                        ErrorCode::NOTIFICATION_NOT_FOUND,
                        "notification not found",
                    )),
                    Some(true) => Ok(vec![]),
                    Some(false) => Ok(vec![InboxEvent::Read {
                        notification_id,
                        read_at: None,
                    }]),
                }
            }
            InboxCommand::MarkAllRead => {
                let unread: Vec<Uuid> = self
                    .notifications
                    .iter()
                    .filter(|(_, read)| !**read)
                    .map(|(id, _)| *id)
                    .collect();
                if unread.is_empty() {
                    Ok(vec![])
                } else {
                    Ok(vec![InboxEvent::AllRead {
                        notification_ids: unread,
                    }])
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: Uuid) -> InboxEvent {
        InboxEvent::Created(NotificationBody {
            notification_id: id,
            kind: ASSIGNED.into(),
            project_id: Uuid::now_v7(),
            source_event_id: Uuid::now_v7(),
            created_at: Utc::now(),
            ..NotificationBody::default()
        })
    }

    fn given(events: &[InboxEvent]) -> Inbox {
        events.iter().fold(Inbox::default(), Inbox::evolve)
    }

    #[test]
    fn marking_read_is_once_and_only_for_own_notifications() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let inbox = given(&[created(a)]);
        let events = inbox
            .decide(InboxCommand::MarkRead { notification_id: a })
            .unwrap();
        assert_eq!(
            events,
            vec![InboxEvent::Read {
                notification_id: a,
                read_at: None
            }]
        );
        let inbox = events.iter().fold(inbox, Inbox::evolve);
        assert_eq!(
            inbox.decide(InboxCommand::MarkRead { notification_id: a }),
            Ok(vec![])
        );
        let missing = inbox
            .decide(InboxCommand::MarkRead { notification_id: b })
            .unwrap_err();
        assert_eq!(missing.code, ErrorCode::NOTIFICATION_NOT_FOUND);
    }

    #[test]
    fn mark_all_names_exactly_the_unread_ones() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let inbox = given(&[
            created(a),
            created(b),
            created(c),
            InboxEvent::Read {
                notification_id: b,
                read_at: None,
            },
        ]);
        let mut expected = vec![a, c];
        expected.sort();
        assert_eq!(
            inbox.decide(InboxCommand::MarkAllRead),
            Ok(vec![InboxEvent::AllRead {
                notification_ids: expected
            }])
        );
        let all_read = given(&[
            created(a),
            InboxEvent::AllRead {
                notification_ids: vec![a],
            },
        ]);
        assert_eq!(all_read.decide(InboxCommand::MarkAllRead), Ok(vec![]));
    }

    #[test]
    fn payloads_round_trip() {
        let event = created(Uuid::now_v7());
        let stored = event.to_payload();
        assert_eq!(stored["type"], "assigned");
        assert!(stored.get("task_id").is_none());
        assert_eq!(
            InboxEvent::from_stored("notification.created", &stored).unwrap(),
            event
        );
    }
}
