//! Plugins: the installed list, the route proxy into plugin backends
//! (`ANY /api/v1/plugins/:pluginId/*`), admin lifecycle and marketplace,
//! and the static bundles under `/plugins/<name>/…`.
//!
//! The proxy matches the manifest's routes first: a path no route matches
//! is `404` without entering the guest (Paca forwards it with no
//! middleware). The matched route's middleware chain runs here, with the
//! same authentication as every other route; credentials (cookies,
//! `Authorization`, `X-API-Key`) are never forwarded to the plugin.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use domain::ErrorCode;
use domain::plugin::PluginCommand;
use futures_util::StreamExt;
use plugin_host::manifest::Step;
use plugin_host::{CallError, Caller, HostError, IncomingRequest, PluginHost};
use projections::queries_plugins;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Auth, AuthStale, MaybeAuth, Principal, Via, project_access};
use crate::error::{ApiError, ApiResult, created, ok, request_id};
use crate::extract::Json;

/// Global permissions that allow plugin administration (seed page 07:
/// `users.write`; `plugins.write` as the IAM-era name).
const ADMIN_PERMISSIONS: &[&str] = &["users.write", "plugins.write"];

impl From<HostError> for ApiError {
    fn from(error: HostError) -> Self {
        match error {
            HostError::Domain(e) => e.into(),
            HostError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

fn host(state: &AppState) -> ApiResult<&Arc<PluginHost>> {
    state.plugins.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::PLUGIN_NOT_FOUND,
            "plugins are not enabled on this server",
        )
    })
}

fn require_admin(principal: &Principal) -> ApiResult<()> {
    if ADMIN_PERMISSIONS.iter().any(|p| principal.has_global(p)) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::PLUGIN_NOT_FOUND, "plugin not found")
}

/// `:pluginId` of admin routes: the plugin's UUID or its name.
async fn plugin_view(state: &AppState, id: &str) -> ApiResult<queries_plugins::PluginView> {
    queries_plugins::plugin(&state.pool, id)
        .await?
        .ok_or_else(not_found)
}

pub async fn list(state: web::Data<AppState>, MaybeAuth(_): MaybeAuth) -> ApiResult<HttpResponse> {
    ok(json!({ "plugins": queries_plugins::plugins(&state.pool).await? }))
}

// ---------------------------------------------------------------------------
// The proxy

/// Go's canonical header form (`content-type` -> `Content-Type`).
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "proxy-authorization",
];

/// Resolves the caller once, for routes whose chain needs it. A missing
/// credential is anonymous; a presented but invalid one is an error.
async fn identify(req: &HttpRequest) -> ApiResult<Option<Principal>> {
    match AuthStale::from_request(req, &mut Payload::None).await {
        Ok(AuthStale(principal)) => Ok(Some(principal)),
        Err(e) if e.code == ErrorCode::AUTH_MISSING_TOKEN => Ok(None),
        Err(e) => Err(e),
    }
}

fn missing() -> ApiError {
    ApiError::new(ErrorCode::AUTH_MISSING_TOKEN, "authentication required")
}

/// Runs the route's middleware chain; returns who the call is for.
async fn authorize(
    state: &AppState,
    req: &HttpRequest,
    steps: &[Step],
    params: &BTreeMap<String, String>,
) -> ApiResult<Caller> {
    let principal = if steps.is_empty() {
        None
    } else {
        identify(req).await?
    };
    let mut caller = Caller::default();
    if let Some(p) = &principal {
        caller.user_id = Some(p.id());
        caller.role = state
            .commands
            .directory
            .global_role(p.user.role_id)
            .map(|r| r.name)
            .unwrap_or_default();
        caller.permissions = p.user.permissions.to_vec();
        if let Via::ApiKey { key_id } = p.via {
            caller.api_key_id = Some(key_id);
        }
    }
    for step in steps {
        match step {
            Step::Authn => {
                principal.as_ref().ok_or_else(missing)?;
            }
            Step::OptionalAuthn => {}
            Step::RequireFreshPassword => {
                if principal
                    .as_ref()
                    .is_some_and(|p| p.user.must_change_password)
                {
                    return Err(ApiError::new(
                        ErrorCode::AUTH_PASSWORD_CHANGE_REQUIRED,
                        "change your password first (PATCH /api/v1/users/me/password)",
                    ));
                }
            }
            Step::RequireJwtAuth => {
                let p = principal.as_ref().ok_or_else(missing)?;
                if matches!(p.via, Via::ApiKey { .. }) {
                    return Err(ApiError::new(
                        ErrorCode::FORBIDDEN,
                        "this route requires a session (cookie or Bearer JWT)",
                    ));
                }
            }
            Step::RequirePermissions {
                project_param: Some(param),
                permissions,
            } => {
                let project_id = params
                    .get(param)
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::PROJECT_NOT_FOUND, "project not found")
                    })?;
                for permission in permissions {
                    project_access(state, principal.as_ref(), project_id, permission).await?;
                }
                caller.project_id = Some(project_id);
            }
            Step::RequirePermissions {
                project_param: None,
                permissions,
            } => {
                let p = principal.as_ref().ok_or_else(missing)?;
                for permission in permissions {
                    p.require_global(permission)?;
                }
            }
        }
    }
    if caller.project_id.is_none() {
        caller.project_id = params
            .get("projectId")
            .and_then(|v| Uuid::parse_str(v).ok());
    }
    if let (Some(project_id), Some(p)) = (caller.project_id, &principal)
        && let Some((member_id, role)) =
            queries_plugins::member_of(&state.pool, project_id, p.id()).await?
    {
        caller.member_id = Some(member_id);
        caller.role = role;
    }
    Ok(caller)
}

