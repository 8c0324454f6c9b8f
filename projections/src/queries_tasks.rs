//! Task and activity-feed queries.

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// A task as the API returns it. Optional fields are omitted when null.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct TaskView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub task_number: i64,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sprint_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Value>,
    pub importance: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub story_points: Option<i64>,
    pub assignee_ids: Vec<Uuid>,
    /// The first assignee, for clients written against Paca's single
    /// assignee (its web app and MCP server read `assignee_id`).
    pub assignee_id: Option<Uuid>,
    pub reporter_id: Option<Uuid>,
    pub custom_fields: Map<String, Value>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "date_rfc3339"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub start_date: Option<NaiveDate>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "date_rfc3339"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub due_date: Option<NaiveDate>,
    pub tags: Vec<String>,
    /// The task stream's version (also the `ETag`).
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_position: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_group_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `{plugin, key}` when a plugin created the task under an origin key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Value>,
    /// Plugins' orchestration summaries by plugin name (single-task reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_summaries: Option<Map<String, Value>>,
    #[serde(skip)]
    pub deleted: bool,
}

/// Dates are RFC 3339 on the wire (midnight UTC), as Paca's DTOs are.
fn date_rfc3339<S: serde::Serializer>(date: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
    match date {
        Some(d) => s.serialize_str(&format!("{}T00:00:00Z", d.format("%Y-%m-%d"))),
        None => s.serialize_none(),
    }
}

const TASK_COLUMNS: &str = "id, project_id, task_number, title, task_type_id, status_id, sprint_id, \
    parent_task_id, description, importance, story_points, assignee_ids, reporter_id, \
    custom_fields, start_date, due_date, tags, version, created_at, updated_at, deleted_at, origin";

/// A row of [`TASK_COLUMNS`].
#[derive(sqlx::FromRow)]
struct TaskRow {
    id: Uuid,
    project_id: Uuid,
    task_number: i64,
    title: String,
    task_type_id: Option<Uuid>,
    status_id: Option<Uuid>,
    sprint_id: Option<Uuid>,
    parent_task_id: Option<Uuid>,
    description: Option<Value>,
    importance: i64,
    story_points: Option<i64>,
    assignee_ids: Value,
    reporter_id: Option<Uuid>,
    custom_fields: Value,
    start_date: Option<NaiveDate>,
    due_date: Option<NaiveDate>,
    tags: Value,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    origin: Option<Value>,
}

impl From<TaskRow> for TaskView {
    fn from(r: TaskRow) -> Self {
        let assignee_ids: Vec<Uuid> = serde_json::from_value(r.assignee_ids).unwrap_or_default();
        TaskView {
            id: r.id,
            project_id: r.project_id,
            task_number: r.task_number,
            title: r.title,
            task_type_id: r.task_type_id,
            status_id: r.status_id,
            sprint_id: r.sprint_id,
            parent_task_id: r.parent_task_id,
            description: r.description,
            importance: r.importance,
            story_points: r.story_points,
            assignee_id: assignee_ids.first().copied(),
            assignee_ids,
            reporter_id: r.reporter_id,
            custom_fields: match r.custom_fields {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            start_date: r.start_date,
            due_date: r.due_date,
            tags: serde_json::from_value(r.tags).unwrap_or_default(),
            version: r.version,
            view_position: None,
            view_group_key: None,
            created_at: r.created_at,
            updated_at: r.updated_at,
            origin: r.origin,
            plugin_summaries: None,
            deleted: r.deleted_at.is_some(),
        }
    }
}

pub async fn task(
    pool: &PgPool,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<TaskView>, sqlx::Error> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    let row = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.filter(|r| live_in(r, project_id)).map(TaskView::from))
}

/// The statement [`task`] runs, for `id`: a write's response read inside
/// its fused append ([`eventstore::FusedAppend::read`]), decoded by
/// [`task_from_read`].
pub fn task_read(id: Uuid) -> eventstore::stmt::Stmt {
    eventstore::stmt::Stmt::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1")).arg(id)
}

