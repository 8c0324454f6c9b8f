//! Agent, conversation and chat-session queries (CONTRACT-NOTES §14-15).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::queries_tasks::Cursor;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
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

/// A row of [`AGENT_SELECT`].
#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    project_id: Uuid,
    member_id: Uuid,
    handle: String,
    settings: Value,
    has_llm_api_key: bool,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    project_role_id: Option<Uuid>,
    role_name: Option<String>,
}

impl AgentRow {
    /// The agent as the API shows it: identity, membership, settings,
    /// whether a key is set (never the key).
    fn into_json(self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.to_string()));
        out.insert(
            "project_id".into(),
            Value::String(self.project_id.to_string()),
        );
        out.insert("agent_scope".into(), "project".into());
        out.insert(
            "member_id".into(),
            Value::String(self.member_id.to_string()),
        );
        out.insert(
            "project_role_id".into(),
            self.project_role_id
                .map_or(Value::Null, |v| Value::String(v.to_string())),
        );
        out.insert(
            "role_name".into(),
            self.role_name.map_or(Value::Null, Value::String),
        );
        out.insert("handle".into(), Value::String(self.handle));
        if let Value::Object(settings) = self.settings {
            for (k, v) in settings {
                out.insert(k, v);
            }
        }
        out.insert("has_llm_api_key".into(), Value::Bool(self.has_llm_api_key));
        out.insert(
            "created_by".into(),
            self.created_by
                .map_or(Value::Null, |v| Value::String(v.to_string())),
        );
        out.insert(
            "created_at".into(),
            Value::String(self.created_at.to_rfc3339()),
        );
        out.insert(
            "updated_at".into(),
            Value::String(self.updated_at.to_rfc3339()),
        );
        out
    }
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
    let rows = sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(AgentRow::into_json).collect())
}

pub async fn agent(
    pool: &PgPool,
    project_id: Uuid,
    agent_id: Uuid,
) -> Result<Option<Map<String, Value>>, sqlx::Error> {
    let sql =
        format!("{AGENT_SELECT} WHERE a.project_id = $1 AND a.id = $2 AND a.deleted_at IS NULL");
    let row = sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(agent_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(AgentRow::into_json))
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

#[derive(sqlx::FromRow)]
struct AgentIdentityRow {
    id: Uuid,
    project_id: Uuid,
    member_id: Uuid,
    handle: String,
    name: String,
    permissions: Value,
}

impl From<AgentIdentityRow> for AgentIdentity {
    fn from(r: AgentIdentityRow) -> Self {
        AgentIdentity {
            agent_id: r.id,
            project_id: r.project_id,
            member_id: r.member_id,
            handle: r.handle,
            name: r.name,
            permissions: match r.permissions {
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
        }
    }
}

pub async fn agent_identity(
    pool: &PgPool,
    agent_id: Uuid,
) -> Result<Option<AgentIdentity>, sqlx::Error> {
    let row = sqlx::query_as::<_, AgentIdentityRow>(
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
    Ok(row.map(AgentIdentity::from))
}

pub async fn mcp_servers(pool: &PgPool, agent_id: Uuid) -> Result<Vec<McpServerView>, sqlx::Error> {
    sqlx::query_as::<_, McpServerView>(
        "SELECT * FROM agent_mcp_servers WHERE agent_id = $1 ORDER BY created_at, id",
    )
    .bind(agent_id)
    .fetch_all(pool)
    .await
}

pub async fn mcp_server(
    pool: &PgPool,
    agent_id: Uuid,
    server_id: Uuid,
) -> Result<Option<McpServerView>, sqlx::Error> {
    sqlx::query_as::<_, McpServerView>(
        "SELECT * FROM agent_mcp_servers WHERE agent_id = $1 AND id = $2",
    )
    .bind(agent_id)
    .bind(server_id)
    .fetch_optional(pool)
    .await
}

pub async fn skills(pool: &PgPool, agent_id: Uuid) -> Result<Vec<SkillView>, sqlx::Error> {
    sqlx::query_as::<_, SkillView>(
        "SELECT * FROM agent_skills WHERE agent_id = $1 ORDER BY created_at, id",
    )
    .bind(agent_id)
    .fetch_all(pool)
    .await
}

pub async fn skill(
    pool: &PgPool,
    agent_id: Uuid,
    skill_id: Uuid,
) -> Result<Option<SkillView>, sqlx::Error> {
    sqlx::query_as::<_, SkillView>("SELECT * FROM agent_skills WHERE agent_id = $1 AND id = $2")
        .bind(agent_id)
        .bind(skill_id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
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
    /// Not read from the row: always 0 here.
    #[sqlx(skip)]
    pub iteration_count: i64,
    #[sqlx(skip)]
    pub input_tokens: i64,
    #[sqlx(skip)]
    pub output_tokens: i64,
    #[sqlx(skip)]
    pub total_tokens: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
    let mut items: Vec<ConversationView> = q.build_query_as().fetch_all(pool).await?;
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
    sqlx::query_as::<_, ConversationView>(
        "SELECT * FROM agent_conversations WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(conversation_id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ConversationEventView {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub event_index: i64,
    pub event_type: String,
    pub event_source: String,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
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
    let items: Vec<ConversationEventView> = match cursor {
        EventCursor::After(n) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT * FROM (SELECT {COLS} FROM agent_conversation_events
                 WHERE conversation_id = $1 ORDER BY event_index DESC LIMIT $2) t ORDER BY event_index"
            )))
            .bind(conversation_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
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

/// A member's chat sessions with an agent (`None`: everyone's).
pub async fn chat_sessions(
    pool: &PgPool,
    agent_id: Uuid,
    actor_user_id: Option<Uuid>,
) -> Result<Vec<ChatSessionView>, sqlx::Error> {
    sqlx::query_as::<_, ChatSessionView>(
        "SELECT * FROM agent_chat_sessions WHERE agent_id = $1
           AND ($2::uuid IS NULL OR actor_user_id = $2)
         ORDER BY COALESCE(last_message_at, created_at) DESC, id DESC",
    )
    .bind(agent_id)
    .bind(actor_user_id)
    .fetch_all(pool)
    .await
}

pub async fn chat_session(
    pool: &PgPool,
    session_id: Uuid,
) -> Result<Option<ChatSessionView>, sqlx::Error> {
    sqlx::query_as::<_, ChatSessionView>("SELECT * FROM agent_chat_sessions WHERE id = $1")
        .bind(session_id)
        .fetch_optional(pool)
        .await
}
