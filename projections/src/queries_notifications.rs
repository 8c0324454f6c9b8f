//! The caller's notifications (written by the `notifications`
//! subscription), rendered with the actor, task, doc and project they name
//! as those read now.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::queries_tasks::Cursor;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct NotificationView {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    pub actor_full_name: String,
    pub actor_username: String,
    pub actor_member_type: Option<String>,
    pub task_id: Option<Uuid>,
    pub task_title: String,
    pub task_number: Option<i64>,
    pub doc_id: Option<Uuid>,
    pub doc_title: Option<String>,
    pub comment_id: Option<Uuid>,
    pub project_id: Uuid,
    pub project_name: String,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    pub next_cursor: Option<String>,
    pub unread_count: i64,
}

const SELECT: &str = "SELECT n.id, n.type, n.task_id, n.doc_id, n.comment_id, n.project_id,
        n.read_at, n.created_at,
        COALESCE(u.full_name, ag.name, '') AS actor_full_name,
        COALESCE(u.username, ag.handle, '') AS actor_username,
        CASE WHEN n.actor_agent_id IS NOT NULL THEN 'agent'
             WHEN n.actor_user_id IS NOT NULL THEN 'human' END AS actor_member_type,
        COALESCE(t.title, '') AS task_title, t.task_number,
        d.title AS doc_title, COALESCE(p.name, '') AS project_name
     FROM notifications n
     LEFT JOIN users u ON u.id = n.actor_user_id
     LEFT JOIN agents ag ON ag.id = n.actor_agent_id
     LEFT JOIN tasks t ON t.id = n.task_id
     LEFT JOIN docs d ON d.id = n.doc_id
     LEFT JOIN projects p ON p.id = n.project_id";

/// One page, newest first.
pub async fn notifications(
    pool: &PgPool,
    user_id: Uuid,
    cursor: Option<&Cursor>,
    page_size: i64,
) -> Result<NotificationPage, sqlx::Error> {
    let (ca, id) = cursor.map(Cursor::parts).unzip();
    let sql = format!(
        "{SELECT} WHERE n.recipient_user_id = $1
           AND ($2::timestamptz IS NULL OR (n.created_at, n.id) < ($2, $3))
         ORDER BY n.created_at DESC, n.id DESC LIMIT $4"
    );
    let mut items = sqlx::query_as::<_, NotificationView>(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(ca)
        .bind(id)
        .bind(page_size + 1)
        .fetch_all(pool)
        .await?;
    let next_cursor = if items.len() as i64 > page_size {
        items.truncate(usize::try_from(page_size).unwrap_or(0));
        items
            .last()
            .map(|n| Cursor::new(n.created_at, n.id).encode())
    } else {
        None
    };
    let unread_count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE recipient_user_id = $1 AND read_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;
    Ok(NotificationPage {
        items,
        next_cursor,
        unread_count,
    })
}
