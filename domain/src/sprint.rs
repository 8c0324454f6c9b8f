//! The sprint aggregate: one stream per sprint.
//!
//! Completion and deletion move the sprint's tasks; those moves are
//! `task.updated` events on the task streams, appended in the same
//! transaction by the command handler. The sprint's own events record
//! which tasks moved where, so the sprint's history stays self-contained.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{Changes, FieldChange};
use crate::{Decision, DomainError, DomainEvent, ErrorCode, validate};

crate::fields! {
    /// A sprint's tracked fields.
    pub enum SprintField {
        Name = "name",
        StartDate = "start_date",
        EndDate = "end_date",
        Goal = "goal",
        Status = "status",
    }
}

pub const NAME_MAX: usize = 200;
pub const GOAL_MAX: usize = 10_000;
pub const STATUSES: &[&str] = &["planned", "active", "completed"];
pub const COMPLETED: &str = "completed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum SprintEvent {
    #[serde(rename = "sprint.created")]
    Created {
        project_id: Uuid,
        name: String,
        start_date: Option<DateTime<Utc>>,
        end_date: Option<DateTime<Utc>>,
        goal: Option<String>,
        status: String,
    },
    /// `changes` name `name`, `start_date`, `end_date`, `goal`, `status`;
    /// a cleared value is `null`.
    #[serde(rename = "sprint.updated")]
    Updated {
        changes: Vec<FieldChange<SprintField>>,
    },
    #[serde(rename = "sprint.completed")]
    Completed {
        old_status: String,
        /// Where the unfinished tasks went (`None`: the backlog).
        moved_to_sprint_id: Option<Uuid>,
        moved_task_ids: Vec<Uuid>,
    },
    #[serde(rename = "sprint.deleted")]
    Deleted {
        name: String,
        /// Tasks sent to the backlog, and the sprint's views removed with it.
        unscheduled_task_ids: Vec<Uuid>,
        deleted_view_ids: Vec<Uuid>,
    },
}

impl DomainEvent for SprintEvent {
    const STREAM_TYPE: &'static str = "sprint";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sprint {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub name: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub goal: Option<String>,
    pub status: String,
}

/// A three-state PATCH value: absent (`None`), `null` (`Some(None)`), set.
pub type Patch<T> = Option<Option<T>>;

/// What a completion needs to know about the sprint the unfinished tasks
/// go to; the handler loads it from that sprint's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: Uuid,
    /// The target's state, or `None` when it is not a sprint of this project.
    pub sprint: Option<Sprint>,
}

#[derive(Debug, Clone)]
pub enum SprintCommand {
    Create {
        project_id: Uuid,
        name: String,
        start_date: Option<DateTime<Utc>>,
        end_date: Option<DateTime<Utc>>,
        goal: Option<String>,
        status: Option<String>,
    },
    Update {
        name: Option<String>,
        start_date: Patch<DateTime<Utc>>,
        end_date: Patch<DateTime<Utc>>,
        goal: Patch<String>,
        status: Option<String>,
    },
    Complete {
        target: Option<Target>,
        /// The sprint's tasks whose status category is not `done`.
        open_task_ids: Vec<Uuid>,
    },
    Delete {
        task_ids: Vec<Uuid>,
        view_ids: Vec<Uuid>,
    },
}

fn err(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

fn normalize_name(name: &str) -> Result<String, DomainError> {
    validate::bounded_name(name, NAME_MAX, ErrorCode::SPRINT_NAME_INVALID, "name")
}

fn check_status(status: &str) -> Result<(), DomainError> {
    validate::one_of(status, STATUSES, ErrorCode::SPRINT_STATUS_INVALID, "status")
}

fn check_goal(goal: &Option<String>) -> Result<(), DomainError> {
    if goal.as_ref().is_some_and(|g| g.chars().count() > GOAL_MAX) {
        return Err(err(
            ErrorCode::BAD_REQUEST,
            format!("goal must be at most {GOAL_MAX} characters"),
        ));
    }
    Ok(())
}

/// Sprint dates arrive as RFC 3339 timestamps (Paca's `time.Time`) or, as
/// a convenience, plain `YYYY-MM-DD` dates (midnight UTC).
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, DomainError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(NaiveTime::MIN).and_utc())
        .map_err(|_| {
            err(
                ErrorCode::BAD_REQUEST,
                format!("invalid date {text:?}: expected RFC 3339 or YYYY-MM-DD"),
            )
        })
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn from_json<T: for<'de> Deserialize<'de>>(value: &Value) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
}

