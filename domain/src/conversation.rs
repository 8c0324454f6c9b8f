//! Conversations (one stream each) and chat sessions (one stream each).
//!
//! A conversation is one trigger invocation of an agent (seed page 06):
//! `queued → running → finished | failed | stopped | paused`. The agent's
//! own events (messages, actions, observations) reported by the runner are
//! appended to the conversation's stream; the aggregate remembers which
//! agent-server event ids it has recorded, so a re-delivered event is
//! stored once, and numbers them densely (`event_index` 0, 1, 2, …).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Decision, DomainError, DomainEvent, ErrorCode};

pub const TRIGGER_TYPES: &[&str] = &[
    "task_assigned",
    "comment_mention",
    "chat_message",
    "description_write",
];
pub const STATUSES: &[&str] = &[
    "queued", "running", "paused", "finished", "failed", "stopped",
];
pub const MESSAGE_MAX: usize = 100_000;
pub const ERROR_MAX: usize = 2_000;

/// What started a conversation; everything the trigger message and the
/// API show about its origin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub agent_id: Uuid,
    pub project_id: Uuid,
    pub trigger_type: String,
    pub task_id: Option<Uuid>,
    /// The document whose comment mentioned the agent (doc-comment
    /// `comment_mention`; absent from conversations created before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<Uuid>,
    pub comment_id: Option<Uuid>,
    pub chat_session_id: Option<Uuid>,
    pub message: Option<String>,
    /// The member whose action triggered it (`actor_member_id` on the
    /// stream entry).
    pub triggered_by_member_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    /// The log event the trigger came from (assignment, comment, chat
    /// message), when there is one.
    pub source_event_id: Option<Uuid>,
    /// The agent's name and handle at trigger time (events are
    /// self-contained).
    pub agent_name: String,
    pub agent_handle: String,
}

/// One event of the agent-server, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentServerEvent {
    /// The agent-server's own event id (the dedup key).
    pub sdk_event_id: String,
    /// The SDK's `kind`. Stored as `agent_event_type`: the event is
    /// flattened into `conversation.agent_event`, whose tag is already
    /// `event_type` (the same name would overwrite the tag).
    #[serde(rename = "agent_event_type")]
    pub event_type: String,
    /// agent | user | environment | hook
    pub event_source: String,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum ConversationEvent {
    #[serde(rename = "conversation.created")]
    Created {
        #[serde(flatten)]
        origin: Origin,
    },
    #[serde(rename = "conversation.started")]
    Started { worker: String },
    #[serde(rename = "conversation.agent_event")]
    AgentEvent {
        event_index: i64,
        #[serde(flatten)]
        event: AgentServerEvent,
    },
    #[serde(rename = "conversation.message_sent")]
    MessageSent {
        message_id: Uuid,
        message: String,
        actor_member_id: Option<Uuid>,
    },
    #[serde(rename = "conversation.paused")]
    Paused {},
    #[serde(rename = "conversation.finished")]
    Finished {},
    #[serde(rename = "conversation.failed")]
    Failed { error_message: String },
    #[serde(rename = "conversation.stopped")]
    Stopped { old_status: String },
}

