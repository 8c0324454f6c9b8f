//! `/projects/:id/conversations`: agent conversations, their events, stop
//! and follow-up messages (CONTRACT-NOTES §15).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use domain::ErrorCode;
use domain::conversation::{STATUSES, TRIGGER_TYPES};
use projections::queries_agents::{self as q, ConversationFilter, EventCursor};
use projections::queries_tasks::Cursor;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ProjectAuth, perm};
use crate::error::{ApiError, ApiResult, ok};
use crate::extract::Json;

fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::AGENT_CONVERSATION_NOT_FOUND,
        "conversation not found",
    )
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    agent_id: Option<String>,
    status: Option<String>,
    trigger_type: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    task_id: Option<Uuid>,
    chat_session_id: Option<Uuid>,
    cursor: Option<String>,
    page_size: Option<i64>,
}

fn list_of(raw: Option<String>) -> Vec<String> {
    raw.map(|r| {
        r.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

fn enums(raw: Option<String>, allowed: &[&str], what: &str) -> ApiResult<Vec<String>> {
    let values = list_of(raw);
    if let Some(bad) = values.iter().find(|v| !allowed.contains(&v.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{what} {bad:?} must be one of {}",
            allowed.join(", ")
        )));
    }
    Ok(values)
}

/// `YYYY-MM-DD` (start of that UTC day) or RFC 3339.
fn instant(raw: Option<String>, what: &str) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be YYYY-MM-DD or RFC 3339")))
}

pub async fn list(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    project_id: web::Path<Uuid>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let query = query.into_inner();
    let agent_ids = list_of(query.agent_id)
        .iter()
        .map(|s| s.parse::<Uuid>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::bad_request("agent_id must be a comma list of UUIDs"))?;
    let page_size = match query.page_size {
        None => 20,
        Some(n) if (1..=200).contains(&n) => n,
        Some(_) => return Err(ApiError::bad_request("page_size must be 1-200")),
    };
    let cursor = query
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            Cursor::decode(&c).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::AGENT_CONVERSATION_INVALID_CURSOR,
                    "cursor is not valid",
                )
            })
        })
        .transpose()?;
    let filter = ConversationFilter {
        agent_ids,
        statuses: enums(query.status, STATUSES, "status")?,
        trigger_types: enums(query.trigger_type, TRIGGER_TYPES, "trigger_type")?,
        created_after: instant(query.created_after, "created_after")?,
        created_before: instant(query.created_before, "created_before")?,
        task_id: query.task_id,
        chat_session_id: query.chat_session_id,
    };
    let page =
        q::conversations(&state.pool, project_id, &filter, cursor.as_ref(), page_size).await?;
    ok(json!({
        "items": page.items,
        "page_size": page_size,
        "next_cursor": page.next_cursor,
    }))
}

pub async fn get(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, conversation_id) = path.into_inner();
    ok(q::conversation(&state.pool, project_id, conversation_id)
        .await?
        .ok_or_else(not_found)?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct EventsQuery {
    after: Option<String>,
    before: Option<String>,
    limit: Option<i64>,
}

pub async fn events(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<EventsQuery>,
) -> ApiResult<HttpResponse> {
    let (project_id, conversation_id) = path.into_inner();
    q::conversation(&state.pool, project_id, conversation_id)
        .await?
        .ok_or_else(not_found)?;
    let query = query.into_inner();
    let limit = match query.limit {
        None => 50,
        Some(n) if (1..=200).contains(&n) => n,
        Some(_) => return Err(ApiError::bad_request("limit must be 1-200")),
    };
    let index = |raw: &str| {
        raw.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::AGENT_CONVERSATION_EVENT_INVALID_CURSOR,
                    "cursor must be an event_index",
                )
            })
    };
    let cursor = match (
        query.after.filter(|s| !s.is_empty()),
        query.before.filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "after and before are mutually exclusive",
            ));
        }
        (Some(a), None) => EventCursor::After(index(&a)?),
        (None, Some(b)) => EventCursor::Before(index(&b)?),
        (None, None) => EventCursor::Newest,
    };
    ok(q::conversation_events(&state.pool, conversation_id, cursor, limit).await?)
}

pub async fn stop(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, conversation_id) = path.into_inner();
    state
        .commands
        .stop_conversation(&principal.metadata(), project_id, conversation_id)
        .await?;
    ok(json!({ "message": "conversation stopped" }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct MessageBody {
    message: Option<String>,
}

pub async fn message(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<MessageBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, conversation_id) = path.into_inner();
    let message = body
        .into_inner()
        .message
        .ok_or_else(|| ApiError::bad_request("message is required"))?;
    state
        .commands
        .send_conversation_message(&principal.metadata(), project_id, conversation_id, message)
        .await?;
    ok(json!({ "message": "message sent" }))
}
