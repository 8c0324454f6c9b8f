//! `/auth`: login, refresh, logout. Tokens travel only in HttpOnly cookies.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::{HttpRequest, HttpResponse, web};
use commands::Credentials;
use domain::ErrorCode;
use eventstore::Metadata;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::{AuthStale, Via};
use crate::error::{ApiError, ApiResult, ok};
use crate::extract::Json;

pub const ACCESS_COOKIE: &str = "access_token";
pub const REFRESH_COOKIE: &str = "refresh_token";
pub const REFRESH_PATH: &str = "/api/v1/auth/refresh";

#[derive(Deserialize, schemars::JsonSchema)]
pub struct LoginBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    remember_me: bool,
}

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    secure: bool,
    max_age: i64,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(secure)
        .same_site(if name == REFRESH_COOKIE {
            SameSite::Strict
        } else {
            SameSite::Lax
        })
        .max_age(time::Duration::seconds(max_age))
        .finish()
}

fn message(text: &str) -> ApiResult<HttpResponse> {
    ok(json!({ "message": text }))
}

fn with_credentials(
    state: &AppState,
    text: &str,
    credentials: Credentials,
) -> ApiResult<HttpResponse> {
    let secure = state.commands.auth.cookie_secure;
    let mut response = message(text)?;
    for cookie in [
        cookie(
            ACCESS_COOKIE,
            credentials.access_token,
            "/",
            secure,
            credentials.access_ttl.as_secs() as i64,
        ),
        cookie(
            REFRESH_COOKIE,
            credentials.refresh_token,
            REFRESH_PATH,
            secure,
            credentials.refresh_ttl.as_secs() as i64,
        ),
    ] {
        response.add_cookie(&cookie).map_err(ApiError::internal)?;
    }
    Ok(response)
}

pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    if body.username.trim().is_empty() {
        return Err(ApiError::bad_request("username is required"));
    }
    if body.password.chars().count() < domain::user::PASSWORD_MIN {
        return Err(ApiError::bad_request(
            "password must be at least 8 characters",
        ));
    }
    let ip = state.client_ip(&req);
    state
        .login_limiter
        .check_shared(&ip, &body.username)
        .await?;
    let (user_id, must_change) = match state
        .commands
        .check_password_login(&body.username, &body.password)
        .await
    {
        Ok(found) => found,
        Err(error) => {
            state
                .login_limiter
                .record_failure_shared(&ip, &body.username)
                .await;
            return Err(error.into());
        }
    };
    let credentials = state
        .commands
        .start_session(user_id, must_change, body.remember_me)
        .await?;
    with_credentials(&state, "logged in", credentials)
}

/// Metadata for what an unauthenticated request causes (a refresh token
/// presented twice revokes its session: the system does that, in this
/// request).
fn anonymous_metadata() -> Metadata {
    Metadata {
        request_id: crate::error::request_id(),
        correlation_id: crate::error::request_id(),
        ..Metadata::system("rest")
    }
}

pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let Some(raw) = req
        .cookie(REFRESH_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Err(ApiError::new(
            ErrorCode::AUTH_MISSING_TOKEN,
            "refresh token cookie missing",
        ));
    };
    let credentials = state
        .commands
        .rotate_session(&anonymous_metadata(), &raw)
        .await?;
    with_credentials(&state, "token refreshed", credentials)
}

pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    AuthStale(principal): AuthStale,
) -> ApiResult<HttpResponse> {
    let Via::Session { family } = principal.via else {
        return Err(ApiError::bad_request(
            "logout ends a session (cookie or Bearer JWT); an API key has no session \
             (revoke the key with DELETE /api/v1/users/me/api-keys/{id})",
        ));
    };
    let refresh = req.cookie(REFRESH_COOKIE);
    state
        .commands
        .logout(
            &principal.metadata(),
            principal.id(),
            Some(family),
            refresh
                .as_ref()
                .map(|c| c.value())
                .filter(|v| !v.is_empty()),
        )
        .await?;
    let secure = state.commands.auth.cookie_secure;
    let mut response = message("logged out")?;
    for cookie in [
        cookie(ACCESS_COOKIE, String::new(), "/", secure, 0),
        cookie(REFRESH_COOKIE, String::new(), REFRESH_PATH, secure, 0),
    ] {
        response.add_cookie(&cookie).map_err(ApiError::internal)?;
    }
    Ok(response)
}