impl DomainEvent for ConversationEvent {
    const STREAM_TYPE: &'static str = "conversation";
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Queued,
    Running,
    Paused,
    Finished,
    Failed,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }

    /// No transition leaves these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Stopped)
    }

    /// The runner is done with the conversation (its trigger may be
    /// acknowledged): terminal, or a chat turn that ended `paused`.
    pub fn is_settled(self) -> bool {
        self.is_terminal() || self == Status::Paused
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    pub exists: bool,
    pub origin: Origin,
    pub status: Status,
    /// How many agent events are recorded (the next `event_index`).
    pub event_count: i64,
    pub recorded: BTreeSet<String>,
    /// Follow-up messages, in order (the runner delivers the ones it has
    /// not delivered yet).
    pub messages: Vec<(Uuid, String)>,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ConversationCommand {
    Create {
        origin: Origin,
    },
    Start {
        worker: String,
    },
    RecordEvents {
        events: Vec<AgentServerEvent>,
    },
    SendMessage {
        message_id: Uuid,
        message: String,
        actor_member_id: Option<Uuid>,
    },
    Pause,
    Finish,
    Fail {
        error_message: String,
    },
    Stop,
}

fn not_found() -> DomainError {
    DomainError::new(
        ErrorCode::AGENT_CONVERSATION_NOT_FOUND,
        "conversation not found",
    )
}

fn illegal(from: Status, to: &str) -> DomainError {
    DomainError::new(
        ErrorCode::CONFLICT,
        format!("a {} conversation cannot become {to}", from.as_str()),
    )
}

/// Message text: trimmed of NULs, 1..=MESSAGE_MAX characters.
pub fn normalize_message(message: &str) -> Result<String, DomainError> {
    let message = message.replace('\0', "");
    if message.trim().is_empty() || message.chars().count() > MESSAGE_MAX {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("message must be 1-{MESSAGE_MAX} characters"),
        ));
    }
    Ok(message)
}

impl Conversation {
    pub fn evolve(mut self, event: &ConversationEvent) -> Self {
        match event {
            ConversationEvent::Created { origin } => {
                self.exists = true;
                self.origin = origin.clone();
                self.status = Status::Queued;
            }
            ConversationEvent::Started { .. } => self.status = Status::Running,
            ConversationEvent::AgentEvent { event_index, event } => {
                self.recorded.insert(event.sdk_event_id.clone());
                self.event_count = self.event_count.max(event_index + 1);
            }
            ConversationEvent::MessageSent {
                message_id,
                message,
                ..
            } => self.messages.push((*message_id, message.clone())),
            ConversationEvent::Paused {} => self.status = Status::Paused,
            ConversationEvent::Finished {} => self.status = Status::Finished,
            ConversationEvent::Failed { error_message } => {
                self.status = Status::Failed;
                self.error_message = Some(error_message.clone());
            }
            ConversationEvent::Stopped { .. } => self.status = Status::Stopped,
        }
        self
    }

