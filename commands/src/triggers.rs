//! The agent-trigger subscription: one checkpointed consumer of the log
//! that turns task events into conversations (seed page 06):
//!
//! - a task gains an agent member as assignee -> `task_assigned`;
//! - a task or doc comment mentions an agent member's `@handle` ->
//!   `comment_mention` with the comment's text (and `task_id` or `doc_id`).
//!
//! (Chat messages and write-with-ai create their conversations in the
//! request's own transaction, see `conversations.rs`.)
//!
//! Each trigger is its own transaction: the conversation's creation plus
//! its outbox row. The conversation id is derived from the source event and
//! the agent, so a replayed batch (at-least-once delivery, a restart, a
//! rebuild) finds the conversation and writes nothing: exactly one
//! conversation and one stream entry per source event and agent.
//!
//! Uses: `conversations::create_conversation_in` and `notifications`
//! (`assigned`, `on_event`) from the one log subscription.

use std::collections::BTreeSet;

use domain::DomainEvent;
use domain::agent::{Agent, AgentEvent};
use domain::doc::DocEvent;
use domain::task::{FieldValue, TaskEvent, TaskField};
use eventstore::subscription::{HandlerError, SubscriptionHandler};
use eventstore::{Actor, Metadata, RecordedEvent};
use serde_json::Value;
use uuid::Uuid;

use crate::conversations::derived_conversation_id;
use crate::{CommandResult, Commands};

pub const SUBSCRIPTION: &str = "agent_triggers";

/// The stream types the subscription reads.
pub fn stream_types() -> Vec<String> {
    vec![
        TaskEvent::STREAM_TYPE.to_owned(),
        DocEvent::STREAM_TYPE.to_owned(),
    ]
}

/// Where a mentioning comment is.
#[derive(Debug, Clone, Copy)]
enum CommentOn {
    Task(Uuid),
    Doc(Uuid),
}

pub struct TriggerHandler {
    commands: Commands,
}

impl TriggerHandler {
    pub fn new(commands: Commands) -> Self {
        Self { commands }
    }
}

/// Plain text of a comment (BlockNote blocks or the legacy `{text}`),
/// mention nodes rendered as `@handle`.
pub fn comment_text(content: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => out.push_str(s),
            Value::Array(items) => {
                for item in items {
                    walk(item, out);
                    if item
                        .get("type")
                        .is_some_and(|t| t != "text" && t != "mention")
                    {
                        out.push('\n');
                    }
                }
            }
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("mention") {
                    let props = map.get("props").unwrap_or(&Value::Null);
                    let handle = ["handle", "username", "label", "name"]
                        .iter()
                        .find_map(|k| props.get(*k).and_then(Value::as_str));
                    if let Some(handle) = handle {
                        out.push('@');
                        out.push_str(handle.trim_start_matches('@'));
                        out.push(' ');
                    }
                    return;
                }
                if let Some(text) = map.get("text") {
                    walk(text, out);
                }
                if let Some(content) = map.get("content") {
                    walk(content, out);
                }
                if let Some(children) = map.get("children") {
                    walk(children, out);
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(content, &mut out);
    out.trim().to_owned()
}

/// The `@handle`s in a text, lowercased: `@` at the start or after a
/// character that cannot be part of an e-mail local part, then the handle
/// characters.
pub fn mentions(text: &str) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = BTreeSet::new();
    for (i, c) in chars.iter().enumerate() {
        if *c != '@' {
            continue;
        }
        if i > 0
            && (chars[i - 1].is_alphanumeric() || matches!(chars[i - 1], '.' | '_' | '-' | '+'))
        {
            continue;
        }
        let handle: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect::<String>()
            .trim_end_matches(['-', '_'])
            .to_lowercase();
        // Handles start with a letter or digit (`@-x` mentions nobody).
        if handle
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            out.insert(handle);
        }
    }
    out
}