/// [`task`]'s answer from the rows of [`task_read`].
pub fn task_from_read(
    rows: &[sqlx::postgres::PgRow],
    project_id: Uuid,
) -> Result<Option<TaskView>, sqlx::Error> {
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let row = <TaskRow as sqlx::FromRow<_>>::from_row(row)?;
    Ok(live_in(&row, project_id).then(|| TaskView::from(row)))
}

/// The lookups by id name only the primary key and check the project and
/// the deletion on the row: with `project_id` in the `WHERE` the planner
/// could (and, with statistics older than the table's growth, did) walk a
/// `(project_id, …)` index over all of a project's tasks instead.
fn live_in(row: &TaskRow, project_id: Uuid) -> bool {
    row.project_id == project_id && row.deleted_at.is_none()
}

/// [`task`] with the plugins' summaries of it (`plugin_summaries`, only
/// when a plugin wrote one), in one round trip: `GET …/tasks/:id`.
pub async fn task_with_summaries(
    pool: &PgPool,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<TaskView>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        task: TaskRow,
        /// `[[plugin, summary], ...]` by plugin name.
        summaries: Option<Value>,
    }
    let sql = format!(
        "SELECT {TASK_COLUMNS},
                (SELECT jsonb_agg(jsonb_build_array(s.plugin, s.summary) ORDER BY s.plugin)
                   FROM plugin_summaries s WHERE s.task_id = tasks.id) AS summaries
           FROM tasks WHERE id = $1"
    );
    let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.filter(|r| live_in(&r.task, project_id)).map(|row| {
        let mut view = TaskView::from(row.task);
        let summaries: Map<String, Value> = match row.summaries {
            Some(Value::Array(pairs)) => pairs
                .into_iter()
                .filter_map(|pair| match pair {
                    Value::Array(mut kv) if kv.len() == 2 => {
                        let summary = kv.pop()?;
                        Some((kv.pop()?.as_str()?.to_owned(), summary))
                    }
                    _ => None,
                })
                .collect(),
            _ => Map::new(),
        };
        view.plugin_summaries = (!summaries.is_empty()).then_some(summaries);
        view
    }))
}

pub async fn task_by_number(
    pool: &PgPool,
    project_id: Uuid,
    number: i64,
) -> Result<Option<TaskView>, sqlx::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE project_id = $1 AND task_number = $2 AND deleted_at IS NULL"
    );
    let row = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(number)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(TaskView::from))
}

/// A filter that may be "is null" (the literal `null` in the query string).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdFilter {
    Null,
    Is(Uuid),
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub sprint: Option<IdFilter>,
    pub sprint_ids: Vec<Uuid>,
    pub status_ids: Vec<Uuid>,
    pub assignee: Option<IdFilter>,
    pub assignee_ids: Vec<Uuid>,
    pub task_type: Option<IdFilter>,
    pub task_type_ids: Vec<Uuid>,
    pub parent_task_id: Option<Uuid>,
}

/// The opaque keyset cursor: the last row's `(created_at, id)`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cursor {
    ca: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    pub fn new(ca: DateTime<Utc>, id: Uuid) -> Self {
        Self { ca, id }
    }

    pub fn parts(&self) -> (DateTime<Utc>, Uuid) {
        (self.ca, self.id)
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(raw: &str) -> Option<Self> {
        use chrono::Datelike;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        let cursor: Self = serde_json::from_slice(&bytes).ok()?;
        // No row can sit outside the years PostgreSQL stores; such a
        // cursor is forged, and comparing against it would fail in SQL.
        (1..=9999).contains(&cursor.ca.year()).then_some(cursor)
    }
}

pub struct TaskPage {
    pub items: Vec<TaskView>,
    pub next_cursor: Option<String>,
}

fn push_id_filter(q: &mut QueryBuilder<Postgres>, column: &str, filter: Option<IdFilter>) {
    match filter {
        Some(IdFilter::Null) => {
            q.push(format!(" AND {column} IS NULL"));
        }
        Some(IdFilter::Is(id)) => {
            q.push(format!(" AND {column} = ")).push_bind(id);
        }
        None => {}
    }
}

