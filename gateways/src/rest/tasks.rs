//! `/projects/:id/tasks`: tasks, their activity feed and comments, and the
//! history operations the log makes possible: diff and revert of any
//! recorded change, the full version history, and reads `as_of` a version
//! or a time.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use domain::task::{LinkType, TaskChange, TaskEvent, TaskField, TaskFields, TaskPatch};
use domain::{DomainEvent, ErrorCode};
use projections::history::{self, AsOf, HistoryEntry};
use projections::queries_tasks::{self as q, Cursor, IdFilter, TaskFilter, TaskView};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ProjectAuth, ProjectRead, perm};
use crate::error::{ApiError, ApiResult, created, no_content, request_id};
use crate::extract::Json;
use crate::rest::task_config::three_state;

/// Accepts `YYYY-MM-DD` or an RFC 3339 timestamp (its UTC date).
#[derive(Debug, Clone, Copy)]
pub struct DateInput(NaiveDate);

impl schemars::JsonSchema for DateInput {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DateInput".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`YYYY-MM-DD` or an RFC 3339 timestamp (its UTC date)",
        })
    }
}

impl<'de> Deserialize<'de> for DateInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        NaiveDate::parse_from_str(&raw, "%Y-%m-%d")
            .or_else(|_| {
                DateTime::parse_from_rfc3339(&raw).map(|t| t.with_timezone(&Utc).date_naive())
            })
            .map(DateInput)
            .map_err(|_| serde::de::Error::custom(format!("invalid date {raw:?} (use YYYY-MM-DD)")))
    }
}

fn date(v: Option<DateInput>) -> Option<NaiveDate> {
    v.map(|d| d.0)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "TaskCreateBody")]
pub struct CreateBody {
    title: Option<String>,
    task_type_id: Option<Uuid>,
    status_id: Option<Uuid>,
    sprint_id: Option<Uuid>,
    parent_task_id: Option<Uuid>,
    description: Option<Value>,
    importance: Option<i64>,
    story_points: Option<i64>,
    assignee_ids: Option<Vec<Uuid>>,
    /// Paca's single-assignee field: an alias of a one-element `assignee_ids`.
    #[serde(default, deserialize_with = "three_state")]
    assignee_id: Option<Option<Uuid>>,
    reporter_id: Option<Uuid>,
    custom_fields: Option<Map<String, Value>>,
    start_date: Option<DateInput>,
    due_date: Option<DateInput>,
    tags: Option<Vec<String>>,
}

/// `assignee_ids` merged with the `assignee_id` alias (`null` = nobody);
/// both given and disagreeing is a client mistake, not a guess.
fn assignees(ids: Option<Vec<Uuid>>, alias: Option<Option<Uuid>>) -> ApiResult<Option<Vec<Uuid>>> {
    let Some(alias) = alias else {
        return Ok(ids);
    };
    let from_alias: Vec<Uuid> = alias.into_iter().collect();
    match ids {
        Some(ids) if ids != from_alias => Err(ApiError::bad_request(
            "assignee_id and assignee_ids disagree; send one of them",
        )),
        _ => Ok(Some(from_alias)),
    }
}

impl CreateBody {
    /// The command's fields (shared with GraphQL's `createTask`).
    pub(crate) fn into_fields(self) -> ApiResult<TaskFields> {
        let b = self;
        let assignee_ids = assignees(b.assignee_ids, b.assignee_id)?;
        Ok(TaskFields {
            title: b.title.unwrap_or_default(),
            task_type_id: b.task_type_id,
            status_id: b.status_id,
            sprint_id: b.sprint_id,
            parent_task_id: b.parent_task_id,
            description: b.description.filter(|d| !d.is_null()),
            importance: b.importance.unwrap_or(0),
            story_points: b.story_points,
            assignee_ids: assignee_ids.unwrap_or_default(),
            reporter_id: b.reporter_id,
            custom_fields: b.custom_fields.unwrap_or_default(),
            start_date: date(b.start_date),
            due_date: date(b.due_date),
            tags: b.tags.unwrap_or_default(),
        })
    }
}

/// The response for one task, with its version as the `ETag`.
fn task_response(status: actix_web::http::StatusCode, task: TaskView) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .insert_header((header::ETAG, format!("\"{}\"", task.version)))
        .json(json!({"success": true, "data": task, "request_id": request_id()})))
}

