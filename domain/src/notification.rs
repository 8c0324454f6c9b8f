//! A user's inbox: the notifications sent to them and which of them they
//! have read. One stream per user ([`inbox_id`]), so the read model
//! `notifications` is a projection of the log like every other and a
//! rebuild reproduces read state exactly.
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

/// The inbox stream of a user: the user's id with the UUID version set to
/// 8 (stream ids are global, and the user's own stream has their id; every
/// other stream id is a v7 or a v5, so no v8 collides).
pub fn inbox_id(user_id: Uuid) -> Uuid {
    let mut bytes = *user_id.as_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    Uuid::from_bytes(bytes)
}

/// What a notification is about and who caused it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationBody {
    pub notification_id: Uuid,
    pub recipient_user_id: Uuid,
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
        recipient_user_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_at: Option<DateTime<Utc>>,
    },
    /// "Mark all read": the ids that were unread, so a replay marks exactly
    /// those whatever arrives later.
    #[serde(rename = "notification.all_read")]
    AllRead {
        notification_ids: Vec<Uuid>,
        recipient_user_id: Uuid,
    },
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
    MarkRead {
        recipient_user_id: Uuid,
        notification_id: Uuid,
    },
    MarkAllRead {
        recipient_user_id: Uuid,
    },
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
            InboxEvent::AllRead {
                notification_ids, ..
            } => {
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
            InboxCommand::MarkRead {
                recipient_user_id,
                notification_id,
            } => match self.notifications.get(&notification_id) {
                None => Err(DomainError::new(
                    ErrorCode::NOTIFICATION_NOT_FOUND,
                    "notification not found",
                )),
                Some(true) => Ok(vec![]),
                Some(false) => Ok(vec![InboxEvent::Read {
                    notification_id,
                    recipient_user_id,
                    read_at: None,
                }]),
            },
            InboxCommand::MarkAllRead { recipient_user_id } => {
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
                        recipient_user_id,
                    }])
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Uuid = Uuid::from_u128(7);

    fn read(id: Uuid) -> InboxCommand {
        InboxCommand::MarkRead {
            recipient_user_id: ME,
            notification_id: id,
        }
    }

    const ALL: InboxCommand = InboxCommand::MarkAllRead {
        recipient_user_id: ME,
    };

    fn created(id: Uuid) -> InboxEvent {
        InboxEvent::Created(NotificationBody {
            notification_id: id,
            recipient_user_id: ME,
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
        let events = inbox.decide(read(a)).unwrap();
        assert_eq!(
            events,
            vec![InboxEvent::Read {
                notification_id: a,
                recipient_user_id: ME,
                read_at: None
            }]
        );
        let inbox = events.iter().fold(inbox, Inbox::evolve);
        assert_eq!(inbox.decide(read(a)), Ok(vec![]));
        let missing = inbox.decide(read(b)).unwrap_err();
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
                recipient_user_id: ME,
                read_at: None,
            },
        ]);
        let mut expected = vec![a, c];
        expected.sort();
        assert_eq!(
            inbox.decide(ALL),
            Ok(vec![InboxEvent::AllRead {
                notification_ids: expected,
                recipient_user_id: ME,
            }])
        );
        let all_read = given(&[
            created(a),
            InboxEvent::AllRead {
                notification_ids: vec![a],
                recipient_user_id: ME,
            },
        ]);
        assert_eq!(all_read.decide(ALL), Ok(vec![]));
    }

    #[test]
    fn inbox_ids_are_distinct_from_user_ids_and_stable() {
        let user = Uuid::now_v7();
        assert_ne!(inbox_id(user), user);
        assert_eq!(inbox_id(user), inbox_id(user));
        assert_eq!(inbox_id(user).get_version_num(), 8);
        // The migration's SQL derivation gives the same id.
        let mut text = user.to_string();
        text.replace_range(14..15, "8");
        assert_eq!(text.parse::<Uuid>().unwrap(), inbox_id(user));
    }

    #[test]
    fn events_written_by_the_carry_over_migration_decode() {
        // Shapes as `20261203001001_notification_events.sql` writes them.
        let created = serde_json::json!({"type": "assigned", "task_id": "01a23c27-41ce-718d-bd97-9fd0e9421ed1",
            "created_at": "2026-11-30T10:00:00+00:00", "project_id": "01a23c27-41ce-718d-bd97-9fd0e9421ed0",
            "notification_id": "11111111-1111-5111-8111-111111111111",
            "source_event_id": "9d2670fa-4a68-4d3e-810d-9aadb5192726",
            "recipient_user_id": "01a23c27-41ce-718d-bd97-9fd0e9421edc"});
        let InboxEvent::Created(body) =
            InboxEvent::from_stored("notification.created", &created).unwrap()
        else {
            panic!("not a created event");
        };
        assert_eq!(body.kind, ASSIGNED);
        assert_eq!(body.doc_id, None);
        let read = serde_json::json!({"read_at": "2026-12-01T10:00:00+00:00",
            "notification_id": "11111111-1111-5111-8111-111111111111",
            "recipient_user_id": "01a23c27-41ce-718d-bd97-9fd0e9421edc"});
        let InboxEvent::Read { read_at, .. } =
            InboxEvent::from_stored("notification.read", &read).unwrap()
        else {
            panic!("not a read event");
        };
        assert_eq!(read_at.unwrap().to_rfc3339(), "2026-12-01T10:00:00+00:00");
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
