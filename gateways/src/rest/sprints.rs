//! `/projects/:id/sprints`: sprints, their completion, history and
//! point-in-time reads.

use actix_web::{HttpResponse, web};
use commands::sprints::{NewSprint, SprintPatch};
use domain::ErrorCode;
use domain::sprint::parse_date;
use projections::queries_sprints::{self as queries, AsOf};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ProjectAuth, ProjectRead, perm};
use crate::error::{ApiError, ApiResult, created, ok};
use crate::extract::{Json, OptionalJson};
use crate::rest::task_config::three_state;

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::SPRINT_NOT_FOUND, "sprint not found")
}

pub(crate) fn date(text: Option<String>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    Ok(text.map(|t| parse_date(&t)).transpose()?)
}

pub(crate) async fn sprint_view(
    state: &AppState,
    project_id: Uuid,
    sprint_id: Uuid,
) -> ApiResult<queries::SprintView> {
    queries::sprint(&state.pool, project_id, sprint_id)
        .await?
        .ok_or_else(not_found)
}

pub async fn list(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::SprintsRead>,
    project_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    ok(json!({ "items": queries::sprints(&state.pool, project_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "SprintCreateBody")]
pub struct CreateBody {
    pub(crate) name: Option<String>,
    pub(crate) start_date: Option<String>,
    pub(crate) end_date: Option<String>,
    pub(crate) goal: Option<String>,
    pub(crate) status: Option<String>,
}

pub async fn create(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    project_id: web::Path<Uuid>,
    body: Json<CreateBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let body = body.into_inner();
    let name = body
        .name
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let sprint_id = state
        .commands
        .create_sprint(
            &principal.metadata(),
            project_id,
            NewSprint {
                name,
                start_date: date(body.start_date)?,
                end_date: date(body.end_date)?,
                goal: body.goal,
                status: body.status,
            },
        )
        .await?;
    created(sprint_view(&state, project_id, sprint_id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct GetQuery {
    /// A stream version, or an RFC 3339 time.
    as_of: Option<String>,
}

pub async fn get(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::SprintsRead>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<GetQuery>,
) -> ApiResult<HttpResponse> {
    let (project_id, sprint_id) = path.into_inner();
    match query.into_inner().as_of {
        None => ok(sprint_view(&state, project_id, sprint_id).await?),
        Some(raw) => {
            let as_of = AsOf::parse(&raw).ok_or_else(|| {
                ApiError::bad_request("as_of must be a version number or an RFC 3339 time")
            })?;
            ok(
                queries::sprint_as_of(&state.commands.store, project_id, sprint_id, as_of)
                    .await?
                    .ok_or_else(not_found)?,
            )
        }
    }
}

pub async fn history(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::SprintsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, sprint_id) = path.into_inner();
    let items = queries::sprint_history(&state.commands.store, project_id, sprint_id)
        .await?
        .ok_or_else(not_found)?;
    ok(json!({ "items": items }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "SprintPatchBody")]
pub struct PatchBody {
    pub(crate) name: Option<String>,
    #[serde(default, deserialize_with = "three_state")]
    pub(crate) start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "three_state")]
    pub(crate) end_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "three_state")]
    pub(crate) goal: Option<Option<String>>,
    pub(crate) status: Option<String>,
}

pub async fn patch(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<PatchBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, sprint_id) = path.into_inner();
    let body = body.into_inner();
    let patch = SprintPatch {
        name: body.name,
        start_date: body.start_date.map(date).transpose()?,
        end_date: body.end_date.map(date).transpose()?,
        goal: body.goal,
        status: body.status,
    };
    state
        .commands
        .update_sprint(&principal.metadata(), project_id, sprint_id, patch)
        .await?;
    ok(sprint_view(&state, project_id, sprint_id).await?)
}

pub async fn delete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, sprint_id) = path.into_inner();
    state
        .commands
        .delete_sprint(&principal.metadata(), project_id, sprint_id)
        .await?;
    ok(json!({ "message": "sprint deleted" }))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(rename = "SprintCompleteBody")]
pub struct CompleteBody {
    pub(crate) move_to_sprint_id: Option<Uuid>,
}

/// `POST /:sprintId/complete`; the body is optional (no body: backlog).
pub async fn complete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::SprintsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, sprint_id) = path.into_inner();
    let body = body.unwrap_or_default();
    state
        .commands
        .complete_sprint(
            &principal.metadata(),
            project_id,
            sprint_id,
            body.move_to_sprint_id,
        )
        .await?;
    ok(sprint_view(&state, project_id, sprint_id).await?)
}
