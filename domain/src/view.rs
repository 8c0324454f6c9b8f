//! Saved interaction views (seed page 05): one stream per view, in one of
//! three contexts (a sprint's tabs, the product backlog, the timeline),
//! plus the view's manual task order.
//!
//! Rules over a whole context (a context keeps at least one view; a reorder
//! names exactly the context's views) are decided from the context's view
//! list, which the command handler reads under a per-context lock taken in
//! the append transaction, so two such commands never decide on the same
//! stale list.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::change::{Changes, FieldChange};
use crate::{Decision, DomainError, DomainEvent, ErrorCode, validate};

crate::fields! {
    /// A view's tracked fields.
    pub enum ViewField {
        Name = "name",
        ViewType = "view_type",
        Config = "config",
        Position = "position",
    }
}

pub const NAME_MAX: usize = 100;
pub const VIEW_TYPES: &[&str] = &["table", "board", "roadmap", "plugin"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewContext {
    #[default]
    Sprint,
    Backlog,
    Timeline,
}

impl ViewContext {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sprint" => Some(Self::Sprint),
            "backlog" => Some(Self::Backlog),
            "timeline" => Some(Self::Timeline),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sprint => "sprint",
            Self::Backlog => "backlog",
            Self::Timeline => "timeline",
        }
    }
}

/// Which set of views a view belongs to: a context, and for sprint
/// context the sprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewScope {
    pub project_id: Uuid,
    pub context: ViewContext,
    /// Set exactly when `context` is `Sprint`.
    pub sprint_id: Option<Uuid>,
}

