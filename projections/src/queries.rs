//! Read-model queries for the REST layer. Every query reads the live
//! tables through the connection's search_path (`rm, public`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// A row of a windowed list query: the item's columns plus the
/// `COUNT(*) OVER ()` total.
#[derive(sqlx::FromRow)]
struct Counted<T> {
    #[sqlx(flatten)]
    item: T,
    total: i64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub full_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The global role's name (e.g. `SUPER_ADMIN`), as Paca's web app reads it.
    pub role: String,
    pub role_id: Uuid,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub permissions: Vec<String>,
    #[serde(skip)]
    pub deleted: bool,
}

fn string_list(value: Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

const USER_COLUMNS: &str = "u.id, u.username, u.full_name, u.email, u.role_id, \
    u.must_change_password, u.created_at, u.deleted_at, \
    COALESCE(r.name, '') AS role_name, COALESCE(r.permissions, '[]'::jsonb) AS permissions";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    username: String,
    full_name: String,
    email: Option<String>,
    role_id: Uuid,
    must_change_password: bool,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    role_name: String,
    permissions: Value,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        UserView {
            id: row.id,
            username: row.username,
            full_name: row.full_name,
            email: row.email,
            role: row.role_name,
            role_id: row.role_id,
            must_change_password: row.must_change_password,
            created_at: row.created_at,
            permissions: string_list(row.permissions),
            deleted: row.deleted_at.is_some(),
        }
    }
}

/// A user by id, including soft-deleted ones (callers decide).
pub async fn user(pool: &PgPool, id: Uuid) -> Result<Option<UserView>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u
         LEFT JOIN global_roles r ON r.id = u.role_id AND r.deleted_at IS NULL
         WHERE u.id = $1"
    );
    let row = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(UserView::from))
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

pub async fn users(
    pool: &PgPool,
    page: i64,
    page_size: i64,
    search: Option<&str>,
) -> Result<Page<UserView>, sqlx::Error> {
    let pattern = search.map(|s| format!("%{}%", s.replace('%', "\\%").replace('_', "\\_")));
    let sql = format!(
        "SELECT {USER_COLUMNS}, COUNT(*) OVER () AS total FROM users u
         LEFT JOIN global_roles r ON r.id = u.role_id AND r.deleted_at IS NULL
         WHERE u.deleted_at IS NULL
           AND ($3::text IS NULL OR u.username ILIKE $3 OR u.full_name ILIKE $3)
         ORDER BY u.created_at, u.id LIMIT $1 OFFSET $2"
    );
    let rows = sqlx::query_as::<_, Counted<UserRow>>(sqlx::AssertSqlSafe(sql))
        .bind(page_size)
        .bind((page - 1) * page_size)
        .bind(pattern)
        .fetch_all(pool)
        .await?;
    let total = match rows.first() {
        Some(row) => row.total,
        None => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM users u WHERE u.deleted_at IS NULL
                   AND ($1::text IS NULL OR u.username ILIKE $1 OR u.full_name ILIKE $1)",
            )
            .bind(search.map(|s| format!("%{s}%")))
            .fetch_one(pool)
            .await?
        }
    };
    Ok(Page {
        items: rows.into_iter().map(|r| r.item.into()).collect(),
        total,
    })
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GlobalRoleView {
    pub id: Uuid,
    pub name: String,
    /// `{permission: true}`, the shape Paca's web app reads.
    pub permissions: serde_json::Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn permission_map(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|p| (p.clone(), Value::Bool(true)))
        .collect()
}