fn call_error(plugin: &str, error: CallError) -> ApiError {
    tracing::warn!(request_id = request_id().unwrap_or_default(), %plugin, %error, "plugin call failed");
    match error {
        CallError::Timeout(_) => ApiError::new(ErrorCode::PLUGIN_TIMEOUT, "plugin call timed out"),
        CallError::CpuBudget => ApiError::new(
            ErrorCode::PLUGIN_EXECUTION_ERROR,
            "plugin exceeded its CPU budget",
        ),
        CallError::ResponseTooLarge(n) => ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("plugin response exceeds {n} bytes"),
        ),
        CallError::RequestTooLarge(n) => ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("request exceeds {n} bytes"),
        ),
        CallError::Unavailable(_) => {
            ApiError::new(ErrorCode::PLUGIN_UNAVAILABLE, "plugin is unavailable")
        }
        CallError::Trap(_) | CallError::MissingExport(_) => {
            ApiError::new(ErrorCode::PLUGIN_EXECUTION_ERROR, "plugin execution error")
        }
    }
}

pub async fn proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    mut payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let (name, tail) = path.into_inner();
    let host = host(&state)?;
    let method = req.method().as_str().to_owned();
    let (plugin, matched) = host.route(&name, &method, &tail)?;
    let caller = authorize(&state, &req, &matched.steps, &matched.params).await?;

    let max = host.cfg.limits.max_request_bytes;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(ApiError::new(
                ErrorCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {max} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let mut headers = BTreeMap::new();
    for (name, value) in req.headers() {
        let lower = name.as_str();
        if CREDENTIAL_HEADERS.contains(&lower) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers
                .entry(canonical(lower))
                .or_insert_with(|| v.to_owned());
        }
    }
    let mut query = BTreeMap::new();
    if let Ok(pairs) = web::Query::<Vec<(String, String)>>::from_query(req.query_string()) {
        for (k, v) in pairs.into_inner() {
            query.entry(k).or_insert(v);
        }
    }
    let request = IncomingRequest {
        method,
        path: tail,
        query,
        headers,
        body,
        caller,
        request_id: request_id(),
    };
    let response = host
        .handle_request(&plugin, request)
        .await
        .map_err(|e| call_error(&name, e))?;
    let mut out =
        HttpResponse::build(StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK));
    for (k, v) in &response.headers {
        // Header names and values a guest made up must not fail the response.
        if let (Ok(name), Ok(value)) = (
            actix_web::http::header::HeaderName::try_from(k.as_str()),
            actix_web::http::header::HeaderValue::from_str(v),
        ) {
            out.insert_header((name, value));
        }
    }
    Ok(out.body(response.body))
}

// ---------------------------------------------------------------------------
// Admin lifecycle and marketplace

#[derive(Deserialize, schemars::JsonSchema)]
pub struct RegisterBody {
    name: Option<String>,
    version: Option<String>,
    manifest: Option<Value>,
    enabled: Option<bool>,
}

