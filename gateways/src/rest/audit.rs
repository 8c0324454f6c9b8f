//! `/admin/audit` and `/projects/:id/audit`: who did what, from the log.

use actix_web::{HttpResponse, web};
use domain::permissions::global;
use projections::audit::{self, AuditFilter, Cursor};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Auth, ProjectAuth, perm};
use crate::error::{ApiError, ApiResult, ok};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;
/// The most events one request's chain returns.
const MAX_CHAIN: i64 = 5_000;

/// Strings, parsed here, so each bad value gets its own message.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct AuditQuery {
    actor_id: Option<String>,
    actor_kind: Option<String>,
    project_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    stream_id: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    request_id: Option<String>,
    cursor: Option<String>,
    page_size: Option<String>,
}

fn uuid(name: &str, value: Option<String>) -> ApiResult<Option<Uuid>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("{name} is not a UUID: {v:?}")))
        })
        .transpose()
}

fn time(name: &str, value: Option<String>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            audit::parse_time(&v, chrono::Utc::now()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} is neither RFC 3339 nor a time ago like 2h: {v:?}"
                ))
            })
        })
        .transpose()
}

fn text(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

async fn run(
    state: &AppState,
    query: AuditQuery,
    project_id: Option<Uuid>,
) -> ApiResult<HttpResponse> {
    let page_size = match text(query.page_size) {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "page_size must be a whole number from 1 to {MAX_PAGE}"
                )));
            }
        },
    };
    let cursor = text(query.cursor)
        .map(|c| Cursor::decode(&c).ok_or_else(|| ApiError::bad_request("invalid cursor")))
        .transpose()?;
    let filter = AuditFilter {
        actor_id: uuid("actor_id", query.actor_id)?,
        actor_kind: text(query.actor_kind),
        project_id: match project_id {
            Some(id) => Some(id),
            None => uuid("project_id", query.project_id)?,
        },
        event_type: text(query.event_type),
        stream_id: uuid("stream_id", query.stream_id)?,
        source: text(query.source),
        since: time("since", query.since)?,
        until: time("until", query.until)?,
        request_id: text(query.request_id),
    };
    let page = audit::page(&state.pool, &filter, cursor, page_size).await?;
    ok(json!({"events": page.items, "next_cursor": page.next_cursor}))
}

/// Every event of the log, for holders of `audit.read`.
pub async fn all(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::AUDIT_READ)?;
    run(&state, query.into_inner(), None).await
}

/// One project's events, for its admins (`projects.audit.read`).
pub async fn project(
    state: web::Data<AppState>,
    _caller: ProjectAuth<perm::AuditRead>,
    project_id: web::Path<Uuid>,
    query: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    run(&state, query.into_inner(), Some(project_id.into_inner())).await
}

/// Everything one request caused, consumers' work included.
pub async fn request(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    request_id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    principal.require_global(global::AUDIT_READ)?;
    let request_id = request_id.into_inner();
    // The shape every recorded request id has (generated, or a client's
    // X-Request-ID the edge accepted); anything else cannot match.
    if !crate::edge::valid_request_id(&request_id) {
        return Err(ApiError::bad_request(
            "request_id: 1-128 characters of letters, digits, '-', '_', '.' or ':'",
        ));
    }
    let events = audit::request(&state.pool, &request_id, MAX_CHAIN).await?;
    ok(json!({"request_id": request_id, "events": events}))
}