/// The task exists (possibly soft-deleted) and belongs to the project.
pub(crate) async fn task_of_project(
    state: &AppState,
    project_id: Uuid,
    task_id: Uuid,
) -> ApiResult<()> {
    if state.commands.task_project(task_id).await? != Some(project_id) {
        return Err(ApiError::new(ErrorCode::TASK_NOT_FOUND, "task not found"));
    }
    Ok(())
}

pub(crate) async fn live_task(
    state: &AppState,
    project_id: Uuid,
    task_id: Uuid,
) -> ApiResult<TaskView> {
    q::task(&state.pool, project_id, task_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TASK_NOT_FOUND, "task not found"))
}

/// The task a create made, for its response (REST, GraphQL, plugins):
/// built from the create's own events (the new task's whole stream, as
/// stored), the way an `as_of` read builds a task, with no read of the row
/// it just wrote. Events without a stored position would carry provisional
/// times: the row is read then.
pub(crate) async fn created_task(
    state: &AppState,
    project_id: Uuid,
    created: &commands::tasks::TaskCreated,
) -> ApiResult<TaskView> {
    let task_id = created.written.task_id;
    let events = &created.events;
    let stored = events.first().map(|e| e.version) == Some(1)
        && events.iter().all(|e| e.global_position > 0);
    match q::task_from_events(events) {
        Some(task)
            if stored && task.id == task_id && task.project_id == project_id && !task.deleted =>
        {
            Ok(task)
        }
        _ => live_task(state, project_id, task_id).await,
    }
}

pub async fn create(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    project_id: web::Path<Uuid>,
    body: Json<CreateBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let fields = body.into_inner().into_fields()?;
    let created = state
        .commands
        .create_task_recorded(&principal.metadata(), project_id, Uuid::now_v7(), fields)
        .await?;
    let task = created_task(&state, project_id, &created).await?;
    task_response(actix_web::http::StatusCode::CREATED, task)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct GetQuery {
    as_of: Option<String>,
}

pub async fn get(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<GetQuery>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    let Some(as_of) = query.into_inner().as_of else {
        // Plugin summaries only when a plugin wrote one: a task's GET stays
        // what its POST and PATCH answered.
        let task = q::task_with_summaries(&state.pool, project_id, task_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::TASK_NOT_FOUND, "task not found"))?;
        return task_response(actix_web::http::StatusCode::OK, task);
    };
    let as_of = AsOf::parse(&as_of)
        .filter(|a| *a != AsOf::Version(0))
        .ok_or_else(|| {
            ApiError::bad_request("as_of must be a version (1 or more) or an RFC 3339 time")
        })?;
    let upto: Vec<_> = task_events(&state, project_id, task_id)
        .await?
        .into_iter()
        .filter(|e| as_of.includes(e))
        .collect();
    let task = q::task_from_events(&upto).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TASK_NOT_FOUND,
            "the task did not exist at that point",
        )
    })?;
    task_response(actix_web::http::StatusCode::OK, task)
}

/// The task's stream, checked to belong to the project.
pub(crate) async fn task_events(
    state: &AppState,
    project_id: Uuid,
    task_id: Uuid,
) -> ApiResult<Vec<eventstore::RecordedEvent>> {
    history::project_stream(
        &state.commands.store,
        TaskEvent::STREAM_TYPE,
        project_id,
        task_id,
    )
    .await?
    .ok_or_else(|| ApiError::new(ErrorCode::TASK_NOT_FOUND, "task not found"))
}

pub async fn by_number(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, i64)>,
) -> ApiResult<HttpResponse> {
    let (project_id, number) = path.into_inner();
    let task = q::task_by_number(&state.pool, project_id, number)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TASK_NOT_FOUND, "task not found"))?;
    task_response(actix_web::http::StatusCode::OK, task)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "TaskPatchBody")]
pub struct PatchBody {
    title: Option<String>,
    #[serde(default, deserialize_with = "three_state")]
    task_type_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "three_state")]
    status_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "three_state")]
    sprint_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "three_state")]
    parent_task_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "three_state")]
    description: Option<Option<Value>>,
    importance: Option<i64>,
    #[serde(default, deserialize_with = "three_state")]
    story_points: Option<Option<i64>>,
    #[serde(default, deserialize_with = "three_state")]
    assignee_ids: Option<Option<Vec<Uuid>>>,
    #[serde(default, deserialize_with = "three_state")]
    assignee_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "three_state")]
    reporter_id: Option<Option<Uuid>>,
    custom_fields: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "three_state")]
    start_date: Option<Option<DateInput>>,
    #[serde(default, deserialize_with = "three_state")]
    due_date: Option<Option<DateInput>>,
    #[serde(default, deserialize_with = "three_state")]
    tags: Option<Option<Vec<String>>>,
}