pub async fn register(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<RegisterBody>,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let host = host(&state)?;
    let body = body.into_inner();
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let manifest = body
        .manifest
        .ok_or_else(|| ApiError::bad_request("manifest is required"))?;
    let version = body
        .version
        .or_else(|| {
            manifest
                .get("version")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let command = PluginCommand::Install {
        name: name.clone(),
        version,
        manifest,
        enabled: body.enabled.unwrap_or(true),
        source: "admin".into(),
        host_version: host.cfg.host_version.clone(),
    };
    host.lifecycle_command(&name, command, &principal.metadata())
        .await?;
    created(plugin_view(&state, &name).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "PluginPatchBody")]
pub struct PatchBody {
    version: Option<String>,
    manifest: Option<Value>,
    enabled: Option<bool>,
}

pub async fn patch(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    body: Json<PatchBody>,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let host = host(&state)?;
    let view = plugin_view(&state, &id).await?;
    let body = body.into_inner();
    let metadata = principal.metadata();
    if body.version.is_some() || body.manifest.is_some() {
        let command = PluginCommand::Update {
            version: body.version,
            manifest: body.manifest,
        };
        host.lifecycle_command(&view.name, command, &metadata)
            .await?;
    }
    if let Some(enabled) = body.enabled {
        host.lifecycle_command(&view.name, PluginCommand::SetEnabled(enabled), &metadata)
            .await?;
    }
    ok(plugin_view(&state, &view.name).await?)
}

pub async fn uninstall(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let host = host(&state)?;
    let view = plugin_view(&state, &id).await?;
    host.uninstall(&view.name, &principal.metadata()).await?;
    ok(json!({ "message": "plugin uninstalled" }))
}

pub async fn upgrade(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let host = host(&state)?;
    let view = plugin_view(&state, &id).await?;
    host.upgrade_catalog(&view.name, &principal.metadata())
        .await?;
    ok(plugin_view(&state, &view.name).await?)
}

pub async fn marketplace(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let catalog = host(&state)?.catalog().await?;
    ok(json!({ "plugins": catalog.plugins }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct InstallBody {
    name: Option<String>,
    enabled: Option<bool>,
}

pub async fn marketplace_install(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<InstallBody>,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let host = host(&state)?;
    let body = body.into_inner();
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    host.install_catalog(&name, body.enabled.unwrap_or(true), &principal.metadata())
        .await?;
    created(plugin_view(&state, &name).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ExtensionSettingsBody {
    plugin_id: Option<String>,
    extension_point: Option<String>,
    settings: Option<Value>,
}

pub async fn extension_settings(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    body: Json<ExtensionSettingsBody>,
) -> ApiResult<HttpResponse> {
    require_admin(&principal)?;
    let host = host(&state)?;
    let body = body.into_inner();
    let id = body
        .plugin_id
        .ok_or_else(|| ApiError::bad_request("plugin_id is required"))?;
    let view = plugin_view(&state, &id).await?;
    let extension_point = body
        .extension_point
        .ok_or_else(|| ApiError::bad_request("extension_point is required"))?;
    let command = PluginCommand::SetExtensionSettings {
        extension_point: extension_point.clone(),
        settings: body.settings.unwrap_or_else(|| json!({})),
    };
    host.lifecycle_command(&view.name, command, &principal.metadata())
        .await?;
    let view = plugin_view(&state, &view.name).await?;
    let setting = queries_plugins::plugins(&state.pool)
        .await?
        .into_iter()
        .find(|p| p.id == view.id)
        .and_then(|p| {
            p.extension_settings
                .into_iter()
                .find(|s| s.extension_point == extension_point)
        });
    ok(setting)
}

// ---------------------------------------------------------------------------
// Static bundles

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `root/<name>/<path>` when every part is a plain name and the result
/// stays inside the plugin's directory (no `..`, no symlink escape).
async fn serve_file(root: &Path, name: &str, path: &str) -> ApiResult<HttpResponse> {
    let nf = || ApiError::new(ErrorCode::NOT_FOUND, "no such file");
    if domain::plugin::validate_name(name).is_err() {
        return Err(nf());
    }
    let mut relative = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => {
                relative.push(part)
            }
            _ => return Err(nf()),
        }
    }
    let base = tokio::fs::canonicalize(root.join(name))
        .await
        .map_err(|_| nf())?;
    let file = tokio::fs::canonicalize(base.join(&relative))
        .await
        .map_err(|_| nf())?;
    if !file.starts_with(&base) || !file.is_file() {
        return Err(nf());
    }
    let bytes = tokio::fs::read(&file).await.map_err(|_| nf())?;
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", content_type(&file)))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(bytes))
}

pub async fn static_frontend(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (name, file) = path.into_inner();
    serve_file(&host(&state)?.cfg.frontend_dir, &name, &file).await
}

pub async fn static_mcp(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (name, file) = path.into_inner();
    serve_file(&host(&state)?.cfg.mcp_dir, &name, &file).await
}

pub async fn static_skills(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (name, file) = path.into_inner();
    serve_file(&host(&state)?.cfg.skills_dir, &name, &file).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_header_names() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("x-hub-signature-256"), "X-Hub-Signature-256");
    }
}
