//! Write-side indexes: facts that span aggregates, kept in the append
//! transaction by an inline projector, read by command handlers under the
//! lock that guards their invariant (see `migrations/*_write_index.sql`).
//!
//! - `task_index`: a task's project, number, parent, sprint, status, type
//!   and assignees (task-to-project lookups, cycle checks, "tasks of this sprint",
//!   "is this status still used").
//! - `view_index`: a scope's views and their tab positions.
//! - `user_roles`: who holds which global role.
//! - `task_link_index`: links between tasks, from either side.
//! - `doc_index`: doc folders and documents with their parent folder (a
//!   folder's subtree, for deleting it).
//!
//! They are not read models: nothing rebuilds them blue/green and no query
//! reads them, so a command never depends on a table that may be
//! mid-rebuild. [`ensure`] fills them from the log when the projector's
//! [`VERSION`] is newer than what the database holds.

use domain::DomainEvent;
use domain::doc::{DocEvent, DocFolderEvent, FolderField};
use domain::task::{FieldValue, TaskEvent, TaskField};
use domain::user::UserEvent;
use domain::view::{ViewEvent, ViewField};
use eventstore::stmt::{Arg, Stmt};
use eventstore::{EventStore, InlineProjector, RecordedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::CommandResult;

/// The projector's name (also its `write_index_state` row).
pub const NAME: &str = "write_index";
/// Bump when what the index holds changes; servers refill it on start.
pub const VERSION: i32 = 3;

const STREAM_TYPES: [&str; 5] = [
    TaskEvent::STREAM_TYPE,
    ViewEvent::STREAM_TYPE,
    UserEvent::STREAM_TYPE,
    DocEvent::STREAM_TYPE,
    DocFolderEvent::STREAM_TYPE,
];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Register with [`eventstore::EventStoreBuilder::projector`];
/// [`crate::Commands::new`] refuses a store without it.
pub struct WriteIndex;

#[async_trait::async_trait]
impl InlineProjector for WriteIndex {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), BoxError> {
        for event in events {
            apply(conn, event).await?;
        }
        Ok(())
    }

    /// Task events only (the fused append is the task write path); other
    /// streams take the transactional path.
    fn statements(&self, events: &[RecordedEvent]) -> Option<Result<Vec<Stmt>, BoxError>> {
        let mut all = Vec::new();
        for event in events {
            if event.stream_type != TaskEvent::STREAM_TYPE {
                return None;
            }
            match task_statements(event) {
                Ok(stmts) => all.extend(stmts),
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok(all))
    }
}

async fn apply(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), BoxError> {
    match e.stream_type.as_str() {
        TaskEvent::STREAM_TYPE => task(conn, e).await,
        ViewEvent::STREAM_TYPE => view(conn, e).await,
        UserEvent::STREAM_TYPE => user(conn, e).await,
        DocEvent::STREAM_TYPE => doc(conn, e).await,
        DocFolderEvent::STREAM_TYPE => doc_folder(conn, e).await,
        _ => Ok(()),
    }
}

async fn doc_entry(
    conn: &mut PgConnection,
    id: Uuid,
    project_id: Uuid,
    is_folder: bool,
    parent_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO doc_index (id, project_id, is_folder, parent_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(project_id)
    .bind(is_folder)
    .bind(parent_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn doc_parent(
    conn: &mut PgConnection,
    id: Uuid,
    parent: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE doc_index SET parent_id = $2 WHERE id = $1")
        .bind(id)
        .bind(parent)
        .execute(conn)
        .await?;
    Ok(())
}

async fn doc_deleted(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE doc_index SET deleted = true WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn doc(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), BoxError> {
    match DocEvent::from_stored(&e.event_type, &e.payload)? {
        DocEvent::Created {
            project_id,
            folder_id,
            ..
        } => doc_entry(conn, e.stream_id, project_id, false, folder_id).await?,
        DocEvent::Moved { folder_id, .. } => doc_parent(conn, e.stream_id, folder_id).await?,
        DocEvent::Deleted { .. } => doc_deleted(conn, e.stream_id).await?,
        _ => {}
    }
    Ok(())
}

async fn doc_folder(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), BoxError> {
    match DocFolderEvent::from_stored(&e.event_type, &e.payload)? {
        DocFolderEvent::Created {
            project_id,
            parent_id,
            ..
        } => doc_entry(conn, e.stream_id, project_id, true, parent_id).await?,
        DocFolderEvent::Updated { changes } => {
            if let Some(c) = changes.iter().find(|c| c.field == FolderField::ParentId) {
                let parent = serde_json::from_value(c.new.clone()).ok().flatten();
                doc_parent(conn, e.stream_id, parent).await?;
            }
        }
        DocFolderEvent::Deleted { .. } => doc_deleted(conn, e.stream_id).await?,
    }
    Ok(())
}

async fn task(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), BoxError> {
    for stmt in task_statements(e)? {
        stmt.execute(conn).await?;
    }
    Ok(())
}

/// A uuid list as a JSON parameter (the statement model has no array
/// type), unpacked in SQL with [`UUIDS`].
fn uuids(ids: &[Uuid]) -> Arg {
    Arg::Json(Some(serde_json::json!(ids)))
}

/// `$n` (a JSON array of uuids) as `uuid[]`.
macro_rules! uuids_sql {
    ($n:literal) => {
        concat!("ARRAY(SELECT jsonb_array_elements_text(", $n, ")::uuid)")
    };
}

/// The task index's row changes for one task event (executed live, or
/// rendered into a fused append).
fn task_statements(e: &RecordedEvent) -> Result<Vec<Stmt>, BoxError> {
    let stmt = match TaskEvent::from_stored(&e.event_type, &e.payload)? {
        TaskEvent::Created {
            task_number,
            fields,
            ..
        } => Stmt::new(concat!(
            "INSERT INTO task_index (task_id, project_id, task_number, parent_id, sprint_id,
                                     status_id, type_id, assignee_ids)
             VALUES ($1, $2, $3, $4, $5, $6, $7, ",
            uuids_sql!("$8"),
            ")
             ON CONFLICT (task_id) DO NOTHING"
        ))
        .arg(e.stream_id)
        .arg(e.project_id)
        .arg(task_number)
        .arg(fields.parent_task_id)
        .arg(fields.sprint_id)
        .arg(fields.status_id)
        .arg(fields.task_type_id)
        .arg(uuids(&fields.assignee_ids)),
        TaskEvent::Updated { changes } => {
            let mut parent = None;
            let mut sprint = None;
            let mut status = None;
            let mut task_type = None;
            let mut assignees = None;
            for change in &changes {
                match (change.field, change.new_value()?) {
                    (TaskField::ParentTask, FieldValue::Id(id)) => parent = Some(id),
                    (TaskField::Sprint, FieldValue::Id(id)) => sprint = Some(id),
                    (TaskField::Status, FieldValue::Ref(id)) => status = Some(id),
                    (TaskField::TaskType, FieldValue::Ref(id)) => task_type = Some(id),
                    (TaskField::Assignee, FieldValue::Ids(ids)) => assignees = Some(ids),
                    _ => {}
                }
            }
            if parent.is_none()
                && sprint.is_none()
                && status.is_none()
                && task_type.is_none()
                && assignees.is_none()
            {
                return Ok(vec![]);
            }
            // Three-state per column: $n = whether it changed, $n+1 = to what.
            Stmt::new(concat!(
                "UPDATE task_index SET
                     parent_id = CASE WHEN $2 THEN $3 ELSE parent_id END,
                     sprint_id = CASE WHEN $4 THEN $5 ELSE sprint_id END,
                     status_id = CASE WHEN $6 THEN $7 ELSE status_id END,
                     type_id   = CASE WHEN $8 THEN $9 ELSE type_id END,
                     assignee_ids = CASE WHEN $10 THEN ",
                uuids_sql!("$11"),
                " ELSE assignee_ids END
                 WHERE task_id = $1"
            ))
            .arg(e.stream_id)
            .arg(parent.is_some())
            .arg(parent.flatten())
            .arg(sprint.is_some())
            .arg(sprint.flatten())
            .arg(status.is_some())
            .arg(status.flatten())
            .arg(task_type.is_some())
            .arg(task_type.flatten())
            .arg(assignees.is_some())
            .arg(uuids(&assignees.unwrap_or_default()))
        }
        TaskEvent::Deleted {} => {
            Stmt::new("UPDATE task_index SET deleted = true WHERE task_id = $1").arg(e.stream_id)
        }
        TaskEvent::LinkAdded {
            link_id,
            target_task_id,
            link_type,
        } => Stmt::new(
            "INSERT INTO task_link_index (link_id, source_id, target_id, link_type)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (link_id) DO NOTHING",
        )
        .arg(link_id)
        .arg(e.stream_id)
        .arg(target_task_id)
        .arg(link_type.as_str().to_owned()),
        TaskEvent::LinkRemoved { link_id } => {
            Stmt::new("UPDATE task_link_index SET deleted = true WHERE link_id = $1").arg(link_id)
        }
        _ => return Ok(vec![]),
    };
    Ok(vec![stmt])
}

async fn view(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), BoxError> {
    match ViewEvent::from_stored(&e.event_type, &e.payload)? {
        ViewEvent::Created {
            project_id,
            context,
            sprint_id,
            position,
            ..
        } => {
            sqlx::query(
                "INSERT INTO view_index (view_id, project_id, context, sprint_id, position, created)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (view_id) DO NOTHING",
            )
            .bind(e.stream_id)
            .bind(project_id)
            .bind(context.as_str())
            .bind(sprint_id)
            .bind(position)
            .bind(e.global_position)
            .execute(conn)
            .await?;
        }
        ViewEvent::Updated { changes } => {
            if let Some(position) = changes
                .iter()
                .find(|c| c.field == ViewField::Position)
                .and_then(|c| c.new.as_f64())
            {
                set_view_position(conn, e.stream_id, position).await?;
            }
        }
        ViewEvent::Reordered { position, .. } => {
            set_view_position(conn, e.stream_id, position).await?;
        }
        ViewEvent::Deleted { .. } => {
            sqlx::query("UPDATE view_index SET deleted = true WHERE view_id = $1")
                .bind(e.stream_id)
                .execute(conn)
                .await?;
        }
        ViewEvent::TaskPositioned { .. } => {}
    }
    Ok(())
}

async fn set_view_position(
    conn: &mut PgConnection,
    view_id: Uuid,
    position: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE view_index SET position = $2 WHERE view_id = $1")
        .bind(view_id)
        .bind(position)
        .execute(conn)
        .await?;
    Ok(())
}

async fn user(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), BoxError> {
    let role = match UserEvent::from_stored(&e.event_type, &e.payload)? {
        UserEvent::Created { role_id, .. } | UserEvent::RoleChanged { role_id, .. } => role_id,
        UserEvent::Deleted {} => {
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                .bind(e.stream_id)
                .execute(conn)
                .await?;
            return Ok(());
        }
        _ => return Ok(()),
    };
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET role_id = EXCLUDED.role_id",
    )
    .bind(e.stream_id)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fills the indexes from the log when they were filled by an older
/// [`VERSION`] (or never: a database that predates them). Appends wait
/// meanwhile (`streams` is locked against writers), so nothing committed
/// during the refill can be missed.
pub async fn ensure(store: &EventStore) -> CommandResult<Option<usize>> {
    let pool = store.pool();
    let current: Option<i32> =
        sqlx::query_scalar("SELECT version FROM write_index_state WHERE name = $1")
            .bind(NAME)
            .fetch_optional(pool)
            .await?;
    if current == Some(VERSION) {
        return Ok(None);
    }
    let mut tx = pool.begin().await?;
    // SHARE conflicts with the ROW EXCLUSIVE every append takes on
    // `streams`: in-flight appends finish first, new ones wait for us.
    sqlx::query("LOCK TABLE streams IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let current: Option<i32> =
        sqlx::query_scalar("SELECT version FROM write_index_state WHERE name = $1 FOR UPDATE")
            .bind(NAME)
            .fetch_optional(&mut *tx)
            .await?;
    if current == Some(VERSION) {
        // Another node refilled it while we waited for the lock.
        return Ok(None);
    }
    sqlx::query("TRUNCATE task_index, view_index, user_roles, task_link_index, doc_index")
        .execute(&mut *tx)
        .await?;
    let types: Vec<String> = STREAM_TYPES.iter().map(|t| (*t).to_owned()).collect();
    let mut after = 0i64;
    let mut count = 0usize;
    loop {
        // Every append is committed (the lock), so plain position order
        // is complete; within a stream it is version order.
        let events = store
            .read_by_position_while_locked(&mut tx, after, 5_000, &types)
            .await?;
        let Some(last) = events.last() else { break };
        let last = last.global_position;
        for event in &events {
            apply(&mut tx, event)
                .await
                .map_err(|source| eventstore::AppendError::Projector {
                    projector: NAME.to_owned(),
                    source,
                })?;
        }
        count += events.len();
        after = last;
    }
    sqlx::query(
        "INSERT INTO write_index_state (name, version) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
    )
    .bind(NAME)
    .bind(VERSION)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(count))
}