/// `If-Match: "3"`, `W/"3"` or `3`: the stream version the client saw.
fn if_match(req: &HttpRequest) -> ApiResult<Option<i64>> {
    let Some(raw) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request("If-Match must be a task version (its ETag)"))
}

pub async fn patch(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<PatchBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    let expected = if_match(&req)?;
    let patch = body.into_inner().into_patch()?;
    // The response is the projected row, read in the write's own round
    // trip when the write is fused.
    let read = q::task_read(task_id);
    let result = state
        .commands
        .update_task_reading(
            &principal.metadata(),
            project_id,
            task_id,
            patch,
            expected,
            &read,
        )
        .await;
    let (_, rows) = match result {
        Err(commands::CommandError::Stale { .. }) => {
            return Err(ApiError::new(
                ErrorCode::CONFLICT,
                "the task changed since the version in If-Match; reload it and retry",
            ));
        }
        other => other?,
    };
    let task = match q::task_from_read(&rows, project_id)? {
        Some(task) => task,
        None => live_task(&state, project_id, task_id).await?,
    };
    task_response(actix_web::http::StatusCode::OK, task)
}

pub async fn delete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    state
        .commands
        .delete_task(&principal.metadata(), project_id, task_id)
        .await?;
    crate::error::ok(json!({ "message": "task deleted" }))
}

impl PatchBody {
    /// The command's patch (shared with GraphQL's `updateTask`).
    pub(crate) fn into_patch(self) -> ApiResult<TaskPatch> {
        let b = self;
        let assignee_ids = assignees(b.assignee_ids.map(Option::unwrap_or_default), b.assignee_id)?;
        Ok(TaskPatch {
            title: b.title,
            task_type_id: b.task_type_id,
            status_id: b.status_id,
            sprint_id: b.sprint_id,
            parent_task_id: b.parent_task_id,
            description: b.description.map(|d| d.filter(|v| !v.is_null())),
            importance: b.importance,
            story_points: b.story_points,
            assignee_ids,
            reporter_id: b.reporter_id,
            custom_fields: b.custom_fields,
            start_date: b.start_date.map(date),
            due_date: b.due_date.map(date),
            tags: b.tags.map(Option::unwrap_or_default),
        })
    }
}

fn uuid_param(name: &str, raw: &str) -> ApiResult<Uuid> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name}: {raw:?} is not a UUID")))
}

fn id_filter(params: &HashMap<String, String>, name: &str) -> ApiResult<Option<IdFilter>> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("null") => Ok(Some(IdFilter::Null)),
        Some(raw) => Ok(Some(IdFilter::Is(uuid_param(name, raw)?))),
    }
}

fn id_list(params: &HashMap<String, String>, name: &str) -> ApiResult<Vec<Uuid>> {
    match params.get(name) {
        None => Ok(vec![]),
        Some(raw) => raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| uuid_param(name, p))
            .collect(),
    }
}

pub async fn list(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    project_id: web::Path<Uuid>,
    params: web::Query<HashMap<String, String>>,
) -> ApiResult<HttpResponse> {
    ok_json(list_page(&state, project_id.into_inner(), &params.into_inner()).await?)
}

fn ok_json(value: Value) -> ApiResult<HttpResponse> {
    crate::error::ok(value)
}

/// One page of a project's tasks from the REST query parameters (shared
/// with GraphQL's `Project.tasks`, whose `filter` takes the same names).
pub(crate) async fn list_page(
    state: &AppState,
    project_id: Uuid,
    p: &HashMap<String, String>,
) -> ApiResult<Value> {
    let page_size = p
        .get("page_size")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| (1..=200).contains(n))
        .unwrap_or(20);
    let cursor = match p.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(
            Cursor::decode(raw)
                .ok_or_else(|| ApiError::bad_request("cursor is not a valid next_cursor"))?,
        ),
    };
    // Single-valued filters combine with their list forms.
    let mut status_ids = id_list(p, "status_ids")?;
    if let Some(one) = p.get("status_id").filter(|s| !s.is_empty()) {
        status_ids.push(uuid_param("status_id", one)?);
    }
    let filter = TaskFilter {
        sprint: id_filter(p, "sprint_id")?,
        sprint_ids: id_list(p, "sprint_ids")?,
        status_ids,
        assignee: id_filter(p, "assignee_id")?,
        assignee_ids: id_list(p, "assignee_ids")?,
        task_type: id_filter(p, "task_type_id")?,
        task_type_ids: id_list(p, "task_type_ids")?,
        parent_task_id: match p.get("parent_task_id").filter(|s| !s.is_empty()) {
            Some(raw) => Some(uuid_param("parent_task_id", raw)?),
            None => None,
        },
    };
    let mut page = q::tasks(&state.pool, project_id, &filter, cursor.as_ref(), page_size).await?;
    if let Some(view) = p.get("view_id").filter(|s| !s.is_empty()) {
        let view_id = uuid_param("view_id", view)?;
        let positions = projections::queries_sprints::view_positions(&state.pool, view_id).await?;
        for task in &mut page.items {
            if let Some((position, group)) = positions.get(&task.id) {
                task.view_position = Some(*position);
                task.view_group_key.clone_from(group);
            }
        }
    }
    Ok(json!({
        "items": page.items,
        "page_size": page_size,
        "next_cursor": page.next_cursor,
    }))
}

