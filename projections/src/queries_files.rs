//! Task attachments and doc files (the seeds' attachment shape:
//! `{id, task_id|document_id, file_id, created_by?, created_at, file:{…}}`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FileView {
    pub id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub file_size: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AttachmentView {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<Uuid>,
    pub file_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub file: FileView,
}

/// A row of [`TASK_SELECT`] or [`DOC_SELECT`].
#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: Uuid,
    owner_id: Uuid,
    file_id: Uuid,
    file_name: String,
    content_type: String,
    file_size: i64,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl AttachmentRow {
    /// `task`: the owner is a task (else a document).
    fn into_view(self, task: bool) -> AttachmentView {
        AttachmentView {
            id: self.id,
            task_id: task.then_some(self.owner_id),
            document_id: (!task).then_some(self.owner_id),
            file_id: self.file_id,
            created_by: self.created_by,
            created_at: self.created_at,
            file: FileView {
                id: self.file_id,
                file_name: self.file_name,
                content_type: self.content_type,
                file_size: self.file_size,
                created_at: self.created_at,
            },
        }
    }
}

const TASK_SELECT: &str = "SELECT id, task_id AS owner_id, file_id, file_name, content_type,
        file_size, created_by, created_at FROM task_attachments";
const DOC_SELECT: &str = "SELECT id, document_id AS owner_id, id AS file_id, file_name,
        content_type, file_size, created_by, created_at FROM doc_files";

pub async fn task_attachments(
    pool: &PgPool,
    task_id: Uuid,
) -> Result<Vec<AttachmentView>, sqlx::Error> {
    let sql = format!("{TASK_SELECT} WHERE task_id = $1 ORDER BY created_at, id");
    let rows = sqlx::query_as::<_, AttachmentRow>(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.into_view(true)).collect())
}

pub async fn task_attachment(
    pool: &PgPool,
    task_id: Uuid,
    id: Uuid,
) -> Result<Option<AttachmentView>, sqlx::Error> {
    let sql = format!("{TASK_SELECT} WHERE task_id = $1 AND id = $2");
    let row = sqlx::query_as::<_, AttachmentRow>(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.into_view(true)))
}

pub async fn doc_files(pool: &PgPool, doc_id: Uuid) -> Result<Vec<AttachmentView>, sqlx::Error> {
    let sql = format!("{DOC_SELECT} WHERE document_id = $1 ORDER BY created_at, id");
    let rows = sqlx::query_as::<_, AttachmentRow>(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.into_view(false)).collect())
}

pub async fn doc_file(
    pool: &PgPool,
    doc_id: Uuid,
    id: Uuid,
) -> Result<Option<AttachmentView>, sqlx::Error> {
    let sql = format!("{DOC_SELECT} WHERE document_id = $1 AND id = $2");
    let row = sqlx::query_as::<_, AttachmentRow>(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.into_view(false)))
}
