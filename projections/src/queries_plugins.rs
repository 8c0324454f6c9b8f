//! Read-model queries for installed plugins (`GET /api/v1/plugins`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ExtensionSettingView {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub extension_point: String,
    pub settings: Value,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct PluginView {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub manifest: Value,
    /// Filled from `plugin_extension_settings`, not from the plugin row.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    // Absent when empty: not required in the response schema.
    #[schemars(default)]
    #[sqlx(skip)]
    pub extension_settings: Vec<ExtensionSettingView>,
    pub enabled: bool,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, version, manifest, enabled, installed_at, updated_at";

/// Every installed plugin with its extension settings, by name.
pub async fn plugins(pool: &PgPool) -> Result<Vec<PluginView>, sqlx::Error> {
    let mut out = sqlx::query_as::<_, PluginView>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plugins ORDER BY name"
    )))
    .fetch_all(pool)
    .await?;
    let settings = sqlx::query_as::<_, ExtensionSettingView>(
        "SELECT id, plugin_id, extension_point, settings, updated_at
         FROM plugin_extension_settings ORDER BY extension_point",
    )
    .fetch_all(pool)
    .await?;
    for setting in settings {
        if let Some(p) = out.iter_mut().find(|p| p.id == setting.plugin_id) {
            p.extension_settings.push(setting);
        }
    }
    Ok(out)
}

/// One installed plugin by id or name.
pub async fn plugin(pool: &PgPool, id_or_name: &str) -> Result<Option<PluginView>, sqlx::Error> {
    let id = Uuid::parse_str(id_or_name).unwrap_or_else(|_| domain::plugin::plugin_id(id_or_name));
    sqlx::query_as::<_, PluginView>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plugins WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The caller's membership in a project: member id and role name.
pub async fn member_of(
    pool: &PgPool,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as::<_, (Uuid, String)>(
        "SELECT m.id, COALESCE(r.role_name, '') AS role_name FROM project_members m
         LEFT JOIN project_roles r ON r.id = m.project_role_id
         WHERE m.project_id = $1 AND m.user_id = $2",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await
}
