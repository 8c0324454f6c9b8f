//! Agent, conversation and chat-session queries (CONTRACT-NOTES §14-15).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::queries_tasks::Cursor;

#[derive(Debug, Clone, Serialize)]
pub struct McpServerView {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub server_name: String,
    pub transport: String,
    pub command: Option<String>,
    pub args: Value,
    pub url: Option<String>,
    pub env: Value,
    pub is_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkillView {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub skill_name: String,
    pub skill_source: String,
    pub skill_content: String,
    pub source_url: Option<String>,
    pub triggers: Value,
    pub is_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The agent as the API shows it: identity, membership, settings, whether
/// a key is set (never the key).
pub fn agent_json(r: &PgRow) -> Map<String, Value> {
    let mut out = Map::new();
    let id: Uuid = r.get("id");
    out.insert("id".into(), Value::String(id.to_string()));
    let project_id: Uuid = r.get("project_id");
    out.insert("project_id".into(), Value::String(project_id.to_string()));
    out.insert("agent_scope".into(), "project".into());
    let member_id: Uuid = r.get("member_id");
    out.insert("member_id".into(), Value::String(member_id.to_string()));
    let role_id: Option<Uuid> = r.get("project_role_id");
    out.insert(
        "project_role_id".into(),
        role_id.map_or(Value::Null, |v| Value::String(v.to_string())),
    );
    let role_name: Option<String> = r.get("role_name");
    out.insert(
        "role_name".into(),
        role_name.map_or(Value::Null, Value::String),
    );
    out.insert("handle".into(), Value::String(r.get("handle")));
    if let Value::Object(settings) = r.get::<Value, _>("settings") {
        for (k, v) in settings {
            out.insert(k, v);
        }
    }
    out.insert(
        "has_llm_api_key".into(),
        Value::Bool(r.get("has_llm_api_key")),
    );
    let created_by: Option<Uuid> = r.get("created_by");
    out.insert(
        "created_by".into(),
        created_by.map_or(Value::Null, |v| Value::String(v.to_string())),
    );
    let created_at: DateTime<Utc> = r.get("created_at");
    let updated_at: DateTime<Utc> = r.get("updated_at");
    out.insert("created_at".into(), Value::String(created_at.to_rfc3339()));
    out.insert("updated_at".into(), Value::String(updated_at.to_rfc3339()));
    out
}

const AGENT_SELECT: &str = "SELECT a.id, a.project_id, a.member_id, a.handle, a.settings,
        a.has_llm_api_key, a.created_by, a.created_at, a.updated_at,
        m.project_role_id, r.role_name
     FROM agents a
     LEFT JOIN project_members m ON m.id = a.member_id
     LEFT JOIN project_roles r ON r.id = m.project_role_id";

pub async fn agents(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    let sql = format!(
        "{AGENT_SELECT} WHERE a.project_id = $1 AND a.deleted_at IS NULL ORDER BY a.created_at, a.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(agent_json).collect())
}

pub async fn agent(
    pool: &PgPool,
    project_id: Uuid,
    agent_id: Uuid,
) -> Result<Option<Map<String, Value>>, sqlx::Error> {
    let sql =
        format!("{AGENT_SELECT} WHERE a.project_id = $1 AND a.id = $2 AND a.deleted_at IS NULL");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(agent_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(agent_json))
}

/// A live agent's project, member and handle (for `X-Agent-ID`).
pub struct AgentIdentity {
    pub agent_id: Uuid,
    pub project_id: Uuid,
    pub member_id: Uuid,
    pub handle: String,
    pub name: String,
    pub permissions: Vec<String>,
}

pub async fn agent_identity(
    pool: &PgPool,
    agent_id: Uuid,
) -> Result<Option<AgentIdentity>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT a.id, a.project_id, a.member_id, a.handle, a.name,
                COALESCE(r.permissions, '[]'::jsonb) AS permissions
         FROM agents a
         JOIN project_members m ON m.id = a.member_id
         LEFT JOIN project_roles r ON r.id = m.project_role_id
         JOIN projects p ON p.id = a.project_id AND p.deleted_at IS NULL
         WHERE a.id = $1 AND a.deleted_at IS NULL",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| AgentIdentity {
        agent_id: r.get("id"),
        project_id: r.get("project_id"),
        member_id: r.get("member_id"),
        handle: r.get("handle"),
        name: r.get("name"),
        permissions: match r.get::<Value, _>("permissions") {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::Object(map) => map
                .into_iter()
                .filter(|(_, v)| v.as_bool().unwrap_or(false))
                .map(|(k, _)| k)
                .collect(),
            _ => vec![],
        },
    }))
}