pub async fn activities(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    // The feed outlives a soft delete: it is where `task.deleted` shows.
    task_of_project(&state, project_id, task_id).await?;
    crate::error::ok(json!({ "items": q::activities(&state.pool, task_id).await? }))
}

pub async fn links(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    live_task(&state, project_id, task_id).await?;
    crate::error::ok(json!({ "items": q::task_links(&state.pool, task_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct LinkBody {
    target_task_id: Option<Uuid>,
    link_type: Option<String>,
}

pub async fn add_link(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<LinkBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    let body = body.into_inner();
    let target = body
        .target_task_id
        .ok_or_else(|| ApiError::bad_request("target_task_id is required"))?;
    let link_type = LinkType::parse(
        body.link_type
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("link_type is required"))?,
    )?;
    let (link_id, _) = state
        .commands
        .add_link(
            &principal.metadata(),
            project_id,
            task_id,
            target,
            link_type,
        )
        .await?;
    let link = q::task_links(&state.pool, task_id)
        .await?
        .into_iter()
        .find(|l| l.id == link_id)
        .ok_or_else(|| ApiError::new(ErrorCode::TASK_LINK_NOT_FOUND, "link not found"))?;
    created(link)
}

pub async fn remove_link(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, link_id) = path.into_inner();
    state
        .commands
        .remove_link(&principal.metadata(), project_id, task_id, link_id)
        .await?;
    no_content()
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "TaskCommentBody")]
pub struct CommentBody {
    pub(crate) content: Option<Value>,
}

pub(crate) async fn activity_or_404(
    state: &AppState,
    task_id: Uuid,
    id: Uuid,
) -> ApiResult<q::ActivityView> {
    q::activity(&state.pool, task_id, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ACTIVITY_NOT_FOUND, "activity not found"))
}

pub async fn add_comment(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<CommentBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    let content = body.into_inner().content.unwrap_or(Value::Null);
    // The response is the projected entry, read in the write's own round
    // trip when the write is fused.
    let (comment_id, rows) = state
        .commands
        .add_comment_reading(
            &principal.metadata(),
            project_id,
            task_id,
            principal.id(),
            content,
            q::activity_read,
        )
        .await?;
    match q::activity_from_read(&rows, task_id)? {
        Some(entry) => created(entry),
        None => created(activity_or_404(&state, task_id, comment_id).await?),
    }
}

/// Comments are edited through their activity id; other entries are not
/// comments.
pub(crate) async fn comment_target(state: &AppState, task_id: Uuid, id: Uuid) -> ApiResult<()> {
    let entry = activity_or_404(state, task_id, id).await?;
    if entry.activity_type != "comment" {
        return Err(ApiError::new(
            ErrorCode::ACTIVITY_NOT_A_COMMENT,
            "only comments can be edited or deleted",
        ));
    }
    Ok(())
}

pub async fn edit_comment(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    body: Json<CommentBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, comment_id) = path.into_inner();
    comment_target(&state, task_id, comment_id).await?;
    let content = body.into_inner().content.unwrap_or(Value::Null);
    state
        .commands
        .edit_comment(
            &principal.metadata(),
            project_id,
            task_id,
            comment_id,
            principal.id(),
            content,
        )
        .await?;
    crate::error::ok(activity_or_404(&state, task_id, comment_id).await?)
}

