//! Read-model statements for plugin streams: `plugins` and
//! `plugin_extension_settings`. Every statement's first parameter is the
//! row's primary key (replay batching).

use domain::plugin::{
    EXTENSION_POINTS, PluginActivityEvent, PluginEvent, PluginWakeupEvent, summary_id,
};
use eventstore::RecordedEvent;
use uuid::Uuid;

use crate::stmt::{Arg, Stmt};

/// The `plugin_extension_settings` row id of a plugin's extension point.
pub fn extension_settings_id(plugin_id: Uuid, extension_point: &str) -> Uuid {
    Uuid::new_v5(&plugin_id, extension_point.as_bytes())
}

pub fn plugin(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: PluginEvent) {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        PluginEvent::Installed {
            name,
            version,
            manifest,
            enabled,
            ..
        } => stmts.push(
            Stmt::new(
                "INSERT INTO plugins (id, name, version, manifest, enabled, installed_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .arg(id)
            .arg(name)
            .arg(version)
            .arg(Arg::Json(Some(manifest)))
            .arg(enabled)
            .arg(at),
        ),
        PluginEvent::Upgraded {
            version, manifest, ..
        }
        | PluginEvent::Updated {
            version, manifest, ..
        } => stmts.push(
            Stmt::new("UPDATE plugins SET version = $2, manifest = $3, updated_at = $4 WHERE id = $1")
                .arg(id)
                .arg(version)
                .arg(Arg::Json(Some(manifest)))
                .arg(at),
        ),
        PluginEvent::Enabled {} | PluginEvent::Disabled {} => stmts.push(
            Stmt::new("UPDATE plugins SET enabled = $2, updated_at = $3 WHERE id = $1")
                .arg(id)
                .arg(matches!(event, PluginEvent::Enabled {}))
                .arg(at),
        ),
        PluginEvent::Uninstalled { .. } => {
            stmts.push(Stmt::new("DELETE FROM plugins WHERE id = $1").arg(id));
            for point in EXTENSION_POINTS {
                stmts.push(
                    Stmt::new("DELETE FROM plugin_extension_settings WHERE id = $1")
                        .arg(extension_settings_id(id, point)),
                );
            }
        }
        PluginEvent::ExtensionSettingsUpdated {
            extension_point,
            settings,
        } => stmts.push(
            Stmt::new(
                "INSERT INTO plugin_extension_settings (id, plugin_id, extension_point, settings, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = EXCLUDED.updated_at",
            )
            .arg(extension_settings_id(id, &extension_point))
            .arg(id)
            .arg(extension_point)
            .arg(Arg::Json(Some(settings)))
            .arg(at),
        ),
    }
}

/// `plugin.summary_set`: one row per plugin and task (or project); a
/// `null` summary removes it.
pub fn summary(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: PluginActivityEvent) {
    let PluginActivityEvent::SummarySet {
        plugin,
        project_id,
        task_id,
        summary,
    } = event
    else {
        return;
    };
    let id = summary_id(&plugin, task_id.unwrap_or(project_id));
    if summary.is_null() {
        stmts.push(Stmt::new("DELETE FROM plugin_summaries WHERE id = $1").arg(id));
        return;
    }
    stmts.push(
        Stmt::new(
            "INSERT INTO plugin_summaries (id, plugin, project_id, task_id, summary, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET summary = EXCLUDED.summary, updated_at = EXCLUDED.updated_at",
        )
        .arg(id)
        .arg(plugin)
        .arg(project_id)
        .arg(task_id)
        .arg(Arg::Json(Some(summary)))
        .arg(e.recorded_at),
    );
}

/// Plugin wakeups: scheduled, then fired or cancelled.
pub fn wakeup(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: PluginWakeupEvent) {
    let id = e.stream_id;
    let state = match event {
        PluginWakeupEvent::Scheduled {
            plugin,
            project_id,
            user_id,
            due_at,
            payload,
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO plugin_wakeups (id, plugin, project_id, user_id, due_at, payload,
                                                 state, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7, $7)",
                )
                .arg(id)
                .arg(plugin)
                .arg(project_id)
                .arg(user_id)
                .arg(due_at)
                .arg(Arg::Json(Some(payload)))
                .arg(e.recorded_at),
            );
            return;
        }
        PluginWakeupEvent::Fired { .. } => "fired",
        PluginWakeupEvent::Cancelled { .. } => "cancelled",
    };
    stmts.push(
        Stmt::new("UPDATE plugin_wakeups SET state = $2, updated_at = $3 WHERE id = $1")
            .arg(id)
            .arg(state.to_owned())
            .arg(e.recorded_at),
    );
}