impl Sprint {
    pub fn evolve(mut self, event: &SprintEvent) -> Self {
        match event {
            SprintEvent::Created {
                project_id,
                name,
                start_date,
                end_date,
                goal,
                status,
            } => {
                self.exists = true;
                self.project_id = *project_id;
                self.name.clone_from(name);
                self.start_date = *start_date;
                self.end_date = *end_date;
                self.goal.clone_from(goal);
                self.status.clone_from(status);
            }
            SprintEvent::Updated { changes } => {
                for change in changes {
                    match change.field {
                        SprintField::Name => self.name = from_json(&change.new).unwrap_or_default(),
                        SprintField::StartDate => self.start_date = from_json(&change.new),
                        SprintField::EndDate => self.end_date = from_json(&change.new),
                        SprintField::Goal => self.goal = from_json(&change.new),
                        SprintField::Status => {
                            self.status = from_json(&change.new).unwrap_or_default()
                        }
                    }
                }
            }
            SprintEvent::Completed { .. } => self.status = COMPLETED.into(),
            SprintEvent::Deleted { .. } => self.deleted = true,
        }
        self
    }

    pub fn is_live(&self) -> bool {
        self.exists && !self.deleted
    }

    /// Live and in `project_id` (a sprint id from another project is
    /// treated as unknown).
    pub fn is_live_in(&self, project_id: Uuid) -> bool {
        self.is_live() && self.project_id == project_id
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.is_live() {
            return Err(err(ErrorCode::SPRINT_NOT_FOUND, "sprint not found"));
        }
        Ok(())
    }

