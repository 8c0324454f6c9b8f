//! Attachments: uploads of task attachments and doc files.
//!
//! An upload starts as a `pending` row in `files` (storage bookkeeping:
//! where the bytes go, the declared size); completing it appends
//! `task.attachment_added` / `doc.file_added` in the same transaction that
//! moves the row to `uploaded`, so a completion happens once even when
//! clients race. Removal appends `…_removed` and marks the row `deleted`;
//! the caller then deletes the object.
//!
//! Uses: `docs::doc_command_in` and `tasks::task_project` (the attachment's
//! owner must be live in the route's project).

use domain::ErrorCode;
use domain::doc::DocCommand;
use domain::task::{Task, TaskCommand, TaskContext};
use eventstore::{AppendTx, Metadata};
use sqlx::Row;
use uuid::Uuid;

use crate::{CommandError, CommandResult, Commands};

pub const TASK: &str = "task";
pub const DOC: &str = "doc";

#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub owner_kind: String,
    pub owner_id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub file_size: i64,
    pub storage_key: String,
    pub bucket: String,
    pub upload_id: Option<String>,
    pub status: String,
    pub created_by: Option<Uuid>,
}

fn row(r: &sqlx::postgres::PgRow) -> FileRow {
    FileRow {
        id: r.get("id"),
        project_id: r.get("project_id"),
        owner_kind: r.get("owner_kind"),
        owner_id: r.get("owner_id"),
        file_name: r.get("file_name"),
        content_type: r.get("content_type"),
        file_size: r.get("file_size"),
        storage_key: r.get("storage_key"),
        bucket: r.get("bucket"),
        upload_id: r.get("upload_id"),
        status: r.get("status"),
        created_by: r.get("created_by"),
    }
}

fn not_pending() -> CommandError {
    CommandError::domain(
        ErrorCode::ATTACHMENT_UPLOAD_NOT_PENDING,
        "the upload is not pending (already completed or removed)",
    )
}

/// Claims a pending upload of `owner` inside `tx`.
async fn claim(
    tx: &mut AppendTx,
    file_id: Uuid,
    kind: &str,
    owner_id: Uuid,
) -> CommandResult<FileRow> {
    let claimed = sqlx::query(
        "UPDATE files SET status = 'uploaded', completed_at = now()
         WHERE id = $1 AND owner_kind = $2 AND owner_id = $3 AND status = 'pending'
         RETURNING *",
    )
    .bind(file_id)
    .bind(kind)
    .bind(owner_id)
    .fetch_optional(tx.conn())
    .await?;
    claimed.as_ref().map(row).ok_or_else(not_pending)
}

impl Commands {
    pub async fn register_upload(&self, f: &FileRow) -> CommandResult<()> {
        sqlx::query(
            "INSERT INTO files (id, project_id, owner_kind, owner_id, file_name, content_type,
                                file_size, storage_key, bucket, upload_id, status, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11)",
        )
        .bind(f.id)
        .bind(f.project_id)
        .bind(&f.owner_kind)
        .bind(f.owner_id)
        .bind(&f.file_name)
        .bind(&f.content_type)
        .bind(f.file_size)
        .bind(&f.storage_key)
        .bind(&f.bucket)
        .bind(&f.upload_id)
        .bind(f.created_by)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The upload `file_id` of `owner`, whatever its status.
    pub async fn upload(
        &self,
        file_id: Uuid,
        kind: &str,
        owner_id: Uuid,
    ) -> CommandResult<Option<FileRow>> {
        let r =
            sqlx::query("SELECT * FROM files WHERE id = $1 AND owner_kind = $2 AND owner_id = $3")
                .bind(file_id)
                .bind(kind)
                .bind(owner_id)
                .fetch_optional(self.store.pool())
                .await?;
        Ok(r.as_ref().map(row))
    }

    async fn task_in(&self, project_id: Uuid, task_id: Uuid) -> CommandResult<()> {
        if self.task_project(task_id).await? != Some(project_id) {
            return Err(CommandError::domain(
                ErrorCode::TASK_NOT_FOUND,
                "task not found",
            ));
        }
        Ok(())
    }

    async fn task_attachment_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        command: TaskCommand,
    ) -> CommandResult<()> {
        let ctx = TaskContext::default();
        let mut decide = |t: &Task| Ok((t.decide(command.clone(), &ctx)?, vec![]));
        self.execute_in(
            tx,
            task_id,
            Some(project_id),
            Task::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        Ok(())
    }

    /// Completes a pending upload as an attachment of the task; returns
    /// the attachment id.
    pub async fn complete_task_attachment(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        file_id: Uuid,
    ) -> CommandResult<Uuid> {
        self.task_in(project_id, task_id).await?;
        let attachment_id = Uuid::now_v7();
        transact!(self, tx => async {
            let file = claim(tx, file_id, TASK, task_id).await?;
            let command = TaskCommand::AddAttachment {
                attachment_id,
                file_id,
                file_name: file.file_name,
                content_type: file.content_type,
                file_size: file.file_size,
            };
            self.task_attachment_in(tx, meta, project_id, task_id, command).await
        }
        .await)?;
        Ok(attachment_id)
    }

    /// Removes an attachment; returns the storage key of its bytes.
    pub async fn remove_task_attachment(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        attachment_id: Uuid,
        file_id: Uuid,
    ) -> CommandResult<Option<String>> {
        self.task_in(project_id, task_id).await?;
        transact!(self, tx => async {
            self.task_attachment_in(
                tx,
                meta,
                project_id,
                task_id,
                TaskCommand::RemoveAttachment { attachment_id },
            )
            .await?;
            mark_deleted(tx, file_id).await
        }
        .await)
    }

    pub async fn complete_doc_file(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        doc_id: Uuid,
        file_id: Uuid,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            let file = claim(tx, file_id, DOC, doc_id).await?;
            let command = DocCommand::AddFile {
                file_id,
                file_name: file.file_name,
                content_type: file.content_type,
                file_size: file.file_size,
            };
            self.doc_command_in(tx, meta, project_id, doc_id, command).await
        }
        .await)?;
        Ok(())
    }

    pub async fn remove_doc_file(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        doc_id: Uuid,
        file_id: Uuid,
    ) -> CommandResult<Option<String>> {
        transact!(self, tx => async {
            self.doc_command_in(tx, meta, project_id, doc_id, DocCommand::RemoveFile { file_id })
                .await?;
            mark_deleted(tx, file_id).await
        }
        .await)
    }
}

async fn mark_deleted(tx: &mut AppendTx, file_id: Uuid) -> CommandResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "UPDATE files SET status = 'deleted' WHERE id = $1 RETURNING storage_key",
    )
    .bind(file_id)
    .fetch_optional(tx.conn())
    .await?)
}