fn push_in(q: &mut QueryBuilder<Postgres>, column: &str, ids: &[Uuid]) {
    // One id as an equality: `= ANY(...)` does not let PostgreSQL (before
    // 17) walk the (project, column, created_at, id) index in list order.
    if let [id] = ids {
        q.push(format!(" AND {column} = ")).push_bind(*id);
    } else if !ids.is_empty() {
        q.push(format!(" AND {column} = ANY("))
            .push_bind(ids.to_vec())
            .push(")");
    }
}

/// One page of a project's live tasks in `(created_at, id)` order.
pub async fn tasks(
    pool: &PgPool,
    project_id: Uuid,
    filter: &TaskFilter,
    cursor: Option<&Cursor>,
    page_size: i64,
) -> Result<TaskPage, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE deleted_at IS NULL AND project_id = "
    ));
    q.push_bind(project_id);
    push_id_filter(&mut q, "sprint_id", filter.sprint);
    push_in(&mut q, "sprint_id", &filter.sprint_ids);
    push_in(&mut q, "status_id", &filter.status_ids);
    match filter.assignee {
        Some(IdFilter::Null) => {
            q.push(" AND assignee_ids = '[]'::jsonb");
        }
        Some(IdFilter::Is(id)) => {
            q.push(" AND assignee_ids @> ")
                .push_bind(Value::Array(vec![Value::String(id.to_string())]));
        }
        None => {}
    }
    if !filter.assignee_ids.is_empty() {
        let ids: Vec<String> = filter.assignee_ids.iter().map(Uuid::to_string).collect();
        q.push(" AND assignee_ids ?| ").push_bind(ids);
    }
    push_id_filter(&mut q, "task_type_id", filter.task_type);
    push_in(&mut q, "task_type_id", &filter.task_type_ids);
    if let Some(parent) = filter.parent_task_id {
        q.push(" AND parent_task_id = ").push_bind(parent);
    }
    if let Some(cursor) = cursor {
        q.push(" AND (created_at, id) > (")
            .push_bind(cursor.ca)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    q.push(" ORDER BY created_at, id LIMIT ")
        .push_bind(page_size + 1);
    let rows: Vec<TaskRow> = q.build_query_as().fetch_all(pool).await?;
    let mut items: Vec<TaskView> = rows.into_iter().map(TaskView::from).collect();
    let next_cursor = if items.len() as i64 > page_size {
        items.truncate(page_size as usize);
        items.last().map(|t| {
            Cursor {
                ca: t.created_at,
                id: t.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(TaskPage { items, next_cursor })
}

/// Live tasks of a sprint (sprint completion and deletion move them).
pub async fn task_ids_in_sprint(pool: &PgPool, sprint_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM tasks WHERE sprint_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
    )
    .bind(sprint_id)
    .fetch_all(pool)
    .await
}

/// Live tasks of a sprint whose status category is not `done` (a task with
/// no status, or a deleted status, counts as open).
pub async fn open_task_ids_in_sprint(
    pool: &PgPool,
    sprint_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT t.id FROM tasks t LEFT JOIN task_statuses s ON s.id = t.status_id
         WHERE t.sprint_id = $1 AND t.deleted_at IS NULL AND s.category IS DISTINCT FROM 'done'
         ORDER BY t.created_at, t.id",
    )
    .bind(sprint_id)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ActivityView {
    pub id: Uuid,
    pub task_id: Uuid,
    /// The actor's project membership (null if they are no longer a member).
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    pub actor_username: String,
    /// `human` or `agent` (null when the actor is unknown or gone).
    pub actor_member_type: Option<String>,
    /// The plugin that acted for the actor (orchestration host APIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_plugin: Option<String>,
    pub activity_type: String,
    pub content: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub actor_user_id: Option<Uuid>,
    #[serde(skip)]
    pub event_id: Uuid,
}

const ACTIVITY_SELECT: &str = "SELECT a.id, a.task_id, m.id AS actor_id, a.actor_user_id,
        COALESCE(u.full_name, ag.name, '') AS actor_name,
        COALESCE(u.username, ag.handle, '') AS actor_username,
        CASE WHEN a.actor_agent_id IS NOT NULL THEN 'agent'
             WHEN a.actor_user_id IS NOT NULL THEN 'human' END AS actor_member_type,
        a.actor_plugin, a.activity_type, a.content, a.event_id, a.created_at, a.updated_at
     FROM task_activities a
     LEFT JOIN users u ON u.id = a.actor_user_id
     LEFT JOIN agents ag ON ag.id = a.actor_agent_id
     LEFT JOIN project_members m ON m.project_id = a.project_id
          AND (m.user_id = a.actor_user_id OR m.agent_id = a.actor_agent_id)";

pub async fn activities(pool: &PgPool, task_id: Uuid) -> Result<Vec<ActivityView>, sqlx::Error> {
    let sql = format!(
        "{ACTIVITY_SELECT} WHERE a.task_id = $1 AND a.deleted_at IS NULL
         ORDER BY a.created_at, a.version, a.id"
    );
    sqlx::query_as::<_, ActivityView>(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .fetch_all(pool)
        .await
}

/// The feeds of several tasks in one query (GraphQL's activities loader).
pub async fn activities_of_tasks(
    pool: &PgPool,
    task_ids: &[Uuid],
) -> Result<Vec<ActivityView>, sqlx::Error> {
    let sql = format!(
        "{ACTIVITY_SELECT} WHERE a.task_id = ANY($1) AND a.deleted_at IS NULL
         ORDER BY a.task_id, a.created_at, a.version, a.id"
    );
    sqlx::query_as::<_, ActivityView>(sqlx::AssertSqlSafe(sql))
        .bind(task_ids)
        .fetch_all(pool)
        .await
}

pub async fn activity(
    pool: &PgPool,
    task_id: Uuid,
    activity_id: Uuid,
) -> Result<Option<ActivityView>, sqlx::Error> {
    let sql =
        format!("{ACTIVITY_SELECT} WHERE a.task_id = $1 AND a.id = $2 AND a.deleted_at IS NULL");
    sqlx::query_as::<_, ActivityView>(sqlx::AssertSqlSafe(sql))
        .bind(task_id)
        .bind(activity_id)
        .fetch_optional(pool)
        .await
}

/// [`activity`] as a read a write runs in its own round trip (see
/// `eventstore::FusedAppend::read`): a comment's response, read from the
/// insert that creates it.
pub fn activity_read(activity_id: Uuid) -> eventstore::stmt::Stmt {
    eventstore::stmt::Stmt::new(format!("{ACTIVITY_SELECT} WHERE a.id = $1")).arg(activity_id)
}

/// [`activity`]'s answer from the rows of [`activity_read`].
pub fn activity_from_read(
    rows: &[sqlx::postgres::PgRow],
    task_id: Uuid,
) -> Result<Option<ActivityView>, sqlx::Error> {
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let view = <ActivityView as sqlx::FromRow<_>>::from_row(row)?;
    Ok((view.task_id == task_id).then_some(view))
}

/// Builds the API view of a task from its events (for `as_of` reads), the
/// same shape the read model serves.
pub fn task_from_events(events: &[eventstore::RecordedEvent]) -> Option<TaskView> {
    use domain::DomainEvent;
    use domain::task::{Task, TaskEvent};
    let first = events.first()?;
    let mut task = Task::default();
    let mut updated_at = first.recorded_at;
    for e in events {
        let event = TaskEvent::from_stored(&e.event_type, &e.payload).ok()?;
        if !matches!(
            event,
            TaskEvent::CommentAdded { .. }
                | TaskEvent::CommentEdited { .. }
                | TaskEvent::CommentDeleted { .. }
                | TaskEvent::LinkAdded { .. }
                | TaskEvent::LinkRemoved { .. }
                | TaskEvent::AttachmentAdded { .. }
                | TaskEvent::AttachmentRemoved { .. }
        ) {
            updated_at = e.recorded_at;
        }
        task = task.evolve(&event);
    }
    let last = events.last()?;
    let f = task.fields;
    Some(TaskView {
        id: first.stream_id,
        project_id: first.project_id?,
        task_number: task.task_number,
        title: f.title,
        task_type_id: f.task_type_id,
        status_id: f.status_id,
        sprint_id: f.sprint_id,
        parent_task_id: f.parent_task_id,
        description: f.description,
        importance: f.importance,
        story_points: f.story_points,
        assignee_id: f.assignee_ids.first().copied(),
        assignee_ids: f.assignee_ids,
        reporter_id: f.reporter_id,
        custom_fields: f.custom_fields,
        start_date: f.start_date,
        due_date: f.due_date,
        tags: f.tags,
        version: last.version,
        view_position: None,
        view_group_key: None,
        created_at: first.recorded_at,
        updated_at,
        origin: crate::projector_tasks::task_origin(first),
        plugin_summaries: None,
        deleted: task.deleted,
    })
}

/// A link as one of its tasks shows it: `linked_task` is the other task and
/// `display_link_type` reads from this side (`is_blocked_by` on the target
/// of a `blocks` link).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TaskLinkView {
    pub id: Uuid,
    pub source_task_id: Uuid,
    pub target_task_id: Uuid,
    pub link_type: String,
    pub display_link_type: String,
    pub linked_task: LinkedTask,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LinkedTask {
    pub id: Uuid,
    pub task_number: i64,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type_id: Option<Uuid>,
}

/// A row of the [`task_links`] query: the link and the task at its other end.
#[derive(sqlx::FromRow)]
struct TaskLinkRow {
    id: Uuid,
    source_task_id: Uuid,
    target_task_id: Uuid,
    link_type: String,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    other_id: Uuid,
    task_number: i64,
    title: String,
    status_id: Option<Uuid>,
    task_type_id: Option<Uuid>,
}

impl TaskLinkRow {
    /// The link as `task_id` (one of its two ends) shows it.
    fn into_view(self, task_id: Uuid) -> TaskLinkView {
        let display = if self.source_task_id == task_id {
            self.link_type.clone()
        } else {
            domain::task::LinkType::parse(&self.link_type)
                .map_or_else(|_| self.link_type.clone(), |t| t.inverse().to_owned())
        };
        TaskLinkView {
            id: self.id,
            source_task_id: self.source_task_id,
            target_task_id: self.target_task_id,
            link_type: self.link_type,
            display_link_type: display,
            linked_task: LinkedTask {
                id: self.other_id,
                task_number: self.task_number,
                title: self.title,
                status_id: self.status_id,
                task_type_id: self.task_type_id,
            },
            created_by: self.created_by,
            created_at: self.created_at,
        }
    }
}

/// The live links of a task, from both sides, oldest first; links to a
/// deleted task are not shown.
pub async fn task_links(pool: &PgPool, task_id: Uuid) -> Result<Vec<TaskLinkView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, TaskLinkRow>(
        "SELECT l.id, l.source_task_id, l.target_task_id, l.link_type, l.created_by, l.created_at,
                t.id AS other_id, t.task_number, t.title, t.status_id, t.task_type_id
           FROM task_links l
           JOIN tasks t ON t.id = CASE WHEN l.source_task_id = $1 THEN l.target_task_id
                                       ELSE l.source_task_id END
          WHERE (l.source_task_id = $1 OR l.target_task_id = $1) AND t.deleted_at IS NULL
          ORDER BY l.created_at, l.id",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.into_view(task_id)).collect())
}

/// Plugins' summaries of a project itself (no task), by plugin name.
pub async fn plugin_summaries_of_project(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Map<String, Value>, sqlx::Error> {
    let rows = sqlx::query_as::<_, (String, Value)>(
        "SELECT plugin, summary FROM plugin_summaries
          WHERE project_id = $1 AND task_id IS NULL ORDER BY plugin",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}
