//! `/admin`: user management and global roles.

use actix_web::{HttpResponse, web};
use commands::users::NewUser;
use domain::permissions::global;
use domain::{ErrorCode, global_role};
use projections::queries;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;
use crate::rest::users::user_response;
use crate::rest::{Paging, parse_permissions};

pub async fn list_users(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<UserListQuery>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::USERS_READ)?;
    let (page, page_size) = Paging::new(query.page, query.page_size).resolve();
    let result = queries::users(&state.pool, page, page_size, query.search.as_deref()).await?;
    ok(json!({"items": result.items, "total": result.total, "page": page, "page_size": page_size}))
}

/// Not `#[serde(flatten)]` over `Paging`: flattening makes the query
/// deserializer hand numbers over as strings, which then fail to parse.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct UserListQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    search: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateUserBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    full_name: String,
    email: Option<String>,
    role: Option<String>,
}

async fn role_id_by_name(state: &AppState, name: &str) -> ApiResult<Uuid> {
    Ok(queries::global_role_by_name(&state.pool, name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ROLE_NOT_FOUND,
                format!("no global role {name:?}"),
            )
        })?
        .id)
}

pub async fn create_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<CreateUserBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::USERS_WRITE)?;
    let body = body.into_inner();
    let role_name = body.role.unwrap_or_else(|| global_role::USER.to_owned());
    // Handing out a role is itself a privilege.
    if role_name != global_role::USER {
        principal.require_global(global::GLOBAL_ROLES_ASSIGN)?;
    }
    let role_id = role_id_by_name(&state, &role_name).await?;
    let id = state
        .commands
        .create_user(
            &principal.metadata(),
            NewUser {
                username: body.username,
                password: body.password,
                full_name: body.full_name,
                email: body.email,
                role_id,
                must_change_password: true,
            },
        )
        .await?;
    let user = queries::user(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::internal("created user missing from read model"))?;
    created(user)
}

pub async fn get_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::USERS_READ)?;
    user_response(&state, id.into_inner()).await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PatchUserBody {
    full_name: Option<String>,
    email: Option<String>,
    role: Option<String>,
}

pub async fn patch_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
    body: Json<PatchUserBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::USERS_WRITE)?;
    let id = id.into_inner();
    let body = body.into_inner();
    let meta = principal.metadata();
    if let Some(role) = &body.role {
        principal.require_global(global::GLOBAL_ROLES_ASSIGN)?;
        let role_id = role_id_by_name(&state, role).await?;
        state.commands.change_user_role(&meta, id, role_id).await?;
    }
    if body.full_name.is_some() || body.email.is_some() {
        state
            .commands
            .update_profile(&meta, id, body.full_name, body.email)
            .await?;
    }
    user_response(&state, id).await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ResetPasswordBody {
    #[serde(default)]
    new_password: String,
}

pub async fn reset_password(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
    body: Json<ResetPasswordBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::USERS_WRITE)?;
    state
        .commands
        .reset_password(
            &principal.metadata(),
            id.into_inner(),
            body.into_inner().new_password,
        )
        .await?;
    no_content()
}

pub async fn delete_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::USERS_DELETE)?;
    let id = id.into_inner();
    if id == principal.id() {
        return Err(ApiError::bad_request("you cannot delete your own account"));
    }
    state
        .commands
        .delete_user(&principal.metadata(), id)
        .await?;
    no_content()
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct AssignRolesBody {
    role_ids: Option<Vec<Uuid>>,
    role_id: Option<Uuid>,
}

/// Replaces the user's global role. Users hold exactly one global role in
/// the seeds' model, so the list must name exactly one.
pub async fn assign_roles(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
    body: Json<AssignRolesBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::GLOBAL_ROLES_ASSIGN)?;
    let body = body.into_inner();
    let role_id = match (body.role_ids.as_deref(), body.role_id) {
        (Some([one]), _) => *one,
        (None, Some(one)) => one,
        (Some([]), _) | (None, None) => {
            return Err(ApiError::new(
                ErrorCode::ROLE_REQUIRED,
                "exactly one role id is required",
            ));
        }
        (Some(_), _) => {
            return Err(ApiError::bad_request(
                "a user holds exactly one global role",
            ));
        }
    };
    let id = id.into_inner();
    state
        .commands
        .change_user_role(&principal.metadata(), id, role_id)
        .await?;
    user_response(&state, id).await
}

pub async fn list_roles(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::GLOBAL_ROLES_READ)?;
    ok(queries::global_roles(&state.pool).await?)
}

async fn role_response(
    state: &AppState,
    id: Uuid,
    status_created: bool,
) -> ApiResult<HttpResponse> {
    let role = queries::global_role(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ROLE_NOT_FOUND, "global role not found"))?;
    if status_created {
        created(role)
    } else {
        ok(role)
    }
}

pub async fn get_role(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::GLOBAL_ROLES_READ)?;
    role_response(&state, id.into_inner(), false).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "AdminRoleBody")]
pub struct RoleBody {
    name: Option<String>,
    permissions: Option<Value>,
}

pub async fn create_role(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<RoleBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::GLOBAL_ROLES_WRITE)?;
    let body = body.into_inner();
    let permissions = parse_permissions(body.permissions.unwrap_or(Value::Array(vec![])))?;
    let id = state
        .commands
        .create_global_role(
            &principal.metadata(),
            body.name.unwrap_or_default(),
            permissions,
        )
        .await?;
    role_response(&state, id, true).await
}

pub async fn patch_role(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
    body: Json<RoleBody>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::GLOBAL_ROLES_WRITE)?;
    let body = body.into_inner();
    let permissions = body.permissions.map(parse_permissions).transpose()?;
    let id = id.into_inner();
    state
        .commands
        .update_global_role(&principal.metadata(), id, body.name, permissions)
        .await?;
    role_response(&state, id, false).await
}

pub async fn delete_role(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::GLOBAL_ROLES_WRITE)?;
    state
        .commands
        .delete_global_role(&principal.metadata(), id.into_inner())
        .await?;
    ok(json!({"message": "global role deleted"}))
}
