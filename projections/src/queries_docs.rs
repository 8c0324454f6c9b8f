//! Project documentation queries: folders, documents, versions, the doc
//! feed and doc files.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct FolderView {
    pub id: Uuid,
    pub project_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub position: i64,
    /// Nesting level in the tree (0 at the root).
    pub depth: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The project's live folders in tree order: each folder right after its
/// parent, siblings by position then name.
pub async fn folders(pool: &PgPool, project_id: Uuid) -> Result<Vec<FolderView>, sqlx::Error> {
    sqlx::query_as::<_, FolderView>(
        "WITH RECURSIVE tree AS (
             SELECT f.*, 0 AS depth,
                    ARRAY[lpad((f.position::numeric + 9223372036854775808)::text, 20, '0') || f.name || f.id::text] AS path
             FROM doc_folders f
             WHERE f.project_id = $1 AND f.deleted_at IS NULL AND f.parent_id IS NULL
             UNION ALL
             SELECT c.*, t.depth + 1,
                    t.path || (lpad((c.position::numeric + 9223372036854775808)::text, 20, '0') || c.name || c.id::text)
             FROM doc_folders c JOIN tree t ON c.parent_id = t.id
             WHERE c.deleted_at IS NULL AND t.depth < 64
         )
         SELECT id, project_id, parent_id, name, position, depth, created_at, updated_at
         FROM tree ORDER BY path",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

pub async fn folder(
    pool: &PgPool,
    project_id: Uuid,
    folder_id: Uuid,
) -> Result<Option<FolderView>, sqlx::Error> {
    Ok(folders(pool, project_id)
        .await?
        .into_iter()
        .find(|f| f.id == folder_id))
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DocView {
    pub id: Uuid,
    pub project_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<Uuid>,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    pub position: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A document row without its content (the list query does not select it).
#[derive(sqlx::FromRow)]
struct DocRow {
    id: Uuid,
    project_id: Uuid,
    folder_id: Option<Uuid>,
    title: String,
    position: f64,
    created_by: Option<Uuid>,
    updated_by: Option<Uuid>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl DocRow {
    fn into_view(self, content: Option<Value>) -> DocView {
        DocView {
            id: self.id,
            project_id: self.project_id,
            folder_id: self.folder_id,
            title: self.title,
            content,
            position: self.position,
            created_by: self.created_by,
            updated_by: self.updated_by,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A document row with its content.
#[derive(sqlx::FromRow)]
struct DocContentRow {
    #[sqlx(flatten)]
    doc: DocRow,
    content: Value,
}

/// The project's live documents without their content; `folder` filters
/// by folder (`Some(None)`: the root).
pub async fn docs(
    pool: &PgPool,
    project_id: Uuid,
    folder: Option<Option<Uuid>>,
) -> Result<Vec<DocView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, DocRow>(
        "SELECT id, project_id, folder_id, title, position, created_by, updated_by, version,
                created_at, updated_at
         FROM docs WHERE project_id = $1 AND deleted_at IS NULL
           AND (NOT $2 OR folder_id IS NOT DISTINCT FROM $3)
         ORDER BY position, created_at, id",
    )
    .bind(project_id)
    .bind(folder.is_some())
    .bind(folder.flatten())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.into_view(None)).collect())
}

pub async fn doc(
    pool: &PgPool,
    project_id: Uuid,
    doc_id: Uuid,
) -> Result<Option<DocView>, sqlx::Error> {
    let row = sqlx::query_as::<_, DocContentRow>(
        "SELECT * FROM docs WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
    )
    .bind(doc_id)
    .bind(project_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.doc.into_view(Some(r.content))))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct SnapshotView {
    pub id: Uuid,
    pub document_id: Uuid,
    pub title: String,
    pub content: Value,
    pub snapshot_number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_name: Option<String>,
    /// Set when this version restored an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(rename = "restored_from")]
    pub restored_from_snapshot_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(rename = "restored_from_number")]
    pub restored_from_snapshot_number: Option<i64>,
    pub created_at: DateTime<Utc>,
}

const SNAPSHOT_SELECT: &str = "SELECT s.id, s.document_id, s.title, s.content, s.snapshot_number,
        s.created_by, COALESCE(u.full_name, ag.name) AS created_by_name, s.restored_from,
        s.restored_from_number, s.created_at
     FROM doc_snapshots s
     LEFT JOIN users u ON u.id = s.created_by
     LEFT JOIN agents ag ON ag.id = s.created_by_agent";

/// A document's versions, newest first.
pub async fn snapshots(pool: &PgPool, doc_id: Uuid) -> Result<Vec<SnapshotView>, sqlx::Error> {
    let sql = format!("{SNAPSHOT_SELECT} WHERE s.document_id = $1 ORDER BY s.snapshot_number DESC");
    sqlx::query_as::<_, SnapshotView>(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .fetch_all(pool)
        .await
}

pub async fn snapshot(
    pool: &PgPool,
    doc_id: Uuid,
    snapshot_id: Uuid,
) -> Result<Option<SnapshotView>, sqlx::Error> {
    let sql = format!("{SNAPSHOT_SELECT} WHERE s.document_id = $1 AND s.id = $2");
    sqlx::query_as::<_, SnapshotView>(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .bind(snapshot_id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct DocActivityView {
    pub id: Uuid,
    pub document_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    pub actor_username: String,
    pub actor_member_type: Option<String>,
    /// The plugin that acted for the actor (orchestration host APIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_plugin: Option<String>,
    pub activity_type: String,
    pub content: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ACTIVITY_SELECT: &str = "SELECT a.id, a.document_id, m.id AS actor_id,
        COALESCE(u.full_name, ag.name, '') AS actor_name,
        COALESCE(u.username, ag.handle, '') AS actor_username,
        CASE WHEN a.actor_agent_id IS NOT NULL THEN 'agent'
             WHEN a.actor_user_id IS NOT NULL THEN 'human' END AS actor_member_type,
        a.actor_plugin, a.activity_type, a.content, a.created_at, a.updated_at
     FROM doc_activities a
     LEFT JOIN users u ON u.id = a.actor_user_id
     LEFT JOIN agents ag ON ag.id = a.actor_agent_id
     LEFT JOIN project_members m ON m.project_id = a.project_id
          AND (m.user_id = a.actor_user_id OR m.agent_id = a.actor_agent_id)";

/// A document's feed, oldest first.
pub async fn activities(pool: &PgPool, doc_id: Uuid) -> Result<Vec<DocActivityView>, sqlx::Error> {
    let sql = format!(
        "{ACTIVITY_SELECT} WHERE a.document_id = $1 AND a.deleted_at IS NULL
         ORDER BY a.created_at, a.version, a.id"
    );
    sqlx::query_as::<_, DocActivityView>(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .fetch_all(pool)
        .await
}

pub async fn activity(
    pool: &PgPool,
    doc_id: Uuid,
    id: Uuid,
) -> Result<Option<DocActivityView>, sqlx::Error> {
    let sql = format!(
        "{ACTIVITY_SELECT} WHERE a.document_id = $1 AND a.id = $2 AND a.deleted_at IS NULL"
    );
    sqlx::query_as::<_, DocActivityView>(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .bind(id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SearchHit {
    pub id: Uuid,
    pub project_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<Uuid>,
    pub title: String,
    /// `title` or `content`.
    pub matched_in: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `text` as a literal ILIKE pattern (`%`, `_` and `\` escaped).
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Up to 60 characters either side of the first case-insensitive match.
fn snippet(body: &str, query: &str) -> Option<String> {
    let lower: Vec<char> = body.chars().flat_map(char::to_lowercase).collect();
    let chars: Vec<char> = body.chars().collect();
    let needle: Vec<char> = query.chars().flat_map(char::to_lowercase).collect();
    if needle.is_empty() || lower.len() != chars.len() {
        return None;
    }
    let at = lower
        .windows(needle.len())
        .position(|w| w == needle.as_slice())?;
    let start = at.saturating_sub(60);
    let end = (at + needle.len() + 60).min(chars.len());
    let mut out: String = chars[start..end].iter().collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if end < chars.len() {
        out.push('…');
    }
    Some(out)
}

#[derive(sqlx::FromRow)]
struct SearchRow {
    id: Uuid,
    project_id: Uuid,
    folder_id: Option<Uuid>,
    title: String,
    updated_at: DateTime<Utc>,
    body: String,
    in_title: bool,
}

/// Live documents whose title or text contains `query` (case-insensitive);
/// title matches first, then the most recently updated.
pub async fn search(
    pool: &PgPool,
    project_id: Uuid,
    query: &str,
    limit: i64,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let rows = sqlx::query_as::<_, SearchRow>(
        "SELECT d.id, d.project_id, d.folder_id, d.title, d.updated_at, t.body,
                d.title ILIKE $2 AS in_title
         FROM docs d
         CROSS JOIN LATERAL (
             SELECT COALESCE(string_agg(v #>> '{}', ' '), '') AS body
             FROM jsonb_path_query(d.content, 'lax $.**.text') v
             WHERE jsonb_typeof(v) = 'string'
         ) t
         WHERE d.project_id = $1 AND d.deleted_at IS NULL
           AND (d.title ILIKE $2 OR t.body ILIKE $2)
         ORDER BY in_title DESC, d.updated_at DESC, d.id
         LIMIT $3",
    )
    .bind(project_id)
    .bind(like_pattern(query))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SearchHit {
            id: r.id,
            project_id: r.project_id,
            folder_id: r.folder_id,
            title: r.title,
            matched_in: if r.in_title { "title" } else { "content" },
            snippet: if r.in_title {
                None
            } else {
                snippet(&r.body, query)
            },
            updated_at: r.updated_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_literal_and_snippets_centred() {
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
        let body = format!("{}needle{}", "a".repeat(100), "b".repeat(100));
        let s = snippet(&body, "NEEDLE").unwrap();
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("needle"));
        assert_eq!(s.chars().count(), 60 + 6 + 60 + 2);
        assert_eq!(snippet("short", "zz"), None);
    }
}
