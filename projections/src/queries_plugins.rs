//! Read-model queries for installed plugins (`GET /api/v1/plugins`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionSettingView {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub extension_point: String,
    pub settings: Value,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginView {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub manifest: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension_settings: Vec<ExtensionSettingView>,
    pub enabled: bool,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn plugin_from_row(r: &PgRow) -> PluginView {
    PluginView {
        id: r.get("id"),
        name: r.get("name"),
        version: r.get("version"),
        manifest: r.get("manifest"),
        extension_settings: Vec::new(),
        enabled: r.get("enabled"),
        installed_at: r.get("installed_at"),
        updated_at: r.get("updated_at"),
    }
}

const COLUMNS: &str = "id, name, version, manifest, enabled, installed_at, updated_at";

/// Every installed plugin with its extension settings, by name.
pub async fn plugins(pool: &PgPool) -> Result<Vec<PluginView>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plugins ORDER BY name"
    )))
    .fetch_all(pool)
    .await?;
    let mut out: Vec<PluginView> = rows.iter().map(plugin_from_row).collect();
    let settings = sqlx::query(
        "SELECT id, plugin_id, extension_point, settings, updated_at
         FROM plugin_extension_settings ORDER BY extension_point",
    )
    .fetch_all(pool)
    .await?;
    for r in &settings {
        let plugin_id: Uuid = r.get("plugin_id");
        if let Some(p) = out.iter_mut().find(|p| p.id == plugin_id) {
            p.extension_settings.push(ExtensionSettingView {
                id: r.get("id"),
                plugin_id,
                extension_point: r.get("extension_point"),
                settings: r.get("settings"),
                updated_at: r.get("updated_at"),
            });
        }
    }
    Ok(out)
}

/// One installed plugin by id or name.
pub async fn plugin(pool: &PgPool, id_or_name: &str) -> Result<Option<PluginView>, sqlx::Error> {
    let id = Uuid::parse_str(id_or_name).unwrap_or_else(|_| domain::plugin::plugin_id(id_or_name));
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plugins WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(plugin_from_row))
}

/// The caller's membership in a project: member id and role name.
pub async fn member_of(
    pool: &PgPool,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT m.id, COALESCE(r.role_name, '') AS role_name FROM project_members m
         LEFT JOIN project_roles r ON r.id = m.project_role_id
         WHERE m.project_id = $1 AND m.user_id = $2",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.get("id"), r.get("role_name"))))
}
