//! `/projects/:id/views`: saved interaction views of a context
//! (`?context=sprint|backlog|timeline[&sprint_id=]`) and their manual task
//! positions.

use actix_web::{HttpResponse, web};
use commands::views::{NewView, ViewPatch};
use domain::ErrorCode;
use domain::view::{TaskPosition, ViewContext, ViewScope};
use projections::queries_sprints as queries;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ProjectAuth, ProjectRead, perm};
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ScopeQuery {
    pub(crate) context: Option<String>,
    pub(crate) sprint_id: Option<String>,
}

impl ScopeQuery {
    /// The context (default `sprint`) and, for sprint context, the sprint.
    pub(crate) fn scope(&self, project_id: Uuid) -> ApiResult<ViewScope> {
        let context = match self.context.as_deref().filter(|c| !c.is_empty()) {
            None => ViewContext::Sprint,
            Some(text) => {
                ViewContext::parse(text).ok_or_else(|| ApiError::bad_request("invalid context"))?
            }
        };
        let sprint_id = match context {
            ViewContext::Sprint => {
                let raw = self
                    .sprint_id
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ApiError::bad_request("sprint_id is required"))?;
                Some(
                    raw.parse()
                        .map_err(|_| ApiError::bad_request("sprint_id must be a uuid"))?,
                )
            }
            // Ignored for project-level contexts.
            ViewContext::Backlog | ViewContext::Timeline => None,
        };
        Ok(ViewScope {
            project_id,
            context,
            sprint_id,
        })
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::VIEW_NOT_FOUND, "view not found")
}

pub(crate) async fn view(
    state: &AppState,
    project_id: Uuid,
    view_id: Uuid,
) -> ApiResult<queries::ViewView> {
    queries::view(&state.pool, project_id, view_id)
        .await?
        .ok_or_else(not_found)
}

pub async fn list(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::SprintsRead>,
    project_id: web::Path<Uuid>,
    query: web::Query<ScopeQuery>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let scope = query.scope(project_id)?;
    if let Some(sprint_id) = scope.sprint_id
        && queries::sprint(&state.pool, project_id, sprint_id)
            .await?
            .is_none()
    {
        return Err(ApiError::new(
            ErrorCode::SPRINT_NOT_FOUND,
            "sprint not found",
        ));
    }
    let items = queries::views(&state.pool, project_id, scope.context, scope.sprint_id).await?;
    ok(json!({ "items": items }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ViewBody {
    pub(crate) name: Option<String>,
    pub(crate) view_type: Option<String>,
    pub(crate) config: Option<Value>,
    pub(crate) position: Option<f64>,
}

impl ViewBody {
    /// An empty `view_type` means "unchanged" (the default on create).
    pub(crate) fn view_type(&self) -> Option<String> {
        self.view_type.clone().filter(|t| !t.is_empty())
    }
}

pub async fn create(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    project_id: web::Path<Uuid>,
    query: web::Query<ScopeQuery>,
    body: Json<ViewBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let scope = query.scope(project_id)?;
    let body = body.into_inner();
    let view_type = body.view_type();
    let name = body
        .name
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let view_id = state
        .commands
        .create_view(
            &principal.metadata(),
            scope,
            NewView {
                name,
                view_type,
                config: body.config,
                position: body.position,
            },
        )
        .await?;
    if let Some(view) = queries::view(&state.pool, project_id, view_id).await? {
        return created(view);
    }
    // Committed, then deleted with its sprint by a deletion that queued
    // behind it: answer what was created rather than "not found".
    let events = state.commands.store.read_stream(view_id, 0).await?;
    created(
        events
            .first()
            .and_then(queries::view_as_created)
            .ok_or_else(not_found)?,
    )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ViewReorderBody")]
pub struct ReorderBody {
    #[serde(default)]
    view_ids: Vec<Uuid>,
}

pub async fn reorder(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    project_id: web::Path<Uuid>,
    query: web::Query<ScopeQuery>,
    body: Json<ReorderBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let scope = query.scope(project_id)?;
    state
        .commands
        .reorder_views(&principal.metadata(), scope, body.into_inner().view_ids)
        .await?;
    no_content()
}

pub async fn get(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::SprintsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, view_id) = path.into_inner();
    ok(view(&state, project_id, view_id).await?)
}

pub async fn patch(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<ViewBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, view_id) = path.into_inner();
    let body = body.into_inner();
    let patch = ViewPatch {
        view_type: body.view_type(),
        name: body.name,
        config: body.config.filter(|c| !c.is_null()),
        position: body.position,
    };
    state
        .commands
        .update_view(&principal.metadata(), project_id, view_id, patch)
        .await?;
    ok(view(&state, project_id, view_id).await?)
}

pub async fn delete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, view_id) = path.into_inner();
    state
        .commands
        .delete_view(&principal.metadata(), project_id, view_id)
        .await?;
    no_content()
}

pub async fn task_positions(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, view_id) = path.into_inner();
    view(&state, project_id, view_id).await?;
    ok(json!({ "items": queries::task_positions(&state.pool, view_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PositionBody {
    task_id: Option<Uuid>,
    position: Option<f64>,
    group_key: Option<String>,
}

impl PositionBody {
    fn into_position(self, task_id: Option<Uuid>) -> ApiResult<TaskPosition> {
        Ok(TaskPosition {
            task_id: task_id
                .or(self.task_id)
                .ok_or_else(|| ApiError::bad_request("task_id is required"))?,
            position: self
                .position
                .ok_or_else(|| ApiError::bad_request("position is required"))?,
            group_key: self.group_key,
        })
    }
}

async fn set_positions(
    state: &AppState,
    principal: &crate::auth::Principal,
    project_id: Uuid,
    view_id: Uuid,
    items: Vec<TaskPosition>,
) -> ApiResult<HttpResponse> {
    state
        .commands
        .position_tasks(&principal.metadata(), project_id, view_id, items)
        .await?;
    no_content()
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct BulkPositions {
    #[serde(default)]
    items: Vec<PositionBody>,
}

pub async fn put_task_positions(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<BulkPositions>,
) -> ApiResult<HttpResponse> {
    let (project_id, view_id) = path.into_inner();
    view(&state, project_id, view_id).await?;
    let items = body
        .into_inner()
        .items
        .into_iter()
        .map(|item| item.into_position(None))
        .collect::<ApiResult<Vec<_>>>()?;
    set_positions(&state, &principal, project_id, view_id, items).await
}

pub async fn put_task_position(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    body: Json<PositionBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, view_id, task_id) = path.into_inner();
    view(&state, project_id, view_id).await?;
    let item = body.into_inner().into_position(Some(task_id))?;
    set_positions(&state, &principal, project_id, view_id, vec![item]).await
}
