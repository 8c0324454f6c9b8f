//! `/users/me/notifications`: the caller's notifications (seed page 15,
//! CONTRACT-NOTES §13), cursor-paginated with the unread count.

use actix_web::{HttpResponse, web};
use domain::ErrorCode;
use projections::queries_notifications as q;
use projections::queries_tasks::Cursor;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, no_content, ok};

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    page_size: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    // 1-50, default 20; out-of-range or unparsable sizes fall back to the
    // default, as Paca's handler does.
    let page_size = query
        .page_size
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| (1..=50).contains(n))
        .unwrap_or(20);
    let cursor = match query.cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(Cursor::decode(&raw).ok_or_else(|| {
            ApiError::new(ErrorCode::NOTIFICATION_INVALID_CURSOR, "invalid cursor")
        })?),
    };
    let page = q::notifications(&state.pool, principal.id(), cursor.as_ref(), page_size).await?;
    ok(json!({
        "items": page.items,
        "page_size": page_size,
        "next_cursor": page.next_cursor,
        "unread_count": page.unread_count,
    }))
}

pub async fn mark_read(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    state
        .commands
        .mark_notification_read(&principal.metadata(), principal.id(), id.into_inner())
        .await?;
    no_content()
}

pub async fn mark_all_read(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<HttpResponse> {
    state
        .commands
        .mark_all_notifications_read(&principal.metadata(), principal.id())
        .await?;
    no_content()
}