    pub fn decide(&self, command: ConversationCommand) -> Decision<ConversationEvent> {
        if !self.exists {
            return match command {
                ConversationCommand::Create { mut origin } => {
                    if !TRIGGER_TYPES.contains(&origin.trigger_type.as_str()) {
                        return Err(DomainError::new(
                            ErrorCode::BAD_REQUEST,
                            format!("trigger_type must be one of {}", TRIGGER_TYPES.join(", ")),
                        ));
                    }
                    origin.message = origin.message.map(|m| normalize_message(&m)).transpose()?;
                    Ok(vec![ConversationEvent::Created { origin }])
                }
                _ => Err(not_found()),
            };
        }
        match command {
            // Creating an existing conversation again is a replayed trigger.
            ConversationCommand::Create { .. } => Ok(vec![]),
            ConversationCommand::Start { worker } => match self.status {
                Status::Queued | Status::Paused => Ok(vec![ConversationEvent::Started { worker }]),
                // A runner taking over a crashed runner's trigger.
                Status::Running => Ok(vec![]),
                other => Err(illegal(other, "running")),
            },
            ConversationCommand::RecordEvents { events } => {
                // Late events of a stopped run are still the run's history.
                let mut index = self.event_count;
                let mut seen = self.recorded.clone();
                let mut out = Vec::new();
                for event in events {
                    if event.sdk_event_id.is_empty() || !seen.insert(event.sdk_event_id.clone()) {
                        continue;
                    }
                    out.push(ConversationEvent::AgentEvent {
                        event_index: index,
                        event,
                    });
                    index += 1;
                }
                Ok(out)
            }
            ConversationCommand::SendMessage {
                message_id,
                message,
                actor_member_id,
            } => {
                if self.status != Status::Running {
                    return Err(DomainError::new(
                        ErrorCode::AGENT_CONVERSATION_NOT_RUNNING,
                        format!(
                            "messages can only be sent to a running conversation (it is {})",
                            self.status.as_str()
                        ),
                    ));
                }
                Ok(vec![ConversationEvent::MessageSent {
                    message_id,
                    message: normalize_message(&message)?,
                    actor_member_id,
                }])
            }
            ConversationCommand::Pause => match self.status {
                Status::Running => Ok(vec![ConversationEvent::Paused {}]),
                Status::Paused => Ok(vec![]),
                other => Err(illegal(other, "paused")),
            },
            ConversationCommand::Finish => match self.status {
                Status::Running | Status::Paused => Ok(vec![ConversationEvent::Finished {}]),
                Status::Finished => Ok(vec![]),
                other => Err(illegal(other, "finished")),
            },
            ConversationCommand::Fail { error_message } => match self.status {
                Status::Queued | Status::Running | Status::Paused => {
                    let mut error_message: String = error_message.replace('\0', "");
                    if error_message.chars().count() > ERROR_MAX {
                        error_message = error_message.chars().take(ERROR_MAX).collect();
                    }
                    Ok(vec![ConversationEvent::Failed { error_message }])
                }
                Status::Failed => Ok(vec![]),
                other => Err(illegal(other, "failed")),
            },
            ConversationCommand::Stop => {
                if self.status.is_terminal() {
                    return Err(DomainError::new(
                        ErrorCode::AGENT_CONVERSATION_ALREADY_STOPPED,
                        format!("the conversation is already {}", self.status.as_str()),
                    ));
                }
                Ok(vec![ConversationEvent::Stopped {
                    old_status: self.status.as_str().into(),
                }])
            }
        }
    }
}

/// A persistent chat thread between a member and an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum ChatSessionEvent {
    #[serde(rename = "chat_session.started")]
    Started {
        agent_id: Uuid,
        project_id: Uuid,
        member_id: Option<Uuid>,
        actor_user_id: Option<Uuid>,
        title: String,
    },
    /// Each message starts its own conversation (`conversation_id`).
    #[serde(rename = "chat_session.message_posted")]
    MessagePosted {
        message_id: Uuid,
        message: String,
        conversation_id: Uuid,
        actor_member_id: Option<Uuid>,
    },
}

impl DomainEvent for ChatSessionEvent {
    const STREAM_TYPE: &'static str = "agent_chat_session";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatSession {
    pub exists: bool,
    pub agent_id: Uuid,
    pub project_id: Uuid,
    pub messages: usize,
}

#[derive(Debug, Clone)]
pub enum ChatSessionCommand {
    Start {
        agent_id: Uuid,
        project_id: Uuid,
        member_id: Option<Uuid>,
        actor_user_id: Option<Uuid>,
        first_message: String,
    },
    Post {
        message_id: Uuid,
        message: String,
        conversation_id: Uuid,
        actor_member_id: Option<Uuid>,
    },
}

impl ChatSession {
    pub fn evolve(mut self, event: &ChatSessionEvent) -> Self {
        match event {
            ChatSessionEvent::Started {
                agent_id,
                project_id,
                ..
            } => {
                self.exists = true;
                self.agent_id = *agent_id;
                self.project_id = *project_id;
            }
            ChatSessionEvent::MessagePosted { .. } => self.messages += 1,
        }
        self
    }