/// Metadata of what a subscription appends because of `source`: the
/// system acts, in the source's correlation, caused by it.
pub(crate) fn caused_by(source: &RecordedEvent) -> Metadata {
    let mut meta = Metadata::system("system");
    meta.causation_id = Some(source.event_id);
    meta.correlation_id = source
        .metadata
        .get("correlation_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    meta
}

/// Who acted in a log event (the subscriptions' view of its metadata).
pub(crate) fn actor_of(event: &RecordedEvent) -> Actor {
    serde_json::from_value(event.metadata.get("actor").cloned().unwrap_or(Value::Null))
        .unwrap_or_default()
}

impl TriggerHandler {
    async fn on_event(&self, event: &RecordedEvent) -> CommandResult<()> {
        let Some(project_id) = event.project_id else {
            return Ok(());
        };
        if event.stream_type == DocEvent::STREAM_TYPE {
            if let Ok(DocEvent::CommentAdded {
                comment_id,
                content,
                ..
            }) = DocEvent::from_stored(&event.event_type, &event.payload)
            {
                let on = CommentOn::Doc(event.stream_id);
                return self
                    .commented(event, project_id, on, comment_id, &content)
                    .await;
            }
            return Ok(());
        }
        let Ok(task_event) = TaskEvent::from_stored(&event.event_type, &event.payload) else {
            return Ok(());
        };
        match task_event {
            TaskEvent::Created { fields, .. } => {
                self.assigned(event, project_id, &fields.assignee_ids).await
            }
            TaskEvent::Updated { changes } => {
                for change in changes.iter().filter(|c| c.field == TaskField::Assignee) {
                    let (Ok(FieldValue::Ids(old)), Ok(FieldValue::Ids(new))) =
                        (change.old_value(), change.new_value())
                    else {
                        continue;
                    };
                    let old: BTreeSet<Uuid> = old.into_iter().collect();
                    let added: Vec<Uuid> = new.into_iter().filter(|id| !old.contains(id)).collect();
                    self.assigned(event, project_id, &added).await?;
                }
                Ok(())
            }
            TaskEvent::CommentAdded {
                comment_id,
                content,
                ..
            } => {
                let on = CommentOn::Task(event.stream_id);
                self.commented(event, project_id, on, comment_id, &content)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// The project's live agent members: (member id, agent id, agent).
    async fn agent_members(&self, project_id: Uuid) -> CommandResult<Vec<(Uuid, Uuid, Agent)>> {
        let project = {
            let mut conn = self.commands.store.pool().acquire().await?;
            self.commands.project_state(&mut conn, project_id).await?
        };
        let mut out = Vec::new();
        for (member_id, member) in &project.members {
            let Some(agent_id) = member.agent_id else {
                continue;
            };
            let agent = self
                .commands
                .load_typed::<AgentEvent, Agent>(agent_id, Agent::evolve)
                .await?
                .state;
            if agent.is_live() {
                out.push((*member_id, agent_id, agent));
            }
        }
        Ok(out)
    }

    /// The member who acted (for `actor_member_id`).
    async fn actor_member(&self, project_id: Uuid, actor: &Actor) -> CommandResult<Option<Uuid>> {
        let meta = Metadata {
            actor: actor.clone(),
            ..Metadata::default()
        };
        self.commands.actor_member(project_id, &meta).await
    }

    async fn assigned(
        &self,
        event: &RecordedEvent,
        project_id: Uuid,
        assignees: &[Uuid],
    ) -> CommandResult<()> {
        if assignees.is_empty() {
            return Ok(());
        }
        let agents = self.agent_members(project_id).await?;
        let actor = actor_of(event);
        for (member_id, agent_id, agent) in agents {
            if !assignees.contains(&member_id) || actor.agent_id == Some(agent_id) {
                continue;
            }
            let mut origin =
                Commands::origin_for(&agent, agent_id, "task_assigned", &Metadata::default());
            origin.task_id = Some(event.stream_id);
            origin.actor_user_id = actor.user_id;
            origin.triggered_by_member_id = self.actor_member(project_id, &actor).await?;
            origin.source_event_id = Some(event.event_id);
            self.trigger(event, agent_id, origin).await?;
        }
        Ok(())
    }

    async fn commented(
        &self,
        event: &RecordedEvent,
        project_id: Uuid,
        on: CommentOn,
        comment_id: Uuid,
        content: &Value,
    ) -> CommandResult<()> {
        let text = comment_text(content);
        let handles = mentions(&text);
        if handles.is_empty() {
            return Ok(());
        }
        let agents = self.agent_members(project_id).await?;
        let actor = actor_of(event);
        for (_, agent_id, agent) in agents {
            if !handles.contains(&agent.handle) || actor.agent_id == Some(agent_id) {
                continue;
            }
            let mut origin =
                Commands::origin_for(&agent, agent_id, "comment_mention", &Metadata::default());
            match on {
                CommentOn::Task(task_id) => origin.task_id = Some(task_id),
                CommentOn::Doc(doc_id) => origin.doc_id = Some(doc_id),
            }
            origin.comment_id = Some(comment_id);
            origin.message = Some(text.clone());
            origin.actor_user_id = actor.user_id;
            origin.triggered_by_member_id = self.actor_member(project_id, &actor).await?;
            origin.source_event_id = Some(event.event_id);
            self.trigger(event, agent_id, origin).await?;
        }
        Ok(())
    }

    async fn trigger(
        &self,
        source: &RecordedEvent,
        agent_id: Uuid,
        origin: domain::conversation::Origin,
    ) -> CommandResult<()> {
        let conversation_id = derived_conversation_id(source.event_id, agent_id);
        let meta = caused_by(source);
        let commands = &self.commands;
        let created = transact!(commands, tx => async {
            commands.create_conversation_in(tx, &meta, conversation_id, origin.clone()).await
        }
        .await)?;
        if created {
            tracing::info!(%conversation_id, %agent_id, trigger = %origin.trigger_type, "agent conversation queued");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SubscriptionHandler for TriggerHandler {
    /// Queues conversations (Valkey or in-process); no transaction needed.
    fn transactional(&self) -> bool {
        false
    }

    async fn handle(
        &self,
        _tx: &mut sqlx::PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            self.on_event(event)
                .await
                .map_err(|e| Box::new(e) as HandlerError)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mentions_are_found_in_text_and_blocks() {
        assert_eq!(
            mentions("hey @Dev-Bot, and @qa_bot. mail a@b.com @-x"),
            BTreeSet::from(["dev-bot".to_owned(), "qa_bot".to_owned()])
        );
        let blocks = json!([
            {"type": "paragraph", "content": [
                {"type": "text", "text": "please "},
                {"type": "mention", "props": {"handle": "dev-bot"}},
                {"type": "text", "text": "look"}
            ]},
            {"type": "paragraph", "content": [{"type": "text", "text": "cc @planner"}]}
        ]);
        let text = comment_text(&blocks);
        assert_eq!(
            mentions(&text),
            BTreeSet::from(["dev-bot".to_owned(), "planner".to_owned()])
        );
        assert_eq!(comment_text(&json!({"text": "hi @bot"})), "hi @bot");
    }
}
