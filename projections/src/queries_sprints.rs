//! Read-model queries for sprints, interaction views and manual task
//! positions, plus the event-sourced reads of a sprint: its history and
//! its state as of a version or a time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::DomainEvent;
use domain::sprint::{Sprint, SprintEvent};
use domain::view::{ViewContext, ViewEvent};
use eventstore::{EventStore, RecordedEvent};

pub use crate::history::{AsOf, HistoryEntry};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct SprintView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SPRINT_COLUMNS: &str =
    "id, project_id, name, start_date, end_date, goal, status, created_at, updated_at";

/// The project's live sprints, oldest first.
pub async fn sprints(pool: &PgPool, project_id: Uuid) -> Result<Vec<SprintView>, sqlx::Error> {
    let sql = format!(
        "SELECT {SPRINT_COLUMNS} FROM sprints WHERE project_id = $1 AND deleted_at IS NULL
         ORDER BY created_at, id"
    );
    sqlx::query_as::<_, SprintView>(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(pool)
        .await
}

pub async fn sprint(
    pool: &PgPool,
    project_id: Uuid,
    sprint_id: Uuid,
) -> Result<Option<SprintView>, sqlx::Error> {
    let sql = format!(
        "SELECT {SPRINT_COLUMNS} FROM sprints
         WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL"
    );
    sqlx::query_as::<_, SprintView>(sqlx::AssertSqlSafe(sql))
        .bind(sprint_id)
        .bind(project_id)
        .fetch_optional(pool)
        .await
}

/// A sprint stream's events, when it is a sprint of `project_id`.
async fn sprint_events(
    store: &EventStore,
    project_id: Uuid,
    sprint_id: Uuid,
) -> Result<Option<Vec<RecordedEvent>>, sqlx::Error> {
    crate::history::project_stream(store, SprintEvent::STREAM_TYPE, project_id, sprint_id).await
}

/// Every recorded version of a sprint, oldest first (also for a deleted
/// sprint: the audit trail outlives it). `None`: no such sprint here.
pub async fn sprint_history(
    store: &EventStore,
    project_id: Uuid,
    sprint_id: Uuid,
) -> Result<Option<Vec<HistoryEntry>>, sqlx::Error> {
    Ok(sprint_events(store, project_id, sprint_id)
        .await?
        .map(|events| events.iter().map(HistoryEntry::of).collect()))
}

/// The sprint folded from its events (`None` when it did not exist or
/// was deleted at that point). Timestamps are those of the first and last
/// folded events, as in the read model.
pub fn sprint_from_events(events: &[RecordedEvent]) -> Result<Option<SprintView>, sqlx::Error> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(None);
    };
    let mut sprint = Sprint::default();
    for event in events {
        let typed = SprintEvent::from_stored(&event.event_type, &event.payload)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        sprint = sprint.evolve(&typed);
    }
    Ok(sprint.is_live().then_some(SprintView {
        id: first.stream_id,
        project_id: sprint.project_id,
        name: sprint.name,
        start_date: sprint.start_date,
        end_date: sprint.end_date,
        goal: sprint.goal,
        status: sprint.status,
        created_at: first.recorded_at,
        updated_at: last.recorded_at,
    }))
}

/// The sprint as it was at `as_of`.
pub async fn sprint_as_of(
    store: &EventStore,
    project_id: Uuid,
    sprint_id: Uuid,
    as_of: AsOf,
) -> Result<Option<SprintView>, sqlx::Error> {
    let Some(events) = sprint_events(store, project_id, sprint_id).await? else {
        return Ok(None);
    };
    let upto: Vec<RecordedEvent> = events.into_iter().filter(|e| as_of.includes(e)).collect();
    sprint_from_events(&upto)
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ViewView {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sprint_id: Option<Uuid>,
    pub project_id: Uuid,
    pub name: String,
    pub view_type: String,
    pub config: Value,
    pub position: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    #[sqlx(rename = "view_context")]
    pub context: String,
}

const VIEW_COLUMNS: &str = "id, project_id, view_context, sprint_id, name, view_type, config, \
    position, created_at, updated_at";

/// The views of one context (of one sprint for sprint context), in tab
/// order.
pub async fn views(
    pool: &PgPool,
    project_id: Uuid,
    context: ViewContext,
    sprint_id: Option<Uuid>,
) -> Result<Vec<ViewView>, sqlx::Error> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM sprint_views
         WHERE project_id = $1 AND view_context = $2 AND sprint_id IS NOT DISTINCT FROM $3
         ORDER BY position, created_at, id"
    );
    sqlx::query_as::<_, ViewView>(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(context.as_str())
        .bind(sprint_id)
        .fetch_all(pool)
        .await
}

/// A view as its `view.created` event made it: the answer to the creation
/// when a racing sprint deletion already removed the row (the creation
/// still happened and is in the log).
pub fn view_as_created(event: &RecordedEvent) -> Option<ViewView> {
    match ViewEvent::from_stored(&event.event_type, &event.payload).ok()? {
        ViewEvent::Created {
            project_id,
            context,
            sprint_id,
            name,
            view_type,
            config,
            position,
        } => Some(ViewView {
            id: event.stream_id,
            sprint_id,
            project_id,
            name,
            view_type,
            config,
            position,
            created_at: event.recorded_at,
            updated_at: event.recorded_at,
            context: context.as_str().to_owned(),
        }),
        _ => None,
    }
}

pub async fn view(
    pool: &PgPool,
    project_id: Uuid,
    view_id: Uuid,
) -> Result<Option<ViewView>, sqlx::Error> {
    let sql = format!("SELECT {VIEW_COLUMNS} FROM sprint_views WHERE id = $1 AND project_id = $2");
    sqlx::query_as::<_, ViewView>(sqlx::AssertSqlSafe(sql))
        .bind(view_id)
        .bind(project_id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct TaskPositionView {
    pub view_id: Uuid,
    pub task_id: Uuid,
    pub position: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
}

/// A view's manual task positions, in order.
pub async fn task_positions(
    pool: &PgPool,
    view_id: Uuid,
) -> Result<Vec<TaskPositionView>, sqlx::Error> {
    sqlx::query_as::<_, TaskPositionView>(
        "SELECT view_id, task_id, position, group_key FROM view_task_positions
         WHERE view_id = $1 ORDER BY position, task_id",
    )
    .bind(view_id)
    .fetch_all(pool)
    .await
}

/// task id -> (position, group key) in a view, for `GET /tasks?view_id=`
/// (`view_position`, `view_group_key`).
pub async fn view_positions(
    pool: &PgPool,
    view_id: Uuid,
) -> Result<HashMap<Uuid, (f64, Option<String>)>, sqlx::Error> {
    Ok(task_positions(pool, view_id)
        .await?
        .into_iter()
        .map(|p| (p.task_id, (p.position, p.group_key)))
        .collect())
}
