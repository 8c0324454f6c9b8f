//! `/projects/:id/task-types`, `/task-statuses`, `/custom-fields`.

use actix_web::{HttpResponse, web};
use domain::ErrorCode;
use domain::task_config::{ConfigCommand, CustomField, FieldOption};
use projections::queries;
use serde::{Deserialize, Deserializer};
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Principal, ProjectAuth, ProjectRead, perm};
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;

/// Three-state PATCH fields: absent → `None`, `null` → `Some(None)`.
pub fn three_state<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

async fn configure(
    state: &AppState,
    principal: &Principal,
    project_id: Uuid,
    command: ConfigCommand,
) -> ApiResult<()> {
    state
        .commands
        .configure_tasks(&principal.metadata(), project_id, command)
        .await?;
    Ok(())
}

async fn type_view(
    state: &AppState,
    project_id: Uuid,
    id: Uuid,
) -> ApiResult<queries::TaskTypeView> {
    queries::task_types(&state.pool, project_id)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::new(ErrorCode::TASK_TYPE_NOT_FOUND, "task type not found"))
}

pub async fn list_types(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    project_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    ok(json!({ "items": queries::task_types(&state.pool, project_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct TypeBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "three_state")]
    icon: Option<Option<String>>,
    #[serde(default, deserialize_with = "three_state")]
    color: Option<Option<String>>,
    #[serde(default, deserialize_with = "three_state")]
    description: Option<Option<String>>,
}

pub async fn create_type(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    project_id: web::Path<Uuid>,
    body: Json<TypeBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let body = body.into_inner();
    let type_id = Uuid::now_v7();
    let command = ConfigCommand::CreateType {
        type_id,
        name: body.name.unwrap_or_default(),
        icon: body.icon.flatten(),
        color: body.color.flatten(),
        description: body.description.flatten(),
    };
    configure(&state, &principal, project_id, command).await?;
    created(type_view(&state, project_id, type_id).await?)
}

pub async fn patch_type(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<TypeBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, type_id) = path.into_inner();
    let body = body.into_inner();
    let command = ConfigCommand::UpdateType {
        type_id,
        name: body.name,
        icon: body.icon,
        color: body.color,
        description: body.description,
    };
    configure(&state, &principal, project_id, command).await?;
    ok(type_view(&state, project_id, type_id).await?)
}

pub async fn delete_type(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, type_id) = path.into_inner();
    configure(
        &state,
        &principal,
        project_id,
        ConfigCommand::DeleteType { type_id },
    )
    .await?;
    ok(json!({ "message": "task type deleted" }))
}

pub async fn default_type(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, type_id) = path.into_inner();
    configure(
        &state,
        &principal,
        project_id,
        ConfigCommand::SetDefaultType { type_id },
    )
    .await?;
    ok(type_view(&state, project_id, type_id).await?)
}

async fn status_view(
    state: &AppState,
    project_id: Uuid,
    id: Uuid,
) -> ApiResult<queries::TaskStatusView> {
    queries::task_statuses(&state.pool, project_id)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::new(ErrorCode::TASK_STATUS_NOT_FOUND, "task status not found"))
}

pub async fn list_statuses(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    project_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    ok(json!({ "items": queries::task_statuses(&state.pool, project_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct StatusBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "three_state")]
    color: Option<Option<String>>,
    position: Option<i64>,
    category: Option<String>,
}

pub async fn create_status(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    project_id: web::Path<Uuid>,
    body: Json<StatusBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let body = body.into_inner();
    let status_id = Uuid::now_v7();
    let command = ConfigCommand::CreateStatus {
        status_id,
        name: body.name.unwrap_or_default(),
        color: body.color.flatten(),
        position: body.position,
        category: body.category.unwrap_or_default(),
    };
    configure(&state, &principal, project_id, command).await?;
    created(status_view(&state, project_id, status_id).await?)
}

pub async fn patch_status(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<StatusBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, status_id) = path.into_inner();
    let body = body.into_inner();
    let command = ConfigCommand::UpdateStatus {
        status_id,
        name: body.name,
        color: body.color,
        position: body.position,
        category: body.category,
    };
    configure(&state, &principal, project_id, command).await?;
    ok(status_view(&state, project_id, status_id).await?)
}

pub async fn delete_status(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, status_id) = path.into_inner();
    configure(
        &state,
        &principal,
        project_id,
        ConfigCommand::DeleteStatus { status_id },
    )
    .await?;
    ok(json!({ "message": "task status deleted" }))
}

