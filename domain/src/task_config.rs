//! Task configuration of a project: task types, workflow statuses and
//! custom field definitions. It lives in the project aggregate so that the
//! rules spanning entries (exactly one default type and status, system types,
//! unique names and keys) are checked against one consistent state.

use crate::vecmap::VecMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::Changes;
use crate::project::{Project, ProjectEvent};
use crate::{DomainError, ErrorCode, validate};

crate::fields! {
    /// A task type's tracked fields.
    pub enum TaskTypeField {
        Name = "name",
        Icon = "icon",
        Color = "color",
        Description = "description",
    }
}

crate::fields! {
    /// A task status's tracked fields.
    pub enum TaskStatusField {
        Name = "name",
        Color = "color",
        Position = "position",
        Category = "category",
    }
}

crate::fields! {
    /// A custom field definition's tracked fields.
    pub enum CustomFieldField {
        DisplayName = "display_name",
        FieldType = "field_type",
        Options = "options",
        IsRequired = "is_required",
    }
}

pub const STATUS_CATEGORIES: &[&str] = &[
    "backlog",
    "refinement",
    "ready",
    "todo",
    "inprogress",
    "done",
];
pub const FIELD_TYPES: &[&str] = &[
    "text",
    "number",
    "date",
    "select",
    "multi_select",
    "boolean",
    "url",
];
pub const EPIC: &str = "Epic";
pub const SUBTASK: &str = "Subtask";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskType {
    pub name: String,
    pub icon: Option<String>,
    pub color: Option<String>,
    pub description: Option<String>,
    pub is_system: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub color: Option<String>,
    pub position: i64,
    pub category: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FieldOption {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomField {
    pub field_key: String,
    pub display_name: String,
    pub field_type: String,
    pub options: Vec<FieldOption>,
    pub is_required: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskConfig {
    pub types: VecMap<Uuid, TaskType>,
    pub default_type: Option<Uuid>,
    pub statuses: VecMap<Uuid, TaskStatus>,
    pub default_status: Option<Uuid>,
    pub fields: VecMap<Uuid, CustomField>,
}

impl TaskConfig {
    pub fn type_by_name(&self, name: &str) -> Option<(Uuid, &TaskType)> {
        self.types
            .iter()
            .find(|(_, t)| t.name.eq_ignore_ascii_case(name))
            .map(|(id, t)| (*id, t))
    }

    pub fn field_by_key(&self, key: &str) -> Option<(Uuid, &CustomField)> {
        self.fields
            .iter()
            .find(|(_, f)| f.field_key == key)
            .map(|(id, f)| (*id, f))
    }
}

/// Ids for the seeded configuration of a new project.
#[derive(Debug, Clone)]
pub struct ConfigSeedIds {
    /// Task, Bug, Story, Epic, Subtask
    pub types: [Uuid; 5],
    /// Backlog, Todo, In Progress, Done
    pub statuses: [Uuid; 4],
}

/// The seeded task types and statuses (CONTRACT-NOTES §7, seed page 05).
pub fn seed_events(ids: &ConfigSeedIds) -> Vec<ProjectEvent> {
    let types = [
        ("Task", "CheckSquare", "#3b82f6", false),
        ("Bug", "Bug", "#ef4444", false),
        ("Story", "BookOpen", "#22c55e", false),
        (EPIC, "Layers", "#a855f7", true),
        (SUBTASK, "ClipboardList", "#64748b", true),
    ];
    let statuses = [
        ("Backlog", "#64748b", "backlog"),
        ("Todo", "#eab308", "todo"),
        ("In Progress", "#3b82f6", "inprogress"),
        ("Done", "#22c55e", "done"),
    ];
    let mut events = Vec::new();
    for (i, ((name, icon, color, system), id)) in types.into_iter().zip(ids.types).enumerate() {
        events.push(ProjectEvent::TaskTypeCreated {
            type_id: id,
            task_type: TaskType {
                name: name.into(),
                icon: Some(icon.into()),
                color: Some(color.into()),
                description: None,
                is_system: system,
            },
            is_default: i == 0,
        });
    }
    for (i, ((name, color, category), id)) in statuses.into_iter().zip(ids.statuses).enumerate() {
        events.push(ProjectEvent::TaskStatusCreated {
            status_id: id,
            status: TaskStatus {
                name: name.into(),
                color: Some(color.into()),
                position: i as i64 + 1,
                category: category.into(),
            },
            is_default: i == 0,
        });
    }
    events
}

/// A three-state PATCH value: absent (`None`), `null` (`Some(None)`), set.
pub type Patch<T> = Option<Option<T>>;

#[derive(Debug, Clone)]
pub enum ConfigCommand {
    CreateType {
        type_id: Uuid,
        name: String,
        icon: Option<String>,
        color: Option<String>,
        description: Option<String>,
    },
    UpdateType {
        type_id: Uuid,
        name: Option<String>,
        icon: Patch<String>,
        color: Patch<String>,
        description: Patch<String>,
    },
    DeleteType {
        type_id: Uuid,
    },
    SetDefaultType {
        type_id: Uuid,
    },
    CreateStatus {
        status_id: Uuid,
        name: String,
        color: Option<String>,
        position: Option<i64>,
        category: String,
    },
    UpdateStatus {
        status_id: Uuid,
        name: Option<String>,
        color: Patch<String>,
        position: Option<i64>,
        category: Option<String>,
    },
    DeleteStatus {
        status_id: Uuid,
    },
    SetDefaultStatus {
        status_id: Uuid,
    },
    ReorderStatuses {
        status_ids: Vec<Uuid>,
    },
    CreateField {
        field_id: Uuid,
        field: CustomField,
    },
    UpdateField {
        field_id: Uuid,
        display_name: Option<String>,
        field_type: Option<String>,
        options: Option<Vec<FieldOption>>,
        is_required: Option<bool>,
    },
    DeleteField {
        field_id: Uuid,
    },
}

fn err(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

fn name_ok(name: &str, code: ErrorCode, what: &str) -> Result<String, DomainError> {
    validate::bounded_name(name, 100, code, what)
}

fn check_field_type(field_type: &str) -> Result<(), DomainError> {
    validate::one_of(
        field_type,
        FIELD_TYPES,
        ErrorCode::CUSTOM_FIELD_TYPE_INVALID,
        "field_type",
    )
}

fn check_category(category: &str) -> Result<(), DomainError> {
    validate::one_of(
        category,
        STATUS_CATEGORIES,
        ErrorCode::TASK_STATUS_CATEGORY_INVALID,
        "category",
    )
}

fn check_options(options: &[FieldOption]) -> Result<(), DomainError> {
    let mut seen = std::collections::HashSet::new();
    for option in options {
        if option.value.trim().is_empty() || !seen.insert(option.value.as_str()) {
            return Err(err(
                ErrorCode::BAD_REQUEST,
                "options must have distinct, non-empty values",
            ));
        }
    }
    Ok(())
}

impl Project {
    pub fn evolve_config(&mut self, event: &ProjectEvent) {
        let config = &mut self.config;
        match event {
            ProjectEvent::TaskTypeCreated {
                type_id,
                task_type,
                is_default,
            } => {
                config.types.insert(*type_id, task_type.clone());
                if *is_default {
                    config.default_type = Some(*type_id);
                }
            }
            ProjectEvent::TaskTypeUpdated { type_id, changes } => {
                if let Some(t) = config.types.get_mut(type_id) {
                    for c in changes {
                        let text = c.new.as_str().map(str::to_owned);
                        match c.field {
                            TaskTypeField::Name => t.name = text.unwrap_or_default(),
                            TaskTypeField::Icon => t.icon = text,
                            TaskTypeField::Color => t.color = text,
                            TaskTypeField::Description => t.description = text,
                        }
                    }
                }
            }
            ProjectEvent::TaskTypeDeleted { type_id, .. } => {
                config.types.remove(type_id);
            }
            ProjectEvent::DefaultTaskTypeSet { type_id, .. } => {
                config.default_type = Some(*type_id)
            }
            ProjectEvent::TaskStatusCreated {
                status_id,
                status,
                is_default,
            } => {
                config.statuses.insert(*status_id, status.clone());
                if *is_default {
                    config.default_status = Some(*status_id);
                }
            }
            ProjectEvent::TaskStatusUpdated { status_id, changes } => {
                if let Some(s) = config.statuses.get_mut(status_id) {
                    for c in changes {
                        match c.field {
                            TaskStatusField::Name => {
                                s.name = c.new.as_str().unwrap_or_default().into()
                            }
                            TaskStatusField::Color => s.color = c.new.as_str().map(str::to_owned),
                            TaskStatusField::Position => {
                                s.position = c.new.as_i64().unwrap_or_default()
                            }
                            TaskStatusField::Category => {
                                s.category = c.new.as_str().unwrap_or_default().into()
                            }
                        }
                    }
                }
            }
            ProjectEvent::TaskStatusDeleted { status_id, .. } => {
                config.statuses.remove(status_id);
            }
            ProjectEvent::DefaultTaskStatusSet { status_id, .. } => {
                config.default_status = Some(*status_id)
            }
            ProjectEvent::TaskStatusesReordered { status_ids } => {
                for (i, id) in status_ids.iter().enumerate() {
                    if let Some(s) = config.statuses.get_mut(id) {
                        s.position = i as i64;
                    }
                }
            }
            ProjectEvent::CustomFieldCreated { field_id, field } => {
                config.fields.insert(*field_id, field.clone());
            }
            ProjectEvent::CustomFieldUpdated { field_id, changes } => {
                if let Some(f) = config.fields.get_mut(field_id) {
                    for c in changes {
                        match c.field {
                            CustomFieldField::DisplayName => {
                                f.display_name = c.new.as_str().unwrap_or_default().into()
                            }
                            CustomFieldField::FieldType => {
                                f.field_type = c.new.as_str().unwrap_or_default().into()
                            }
                            CustomFieldField::Options => {
                                f.options =
                                    serde_json::from_value(c.new.clone()).unwrap_or_default()
                            }
                            CustomFieldField::IsRequired => {
                                f.is_required = c.new.as_bool().unwrap_or_default()
                            }
                        }
                    }
                }
            }
            ProjectEvent::CustomFieldDeleted { field_id, .. } => {
                config.fields.remove(field_id);
            }
            _ => {}
        }
    }

    fn task_type(&self, type_id: Uuid) -> Result<&TaskType, DomainError> {
        self.config
            .types
            .get(&type_id)
            .ok_or_else(|| err(ErrorCode::TASK_TYPE_NOT_FOUND, "task type not found"))
    }

    fn status(&self, status_id: Uuid) -> Result<&TaskStatus, DomainError> {
        self.config
            .statuses
            .get(&status_id)
            .ok_or_else(|| err(ErrorCode::TASK_STATUS_NOT_FOUND, "task status not found"))
    }

    fn type_name_free(&self, name: &str, except: Option<Uuid>) -> Result<(), DomainError> {
        let names = self
            .config
            .types
            .iter()
            .map(|(id, t)| (id, t.name.as_str()));
        validate::name_free(
            names,
            name,
            except.as_ref(),
            ErrorCode::TASK_TYPE_NAME_RESERVED,
            "task type",
        )
    }

    fn status_name_free(&self, name: &str, except: Option<Uuid>) -> Result<(), DomainError> {
        let names = self
            .config
            .statuses
            .iter()
            .map(|(id, s)| (id, s.name.as_str()));
        validate::name_free(
            names,
            name,
            except.as_ref(),
            ErrorCode::TASK_STATUS_NAME_TAKEN,
            "status",
        )
    }

    pub fn decide_config(&self, command: ConfigCommand) -> Result<Vec<ProjectEvent>, DomainError> {
        if !self.is_live() {
            return Err(err(ErrorCode::PROJECT_NOT_FOUND, "project not found"));
        }
        match command {
            ConfigCommand::CreateType {
                type_id,
                name,
                icon,
                color,
                description,
            } => {
                let name = name_ok(&name, ErrorCode::TASK_TYPE_NAME_INVALID, "name")?;
                self.type_name_free(&name, None)?;
                Ok(vec![ProjectEvent::TaskTypeCreated {
                    type_id,
                    task_type: TaskType {
                        name,
                        icon,
                        color,
                        description,
                        is_system: false,
                    },
                    is_default: false,
                }])
            }
            ConfigCommand::UpdateType {
                type_id,
                name,
                icon,
                color,
                description,
            } => {
                let t = self.task_type(type_id)?;
                if t.is_system {
                    return Err(err(
                        ErrorCode::TASK_TYPE_IS_SYSTEM,
                        "system task types cannot be changed",
                    ));
                }
                let mut changes = Changes::new();
                // An empty name leaves it unchanged (as Paca does).
                if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
                    let name = name_ok(&name, ErrorCode::TASK_TYPE_NAME_INVALID, "name")?;
                    self.type_name_free(&name, Some(type_id))?;
                    changes.record_json(TaskTypeField::Name, &t.name, &name);
                }
                if let Some(icon) = icon {
                    changes.record_json(TaskTypeField::Icon, &t.icon, &icon);
                }
                if let Some(color) = color {
                    changes.record_json(TaskTypeField::Color, &t.color, &color);
                }
                if let Some(description) = description {
                    changes.record_json(TaskTypeField::Description, &t.description, &description);
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::TaskTypeUpdated {
                    type_id,
                    changes: changes.into_vec(),
                }])
            }
            ConfigCommand::DeleteType { type_id } => {
                let t = self.task_type(type_id)?;
                if t.is_system {
                    return Err(err(
                        ErrorCode::TASK_TYPE_IS_SYSTEM,
                        "system task types cannot be deleted",
                    ));
                }
                if self.config.default_type == Some(type_id) {
                    return Err(err(
                        ErrorCode::TASK_TYPE_IS_DEFAULT,
                        "the default task type cannot be deleted; set another default first",
                    ));
                }
                Ok(vec![ProjectEvent::TaskTypeDeleted {
                    type_id,
                    name: t.name.clone(),
                }])
            }
            ConfigCommand::SetDefaultType { type_id } => {
                let t = self.task_type(type_id)?;
                if t.is_system {
                    return Err(err(
                        ErrorCode::TASK_TYPE_IS_SYSTEM,
                        "a system task type cannot be the default",
                    ));
                }
                if self.config.default_type == Some(type_id) {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::DefaultTaskTypeSet {
                    type_id,
                    old_type_id: self.config.default_type,
                }])
            }
            ConfigCommand::CreateStatus {
                status_id,
                name,
                color,
                position,
                category,
            } => {
                let name = name_ok(&name, ErrorCode::TASK_STATUS_NAME_INVALID, "name")?;
                self.status_name_free(&name, None)?;
                check_category(&category)?;
                let position = position.unwrap_or_else(|| {
                    self.config
                        .statuses
                        .values()
                        .map(|s| s.position + 1)
                        .max()
                        .unwrap_or(1)
                });
                Ok(vec![ProjectEvent::TaskStatusCreated {
                    status_id,
                    status: TaskStatus {
                        name,
                        color,
                        position,
                        category,
                    },
                    is_default: false,
                }])
            }
            ConfigCommand::UpdateStatus {
                status_id,
                name,
                color,
                position,
                category,
            } => {
                let s = self.status(status_id)?;
                let mut changes = Changes::new();
                if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
                    let name = name_ok(&name, ErrorCode::TASK_STATUS_NAME_INVALID, "name")?;
                    self.status_name_free(&name, Some(status_id))?;
                    changes.record_json(TaskStatusField::Name, &s.name, &name);
                }
                if let Some(color) = color {
                    changes.record_json(TaskStatusField::Color, &s.color, &color);
                }
                if let Some(position) = position {
                    changes.record_json(TaskStatusField::Position, &s.position, &position);
                }
                if let Some(category) = category {
                    check_category(&category)?;
                    changes.record_json(TaskStatusField::Category, &s.category, &category);
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::TaskStatusUpdated {
                    status_id,
                    changes: changes.into_vec(),
                }])
            }
            ConfigCommand::DeleteStatus { status_id } => {
                let s = self.status(status_id)?;
                if self.config.default_status == Some(status_id) {
                    return Err(err(
                        ErrorCode::TASK_STATUS_IS_DEFAULT,
                        "the default status cannot be deleted; set another default first",
                    ));
                }
                Ok(vec![ProjectEvent::TaskStatusDeleted {
                    status_id,
                    name: s.name.clone(),
                }])
            }
            ConfigCommand::SetDefaultStatus { status_id } => {
                self.status(status_id)?;
                if self.config.default_status == Some(status_id) {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::DefaultTaskStatusSet {
                    status_id,
                    old_status_id: self.config.default_status,
                }])
            }
            ConfigCommand::ReorderStatuses { status_ids } => {
                let given: std::collections::BTreeSet<Uuid> = status_ids.iter().copied().collect();
                let existing: std::collections::BTreeSet<Uuid> =
                    self.config.statuses.keys().copied().collect();
                if given.len() != status_ids.len() || given != existing {
                    return Err(err(
                        ErrorCode::TASK_STATUS_REORDER_INVALID,
                        "status_ids must list every status of the project exactly once",
                    ));
                }
                Ok(vec![ProjectEvent::TaskStatusesReordered { status_ids }])
            }
            ConfigCommand::CreateField { field_id, field } => {
                let key_ok = !field.field_key.is_empty()
                    && field.field_key.len() <= 64
                    && field
                        .field_key
                        .starts_with(|c: char| c.is_ascii_lowercase())
                    && field
                        .field_key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !key_ok {
                    return Err(err(
                        ErrorCode::CUSTOM_FIELD_KEY_INVALID,
                        "field_key must be 1-64 characters of a-z, 0-9 and _, starting with a letter",
                    ));
                }
                if self.config.field_by_key(&field.field_key).is_some() {
                    return Err(err(
                        ErrorCode::CUSTOM_FIELD_KEY_TAKEN,
                        format!("field_key {:?} is already used", field.field_key),
                    ));
                }
                let display_name = name_ok(
                    &field.display_name,
                    ErrorCode::CUSTOM_FIELD_NAME_INVALID,
                    "display_name",
                )?;
                check_field_type(&field.field_type)?;
                check_options(&field.options)?;
                Ok(vec![ProjectEvent::CustomFieldCreated {
                    field_id,
                    field: CustomField {
                        display_name,
                        ..field
                    },
                }])
            }
            ConfigCommand::UpdateField {
                field_id,
                display_name,
                field_type,
                options,
                is_required,
            } => {
                let f = self.config.fields.get(&field_id).ok_or_else(|| {
                    err(ErrorCode::CUSTOM_FIELD_NOT_FOUND, "custom field not found")
                })?;
                let mut changes = Changes::new();
                if let Some(name) = display_name.filter(|n| !n.trim().is_empty()) {
                    let name =
                        name_ok(&name, ErrorCode::CUSTOM_FIELD_NAME_INVALID, "display_name")?;
                    changes.record_json(CustomFieldField::DisplayName, &f.display_name, &name);
                }
                if let Some(field_type) = field_type {
                    check_field_type(&field_type)?;
                    changes.record_json(CustomFieldField::FieldType, &f.field_type, &field_type);
                }
                if let Some(options) = options {
                    check_options(&options)?;
                    changes.record_json(CustomFieldField::Options, &f.options, &options);
                }
                if let Some(is_required) = is_required {
                    changes.record_json(CustomFieldField::IsRequired, &f.is_required, &is_required);
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::CustomFieldUpdated {
                    field_id,
                    changes: changes.into_vec(),
                }])
            }
            ConfigCommand::DeleteField { field_id } => {
                let f = self.config.fields.get(&field_id).ok_or_else(|| {
                    err(ErrorCode::CUSTOM_FIELD_NOT_FOUND, "custom field not found")
                })?;
                Ok(vec![ProjectEvent::CustomFieldDeleted {
                    field_id,
                    field_key: f.field_key.clone(),
                }])
            }
        }
    }
}

