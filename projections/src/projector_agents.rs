//! Agent, conversation and chat-session events -> `agents`,
//! `agent_mcp_servers`, `agent_skills`, `agent_conversations`,
//! `agent_conversation_events`, `agent_chat_sessions`, and the
//! `agent.session.started` entry on a task's activity feed.

use domain::agent::{AgentEvent, AgentField};
use domain::change::Field;
use domain::conversation::{ChatSessionEvent, ConversationEvent};
use eventstore::RecordedEvent;
use serde_json::{Map, Value, json};

use crate::columns::changes_update;
use crate::stmt::Stmt;

pub fn agent(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: AgentEvent) {
    let at = e.recorded_at;
    let agent_id = e.stream_id;
    match event {
        AgentEvent::Created {
            project_id,
            member_id,
            handle,
            settings,
            has_llm_api_key,
            created_by,
            ..
        } => stmts.push(
            Stmt::new(
                "INSERT INTO agents (id, project_id, member_id, handle, name, settings,
                                     has_llm_api_key, created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .arg(agent_id)
            .arg(project_id)
            .arg(member_id)
            .arg(handle)
            .arg(settings.name.clone())
            .arg(Value::Object(domain::agent::settings_json(&settings)))
            .arg(has_llm_api_key)
            .arg(created_by)
            .arg(at),
        ),
        AgentEvent::Updated { changes } => {
            let patch: Map<String, Value> = changes
                .iter()
                .filter(|c| c.field != AgentField::Handle)
                .map(|c| (c.field.as_str().to_owned(), c.new.clone()))
                .collect();
            let name = changes
                .iter()
                .find(|c| c.field == AgentField::Name)
                .and_then(|c| c.new.as_str().map(str::to_owned));
            let handle = changes
                .iter()
                .find(|c| c.field == AgentField::Handle)
                .and_then(|c| c.new.as_str().map(str::to_owned));
            stmts.push(
                Stmt::new(
                    "UPDATE agents SET settings = settings || $2, name = COALESCE($3, name),
                            handle = COALESCE($4, handle), updated_at = $5 WHERE id = $1",
                )
                .arg(agent_id)
                .arg(Value::Object(patch))
                .arg(name)
                .arg(handle)
                .arg(at),
            );
        }
        AgentEvent::LlmKeyChanged { has_llm_api_key } => stmts.push(
            Stmt::new("UPDATE agents SET has_llm_api_key = $2, updated_at = $3 WHERE id = $1")
                .arg(agent_id)
                .arg(has_llm_api_key)
                .arg(at),
        ),
        AgentEvent::Deleted { .. } => stmts.push(
            Stmt::new("UPDATE agents SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                .arg(agent_id)
                .arg(at),
        ),
        AgentEvent::McpServerAdded { server_id, server } => stmts.push(
            Stmt::new(
                "INSERT INTO agent_mcp_servers (id, agent_id, server_name, transport, command, args,
                                                url, env, is_enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            )
            .arg(server_id)
            .arg(agent_id)
            .arg(server.server_name)
            .arg(server.transport)
            .arg(server.command)
            .arg(json!(server.args))
            .arg(server.url)
            .arg(json!(server.env))
            .arg(server.is_enabled)
            .arg(at),
        ),
        AgentEvent::McpServerUpdated { server_id, changes } => {
            stmts.extend(changes_update("agent_mcp_servers", server_id, at, &changes))
        }
        AgentEvent::McpServerRemoved { server_id, .. } => stmts
            .push(Stmt::new("DELETE FROM agent_mcp_servers WHERE id = $1").arg(server_id)),
        AgentEvent::SkillAdded { skill_id, skill } => stmts.push(
            Stmt::new(
                "INSERT INTO agent_skills (id, agent_id, skill_name, skill_source, skill_content,
                                           source_url, triggers, is_enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .arg(skill_id)
            .arg(agent_id)
            .arg(skill.skill_name)
            .arg(skill.skill_source)
            .arg(skill.skill_content)
            .arg(skill.source_url)
            .arg(json!(skill.triggers))
            .arg(skill.is_enabled)
            .arg(at),
        ),
        AgentEvent::SkillUpdated { skill_id, changes } => {
            stmts.extend(changes_update("agent_skills", skill_id, at, &changes))
        }
        AgentEvent::SkillRemoved { skill_id, .. } => {
            stmts.push(Stmt::new("DELETE FROM agent_skills WHERE id = $1").arg(skill_id))
        }
    }
}

fn status(stmts: &mut Vec<Stmt>, e: &RecordedEvent, status: &str, finished: bool) {
    let sql = if finished {
        "UPDATE agent_conversations SET status = $2, finished_at = $3, updated_at = $3 WHERE id = $1"
    } else {
        "UPDATE agent_conversations SET status = $2, updated_at = $3 WHERE id = $1"
    };
    stmts.push(
        Stmt::new(sql)
            .arg(e.stream_id)
            .arg(status.to_owned())
            .arg(e.recorded_at),
    );
}

pub fn conversation(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: ConversationEvent) {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        ConversationEvent::Created { origin } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO agent_conversations (id, project_id, agent_id, trigger_type, task_id,
                         comment_id, chat_session_id, triggered_by_member_id, actor_user_id, message,
                         status, error_message, event_count, agent_name, agent_handle, started_at,
                         finished_at, created_at, updated_at, doc_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', NULL, 0, $11, $12,
                             NULL, NULL, $13, $13, $14)",
                )
                .arg(id)
                .arg(origin.project_id)
                .arg(origin.agent_id)
                .arg(origin.trigger_type.clone())
                .arg(origin.task_id)
                .arg(origin.comment_id)
                .arg(origin.chat_session_id)
                .arg(origin.triggered_by_member_id)
                .arg(origin.actor_user_id)
                .arg(origin.message.clone())
                .arg(origin.agent_name.clone())
                .arg(origin.agent_handle.clone())
                .arg(at)
                .arg(origin.doc_id),
            );
            // Task-timeline triggers show on the task (seed page 16): the
            // agent is the actor of its own session.
            if let Some(task_id) = origin.task_id {
                stmts.push(
                    Stmt::new(
                        "INSERT INTO task_activities (id, task_id, project_id, actor_user_id,
                             activity_type, content, event_id, version, created_at, updated_at,
                             actor_agent_id)
                         VALUES ($1, $2, $3, NULL, 'agent.session.started', $4, $5, $6, $7, $7, $8)",
                    )
                    .arg(id)
                    .arg(task_id)
                    .arg(origin.project_id)
                    .arg(json!({
                        "conversation_id": id,
                        "agent_id": origin.agent_id,
                        "trigger_type": origin.trigger_type,
                    }))
                    .arg(e.event_id)
                    .arg(e.version)
                    .arg(at)
                    .arg(origin.agent_id),
                );
            }
        }
        ConversationEvent::Started { .. } => stmts.push(
            Stmt::new(
                "UPDATE agent_conversations SET status = 'running',
                        started_at = COALESCE(started_at, $2), updated_at = $2 WHERE id = $1",
            )
            .arg(id)
            .arg(at),
        ),
        ConversationEvent::AgentEvent { event_index, event } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO agent_conversation_events (id, conversation_id, event_index,
                         sdk_event_id, event_type, event_source, payload, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .arg(e.event_id)
                .arg(id)
                .arg(event_index)
                .arg(event.sdk_event_id)
                .arg(event.event_type)
                .arg(event.event_source)
                .arg(event.payload)
                .arg(at),
            );
            stmts.push(
                Stmt::new(
                    "UPDATE agent_conversations SET event_count = GREATEST(event_count, $2),
                            updated_at = $3 WHERE id = $1",
                )
                .arg(id)
                .arg(event_index + 1)
                .arg(at),
            );
        }
        ConversationEvent::MessageSent { .. } => stmts.push(
            Stmt::new("UPDATE agent_conversations SET updated_at = $2 WHERE id = $1")
                .arg(id)
                .arg(at),
        ),
        ConversationEvent::Paused {} => status(stmts, e, "paused", false),
        ConversationEvent::Finished {} => status(stmts, e, "finished", true),
        ConversationEvent::Stopped { .. } => status(stmts, e, "stopped", true),
        ConversationEvent::Failed { error_message } => stmts.push(
            Stmt::new(
                "UPDATE agent_conversations SET status = 'failed', error_message = $2,
                        finished_at = $3, updated_at = $3 WHERE id = $1",
            )
            .arg(id)
            .arg(error_message)
            .arg(at),
        ),
    }
}

pub fn chat_session(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: ChatSessionEvent) {
    let at = e.recorded_at;
    match event {
        ChatSessionEvent::Started {
            agent_id,
            project_id,
            member_id,
            actor_user_id,
            title,
        } => stmts.push(
            Stmt::new(
                "INSERT INTO agent_chat_sessions (id, project_id, agent_id, member_id, actor_user_id,
                                                  title, last_message_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
            )
            .arg(e.stream_id)
            .arg(project_id)
            .arg(agent_id)
            .arg(member_id)
            .arg(actor_user_id)
            .arg(title)
            .arg(at),
        ),
        ChatSessionEvent::MessagePosted { .. } => stmts.push(
            Stmt::new("UPDATE agent_chat_sessions SET last_message_at = $2 WHERE id = $1")
                .arg(e.stream_id)
                .arg(at),
        ),
    }
}
