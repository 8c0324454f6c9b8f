//! Conversation and chat commands, and the trigger outbox.
//!
//! Every trigger appends the conversation's creation (`queued`) and, in the
//! same transaction, an `agent_outbox` row holding the stream message for
//! `paca:agent:triggers`; a relay moves outbox rows to Valkey. Conversation
//! ids of log-derived triggers are derived from the source event and the
//! agent (uuid v5), so replaying the trigger subscription finds the
//! conversation already there and adds neither a conversation nor an
//! outbox row.
//!
//! The runner's writes (status changes, agent events) go through the same
//! handlers below; it links this crate (docs/agents.md).
//!
//! Uses: `agents::agent_state`, `tasks::task_project` and the directory.

use domain::ErrorCode;
use domain::agent::{Agent, AgentEvent};
use domain::conversation::{
    AgentServerEvent, ChatSession, ChatSessionCommand, ChatSessionEvent, Conversation,
    ConversationCommand, ConversationEvent, Origin, Status,
};
use eventstore::{AppendTx, Metadata};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{CommandError, CommandResult, Commands};

pub const TRIGGERS_STREAM: &str = "paca:agent:triggers";
pub const EVENTS_STREAM: &str = "paca:agent:events";
pub const WORKER_GROUP: &str = "ai-agent-workers";

/// Namespace of derived conversation ids.
const CONVERSATION_NS: Uuid = Uuid::from_u128(0x6f1c_2b1e_8d4a_4c55_9a57_0b7e_3c1d_a9e2);

/// The conversation a log event triggers for an agent: the same id however
/// often the event is replayed.
pub fn derived_conversation_id(source_event_id: Uuid, agent_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &CONVERSATION_NS,
        format!("{source_event_id}:{agent_id}").as_bytes(),
    )
}

/// The log event id of an agent-server event in a conversation: derived
/// from the agent-server's own id, so a re-delivery is recognised by the
/// log itself too.
pub fn agent_event_id(conversation_id: Uuid, sdk_event_id: &str) -> Uuid {
    Uuid::new_v5(&conversation_id, sdk_event_id.as_bytes())
}

/// The flat stream fields of a trigger (seed page 06, AGENT-SERVER.md §2):
/// absent optional fields are left out, `repo_plugin_ids` is always there
/// (comma list; empty while no repository plugin is installed).
pub fn trigger_fields(conversation_id: Uuid, origin: &Origin) -> Vec<(String, String)> {
    let mut fields = vec![
        ("type".to_owned(), format!("agent.{}", origin.trigger_type)),
        ("trigger_type".to_owned(), origin.trigger_type.clone()),
        ("conversation_id".to_owned(), conversation_id.to_string()),
        ("agent_id".to_owned(), origin.agent_id.to_string()),
        ("project_id".to_owned(), origin.project_id.to_string()),
    ];
    let optional = [
        ("task_id", origin.task_id.map(|v| v.to_string())),
        // Beyond the seed's fields: which document a doc comment is on.
        ("doc_id", origin.doc_id.map(|v| v.to_string())),
        ("comment_id", origin.comment_id.map(|v| v.to_string())),
        (
            "chat_session_id",
            origin.chat_session_id.map(|v| v.to_string()),
        ),
        ("message", origin.message.clone()),
        (
            "actor_member_id",
            origin.triggered_by_member_id.map(|v| v.to_string()),
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.push((name.to_owned(), value));
        }
    }
    fields.push(("repo_plugin_ids".to_owned(), String::new()));
    fields
}

fn fields_json(fields: &[(String, String)]) -> Value {
    Value::Array(fields.iter().map(|(k, v)| json!([k, v])).collect())
}