/// Validates a custom-field value against its definition. `null` clears a
/// value (refused for required fields).
pub fn validate_field_value(field: &CustomField, value: &Value) -> Result<(), DomainError> {
    let bad = |why: &str| {
        Err(err(
            ErrorCode::BAD_REQUEST,
            format!("custom_fields.{}: {why}", field.field_key),
        ))
    };
    let option_ok = |v: &str| field.options.iter().any(|o| o.value == v);
    match (field.field_type.as_str(), value) {
        (_, Value::Null) if field.is_required => bad("is required"),
        (_, Value::Null) => Ok(()),
        ("text", Value::String(_)) => Ok(()),
        ("number", Value::Number(_)) => Ok(()),
        ("boolean", Value::Bool(_)) => Ok(()),
        ("date", Value::String(s)) => {
            let ok = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
                || chrono::DateTime::parse_from_rfc3339(s).is_ok();
            if ok {
                Ok(())
            } else {
                bad("expected a date (YYYY-MM-DD or RFC 3339)")
            }
        }
        ("url", Value::String(s)) => {
            if (s.starts_with("http://") || s.starts_with("https://"))
                && !s.contains(char::is_whitespace)
            {
                Ok(())
            } else {
                bad("expected an http(s) URL")
            }
        }
        ("select", Value::String(s)) if option_ok(s) => Ok(()),
        ("select", _) => bad("expected one of the field's options"),
        ("multi_select", Value::Array(items))
            if items.iter().all(|i| i.as_str().is_some_and(option_ok)) =>
        {
            Ok(())
        }
        ("multi_select", _) => bad("expected an array of the field's options"),
        (kind, _) => bad(&format!("expected a {kind} value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainEvent;
    use crate::project::{ProjectCommand, SeedIds};

    fn project() -> Project {
        let ids = SeedIds {
            admin_role: Uuid::from_u128(1),
            editor_role: Uuid::from_u128(2),
            viewer_role: Uuid::from_u128(3),
            creator_member: Uuid::from_u128(10),
            config: ConfigSeedIds {
                types: [20, 21, 22, 23, 24].map(Uuid::from_u128),
                statuses: [30, 31, 32, 33].map(Uuid::from_u128),
            },
        };
        Project::default()
            .decide(ProjectCommand::Create {
                name: "P".into(),
                description: String::new(),
                task_id_prefix: None,
                is_public: false,
                settings: None,
                created_by: Uuid::from_u128(100),
                ids,
            })
            .unwrap()
            .iter()
            .fold(Project::default(), Project::evolve)
    }

    fn then(project: &Project, command: ConfigCommand) -> Result<Project, ErrorCode> {
        project
            .decide_config(command)
            .map(|events| events.iter().fold(project.clone(), Project::evolve))
            .map_err(|e| e.code)
    }

    #[test]
    fn seeding() {
        let p = project();
        assert_eq!(p.config.types.len(), 5);
        assert_eq!(p.config.default_type, Some(Uuid::from_u128(20)));
        assert!(p.config.type_by_name("Epic").unwrap().1.is_system);
        assert_eq!(p.config.statuses[&Uuid::from_u128(33)].category, "done");
        assert_eq!(p.config.default_status, Some(Uuid::from_u128(30)));
    }

    #[test]
    fn system_and_default_types_are_protected() {
        let p = project();
        let epic = Uuid::from_u128(23);
        let update = ConfigCommand::UpdateType {
            type_id: epic,
            name: Some("Saga".into()),
            icon: None,
            color: None,
            description: None,
        };
        assert_eq!(then(&p, update), Err(ErrorCode::TASK_TYPE_IS_SYSTEM));
        assert_eq!(
            then(&p, ConfigCommand::DeleteType { type_id: epic }),
            Err(ErrorCode::TASK_TYPE_IS_SYSTEM)
        );
        let task = Uuid::from_u128(20);
        assert_eq!(
            then(&p, ConfigCommand::DeleteType { type_id: task }),
            Err(ErrorCode::TASK_TYPE_IS_DEFAULT)
        );
        let bug = Uuid::from_u128(21);
        let p = then(&p, ConfigCommand::SetDefaultType { type_id: bug }).unwrap();
        assert!(then(&p, ConfigCommand::DeleteType { type_id: task }).is_ok());
    }

    #[test]
    fn three_state_patch_of_a_type() {
        let p = project();
        let bug = Uuid::from_u128(21);
        let p = then(
            &p,
            ConfigCommand::UpdateType {
                type_id: bug,
                name: Some(String::new()),
                icon: Some(None),
                color: None,
                description: Some(Some("defects".into())),
            },
        )
        .unwrap();
        let t = &p.config.types[&bug];
        assert_eq!(t.name, "Bug");
        assert_eq!(t.icon, None);
        assert_eq!(t.color.as_deref(), Some("#ef4444"));
        assert_eq!(t.description.as_deref(), Some("defects"));
    }

    #[test]
    fn statuses_validate_and_reorder() {
        let p = project();
        let bad = ConfigCommand::CreateStatus {
            status_id: Uuid::from_u128(40),
            name: "Review".into(),
            color: None,
            position: None,
            category: "waiting".into(),
        };
        assert_eq!(then(&p, bad), Err(ErrorCode::TASK_STATUS_CATEGORY_INVALID));
        let ids: Vec<Uuid> = [33, 32, 31, 30].map(Uuid::from_u128).to_vec();
        let p = then(&p, ConfigCommand::ReorderStatuses { status_ids: ids }).unwrap();
        assert_eq!(p.config.statuses[&Uuid::from_u128(33)].position, 0);
        let partial = ConfigCommand::ReorderStatuses {
            status_ids: vec![Uuid::from_u128(30)],
        };
        assert_eq!(
            then(&p, partial),
            Err(ErrorCode::TASK_STATUS_REORDER_INVALID)
        );
        assert_eq!(
            then(
                &p,
                ConfigCommand::DeleteStatus {
                    status_id: Uuid::from_u128(30)
                }
            ),
            Err(ErrorCode::TASK_STATUS_IS_DEFAULT)
        );
    }

    #[test]
    fn custom_fields_and_values() {
        let p = project();
        let field = CustomField {
            field_key: "severity".into(),
            display_name: "Severity".into(),
            field_type: "select".into(),
            options: vec![
                FieldOption {
                    value: "low".into(),
                    color: None,
                },
                FieldOption {
                    value: "high".into(),
                    color: Some("#f00".into()),
                },
            ],
            is_required: false,
        };
        let p = then(
            &p,
            ConfigCommand::CreateField {
                field_id: Uuid::from_u128(50),
                field: field.clone(),
            },
        )
        .unwrap();
        let again = ConfigCommand::CreateField {
            field_id: Uuid::from_u128(51),
            field: field.clone(),
        };
        assert_eq!(then(&p, again), Err(ErrorCode::CUSTOM_FIELD_KEY_TAKEN));
        assert!(validate_field_value(&field, &Value::from("high")).is_ok());
        assert!(validate_field_value(&field, &Value::from("urgent")).is_err());
        assert!(validate_field_value(&field, &Value::Null).is_ok());
        let date = CustomField {
            field_type: "date".into(),
            is_required: true,
            ..field
        };
        assert!(validate_field_value(&date, &Value::from("2026-11-22")).is_ok());
        assert!(validate_field_value(&date, &Value::from("22/11/2026")).is_err());
        assert!(validate_field_value(&date, &Value::Null).is_err());
    }

    #[test]
    fn flattened_config_events_round_trip() {
        for event in seed_events(&ConfigSeedIds {
            types: [1, 2, 3, 4, 5].map(Uuid::from_u128),
            statuses: [6, 7, 8, 9].map(Uuid::from_u128),
        }) {
            let back = ProjectEvent::from_stored(&event.event_type(), &event.to_payload()).unwrap();
            assert_eq!(back, event);
        }
    }
}