fn mcp_from_row(r: &PgRow) -> McpServerView {
    McpServerView {
        id: r.get("id"),
        agent_id: r.get("agent_id"),
        server_name: r.get("server_name"),
        transport: r.get("transport"),
        command: r.get("command"),
        args: r.get("args"),
        url: r.get("url"),
        env: r.get("env"),
        is_enabled: r.get("is_enabled"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

pub async fn mcp_servers(pool: &PgPool, agent_id: Uuid) -> Result<Vec<McpServerView>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT * FROM agent_mcp_servers WHERE agent_id = $1 ORDER BY created_at, id")
            .bind(agent_id)
            .fetch_all(pool)
            .await?;
    Ok(rows.iter().map(mcp_from_row).collect())
}

pub async fn mcp_server(
    pool: &PgPool,
    agent_id: Uuid,
    server_id: Uuid,
) -> Result<Option<McpServerView>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM agent_mcp_servers WHERE agent_id = $1 AND id = $2")
        .bind(agent_id)
        .bind(server_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(mcp_from_row))
}

fn skill_from_row(r: &PgRow) -> SkillView {
    SkillView {
        id: r.get("id"),
        agent_id: r.get("agent_id"),
        skill_name: r.get("skill_name"),
        skill_source: r.get("skill_source"),
        skill_content: r.get("skill_content"),
        source_url: r.get("source_url"),
        triggers: r.get("triggers"),
        is_enabled: r.get("is_enabled"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

pub async fn skills(pool: &PgPool, agent_id: Uuid) -> Result<Vec<SkillView>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT * FROM agent_skills WHERE agent_id = $1 ORDER BY created_at, id")
            .bind(agent_id)
            .fetch_all(pool)
            .await?;
    Ok(rows.iter().map(skill_from_row).collect())
}

pub async fn skill(
    pool: &PgPool,
    agent_id: Uuid,
    skill_id: Uuid,
) -> Result<Option<SkillView>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM agent_skills WHERE agent_id = $1 AND id = $2")
        .bind(agent_id)
        .bind(skill_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(skill_from_row))
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub agent_id: Uuid,
    pub agent_name: String,
    pub agent_handle: String,
    pub trigger_type: String,
    pub task_id: Option<Uuid>,
    /// The document of a doc-comment mention.
    pub doc_id: Option<Uuid>,
    pub comment_id: Option<Uuid>,
    pub chat_session_id: Option<Uuid>,
    pub triggered_by_member_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub message: Option<String>,
    pub status: String,
    pub error_message: Option<String>,
    pub event_count: i64,
    pub iteration_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn conversation_from_row(r: &PgRow) -> ConversationView {
    ConversationView {
        id: r.get("id"),
        project_id: r.get("project_id"),
        agent_id: r.get("agent_id"),
        agent_name: r.get("agent_name"),
        agent_handle: r.get("agent_handle"),
        trigger_type: r.get("trigger_type"),
        task_id: r.get("task_id"),
        doc_id: r.get("doc_id"),
        comment_id: r.get("comment_id"),
        chat_session_id: r.get("chat_session_id"),
        triggered_by_member_id: r.get("triggered_by_member_id"),
        actor_user_id: r.get("actor_user_id"),
        message: r.get("message"),
        status: r.get("status"),
        error_message: r.get("error_message"),
        event_count: r.get("event_count"),
        iteration_count: 0,
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

#[derive(Debug, Default)]
pub struct ConversationFilter {
    pub agent_ids: Vec<Uuid>,
    pub statuses: Vec<String>,
    pub trigger_types: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub task_id: Option<Uuid>,
    pub chat_session_id: Option<Uuid>,
}

pub struct ConversationPage {
    pub items: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

/// Newest first, keyset on `(created_at, id)` descending.
pub async fn conversations(
    pool: &PgPool,
    project_id: Uuid,
    filter: &ConversationFilter,
    cursor: Option<&Cursor>,
    page_size: i64,
) -> Result<ConversationPage, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT * FROM agent_conversations WHERE project_id = ");
    q.push_bind(project_id);
    if !filter.agent_ids.is_empty() {
        q.push(" AND agent_id = ANY(")
            .push_bind(filter.agent_ids.clone())
            .push(")");
    }
    if !filter.statuses.is_empty() {
        q.push(" AND status = ANY(")
            .push_bind(filter.statuses.clone())
            .push(")");
    }
    if !filter.trigger_types.is_empty() {
        q.push(" AND trigger_type = ANY(")
            .push_bind(filter.trigger_types.clone())
            .push(")");
    }
    if let Some(after) = filter.created_after {
        q.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        q.push(" AND created_at < ").push_bind(before);
    }
    if let Some(task_id) = filter.task_id {
        q.push(" AND task_id = ").push_bind(task_id);
    }
    if let Some(session) = filter.chat_session_id {
        q.push(" AND chat_session_id = ").push_bind(session);
    }
    if let Some(cursor) = cursor {
        let (ca, id) = cursor.parts();
        q.push(" AND (created_at, id) < (")
            .push_bind(ca)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(page_size + 1);
    let rows = q.build().fetch_all(pool).await?;
    let mut items: Vec<ConversationView> = rows.iter().map(conversation_from_row).collect();
    let next_cursor = if items.len() as i64 > page_size {
        items.truncate(page_size as usize);
        items
            .last()
            .map(|c| Cursor::new(c.created_at, c.id).encode())
    } else {
        None
    };
    Ok(ConversationPage { items, next_cursor })
}

pub async fn conversation(
    pool: &PgPool,
    project_id: Uuid,
    conversation_id: Uuid,
) -> Result<Option<ConversationView>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM agent_conversations WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(conversation_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(conversation_from_row))
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationEventView {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub event_index: i64,
    pub event_type: String,
    pub event_source: String,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct ConversationEventPage {
    pub items: Vec<ConversationEventView>,
    pub total: i64,
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
}

pub enum EventCursor {
    /// Events with `event_index > n`, oldest first.
    After(i64),
    /// Events with `event_index < n`, the newest `limit` of them.
    Before(i64),
    /// The newest `limit` events.
    Newest,
}

/// A page of a conversation's events in ascending `event_index`.
/// Cursors are event indexes (as strings): `next_cursor` continues after
/// the page, `prev_cursor` before it (null when the page starts at 0).
pub async fn conversation_events(
    pool: &PgPool,
    conversation_id: Uuid,
    cursor: EventCursor,
    limit: i64,
) -> Result<ConversationEventPage, sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM agent_conversation_events WHERE conversation_id = $1",
    )
    .bind(conversation_id)
    .fetch_one(pool)
    .await?;
    const COLS: &str =
        "id, conversation_id, event_index, event_type, event_source, payload, created_at";
    let rows = match cursor {
        EventCursor::After(n) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLS} FROM agent_conversation_events
                 WHERE conversation_id = $1 AND event_index > $2 ORDER BY event_index LIMIT $3"
            )))
            .bind(conversation_id)
            .bind(n)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        EventCursor::Before(n) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT * FROM (SELECT {COLS} FROM agent_conversation_events
                 WHERE conversation_id = $1 AND event_index < $2
                 ORDER BY event_index DESC LIMIT $3) t ORDER BY event_index"
            )))
            .bind(conversation_id)
            .bind(n)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        EventCursor::Newest => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT * FROM (SELECT {COLS} FROM agent_conversation_events
                 WHERE conversation_id = $1 ORDER BY event_index DESC LIMIT $2) t ORDER BY event_index"
            )))
            .bind(conversation_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    let items: Vec<ConversationEventView> = rows
        .iter()
        .map(|r| ConversationEventView {
            id: r.get("id"),
            conversation_id: r.get("conversation_id"),
            event_index: r.get("event_index"),
            event_type: r.get("event_type"),
            event_source: r.get("event_source"),
            payload: r.get("payload"),
            created_at: r.get("created_at"),
        })
        .collect();
    let first = items.first().map(|e| e.event_index);
    let last = items.last().map(|e| e.event_index);
    let next_cursor = match last {
        Some(last) if last + 1 < total => Some(last.to_string()),
        _ => None,
    };
    let prev_cursor = match first {
        Some(first) if first > 0 => Some(first.to_string()),
        _ => None,
    };
    Ok(ConversationEventPage {
        items,
        total,
        next_cursor,
        prev_cursor,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatSessionView {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub project_id: Uuid,
    pub member_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub title: String,
    pub last_message_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn session_from_row(r: &PgRow) -> ChatSessionView {
    ChatSessionView {
        id: r.get("id"),
        agent_id: r.get("agent_id"),
        project_id: r.get("project_id"),
        member_id: r.get("member_id"),
        actor_user_id: r.get("actor_user_id"),
        title: r.get("title"),
        last_message_at: r.get("last_message_at"),
        created_at: r.get("created_at"),
    }
}

/// A member's chat sessions with an agent (`None`: everyone's).
pub async fn chat_sessions(
    pool: &PgPool,
    agent_id: Uuid,
    actor_user_id: Option<Uuid>,
) -> Result<Vec<ChatSessionView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM agent_chat_sessions WHERE agent_id = $1
           AND ($2::uuid IS NULL OR actor_user_id = $2)
         ORDER BY COALESCE(last_message_at, created_at) DESC, id DESC",
    )
    .bind(agent_id)
    .bind(actor_user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(session_from_row).collect())
}

pub async fn chat_session(
    pool: &PgPool,
    session_id: Uuid,
) -> Result<Option<ChatSessionView>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM agent_chat_sessions WHERE id = $1")
        .bind(session_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(session_from_row))
}
