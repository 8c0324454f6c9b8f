//! `/projects`: projects, their members and their roles.

use actix_web::{HttpResponse, web};
use commands::projects::{NewProject, ProjectPatch};
use domain::ErrorCode;
use domain::permissions::global;
use projections::queries;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Auth, ProjectAuth, ProjectRead, perm, project_permission_map};
use crate::error::{ApiError, ApiResult, created, ok};
use crate::extract::Json;
use crate::rest::{Paging, parse_permissions};

pub async fn list(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    paging: web::Query<Paging>,
) -> ApiResult<HttpResponse> {
    let (page, page_size) = paging.resolve();
    let member_of = (!principal.has_global(global::PROJECTS_READ)).then(|| principal.id());
    let result = queries::projects(&state.pool, member_of, page, page_size).await?;
    ok(json!({"items": result.items, "total": result.total, "page": page, "page_size": page_size}))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ProjectCreateBody")]
pub struct CreateBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: Option<String>,
    task_id_prefix: Option<String>,
    #[serde(default)]
    is_public: bool,
    settings: Option<Value>,
}

pub async fn create(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<CreateBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::PROJECTS_CREATE)?;
    let body = body.into_inner();
    let id = state
        .commands
        .create_project(
            &principal.metadata(),
            principal.id(),
            NewProject {
                name: body.name,
                description: body.description.unwrap_or_default(),
                task_id_prefix: body.task_id_prefix,
                is_public: body.is_public,
                settings: body.settings,
            },
        )
        .await?;
    let project = queries::project(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::internal("created project missing from read model"))?;
    created(project)
}

pub async fn get(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::ProjectsRead>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let project = queries::project(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PROJECT_NOT_FOUND, "project not found"))?;
    // Plugins' orchestration summaries of the project, when there are any
    // (the response is otherwise what PATCH answers).
    let summaries =
        projections::queries_tasks::plugin_summaries_of_project(&state.pool, id).await?;
    match serde_json::to_value(&project) {
        Ok(Value::Object(mut map)) if !summaries.is_empty() => {
            map.insert("plugin_summaries".into(), Value::Object(summaries));
            ok(Value::Object(map))
        }
        _ => ok(project),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ProjectPatchBody")]
pub struct PatchBody {
    name: Option<String>,
    description: Option<String>,
    task_id_prefix: Option<String>,
    is_public: Option<bool>,
    settings: Option<Value>,
}

pub async fn patch(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::ProjectsWrite>,
    id: web::Path<Uuid>,
    body: Json<PatchBody>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let body = body.into_inner();
    state
        .commands
        .update_project(
            &principal.metadata(),
            id,
            ProjectPatch {
                name: body.name,
                description: body.description,
                task_id_prefix: body.task_id_prefix,
                is_public: body.is_public,
                settings: body.settings.filter(|s| !s.is_null()),
            },
        )
        .await?;
    ok(queries::project(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PROJECT_NOT_FOUND, "project not found"))?)
}

pub async fn delete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::ProjectsDelete>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    state
        .commands
        .delete_project(&principal.metadata(), id)
        .await?;
    ok(json!({"message": "project deleted"}))
}

pub async fn members(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::MembersRead>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    ok(queries::members(&state.pool, id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct AddMemberBody {
    user_id: Option<Uuid>,
    project_role_id: Option<Uuid>,
}

pub async fn add_member(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::MembersWrite>,
    id: web::Path<Uuid>,
    body: Json<AddMemberBody>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let body = body.into_inner();
    let user_id = body
        .user_id
        .ok_or_else(|| ApiError::bad_request("user_id is required"))?;
    let role_id = body
        .project_role_id
        .ok_or_else(|| ApiError::new(ErrorCode::ROLE_REQUIRED, "project_role_id is required"))?;
    let member_id = state
        .commands
        .add_member(&principal.metadata(), id, user_id, role_id)
        .await?;
    created(member_view(&state, member_id).await?)
}

async fn member_view(state: &AppState, member_id: Uuid) -> ApiResult<queries::MemberView> {
    queries::member(&state.pool, member_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PROJECT_MEMBER_NOT_FOUND, "member not found"))
}

pub async fn my_permissions(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::ProjectsRead>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let permissions = project_permission_map(&state, &principal, id).await?;
    ok(json!({ "permissions": permissions }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ChangeRoleBody {
    project_role_id: Option<Uuid>,
}

pub async fn change_member_role(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::MembersWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<ChangeRoleBody>,
) -> ApiResult<HttpResponse> {
    let (id, member_or_user) = path.into_inner();
    let role_id = body
        .into_inner()
        .project_role_id
        .ok_or_else(|| ApiError::new(ErrorCode::ROLE_REQUIRED, "project_role_id is required"))?;
    let member_id = state.commands.resolve_member(id, member_or_user).await?;
    state
        .commands
        .change_member_role(&principal.metadata(), id, member_id, role_id)
        .await?;
    ok(member_view(&state, member_id).await?)
}

pub async fn remove_member(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::MembersWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (id, member_or_user) = path.into_inner();
    let member_id = state.commands.resolve_member(id, member_or_user).await?;
    state
        .commands
        .remove_member(&principal.metadata(), id, member_id)
        .await?;
    ok(json!({"message": "member removed"}))
}

pub async fn roles(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::RolesRead>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    ok(queries::project_roles(&state.pool, id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ProjectRoleBody")]
pub struct RoleBody {
    role_name: Option<String>,
    permissions: Option<Value>,
}

async fn role_in_project(
    state: &AppState,
    project_id: Uuid,
    role_id: Uuid,
) -> ApiResult<queries::ProjectRoleView> {
    queries::project_role(&state.pool, role_id)
        .await?
        .filter(|r| r.project_id == project_id)
        .ok_or_else(|| ApiError::new(ErrorCode::ROLE_NOT_FOUND, "project role not found"))
}

pub async fn create_role(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::RolesWrite>,
    id: web::Path<Uuid>,
    body: Json<RoleBody>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let body = body.into_inner();
    let permissions = parse_permissions(body.permissions.unwrap_or(Value::Array(vec![])))?;
    let role_id = state
        .commands
        .create_project_role(
            &principal.metadata(),
            id,
            body.role_name.unwrap_or_default(),
            permissions,
        )
        .await?;
    created(role_in_project(&state, id, role_id).await?)
}

pub async fn patch_role(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::RolesWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<RoleBody>,
) -> ApiResult<HttpResponse> {
    let (id, role_id) = path.into_inner();
    let body = body.into_inner();
    let permissions = body.permissions.map(parse_permissions).transpose()?;
    state
        .commands
        .update_project_role(
            &principal.metadata(),
            id,
            role_id,
            body.role_name,
            permissions,
        )
        .await?;
    ok(role_in_project(&state, id, role_id).await?)
}

pub async fn delete_role(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::RolesWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (id, role_id) = path.into_inner();
    state
        .commands
        .delete_project_role(&principal.metadata(), id, role_id)
        .await?;
    ok(json!({"message": "project role deleted"}))
}