#[derive(sqlx::FromRow)]
struct GlobalRoleRow {
    id: Uuid,
    name: String,
    permissions: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<GlobalRoleRow> for GlobalRoleView {
    fn from(row: GlobalRoleRow) -> Self {
        GlobalRoleView {
            id: row.id,
            name: row.name,
            permissions: permission_map(&string_list(row.permissions)),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub async fn global_roles(pool: &PgPool) -> Result<Vec<GlobalRoleView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, GlobalRoleRow>(
        "SELECT id, name, permissions, created_at, updated_at FROM global_roles
         WHERE deleted_at IS NULL ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(GlobalRoleView::from).collect())
}

pub async fn global_role(pool: &PgPool, id: Uuid) -> Result<Option<GlobalRoleView>, sqlx::Error> {
    let row = sqlx::query_as::<_, GlobalRoleRow>(
        "SELECT id, name, permissions, created_at, updated_at FROM global_roles
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(GlobalRoleView::from))
}

pub async fn global_role_by_name(
    pool: &PgPool,
    name: &str,
) -> Result<Option<GlobalRoleView>, sqlx::Error> {
    let row = sqlx::query_as::<_, GlobalRoleRow>(
        "SELECT id, name, permissions, created_at, updated_at FROM global_roles
         WHERE lower(name) = lower($1) AND deleted_at IS NULL",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(GlobalRoleView::from))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    pub key_prefix: String,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The user's keys that are not revoked, newest first.
pub async fn api_keys(pool: &PgPool, user_id: Uuid) -> Result<Vec<ApiKeyView>, sqlx::Error> {
    sqlx::query_as::<_, ApiKeyView>(
        "SELECT k.id, k.name, k.key_prefix, s.last_used_at, k.expires_at, k.created_at
         FROM api_keys k LEFT JOIN api_key_secrets s ON s.key_id = k.id
         WHERE k.user_id = $1 AND k.revoked_at IS NULL
         ORDER BY k.created_at DESC, k.id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

pub async fn api_key(pool: &PgPool, key_id: Uuid) -> Result<Option<ApiKeyView>, sqlx::Error> {
    sqlx::query_as::<_, ApiKeyView>(
        "SELECT k.id, k.name, k.key_prefix, s.last_used_at, k.expires_at, k.created_at
         FROM api_keys k LEFT JOIN api_key_secrets s ON s.key_id = k.id WHERE k.id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub task_id_prefix: String,
    pub is_public: bool,
    pub settings: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

const PROJECT_COLUMNS: &str = "p.id, p.name, p.description, p.task_id_prefix, p.is_public, p.settings, p.created_by, p.created_at";

pub async fn project(pool: &PgPool, id: Uuid) -> Result<Option<ProjectView>, sqlx::Error> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.id = $1 AND p.deleted_at IS NULL"
    );
    sqlx::query_as::<_, ProjectView>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// All live projects (`member_of = None`) or those the user is a member of.
pub async fn projects(
    pool: &PgPool,
    member_of: Option<Uuid>,
    page: i64,
    page_size: i64,
) -> Result<Page<ProjectView>, sqlx::Error> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS}, COUNT(*) OVER () AS total FROM projects p
         WHERE p.deleted_at IS NULL
           AND ($3::uuid IS NULL OR EXISTS (
                 SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = $3))
         ORDER BY p.created_at DESC, p.id LIMIT $1 OFFSET $2"
    );
    let rows = sqlx::query_as::<_, Counted<ProjectView>>(sqlx::AssertSqlSafe(sql))
        .bind(page_size)
        .bind((page - 1) * page_size)
        .bind(member_of)
        .fetch_all(pool)
        .await?;
    let total = match rows.first() {
        Some(row) => row.total,
        None => sqlx::query_scalar(
            "SELECT COUNT(*) FROM projects p WHERE p.deleted_at IS NULL
               AND ($1::uuid IS NULL OR EXISTS (
                     SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = $1))",
        )
        .bind(member_of)
        .fetch_one(pool)
        .await?,
    };
    Ok(Page {
        items: rows.into_iter().map(|r| r.item).collect(),
        total,
    })
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct MemberView {
    pub id: Uuid,
    pub project_id: Uuid,
    /// Null for agent members.
    pub user_id: Option<Uuid>,
    /// Set for agent members (seed page 06).
    pub agent_id: Option<Uuid>,
    pub project_role_id: Uuid,
    pub username: String,
    pub full_name: String,
    pub role_name: String,
    pub member_type: String,
    pub created_at: DateTime<Utc>,
}

const MEMBER_SELECT: &str = "SELECT m.id, m.project_id, m.user_id, m.agent_id, m.project_role_id,
        COALESCE(u.username, ag.handle, '') AS username,
        COALESCE(u.full_name, ag.name, '') AS full_name,
        COALESCE(r.role_name, '') AS role_name, m.member_type, m.created_at
     FROM project_members m
     LEFT JOIN users u ON u.id = m.user_id
     LEFT JOIN agents ag ON ag.id = m.agent_id
     LEFT JOIN project_roles r ON r.id = m.project_role_id";

pub async fn members(pool: &PgPool, project_id: Uuid) -> Result<Vec<MemberView>, sqlx::Error> {
    let sql = format!("{MEMBER_SELECT} WHERE m.project_id = $1 ORDER BY m.created_at, m.id");
    sqlx::query_as::<_, MemberView>(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(pool)
        .await
}

pub async fn member(pool: &PgPool, member_id: Uuid) -> Result<Option<MemberView>, sqlx::Error> {
    let sql = format!("{MEMBER_SELECT} WHERE m.id = $1");
    sqlx::query_as::<_, MemberView>(sqlx::AssertSqlSafe(sql))
        .bind(member_id)
        .fetch_optional(pool)
        .await
}

/// The permissions a user's project role grants in a project (`None` when
/// the user is not a member).
pub async fn member_permissions(
    pool: &PgPool,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let perms: Option<Value> = sqlx::query_scalar(
        "SELECT COALESCE(r.permissions, '[]'::jsonb) FROM project_members m
         LEFT JOIN project_roles r ON r.id = m.project_role_id
         WHERE m.project_id = $1 AND m.user_id = $2",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(perms.map(string_list))
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProjectRoleView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub role_name: String,
    pub permissions: serde_json::Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ProjectRoleRow {
    id: Uuid,
    project_id: Uuid,
    role_name: String,
    permissions: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ProjectRoleRow> for ProjectRoleView {
    fn from(r: ProjectRoleRow) -> Self {
        ProjectRoleView {
            id: r.id,
            project_id: r.project_id,
            role_name: r.role_name,
            permissions: permission_map(&string_list(r.permissions)),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub async fn project_roles(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Vec<ProjectRoleView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, ProjectRoleRow>(
        "SELECT id, project_id, role_name, permissions, created_at, updated_at
         FROM project_roles WHERE project_id = $1 ORDER BY created_at, id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ProjectRoleView::from).collect())
}

pub async fn project_role(
    pool: &PgPool,
    role_id: Uuid,
) -> Result<Option<ProjectRoleView>, sqlx::Error> {
    let row = sqlx::query_as::<_, ProjectRoleRow>(
        "SELECT id, project_id, role_name, permissions, created_at, updated_at
         FROM project_roles WHERE id = $1",
    )
    .bind(role_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(ProjectRoleView::from))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct TaskTypeView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub icon: Option<String>,
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub is_default: bool,
    pub is_system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn task_types(pool: &PgPool, project_id: Uuid) -> Result<Vec<TaskTypeView>, sqlx::Error> {
    sqlx::query_as::<_, TaskTypeView>(
        "SELECT id, project_id, name, icon, color, description, is_default, is_system, created_at,
                updated_at
         FROM task_types WHERE project_id = $1 ORDER BY created_at, id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct TaskStatusView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub color: Option<String>,
    pub position: i64,
    pub category: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn task_statuses(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Vec<TaskStatusView>, sqlx::Error> {
    sqlx::query_as::<_, TaskStatusView>(
        "SELECT id, project_id, name, color, position, category, is_default, created_at, updated_at
         FROM task_statuses WHERE project_id = $1 ORDER BY position, created_at, id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct CustomFieldView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub field_key: String,
    pub display_name: String,
    pub field_type: String,
    pub options: Value,
    pub is_required: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn custom_fields(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Vec<CustomFieldView>, sqlx::Error> {
    sqlx::query_as::<_, CustomFieldView>(
        "SELECT id, project_id, field_key, display_name, field_type, options, is_required,
                created_at, updated_at
         FROM custom_fields WHERE project_id = $1 ORDER BY created_at, id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}