    pub fn decide(&self, command: ChatSessionCommand) -> Decision<ChatSessionEvent> {
        match command {
            ChatSessionCommand::Start {
                agent_id,
                project_id,
                member_id,
                actor_user_id,
                first_message,
            } => {
                if self.exists {
                    return Err(DomainError::new(
                        ErrorCode::CONFLICT,
                        "chat session already exists",
                    ));
                }
                let message = normalize_message(&first_message)?;
                // The first line of the first message, as Paca titles threads.
                let title: String = message
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim()
                    .chars()
                    .take(200)
                    .collect();
                Ok(vec![ChatSessionEvent::Started {
                    agent_id,
                    project_id,
                    member_id,
                    actor_user_id,
                    title,
                }])
            }
            ChatSessionCommand::Post {
                message_id,
                message,
                conversation_id,
                actor_member_id,
            } => {
                if !self.exists {
                    return Err(DomainError::new(
                        ErrorCode::AGENT_CHAT_SESSION_NOT_FOUND,
                        "chat session not found",
                    ));
                }
                Ok(vec![ChatSessionEvent::MessagePosted {
                    message_id,
                    message: normalize_message(&message)?,
                    conversation_id,
                    actor_member_id,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            agent_id: Uuid::from_u128(1),
            project_id: Uuid::from_u128(2),
            trigger_type: "task_assigned".into(),
            task_id: Some(Uuid::from_u128(3)),
            ..Origin::default()
        }
    }

    fn given(commands: Vec<ConversationCommand>) -> Conversation {
        commands
            .into_iter()
            .fold(Conversation::default(), |state, command| {
                let events = state.decide(command).expect("given command must succeed");
                events.iter().fold(state, Conversation::evolve)
            })
    }

    fn when(
        state: &Conversation,
        command: ConversationCommand,
    ) -> Result<(Conversation, Vec<ConversationEvent>), ErrorCode> {
        let events = state.decide(command).map_err(|e| e.code)?;
        Ok((
            events.iter().fold(state.clone(), Conversation::evolve),
            events,
        ))
    }

    fn create() -> ConversationCommand {
        ConversationCommand::Create { origin: origin() }
    }

    fn start() -> ConversationCommand {
        ConversationCommand::Start {
            worker: "worker-a".into(),
        }
    }

    fn ev(id: &str) -> AgentServerEvent {
        AgentServerEvent {
            sdk_event_id: id.into(),
            event_type: "MessageEvent".into(),
            event_source: "agent".into(),
            payload: serde_json::json!({"id": id}),
        }
    }

    #[test]
    fn lifecycle_queued_running_finished() {
        let state = given(vec![create()]);
        assert_eq!(state.status, Status::Queued);
        let (state, _) = when(&state, start()).unwrap();
        assert_eq!(state.status, Status::Running);
        let (state, _) = when(&state, ConversationCommand::Finish).unwrap();
        assert_eq!(state.status, Status::Finished);
        assert!(state.status.is_terminal());
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let queued = given(vec![create()]);
        assert_eq!(
            when(&queued, ConversationCommand::Finish).map(|_| ()),
            Err(ErrorCode::CONFLICT)
        );
        assert_eq!(
            when(&queued, ConversationCommand::Pause).map(|_| ()),
            Err(ErrorCode::CONFLICT)
        );
        let finished = given(vec![create(), start(), ConversationCommand::Finish]);
        for command in [
            start(),
            ConversationCommand::Pause,
            ConversationCommand::Fail {
                error_message: "x".into(),
            },
        ] {
            assert_eq!(
                when(&finished, command).map(|_| ()),
                Err(ErrorCode::CONFLICT)
            );
        }
        assert_eq!(
            when(&finished, ConversationCommand::Stop).map(|_| ()),
            Err(ErrorCode::AGENT_CONVERSATION_ALREADY_STOPPED)
        );
        let stopped = given(vec![create(), ConversationCommand::Stop]);
        assert_eq!(stopped.status, Status::Stopped);
        assert_eq!(
            when(&stopped, start()).map(|_| ()),
            Err(ErrorCode::CONFLICT)
        );
        assert_eq!(
            when(&Conversation::default(), start()).map(|_| ()),
            Err(ErrorCode::AGENT_CONVERSATION_NOT_FOUND)
        );
    }

    #[test]
    fn replayed_create_and_start_are_no_ops() {
        let state = given(vec![create(), start()]);
        assert_eq!(when(&state, create()).unwrap().1, vec![]);
        assert_eq!(when(&state, start()).unwrap().1, vec![]);
    }

    #[test]
    fn agent_events_are_deduplicated_and_densely_indexed() {
        let state = given(vec![create(), start()]);
        let (state, events) = when(
            &state,
            ConversationCommand::RecordEvents {
                events: vec![ev("a"), ev("b"), ev("a")],
            },
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        let (state, events) = when(
            &state,
            ConversationCommand::RecordEvents {
                events: vec![ev("b"), ev("c")],
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![ConversationEvent::AgentEvent {
                event_index: 2,
                event: ev("c")
            }]
        );
        assert_eq!(state.event_count, 3);
    }

    #[test]
    fn agent_events_round_trip_through_json() {
        let event = ConversationEvent::AgentEvent {
            event_index: 3,
            event: ev("a"),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], "conversation.agent_event");
        assert_eq!(json["agent_event_type"], "MessageEvent");
        assert_eq!(
            serde_json::from_value::<ConversationEvent>(json).unwrap(),
            event
        );
    }

    #[test]
    fn follow_up_messages_need_a_running_conversation() {
        let send = || ConversationCommand::SendMessage {
            message_id: Uuid::from_u128(7),
            message: "and also".into(),
            actor_member_id: None,
        };
        let queued = given(vec![create()]);
        assert_eq!(
            when(&queued, send()).map(|_| ()),
            Err(ErrorCode::AGENT_CONVERSATION_NOT_RUNNING)
        );
        let running = given(vec![create(), start()]);
        let (state, _) = when(&running, send()).unwrap();
        assert_eq!(state.messages.len(), 1);
        assert_eq!(
            when(
                &running,
                ConversationCommand::SendMessage {
                    message_id: Uuid::from_u128(8),
                    message: "   ".into(),
                    actor_member_id: None
                }
            )
            .map(|_| ()),
            Err(ErrorCode::BAD_REQUEST)
        );
    }

    #[test]
    fn chat_turn_pauses_and_can_resume() {
        let state = given(vec![create(), start(), ConversationCommand::Pause]);
        assert!(state.status.is_settled() && !state.status.is_terminal());
        let (state, _) = when(&state, start()).unwrap();
        assert_eq!(state.status, Status::Running);
    }

    #[test]
    fn failure_keeps_the_message() {
        let state = given(vec![create()]);
        let (state, _) = when(
            &state,
            ConversationCommand::Fail {
                error_message: "docker: unreachable".into(),
            },
        )
        .unwrap();
        assert_eq!(state.status, Status::Failed);
        assert_eq!(state.error_message.as_deref(), Some("docker: unreachable"));
    }

    #[test]
    fn unknown_trigger_types_are_refused() {
        let mut bad = origin();
        bad.trigger_type = "automation_message".into();
        assert_eq!(
            when(
                &Conversation::default(),
                ConversationCommand::Create { origin: bad }
            )
            .map(|_| ()),
            Err(ErrorCode::BAD_REQUEST)
        );
    }

    #[test]
    fn chat_sessions() {
        let start = ChatSessionCommand::Start {
            agent_id: Uuid::from_u128(1),
            project_id: Uuid::from_u128(2),
            member_id: None,
            actor_user_id: None,
            first_message: "\n  Plan the sprint\nplease".into(),
        };
        let events = ChatSession::default().decide(start).unwrap();
        assert!(matches!(
            &events[0],
            ChatSessionEvent::Started { title, .. } if title == "Plan the sprint"
        ));
        let post = ChatSessionCommand::Post {
            message_id: Uuid::from_u128(3),
            message: "hi".into(),
            conversation_id: Uuid::from_u128(4),
            actor_member_id: None,
        };
        assert_eq!(
            ChatSession::default().decide(post).unwrap_err().code,
            ErrorCode::AGENT_CHAT_SESSION_NOT_FOUND
        );
    }
}