pub async fn default_status(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, status_id) = path.into_inner();
    configure(
        &state,
        &principal,
        project_id,
        ConfigCommand::SetDefaultStatus { status_id },
    )
    .await?;
    ok(status_view(&state, project_id, status_id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "TaskConfigReorderBody")]
pub struct ReorderBody {
    #[serde(default)]
    status_ids: Vec<Uuid>,
}

pub async fn reorder_statuses(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    project_id: web::Path<Uuid>,
    body: Json<ReorderBody>,
) -> ApiResult<HttpResponse> {
    let status_ids = body.into_inner().status_ids;
    configure(
        &state,
        &principal,
        project_id.into_inner(),
        ConfigCommand::ReorderStatuses { status_ids },
    )
    .await?;
    no_content()
}

async fn field_view(
    state: &AppState,
    project_id: Uuid,
    id: Uuid,
) -> ApiResult<queries::CustomFieldView> {
    queries::custom_fields(&state.pool, project_id)
        .await?
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(|| ApiError::new(ErrorCode::CUSTOM_FIELD_NOT_FOUND, "custom field not found"))
}

pub async fn list_fields(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    project_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    ok(json!({ "items": queries::custom_fields(&state.pool, project_id).await? }))
}

pub async fn get_field(
    state: web::Data<AppState>,
    ProjectRead { caller: _, .. }: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, field_id) = path.into_inner();
    ok(field_view(&state, project_id, field_id).await?)
}

/// Options arrive as `[{value, color?}]` or, from older clients, `[string]`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OptionInput {
    Plain(String),
    Full(FieldOption),
}

fn options(input: Option<Vec<OptionInput>>) -> Option<Vec<FieldOption>> {
    input.map(|list| {
        list.into_iter()
            .map(|o| match o {
                OptionInput::Plain(value) => FieldOption { value, color: None },
                OptionInput::Full(option) => option,
            })
            .collect()
    })
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct FieldBody {
    field_key: Option<String>,
    display_name: Option<String>,
    field_type: Option<String>,
    options: Option<Vec<OptionInput>>,
    is_required: Option<bool>,
}

pub async fn create_field(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    project_id: web::Path<Uuid>,
    body: Json<FieldBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let body = body.into_inner();
    let field_id = Uuid::now_v7();
    let command = ConfigCommand::CreateField {
        field_id,
        field: CustomField {
            field_key: body.field_key.unwrap_or_default(),
            display_name: body.display_name.unwrap_or_default(),
            field_type: body.field_type.unwrap_or_default(),
            options: options(body.options).unwrap_or_default(),
            is_required: body.is_required.unwrap_or(false),
        },
    };
    configure(&state, &principal, project_id, command).await?;
    created(field_view(&state, project_id, field_id).await?)
}

pub async fn patch_field(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<FieldBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, field_id) = path.into_inner();
    let body = body.into_inner();
    if body.field_key.is_some() {
        return Err(ApiError::new(
            ErrorCode::CUSTOM_FIELD_KEY_INVALID,
            "field_key cannot be changed",
        ));
    }
    let command = ConfigCommand::UpdateField {
        field_id,
        display_name: body.display_name,
        field_type: body.field_type,
        options: options(body.options),
        is_required: body.is_required,
    };
    configure(&state, &principal, project_id, command).await?;
    ok(field_view(&state, project_id, field_id).await?)
}

pub async fn delete_field(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, field_id) = path.into_inner();
    configure(
        &state,
        &principal,
        project_id,
        ConfigCommand::DeleteField { field_id },
    )
    .await?;
    ok(json!({ "message": "custom field deleted" }))
}
