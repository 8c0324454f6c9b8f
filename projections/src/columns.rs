//! Where each aggregate's tracked fields land in the read models: one
//! exhaustive `match` per field enum, so a field added to the domain does
//! not compile until its projection is decided, and one
//! [`changes_update`] turns an `*.updated` event's changes into one UPDATE.
//! Column names come from these tables, never from the event.

use chrono::{DateTime, Utc};
use domain::agent::{McpServerField, SkillField};
use domain::change::{Field, FieldChange};
use domain::doc::FolderField;
use domain::project::ProjectField;
use domain::sprint::SprintField;
use domain::task_config::{CustomFieldField, TaskStatusField, TaskTypeField};
use domain::view::ViewField;
use serde_json::Value;
use uuid::Uuid;

use crate::stmt::{Arg, Stmt};

/// How a changed field's JSON value becomes its column's argument.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Text,
    Int,
    Float,
    Bool,
    Json,
    Ts,
    Uuid,
}

impl Kind {
    fn arg(self, value: &Value) -> Arg {
        match self {
            Kind::Text => Arg::Text(value.as_str().map(str::to_owned)),
            Kind::Int => Arg::Int(value.as_i64()),
            Kind::Float => Arg::Float(value.as_f64()),
            Kind::Bool => Arg::Bool(value.as_bool()),
            Kind::Json => Arg::Json(Some(value.clone())),
            Kind::Ts => Arg::Ts(serde_json::from_value::<DateTime<Utc>>(value.clone()).ok()),
            Kind::Uuid => Arg::Uuid(value.as_str().and_then(|s| s.parse().ok())),
        }
    }
}

/// A field's column in its aggregate's table, or `None` when that table
/// does not keep the field as a column of its own.
pub trait Column: Field {
    fn column(self) -> Option<(&'static str, Kind)>;
}

/// One `UPDATE table SET … , updated_at = $2 WHERE id = $1` for the changes
/// that have a column; `None` when none has.
pub fn changes_update<F: Column>(
    table: &str,
    id: Uuid,
    at: DateTime<Utc>,
    changes: &[FieldChange<F>],
) -> Option<Stmt> {
    let mut sets = Vec::new();
    let mut args: Vec<Arg> = vec![id.into(), at.into()];
    for change in changes {
        let Some((column, kind)) = change.field.column() else {
            continue;
        };
        args.push(kind.arg(&change.new));
        sets.push(format!("{column} = ${}", args.len()));
    }
    if sets.is_empty() {
        return None;
    }
    let mut stmt = Stmt::new(format!(
        "UPDATE {table} SET {}, updated_at = $2 WHERE id = $1",
        sets.join(", ")
    ));
    stmt.args = args;
    Some(stmt)
}

impl Column for ProjectField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            ProjectField::Name => ("name", Kind::Text),
            ProjectField::Description => ("description", Kind::Text),
            ProjectField::TaskIdPrefix => ("task_id_prefix", Kind::Text),
            ProjectField::IsPublic => ("is_public", Kind::Bool),
            ProjectField::Settings => ("settings", Kind::Json),
        })
    }
}

impl Column for TaskTypeField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            TaskTypeField::Name => ("name", Kind::Text),
            TaskTypeField::Icon => ("icon", Kind::Text),
            TaskTypeField::Color => ("color", Kind::Text),
            TaskTypeField::Description => ("description", Kind::Text),
        })
    }
}

impl Column for TaskStatusField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            TaskStatusField::Name => ("name", Kind::Text),
            TaskStatusField::Color => ("color", Kind::Text),
            TaskStatusField::Position => ("position", Kind::Int),
            TaskStatusField::Category => ("category", Kind::Text),
        })
    }
}

impl Column for CustomFieldField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            CustomFieldField::DisplayName => ("display_name", Kind::Text),
            CustomFieldField::FieldType => ("field_type", Kind::Text),
            CustomFieldField::Options => ("options", Kind::Json),
            CustomFieldField::IsRequired => ("is_required", Kind::Bool),
        })
    }
}

impl Column for SprintField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            SprintField::Name => ("name", Kind::Text),
            SprintField::StartDate => ("start_date", Kind::Ts),
            SprintField::EndDate => ("end_date", Kind::Ts),
            SprintField::Goal => ("goal", Kind::Text),
            SprintField::Status => ("status", Kind::Text),
        })
    }
}

impl Column for ViewField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            ViewField::Name => ("name", Kind::Text),
            ViewField::ViewType => ("view_type", Kind::Text),
            ViewField::Config => ("config", Kind::Json),
            ViewField::Position => ("position", Kind::Float),
        })
    }
}

impl Column for FolderField {
    fn column(self) -> Option<(&'static str, Kind)> {
        Some(match self {
            FolderField::Name => ("name", Kind::Text),
            FolderField::ParentId => ("parent_id", Kind::Uuid),
            FolderField::Position => ("position", Kind::Int),
        })
    }
}

impl Column for McpServerField {
    fn column(self) -> Option<(&'static str, Kind)> {
        match self {
            McpServerField::Command => Some(("command", Kind::Text)),
            McpServerField::Args => Some(("args", Kind::Json)),
            McpServerField::Url => Some(("url", Kind::Text)),
            McpServerField::Env => Some(("env", Kind::Json)),
            McpServerField::IsEnabled => Some(("is_enabled", Kind::Bool)),
            // The name and transport are fixed once the server is added.
            McpServerField::ServerName | McpServerField::Transport => None,
        }
    }
}

impl Column for SkillField {
    fn column(self) -> Option<(&'static str, Kind)> {
        match self {
            SkillField::SkillContent => Some(("skill_content", Kind::Text)),
            SkillField::Triggers => Some(("triggers", Kind::Json)),
            SkillField::IsEnabled => Some(("is_enabled", Kind::Bool)),
            // The name and source are fixed once the skill is added.
            SkillField::SkillName | SkillField::SkillSource | SkillField::SourceUrl => None,
        }
    }
}
