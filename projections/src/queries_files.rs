//! Task attachments and doc files (the seeds' attachment shape:
//! `{id, task_id|document_id, file_id, created_by?, created_at, file:{…}}`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    pub id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub file_size: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
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

fn from_row(r: &PgRow, task: bool) -> AttachmentView {
    let owner: Uuid = r.get("owner_id");
    AttachmentView {
        id: r.get("id"),
        task_id: task.then_some(owner),
        document_id: (!task).then_some(owner),
        file_id: r.get("file_id"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        file: FileView {
            id: r.get("file_id"),
            file_name: r.get("file_name"),
            content_type: r.get("content_type"),
            file_size: r.get("file_size"),
            created_at: r.get("created_at"),
        },
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
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(|r| from_row(r, true)).collect())
}

pub async fn task_attachment(
    pool: &PgPool,
    task_id: Uuid,
    id: Uuid,
) -> Result<Option<AttachmentView>, sqlx::Error> {
    let sql = format!("{TASK_SELECT} WHERE task_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(|r| from_row(r, true)))
}

pub async fn doc_files(pool: &PgPool, doc_id: Uuid) -> Result<Vec<AttachmentView>, sqlx::Error> {
    let sql = format!("{DOC_SELECT} WHERE document_id = $1 ORDER BY created_at, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(|r| from_row(r, false)).collect())
}

pub async fn doc_file(
    pool: &PgPool,
    doc_id: Uuid,
    id: Uuid,
) -> Result<Option<AttachmentView>, sqlx::Error> {
    let sql = format!("{DOC_SELECT} WHERE document_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(doc_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(|r| from_row(r, false)))
}