/// Adds a message for Valkey to the outbox, inside the caller's
/// transaction. `id` is the message's dedup key.
pub async fn enqueue(
    tx: &mut AppendTx,
    id: Uuid,
    stream: &str,
    fields: &[(String, String)],
) -> CommandResult<()> {
    sqlx::query(
        "INSERT INTO agent_outbox (id, stream, fields) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(stream)
    .bind(fields_json(fields))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// What the runner needs to start a conversation.
pub struct RunSpec {
    pub conversation: Conversation,
    pub agent: Agent,
}

impl Commands {
    /// Appends a conversation's creation and its trigger message in the
    /// caller's transaction. Returns false when the conversation existed
    /// already (a replayed trigger): then nothing is written.
    pub async fn create_conversation_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        conversation_id: Uuid,
        origin: Origin,
    ) -> CommandResult<bool> {
        let mut created = false;
        let project_id = origin.project_id;
        let command = ConversationCommand::Create {
            origin: origin.clone(),
        };
        let mut decide = |c: &Conversation| {
            let events = c.decide(command.clone())?;
            created = !events.is_empty();
            Ok((events, vec![]))
        };
        self.execute_in(
            tx,
            conversation_id,
            Some(project_id),
            Conversation::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        if created {
            enqueue(
                tx,
                conversation_id,
                TRIGGERS_STREAM,
                &trigger_fields(conversation_id, &origin),
            )
            .await?;
        }
        Ok(created)
    }

    /// A live agent of the project, with its member id, for a trigger.
    async fn trigger_agent(&self, project_id: Uuid, agent_id: Uuid) -> CommandResult<Agent> {
        self.agent_state(project_id, agent_id).await
    }

    pub fn origin_for(
        agent: &Agent,
        agent_id: Uuid,
        trigger_type: &str,
        meta: &Metadata,
    ) -> Origin {
        Origin {
            agent_id,
            project_id: agent.project_id,
            trigger_type: trigger_type.into(),
            actor_user_id: meta.actor.user_id,
            triggered_by_member_id: meta.actor.member_id,
            agent_name: agent
                .settings
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            agent_handle: agent.handle.clone(),
            ..Origin::default()
        }
    }

    /// `POST …/tasks/:taskId/write-with-ai {agent_id}`: a queued
    /// `description_write` conversation and its trigger, in one
    /// transaction.
    pub async fn write_with_ai(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        agent_id: Uuid,
    ) -> CommandResult<Uuid> {
        let task = self
            .load_typed::<domain::task::TaskEvent, domain::task::Task>(
                task_id,
                domain::task::Task::evolve,
            )
            .await?
            .state;
        if !task.exists || task.deleted || self.task_project(task_id).await? != Some(project_id) {
            return Err(CommandError::domain(
                ErrorCode::TASK_NOT_FOUND,
                "task not found",
            ));
        }
        let agent = self.trigger_agent(project_id, agent_id).await?;
        let mut origin = Self::origin_for(&agent, agent_id, "description_write", meta);
        origin.task_id = Some(task_id);
        origin.triggered_by_member_id = self.actor_member(project_id, meta).await?;
        origin.message = Some(format!(
            "Write a clear, complete description for task #{} \"{}\".",
            task.task_number, task.fields.title
        ));
        let conversation_id = Uuid::now_v7();
        transact!(self, tx => async {
            self.create_conversation_in(tx, meta, conversation_id, origin.clone()).await
        }
        .await)?;
        Ok(conversation_id)
    }

    /// The project member acting in `meta` (the agent's member for agent
    /// actors, else the user's membership).
    pub async fn actor_member(
        &self,
        project_id: Uuid,
        meta: &Metadata,
    ) -> CommandResult<Option<Uuid>> {
        if let Some(member) = meta.actor.member_id {
            return Ok(Some(member));
        }
        let Some(user_id) = meta.actor.user_id else {
            return Ok(None);
        };
        let mut conn = self.store.pool().acquire().await?;
        let project = self.project_state(&mut conn, project_id).await?;
        Ok(project.member_by_user(user_id).map(|(id, _)| id))
    }

    /// Starts a chat session with its first message; the message starts
    /// a conversation linked to the session. Returns (session, conversation).
    pub async fn start_chat(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        message: String,
    ) -> CommandResult<(Uuid, Uuid)> {
        let agent = self.trigger_agent(project_id, agent_id).await?;
        let member = self.actor_member(project_id, meta).await?;
        let session_id = Uuid::now_v7();
        let conversation_id = Uuid::now_v7();
        let message_id = Uuid::now_v7();
        transact!(self, tx => async {
            let start = ChatSessionCommand::Start {
                agent_id,
                project_id,
                member_id: member,
                actor_user_id: meta.actor.user_id,
                first_message: message.clone(),
            };
            let post = ChatSessionCommand::Post {
                message_id,
                message: message.clone(),
                conversation_id,
                actor_member_id: member,
            };
            let mut decide = |s: &ChatSession| {
                let mut events = s.decide(start.clone())?;
                let next = events.iter().fold(s.clone(), ChatSession::evolve);
                events.extend(next.decide(post.clone())?);
                Ok((events, vec![]))
            };
            self.execute_in(tx, session_id, Some(project_id), ChatSession::evolve, meta, &mut decide, None)
                .await?;
            let mut origin = Self::origin_for(&agent, agent_id, "chat_message", meta);
            origin.chat_session_id = Some(session_id);
            origin.message = Some(message.clone());
            origin.triggered_by_member_id = member;
            self.create_conversation_in(tx, meta, conversation_id, origin).await?;
            Ok((session_id, conversation_id))
        }
        .await)
    }

    /// A follow-up message in a chat session: a new conversation.
    pub async fn post_chat_message(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        session_id: Uuid,
        message: String,
    ) -> CommandResult<Uuid> {
        let session = self
            .load_typed::<ChatSessionEvent, ChatSession>(session_id, ChatSession::evolve)
            .await?
            .state;
        if !session.exists || session.project_id != project_id || session.agent_id != agent_id {
            return Err(CommandError::domain(
                ErrorCode::AGENT_CHAT_SESSION_NOT_FOUND,
                "chat session not found",
            ));
        }
        let agent = self.trigger_agent(project_id, agent_id).await?;
        let member = self.actor_member(project_id, meta).await?;
        let conversation_id = Uuid::now_v7();
        let message_id = Uuid::now_v7();
        transact!(self, tx => async {
            let post = ChatSessionCommand::Post {
                message_id,
                message: message.clone(),
                conversation_id,
                actor_member_id: member,
            };
            let mut decide = |s: &ChatSession| Ok((s.decide(post.clone())?, vec![]));
            self.execute_in(tx, session_id, Some(project_id), ChatSession::evolve, meta, &mut decide, None)
                .await?;
            let mut origin = Self::origin_for(&agent, agent_id, "chat_message", meta);
            origin.chat_session_id = Some(session_id);
            origin.message = Some(message.clone());
            origin.triggered_by_member_id = member;
            self.create_conversation_in(tx, meta, conversation_id, origin).await?;
            Ok(conversation_id)
        }
        .await)
    }

    pub async fn conversation_state(&self, conversation_id: Uuid) -> CommandResult<Conversation> {
        Ok(self
            .load_typed::<ConversationEvent, Conversation>(conversation_id, Conversation::evolve)
            .await?
            .state)
    }

    async fn conversation_of(
        &self,
        project_id: Uuid,
        conversation_id: Uuid,
    ) -> CommandResult<Conversation> {
        let conversation = self.conversation_state(conversation_id).await?;
        if !conversation.exists || conversation.origin.project_id != project_id {
            return Err(CommandError::domain(
                ErrorCode::AGENT_CONVERSATION_NOT_FOUND,
                "conversation not found",
            ));
        }
        Ok(conversation)
    }

    /// Runs one conversation command in its own transaction; returns the
    /// state after it.
    pub async fn conversation_command(
        &self,
        meta: &Metadata,
        conversation_id: Uuid,
        command: ConversationCommand,
    ) -> CommandResult<Conversation> {
        let conversation = self.conversation_state(conversation_id).await?;
        if !conversation.exists {
            return Err(CommandError::domain(
                ErrorCode::AGENT_CONVERSATION_NOT_FOUND,
                "conversation not found",
            ));
        }
        let project_id = conversation.origin.project_id;
        let (state, _) = self
            .execute(
                conversation_id,
                Some(project_id),
                Conversation::evolve,
                meta,
                |c: &Conversation| Ok((c.decide(command.clone())?, vec![])),
            )
            .await?;
        Ok(state)
    }

    /// `POST …/conversations/:id/stop`: `stopped` and an `agent.stop`
    /// control message, in one transaction (409 when already terminal).
    pub async fn stop_conversation(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        conversation_id: Uuid,
    ) -> CommandResult<()> {
        self.conversation_of(project_id, conversation_id).await?;
        transact!(self, tx => async {
            let mut stop_event = None;
            let mut decide = |c: &Conversation| {
                let events = c.decide(ConversationCommand::Stop)?;
                stop_event = Some(());
                Ok((events, vec![]))
            };
            self.execute_in(tx, conversation_id, Some(project_id), Conversation::evolve, meta, &mut decide, None)
                .await?;
            if stop_event.is_some() {
                let fields = vec![
                    ("type".to_owned(), "agent.stop".to_owned()),
                    ("conversation_id".to_owned(), conversation_id.to_string()),
                    ("project_id".to_owned(), project_id.to_string()),
                ];
                // One stop message per conversation (stop is refused once terminal).
                let id = Uuid::new_v5(&conversation_id, b"agent.stop");
                enqueue(tx, id, TRIGGERS_STREAM, &fields).await?;
            }
            Ok(())
        }
        .await)
    }

    /// `POST …/conversations/:id/messages`: recorded in the conversation;
    /// the runner delivers it to the agent-server (409 unless running).
    pub async fn send_conversation_message(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        conversation_id: Uuid,
        message: String,
    ) -> CommandResult<Uuid> {
        self.conversation_of(project_id, conversation_id).await?;
        let message_id = Uuid::now_v7();
        let actor_member_id = self.actor_member(project_id, meta).await?;
        self.conversation_command(
            meta,
            conversation_id,
            ConversationCommand::SendMessage {
                message_id,
                message,
                actor_member_id,
            },
        )
        .await?;
        Ok(message_id)
    }

    /// The runner's report of agent-server events: deduplicated by their
    /// agent-server id, numbered densely, appended with derived event ids.
    /// Returns the events newly recorded (with their `event_index`).
    pub async fn record_agent_events(
        &self,
        meta: &Metadata,
        conversation_id: Uuid,
        events: Vec<AgentServerEvent>,
    ) -> CommandResult<Vec<(i64, AgentServerEvent)>> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        let conversation = self.conversation_state(conversation_id).await?;
        if !conversation.exists {
            return Err(CommandError::domain(
                ErrorCode::AGENT_CONVERSATION_NOT_FOUND,
                "conversation not found",
            ));
        }
        let project_id = conversation.origin.project_id;
        transact!(self, tx => async {
            tx.lock_streams(&[conversation_id], eventstore::LockMode::Exclusive)
                .await?;
            let loaded = self
                .load_in::<ConversationEvent, Conversation>(
                    tx.conn(),
                    conversation_id,
                    Conversation::evolve,
                )
                .await?;
            let new_events = loaded.state.decide(ConversationCommand::RecordEvents {
                events: events.clone(),
            })?;
            if new_events.is_empty() {
                return Ok(vec![]);
            }
            use domain::DomainEvent;
            // The runner's event id becomes the log's event id, so a
            // re-delivered event is stored once (idempotent append).
            let batch: Vec<eventstore::NewEvent> = new_events
                .iter()
                .map(|e| {
                    let mut new =
                        crate::new_event(e, meta);
                    if let ConversationEvent::AgentEvent { event, .. } = e {
                        new.event_id = agent_event_id(conversation_id, &event.sdk_event_id);
                    }
                    new
                })
                .collect();
            tx.append(
                eventstore::StreamRef {
                    stream_type: ConversationEvent::STREAM_TYPE,
                    stream_id: conversation_id,
                    project_id: Some(project_id),
                },
                eventstore::ExpectedVersion::Exact(loaded.version),
                batch,
            )
            .await?;
            Ok(new_events
                .into_iter()
                .filter_map(|e| match e {
                    ConversationEvent::AgentEvent { event_index, event } => {
                        Some((event_index, event))
                    }
                    _ => None,
                })
                .collect())
        }
        .await)
    }

    /// Everything the runner needs to run a conversation: the
    /// conversation and its agent (whatever the agent's state now).
    pub async fn run_spec(&self, conversation_id: Uuid) -> CommandResult<RunSpec> {
        let conversation = self.conversation_state(conversation_id).await?;
        if !conversation.exists {
            return Err(CommandError::domain(
                ErrorCode::AGENT_CONVERSATION_NOT_FOUND,
                "conversation not found",
            ));
        }
        let agent = self
            .load_typed::<AgentEvent, Agent>(conversation.origin.agent_id, Agent::evolve)
            .await?
            .state;
        Ok(RunSpec {
            conversation,
            agent,
        })
    }

    /// Whether a conversation no longer needs a runner.
    pub async fn conversation_settled(
        &self,
        conversation_id: Uuid,
    ) -> CommandResult<Option<Status>> {
        let c = self.conversation_state(conversation_id).await?;
        Ok(c.exists.then_some(c.status))
    }
}