pub async fn delete_comment(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, comment_id) = path.into_inner();
    comment_target(&state, task_id, comment_id).await?;
    state
        .commands
        .delete_comment(
            &principal.metadata(),
            project_id,
            task_id,
            comment_id,
            principal.id(),
        )
        .await?;
    no_content()
}

/// Plain text of BlockNote blocks, one line per block (children indented),
/// for line diffs of descriptions.
fn blocks_text(value: &Value) -> String {
    fn walk(blocks: &Value, depth: usize, out: &mut Vec<String>) {
        for block in blocks.as_array().into_iter().flatten() {
            let mut line = String::new();
            match block.get("content") {
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if let Some(text) = part.get("text").and_then(Value::as_str) {
                            line.push_str(text);
                        }
                    }
                }
                Some(Value::String(text)) => line.push_str(text),
                _ => {}
            }
            out.push(format!("{}{line}", "  ".repeat(depth)));
            if let Some(children) = block.get("children") {
                walk(children, depth + 1, out);
            }
        }
    }
    let mut lines = Vec::new();
    walk(value, 0, &mut lines);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

pub(crate) fn line_diff(old: &Value, new: &Value) -> String {
    let (old, new) = (blocks_text(old), blocks_text(new));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("old", "new")
        .to_string()
}

pub async fn diff(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, activity_id) = path.into_inner();
    task_of_project(&state, project_id, task_id).await?;
    let entry = activity_or_404(&state, task_id, activity_id).await?;
    let event = state
        .commands
        .store
        .read_event(eventstore::EventKey::Id(entry.event_id))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ACTIVITY_NOT_FOUND, "activity not found"))?;
    let typed =
        TaskEvent::from_stored(&event.event_type, &event.payload).map_err(ApiError::internal)?;
    let changes: Vec<Value> = match typed {
        TaskEvent::Updated { changes } => changes.iter().map(change_diff).collect(),
        TaskEvent::Created { fields, .. } => {
            let fields = serde_json::to_value(&fields).map_err(ApiError::internal)?;
            fields
                .as_object()
                .into_iter()
                .flatten()
                .map(|(field, value)| json!({"field": field, "old": null, "new": value}))
                .collect()
        }
        TaskEvent::CommentEdited {
            content,
            old_content,
            ..
        } => {
            vec![
                json!({"field": "content", "old": old_content, "new": content,
                        "diff": line_diff(&old_content, &content)}),
            ]
        }
        TaskEvent::CommentAdded { content, .. } => {
            vec![json!({"field": "content", "old": null, "new": content})]
        }
        TaskEvent::LinkAdded {
            target_task_id,
            link_type,
            ..
        } => {
            vec![json!({"field": "link", "old": null,
                        "new": {"target_task_id": target_task_id, "link_type": link_type}})]
        }
        TaskEvent::Deleted {}
        | TaskEvent::CommentDeleted { .. }
        | TaskEvent::LinkRemoved { .. } => {
            vec![]
        }
        TaskEvent::AttachmentAdded {
            file_name,
            file_size,
            ..
        } => vec![json!({"field": "attachment", "old": null,
                         "new": {"file_name": file_name, "file_size": file_size}})],
        TaskEvent::AttachmentRemoved {
            file_name,
            file_size,
            ..
        } => vec![json!({"field": "attachment",
                         "old": {"file_name": file_name, "file_size": file_size}, "new": null})],
    };
    crate::error::ok(json!({
        "activity_id": activity_id,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "version": event.version,
        "recorded_at": event.recorded_at,
        "changes": changes,
    }))
}

fn change_diff(change: &TaskChange) -> Value {
    let mut out = json!({"field": change.field, "old": change.old, "new": change.new});
    if change.field == TaskField::Description {
        out["diff"] = Value::String(line_diff(&change.old, &change.new));
    }
    if let Some(id) = change.old_id {
        out["old_id"] = json!(id);
    }
    if let Some(id) = change.new_id {
        out["new_id"] = json!(id);
    }
    out
}

pub async fn revert(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, activity_id) = path.into_inner();
    let entry = activity_or_404(&state, task_id, activity_id).await?;
    state
        .commands
        .revert_task_change(&principal.metadata(), project_id, task_id, entry.event_id)
        .await?;
    task_response(
        actix_web::http::StatusCode::OK,
        live_task(&state, project_id, task_id).await?,
    )
}

pub async fn history(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    let items: Vec<HistoryEntry> = task_events(&state, project_id, task_id)
        .await?
        .iter()
        .map(HistoryEntry::of)
        .collect();
    crate::error::ok(json!({ "items": items }))
}