    pub fn decide(&self, command: SprintCommand) -> Decision<SprintEvent> {
        match command {
            SprintCommand::Create {
                project_id,
                name,
                start_date,
                end_date,
                goal,
                status,
            } => {
                if self.exists {
                    return Err(err(ErrorCode::CONFLICT, "sprint already exists"));
                }
                let name = normalize_name(&name)?;
                let status = status
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "planned".into());
                check_status(&status)?;
                check_goal(&goal)?;
                let start_date = start_date
                    .map(|d| validate::timestamp("start_date", d))
                    .transpose()?;
                let end_date = end_date
                    .map(|d| validate::timestamp("end_date", d))
                    .transpose()?;
                Ok(vec![SprintEvent::Created {
                    project_id,
                    name,
                    start_date,
                    end_date,
                    goal,
                    status,
                }])
            }
            SprintCommand::Update {
                name,
                start_date,
                end_date,
                goal,
                status,
            } => {
                self.live()?;
                let mut changes = Changes::new();
                if let Some(name) = name {
                    let name = normalize_name(&name)?;
                    changes.record(SprintField::Name, json(&self.name), json(&name));
                }
                if let Some(start) = start_date {
                    let start = start
                        .map(|d| validate::timestamp("start_date", d))
                        .transpose()?;
                    changes.record(SprintField::StartDate, json(&self.start_date), json(&start));
                }
                if let Some(end) = end_date {
                    let end = end
                        .map(|d| validate::timestamp("end_date", d))
                        .transpose()?;
                    changes.record(SprintField::EndDate, json(&self.end_date), json(&end));
                }
                if let Some(goal) = goal {
                    check_goal(&goal)?;
                    changes.record(SprintField::Goal, json(&self.goal), json(&goal));
                }
                if let Some(status) = status {
                    check_status(&status)?;
                    changes.record(SprintField::Status, json(&self.status), json(&status));
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![SprintEvent::Updated {
                    changes: changes.into_vec(),
                }])
            }
            SprintCommand::Complete {
                target,
                open_task_ids,
            } => {
                self.live()?;
                if self.status == COMPLETED {
                    return Err(err(
                        ErrorCode::SPRINT_ALREADY_COMPLETE,
                        "the sprint is already completed",
                    ));
                }
                let moved_to_sprint_id = match target {
                    None => None,
                    Some(Target { id, sprint }) => {
                        let Some(sprint) = sprint.filter(Sprint::is_live) else {
                            return Err(err(
                                ErrorCode::SPRINT_NOT_FOUND,
                                "move_to_sprint_id: sprint not found",
                            ));
                        };
                        if sprint.status == COMPLETED {
                            return Err(err(
                                ErrorCode::BAD_REQUEST,
                                "move_to_sprint_id must be a sprint that is not completed",
                            ));
                        }
                        Some(id)
                    }
                };
                Ok(vec![SprintEvent::Completed {
                    old_status: self.status.clone(),
                    moved_to_sprint_id,
                    moved_task_ids: open_task_ids,
                }])
            }
            SprintCommand::Delete { task_ids, view_ids } => {
                self.live()?;
                Ok(vec![SprintEvent::Deleted {
                    name: self.name.clone(),
                    unscheduled_task_ids: task_ids,
                    deleted_view_ids: view_ids,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Field;

    fn given(events: &[SprintEvent]) -> Sprint {
        events.iter().fold(Sprint::default(), Sprint::evolve)
    }

    fn when(state: &Sprint, command: SprintCommand) -> Result<Sprint, ErrorCode> {
        state
            .decide(command)
            .map(|events| events.iter().fold(state.clone(), Sprint::evolve))
            .map_err(|e| e.code)
    }

    fn created(status: &str) -> SprintEvent {
        SprintEvent::Created {
            project_id: Uuid::from_u128(1),
            name: "Sprint 1".into(),
            start_date: Some(parse_date("2026-01-05").unwrap()),
            end_date: None,
            goal: Some("ship".into()),
            status: status.into(),
        }
    }

    fn create(name: &str, status: Option<&str>) -> SprintCommand {
        SprintCommand::Create {
            project_id: Uuid::from_u128(1),
            name: name.into(),
            start_date: None,
            end_date: None,
            goal: None,
            status: status.map(str::to_owned),
        }
    }

    /// `SprintCommand::Update` fields, so tests can use `..Upd::default()`.
    #[derive(Default)]
    struct Upd {
        name: Option<String>,
        start_date: Patch<DateTime<Utc>>,
        end_date: Patch<DateTime<Utc>>,
        goal: Patch<String>,
        status: Option<String>,
    }

    impl Upd {
        fn cmd(self) -> SprintCommand {
            SprintCommand::Update {
                name: self.name,
                start_date: self.start_date,
                end_date: self.end_date,
                goal: self.goal,
                status: self.status,
            }
        }
    }

    fn update() -> SprintCommand {
        Upd::default().cmd()
    }

    #[test]
    fn create_defaults_to_planned_and_validates() {
        let sprint = when(&Sprint::default(), create("  Sprint 1 ", None)).unwrap();
        assert_eq!(sprint.name, "Sprint 1");
        assert_eq!(sprint.status, "planned");
        assert_eq!(
            when(&Sprint::default(), create(" ", None)),
            Err(ErrorCode::SPRINT_NAME_INVALID)
        );
        assert_eq!(
            when(&Sprint::default(), create("S", Some("done"))),
            Err(ErrorCode::SPRINT_STATUS_INVALID)
        );
        assert_eq!(
            when(&given(&[created("planned")]), create("S", None)),
            Err(ErrorCode::CONFLICT)
        );
    }

    #[test]
    fn update_is_three_state_and_records_only_changes() {
        let sprint = given(&[created("planned")]);
        assert_eq!(sprint.decide(update()), Ok(vec![]));
        let same_name = Upd {
            name: Some("Sprint 1".into()),
            ..Upd::default()
        }
        .cmd();
        assert_eq!(sprint.decide(same_name), Ok(vec![]));
        let events = sprint
            .decide(
                Upd {
                    start_date: Some(None),
                    goal: Some(Some("polish".into())),
                    status: Some("active".into()),
                    ..Upd::default()
                }
                .cmd(),
            )
            .unwrap();
        let SprintEvent::Updated { changes } = &events[0] else {
            panic!("expected sprint.updated");
        };
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["start_date", "goal", "status"]);
        assert_eq!(changes[0].new, Value::Null);
        let after = events.iter().fold(sprint, Sprint::evolve);
        assert_eq!(after.start_date, None);
        assert_eq!(after.goal.as_deref(), Some("polish"));
        assert_eq!(after.status, "active");
        assert_eq!(after.end_date, None);
        let bad = Upd {
            name: Some(String::new()),
            ..Upd::default()
        }
        .cmd();
        assert_eq!(when(&after, bad), Err(ErrorCode::SPRINT_NAME_INVALID));
        let bad = Upd {
            status: Some("archived".into()),
            ..Upd::default()
        }
        .cmd();
        assert_eq!(when(&after, bad), Err(ErrorCode::SPRINT_STATUS_INVALID));
    }

    #[test]
    fn complete_moves_open_tasks_once() {
        let sprint = given(&[created("active")]);
        let tasks = vec![Uuid::from_u128(7)];
        let events = sprint
            .decide(SprintCommand::Complete {
                target: None,
                open_task_ids: tasks.clone(),
            })
            .unwrap();
        assert_eq!(
            events,
            vec![SprintEvent::Completed {
                old_status: "active".into(),
                moved_to_sprint_id: None,
                moved_task_ids: tasks,
            }]
        );
        let done = events.iter().fold(sprint, Sprint::evolve);
        assert_eq!(done.status, COMPLETED);
        let again = SprintCommand::Complete {
            target: None,
            open_task_ids: vec![],
        };
        assert_eq!(when(&done, again), Err(ErrorCode::SPRINT_ALREADY_COMPLETE));
    }

    #[test]
    fn completion_target_must_be_a_live_open_sprint() {
        let sprint = given(&[created("active")]);
        let complete = |sprint: Option<Sprint>| SprintCommand::Complete {
            target: Some(Target {
                id: Uuid::from_u128(9),
                sprint,
            }),
            open_task_ids: vec![],
        };
        assert_eq!(
            when(&sprint, complete(None)),
            Err(ErrorCode::SPRINT_NOT_FOUND)
        );
        let deleted = given(&[
            created("planned"),
            SprintEvent::Deleted {
                name: "Sprint 1".into(),
                unscheduled_task_ids: vec![],
                deleted_view_ids: vec![],
            },
        ]);
        assert_eq!(
            when(&sprint, complete(Some(deleted))),
            Err(ErrorCode::SPRINT_NOT_FOUND)
        );
        let closed = given(&[created("completed")]);
        assert_eq!(
            when(&sprint, complete(Some(closed))),
            Err(ErrorCode::BAD_REQUEST)
        );
        let open = given(&[created("planned")]);
        let events = sprint.decide(complete(Some(open))).unwrap();
        assert!(matches!(
            events[0],
            SprintEvent::Completed {
                moved_to_sprint_id: Some(id),
                ..
            } if id == Uuid::from_u128(9)
        ));
    }

    #[test]
    fn deleted_sprint_refuses_commands() {
        let sprint = given(&[created("planned")]);
        let delete = || SprintCommand::Delete {
            task_ids: vec![],
            view_ids: vec![Uuid::from_u128(3)],
        };
        let gone = when(&sprint, delete()).unwrap();
        assert!(!gone.is_live());
        assert_eq!(when(&gone, delete()), Err(ErrorCode::SPRINT_NOT_FOUND));
        assert_eq!(when(&gone, update()), Err(ErrorCode::SPRINT_NOT_FOUND));
        assert_eq!(
            when(&Sprint::default(), update()),
            Err(ErrorCode::SPRINT_NOT_FOUND)
        );
    }

    #[test]
    fn dates_parse_and_events_round_trip() {
        assert_eq!(
            parse_date("2026-01-05").unwrap(),
            parse_date("2026-01-05T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_date("05/01/2026").unwrap_err().code,
            ErrorCode::BAD_REQUEST
        );
        let events = [
            created("planned"),
            SprintEvent::Updated {
                changes: vec![FieldChange {
                    field: SprintField::EndDate,
                    old: Value::Null,
                    new: json(&parse_date("2026-01-19").unwrap()),
                }],
            },
            SprintEvent::Completed {
                old_status: "planned".into(),
                moved_to_sprint_id: Some(Uuid::from_u128(1)),
                moved_task_ids: vec![Uuid::from_u128(2)],
            },
        ];
        for event in &events {
            let back = SprintEvent::from_stored(&event.event_type(), &event.to_payload()).unwrap();
            assert_eq!(&back, event);
        }
        let sprint = given(&events);
        assert_eq!(sprint.end_date, Some(parse_date("2026-01-19").unwrap()));
    }
}