impl ViewScope {
    /// A stable name for the scope (the key of its write-side lock).
    pub fn key(&self) -> String {
        match self.sprint_id {
            Some(sprint) => format!("{}:{}:{sprint}", self.project_id, self.context.as_str()),
            None => format!("{}:{}", self.project_id, self.context.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum ViewEvent {
    #[serde(rename = "view.created")]
    Created {
        project_id: Uuid,
        context: ViewContext,
        sprint_id: Option<Uuid>,
        name: String,
        view_type: String,
        config: Value,
        position: f64,
    },
    /// `changes` name `name`, `view_type`, `config`, `position`.
    #[serde(rename = "view.updated")]
    Updated {
        changes: Vec<FieldChange<ViewField>>,
    },
    /// The view's tab moved in a reorder of its whole context.
    #[serde(rename = "view.reordered")]
    Reordered { position: f64, old_position: f64 },
    /// A task's manual position (and group) in this view.
    #[serde(rename = "view.task_positioned")]
    TaskPositioned {
        task_id: Uuid,
        position: f64,
        group_key: Option<String>,
    },
    #[serde(rename = "view.deleted")]
    Deleted {
        name: String,
        context: ViewContext,
        sprint_id: Option<Uuid>,
    },
}

impl DomainEvent for ViewEvent {
    const STREAM_TYPE: &'static str = "view";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub context: ViewContext,
    pub sprint_id: Option<Uuid>,
    pub name: String,
    pub view_type: String,
    pub config: Value,
    pub position: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskPosition {
    pub task_id: Uuid,
    pub position: f64,
    pub group_key: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ViewCommand {
    Create {
        scope: ViewScope,
        name: String,
        /// Defaults to `table`.
        view_type: Option<String>,
        /// Defaults to `{}`.
        config: Option<Value>,
        position: f64,
    },
    Update {
        name: Option<String>,
        view_type: Option<String>,
        config: Option<Value>,
        position: Option<f64>,
    },
    Delete {
        /// How many live views the view's context has, this one included.
        views_in_context: usize,
    },
    /// The view's sprint is being deleted: its whole context goes, so the
    /// last-view rule does not apply.
    DeleteWithSprint,
    /// Part of a context reorder (see [`plan_reorder`]).
    Reposition {
        position: f64,
    },
    PositionTasks {
        items: Vec<TaskPosition>,
    },
}

fn err(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

fn normalize_name(name: &str) -> Result<String, DomainError> {
    validate::bounded_name(name, NAME_MAX, ErrorCode::VIEW_NAME_INVALID, "name")
}

fn check_view_type(view_type: &str) -> Result<(), DomainError> {
    validate::one_of(
        view_type,
        VIEW_TYPES,
        ErrorCode::VIEW_TYPE_INVALID,
        "view_type",
    )
}

fn check_config(config: &Value) -> Result<(), DomainError> {
    if !config.is_object() {
        return Err(err(ErrorCode::BAD_REQUEST, "config must be a JSON object"));
    }
    Ok(())
}

/// A `plugin` view names the plugin and the frontend component it renders.
fn check_plugin(view_type: &str, config: &Value) -> Result<(), DomainError> {
    let present = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.trim().is_empty())
    };
    if view_type == "plugin" && !(present("plugin_manifest_id") && present("plugin_component")) {
        return Err(err(
            ErrorCode::VIEW_PLUGIN_CONFIG_REQUIRED,
            "a plugin view needs config.plugin_manifest_id and config.plugin_component",
        ));
    }
    Ok(())
}

fn check_position(position: f64, what: &str) -> Result<(), DomainError> {
    if !position.is_finite() {
        return Err(err(
            ErrorCode::BAD_REQUEST,
            format!("{what} must be a finite number"),
        ));
    }
    Ok(())
}

impl View {
    pub fn evolve(mut self, event: &ViewEvent) -> Self {
        match event {
            ViewEvent::Created {
                project_id,
                context,
                sprint_id,
                name,
                view_type,
                config,
                position,
            } => {
                self.exists = true;
                self.project_id = *project_id;
                self.context = *context;
                self.sprint_id = *sprint_id;
                self.name.clone_from(name);
                self.view_type.clone_from(view_type);
                self.config = config.clone();
                self.position = *position;
            }
            ViewEvent::Updated { changes } => {
                for change in changes {
                    match change.field {
                        ViewField::Name => {
                            self.name = change.new.as_str().unwrap_or_default().into()
                        }
                        ViewField::ViewType => {
                            self.view_type = change.new.as_str().unwrap_or_default().into()
                        }
                        ViewField::Config => self.config = change.new.clone(),
                        ViewField::Position => {
                            self.position = change.new.as_f64().unwrap_or_default()
                        }
                    }
                }
            }
            ViewEvent::Reordered { position, .. } => self.position = *position,
            // Task positions live in the read model only: no decision here
            // depends on them.
            ViewEvent::TaskPositioned { .. } => {}
            ViewEvent::Deleted { .. } => self.deleted = true,
        }
        self
    }

    pub fn is_live(&self) -> bool {
        self.exists && !self.deleted
    }

    /// Live and in `project_id` (a view of another project is unknown).
    pub fn is_live_in(&self, project_id: Uuid) -> bool {
        self.is_live() && self.project_id == project_id
    }

    pub fn scope(&self) -> ViewScope {
        ViewScope {
            project_id: self.project_id,
            context: self.context,
            sprint_id: self.sprint_id,
        }
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.is_live() {
            return Err(err(ErrorCode::VIEW_NOT_FOUND, "view not found"));
        }
        Ok(())
    }

    pub fn decide(&self, command: ViewCommand) -> Decision<ViewEvent> {
        match command {
            ViewCommand::Create {
                scope,
                name,
                view_type,
                config,
                position,
            } => {
                if self.exists {
                    return Err(err(ErrorCode::CONFLICT, "view already exists"));
                }
                if (scope.context == ViewContext::Sprint) != scope.sprint_id.is_some() {
                    return Err(err(
                        ErrorCode::BAD_REQUEST,
                        "sprint_id is required for sprint context, and only there",
                    ));
                }
                let name = normalize_name(&name)?;
                let view_type = view_type.unwrap_or_else(|| "table".into());
                check_view_type(&view_type)?;
                let config = match config {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(config) => config,
                };
                check_config(&config)?;
                check_plugin(&view_type, &config)?;
                check_position(position, "position")?;
                Ok(vec![ViewEvent::Created {
                    project_id: scope.project_id,
                    context: scope.context,
                    sprint_id: scope.sprint_id,
                    name,
                    view_type,
                    config,
                    position,
                }])
            }
            ViewCommand::Update {
                name,
                view_type,
                config,
                position,
            } => {
                self.live()?;
                let mut changes = Changes::new();
                if let Some(name) = name {
                    let name = normalize_name(&name)?;
                    changes.record(ViewField::Name, self.name.clone(), name);
                }
                let new_type = view_type.unwrap_or_else(|| self.view_type.clone());
                check_view_type(&new_type)?;
                let new_config = config.unwrap_or_else(|| self.config.clone());
                check_config(&new_config)?;
                check_plugin(&new_type, &new_config)?;
                changes.record(ViewField::ViewType, self.view_type.clone(), new_type);
                changes.record(ViewField::Config, self.config.clone(), new_config);
                if let Some(position) = position {
                    check_position(position, "position")?;
                    changes.record(ViewField::Position, json!(self.position), json!(position));
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ViewEvent::Updated {
                    changes: changes.into_vec(),
                }])
            }
            ViewCommand::Delete { views_in_context } => {
                self.live()?;
                if views_in_context <= 1 {
                    return Err(err(
                        ErrorCode::VIEW_IS_LAST_VIEW,
                        "a context keeps at least one view",
                    ));
                }
                Ok(vec![ViewEvent::Deleted {
                    name: self.name.clone(),
                    context: self.context,
                    sprint_id: self.sprint_id,
                }])
            }
            ViewCommand::DeleteWithSprint => {
                self.live()?;
                Ok(vec![ViewEvent::Deleted {
                    name: self.name.clone(),
                    context: self.context,
                    sprint_id: self.sprint_id,
                }])
            }
            ViewCommand::Reposition { position } => {
                self.live()?;
                check_position(position, "position")?;
                if position == self.position {
                    return Ok(vec![]);
                }
                Ok(vec![ViewEvent::Reordered {
                    position,
                    old_position: self.position,
                }])
            }
            ViewCommand::PositionTasks { items } => {
                self.live()?;
                check_task_positions(&items)?;
                Ok(items
                    .into_iter()
                    .map(|item| ViewEvent::TaskPositioned {
                        task_id: item.task_id,
                        position: item.position,
                        group_key: item.group_key,
                    })
                    .collect())
            }
        }
    }
}

/// Manual positions: at least one, each a finite number >= 0.
pub fn check_task_positions(items: &[TaskPosition]) -> Result<(), DomainError> {
    if items.is_empty() {
        return Err(err(ErrorCode::BAD_REQUEST, "items must not be empty"));
    }
    if items
        .iter()
        .any(|i| !(i.position.is_finite() && i.position >= 0.0))
    {
        return Err(err(
            ErrorCode::BAD_REQUEST,
            "position must be a number >= 0",
        ));
    }
    Ok(())
}

/// A context reorder: `requested` must list exactly the context's views
/// (`current`), each once. Returns each view's new tab position.
pub fn plan_reorder(current: &[Uuid], requested: &[Uuid]) -> Result<Vec<(Uuid, f64)>, DomainError> {
    let have: HashSet<&Uuid> = current.iter().collect();
    let want: HashSet<&Uuid> = requested.iter().collect();
    if requested.is_empty() || want.len() != requested.len() || have != want {
        return Err(err(
            ErrorCode::VIEW_REORDER_INVALID,
            "view_ids must list every view of the context exactly once",
        ));
    }
    Ok(requested
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as f64))
        .collect())
}

/// The Board and Table tabs every new sprint gets (seed page 05): status
/// columns (backlog-category columns collapsed on the board), filtered to
/// the sprint and to non-system task types.
pub fn sprint_defaults(
    project_id: Uuid,
    sprint_id: Uuid,
    backlog_status_ids: &[Uuid],
) -> [ViewCommand; 2] {
    let filters = json!({
        "sprints": {"all": false, "items": {sprint_id.to_string(): true}},
        "task_types": {"all": false, "items": {"normal": {"all": true}}},
    });
    let scope = ViewScope {
        project_id,
        context: ViewContext::Sprint,
        sprint_id: Some(sprint_id),
    };
    let mut board = json!({"column_by": "status", "filters": filters.clone()});
    if !backlog_status_ids.is_empty() {
        board["collapsed_columns"] = json!(backlog_status_ids);
    }
    [
        ViewCommand::Create {
            scope,
            name: "Board".into(),
            view_type: Some("board".into()),
            config: Some(board),
            position: 0.0,
        },
        ViewCommand::Create {
            scope,
            name: "Table".into(),
            view_type: Some("table".into()),
            config: Some(json!({"column_by": "status", "filters": filters})),
            position: 1.0,
        },
    ]
}

/// The product-backlog table and the timeline roadmap every new project
/// gets (seed page 05, "Default seeded views").
pub fn project_defaults(project_id: Uuid, epic_type_id: Uuid) -> [ViewCommand; 2] {
    let scope = |context| ViewScope {
        project_id,
        context,
        sprint_id: None,
    };
    [
        ViewCommand::Create {
            scope: scope(ViewContext::Backlog),
            name: "Table".into(),
            view_type: Some("table".into()),
            config: Some(json!({
                "column_by": "sprint",
                "filters": {"task_types": {"all": false, "items": {"normal": {"all": true}}}},
            })),
            position: 0.0,
        },
        ViewCommand::Create {
            scope: scope(ViewContext::Timeline),
            name: "Roadmap".into(),
            view_type: Some("roadmap".into()),
            config: Some(json!({
                "filters": {"task_types": {"all": false, "items": {epic_type_id.to_string(): true}}},
            })),
            position: 0.0,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Field;

    const PROJECT: Uuid = Uuid::from_u128(1);
    const SPRINT: Uuid = Uuid::from_u128(2);

    fn sprint_scope() -> ViewScope {
        ViewScope {
            project_id: PROJECT,
            context: ViewContext::Sprint,
            sprint_id: Some(SPRINT),
        }
    }

    fn given(commands: Vec<ViewCommand>) -> View {
        commands.into_iter().fold(View::default(), |view, command| {
            let events = view.decide(command).unwrap();
            events.iter().fold(view, View::evolve)
        })
    }

    fn when(view: &View, command: ViewCommand) -> Result<Vec<ViewEvent>, ErrorCode> {
        view.decide(command).map_err(|e| e.code)
    }

    fn create(view_type: Option<&str>, config: Option<Value>) -> ViewCommand {
        ViewCommand::Create {
            scope: sprint_scope(),
            name: " Board ".into(),
            view_type: view_type.map(str::to_owned),
            config,
            position: 0.0,
        }
    }

    /// `ViewCommand::Update` fields, so tests can use `..Upd::default()`.
    #[derive(Default)]
    struct Upd {
        name: Option<String>,
        view_type: Option<String>,
        config: Option<Value>,
        position: Option<f64>,
    }

    impl Upd {
        fn cmd(self) -> ViewCommand {
            ViewCommand::Update {
                name: self.name,
                view_type: self.view_type,
                config: self.config,
                position: self.position,
            }
        }
    }

    fn update() -> ViewCommand {
        Upd::default().cmd()
    }

    #[test]
    fn create_defaults_and_validation() {
        let view = given(vec![create(None, None)]);
        assert_eq!(view.name, "Board");
        assert_eq!(view.view_type, "table");
        assert_eq!(view.config, json!({}));
        assert_eq!(view.sprint_id, Some(SPRINT));
        let empty = View::default();
        assert_eq!(
            when(&empty, create(Some("gantt"), None)),
            Err(ErrorCode::VIEW_TYPE_INVALID)
        );
        assert_eq!(
            when(&empty, create(None, Some(json!([1])))),
            Err(ErrorCode::BAD_REQUEST)
        );
        let unnamed = ViewCommand::Create {
            scope: sprint_scope(),
            name: "  ".into(),
            view_type: None,
            config: None,
            position: 0.0,
        };
        assert_eq!(when(&empty, unnamed), Err(ErrorCode::VIEW_NAME_INVALID));
        let no_sprint = ViewCommand::Create {
            scope: ViewScope {
                sprint_id: None,
                ..sprint_scope()
            },
            name: "x".into(),
            view_type: None,
            config: None,
            position: 0.0,
        };
        assert_eq!(when(&empty, no_sprint), Err(ErrorCode::BAD_REQUEST));
        assert_eq!(
            when(&view, create(None, None)),
            Err(ErrorCode::CONFLICT),
            "a view is created once"
        );
    }

    #[test]
    fn plugin_views_name_their_plugin() {
        let empty = View::default();
        assert_eq!(
            when(
                &empty,
                create(Some("plugin"), Some(json!({"plugin_manifest_id": "com.x"})))
            ),
            Err(ErrorCode::VIEW_PLUGIN_CONFIG_REQUIRED)
        );
        let config =
            json!({"plugin_manifest_id": "com.paca.checklist", "plugin_component": "Checklist"});
        assert!(when(&empty, create(Some("plugin"), Some(config))).is_ok());
        // Turning a table into a plugin view needs the plugin config too.
        let table = given(vec![create(None, None)]);
        let to_plugin = Upd {
            view_type: Some("plugin".into()),
            ..Upd::default()
        }
        .cmd();
        assert_eq!(
            when(&table, to_plugin),
            Err(ErrorCode::VIEW_PLUGIN_CONFIG_REQUIRED)
        );
    }

    #[test]
    fn update_records_only_changes() {
        let view = given(vec![create(Some("board"), None)]);
        assert_eq!(when(&view, update()), Ok(vec![]));
        let events = when(
            &view,
            ViewCommand::Update {
                name: Some("Board".into()),
                view_type: Some("table".into()),
                config: Some(json!({"sort_by": "manual"})),
                position: Some(3.5),
            },
        )
        .unwrap();
        let ViewEvent::Updated { changes } = &events[0] else {
            panic!("expected view.updated");
        };
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["view_type", "config", "position"]);
        let after = events.iter().fold(view, View::evolve);
        assert_eq!(after.position, 3.5);
        assert_eq!(after.config["sort_by"], "manual");
        let bad = Upd {
            name: Some(String::new()),
            ..Upd::default()
        }
        .cmd();
        assert_eq!(when(&after, bad), Err(ErrorCode::VIEW_NAME_INVALID));
    }

    #[test]
    fn the_last_view_of_a_context_stays() {
        let view = given(vec![create(None, None)]);
        assert_eq!(
            when(
                &view,
                ViewCommand::Delete {
                    views_in_context: 1
                }
            ),
            Err(ErrorCode::VIEW_IS_LAST_VIEW)
        );
        let gone = given(vec![
            create(None, None),
            ViewCommand::Delete {
                views_in_context: 2,
            },
        ]);
        assert!(!gone.is_live());
        assert_eq!(when(&gone, update()), Err(ErrorCode::VIEW_NOT_FOUND));
    }

    #[test]
    fn reorder_must_name_exactly_the_context() {
        let [a, b, c] = [10, 11, 12].map(Uuid::from_u128);
        assert_eq!(
            plan_reorder(&[a, b], &[b, a]).unwrap(),
            vec![(b, 0.0), (a, 1.0)]
        );
        for bad in [vec![a], vec![a, a], vec![a, b, c], vec![a, c], vec![]] {
            assert_eq!(
                plan_reorder(&[a, b], &bad).unwrap_err().code,
                ErrorCode::VIEW_REORDER_INVALID,
                "{bad:?}"
            );
        }
        let view = given(vec![create(None, None)]);
        assert_eq!(
            when(&view, ViewCommand::Reposition { position: 0.0 }),
            Ok(vec![])
        );
        assert_eq!(
            when(&view, ViewCommand::Reposition { position: 2.0 }),
            Ok(vec![ViewEvent::Reordered {
                position: 2.0,
                old_position: 0.0
            }])
        );
    }

    #[test]
    fn task_positions_are_non_negative() {
        let view = given(vec![create(None, None)]);
        let item = |position| TaskPosition {
            task_id: Uuid::from_u128(5),
            position,
            group_key: Some("status".into()),
        };
        assert_eq!(
            when(&view, ViewCommand::PositionTasks { items: vec![] }),
            Err(ErrorCode::BAD_REQUEST)
        );
        assert_eq!(
            when(
                &view,
                ViewCommand::PositionTasks {
                    items: vec![item(1.0), item(-1.0)]
                }
            ),
            Err(ErrorCode::BAD_REQUEST)
        );
        let events = when(
            &view,
            ViewCommand::PositionTasks {
                items: vec![item(0.0), item(98304.0)],
            },
        )
        .unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn seeded_defaults() {
        let backlog = Uuid::from_u128(30);
        let [board, table] = sprint_defaults(PROJECT, SPRINT, &[backlog]);
        let board = given(vec![board]);
        assert_eq!(
            (
                board.name.as_str(),
                board.view_type.as_str(),
                board.position
            ),
            ("Board", "board", 0.0)
        );
        assert_eq!(
            board.config["filters"]["sprints"]["items"][SPRINT.to_string()],
            true
        );
        assert_eq!(board.config["collapsed_columns"], json!([backlog]));
        let table = given(vec![table]);
        assert_eq!((table.view_type.as_str(), table.position), ("table", 1.0));
        assert_eq!(table.config["column_by"], "status");

        let epic = Uuid::from_u128(23);
        let [backlog_view, roadmap] = project_defaults(PROJECT, epic);
        let backlog_view = given(vec![backlog_view]);
        assert_eq!(backlog_view.context, ViewContext::Backlog);
        assert_eq!(backlog_view.sprint_id, None);
        assert_eq!(backlog_view.config["column_by"], "sprint");
        let roadmap = given(vec![roadmap]);
        assert_eq!(roadmap.view_type, "roadmap");
        assert_eq!(
            roadmap.config["filters"]["task_types"]["items"][epic.to_string()],
            true
        );
    }

    #[test]
    fn events_round_trip() {
        let events = [
            ViewEvent::Created {
                project_id: PROJECT,
                context: ViewContext::Timeline,
                sprint_id: None,
                name: "Roadmap".into(),
                view_type: "roadmap".into(),
                config: json!({"a": 1}),
                position: 0.0,
            },
            ViewEvent::Reordered {
                position: 1.0,
                old_position: 0.0,
            },
            ViewEvent::TaskPositioned {
                task_id: Uuid::from_u128(5),
                position: 0.5,
                group_key: None,
            },
        ];
        for event in events {
            let back = ViewEvent::from_stored(&event.event_type(), &event.to_payload()).unwrap();
            assert_eq!(back, event);
        }
    }
}
