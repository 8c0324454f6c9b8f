//! `/users/me`: the caller's own profile, password and API keys.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::ErrorCode;
use projections::queries;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Auth, AuthStale, SessionAuth};
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;

pub async fn me(state: web::Data<AppState>, Auth(principal): Auth) -> ApiResult<HttpResponse> {
    ok(queries::user(&state.pool, principal.id())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::USER_NOT_FOUND, "user not found"))?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ProfileBody {
    full_name: Option<String>,
    email: Option<String>,
}

pub async fn update_me(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<ProfileBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    state
        .commands
        .update_profile(
            &principal.metadata(),
            principal.id(),
            body.full_name,
            body.email,
        )
        .await?;
    user_response(&state, principal.id()).await
}

pub async fn user_response(state: &AppState, id: Uuid) -> ApiResult<HttpResponse> {
    let user = queries::user(&state.pool, id)
        .await?
        .filter(|u| !u.deleted)
        .ok_or_else(|| ApiError::new(ErrorCode::USER_NOT_FOUND, "user not found"))?;
    ok(user)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PasswordBody {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    state: web::Data<AppState>,
    AuthStale(principal): AuthStale,
    body: Json<PasswordBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    if body.current_password.is_empty() {
        return Err(ApiError::bad_request("current_password is required"));
    }
    state
        .commands
        .change_own_password(
            &principal.metadata(),
            principal.id(),
            &body.current_password,
            body.new_password,
        )
        .await?;
    no_content()
}

pub async fn global_permissions(Auth(principal): Auth) -> ApiResult<HttpResponse> {
    ok(json!({ "permissions": &*principal.user.permissions }))
}

pub async fn list_api_keys(
    state: web::Data<AppState>,
    SessionAuth(principal): SessionAuth,
) -> ApiResult<HttpResponse> {
    ok(queries::api_keys(&state.pool, principal.id()).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct NewKeyBody {
    #[serde(default)]
    name: String,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct MintedKey {
    #[serde(flatten)]
    view: queries::ApiKeyView,
    key: String,
}

pub async fn create_api_key(
    state: web::Data<AppState>,
    SessionAuth(principal): SessionAuth,
    body: Json<NewKeyBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let minted = state
        .commands
        .create_api_key(
            &principal.metadata(),
            principal.id(),
            body.name,
            body.expires_at,
        )
        .await?;
    let view = queries::api_key(&state.pool, minted.key_id)
        .await?
        .ok_or_else(|| ApiError::internal("minted key missing from read model"))?;
    created(MintedKey {
        view,
        key: minted.raw,
    })
}

pub async fn revoke_api_key(
    state: web::Data<AppState>,
    SessionAuth(principal): SessionAuth,
    key_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    state
        .commands
        .revoke_api_key(&principal.metadata(), principal.id(), key_id.into_inner())
        .await?;
    no_content()
}
