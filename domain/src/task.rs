//! The task aggregate: fields with three-state updates, comments, and the
//! change records that make the activity feed, diffs and reverts possible.
//!
//! Events are self-contained: a status or type change carries the names as
//! they were at that moment (for the feed) and the ids (for the read model
//! and for reverts), so nothing has to be looked up on replay.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::task_config::{CustomField, EPIC, validate_field_value};
use crate::{Decision, DomainError, DomainEvent, ErrorCode};

pub const TITLE_MAX: usize = 500;

/// Every field a task has, as stored in `task.created` and folded from
/// `task.updated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskFields {
    pub title: String,
    pub task_type_id: Option<Uuid>,
    pub status_id: Option<Uuid>,
    pub sprint_id: Option<Uuid>,
    pub parent_task_id: Option<Uuid>,
    pub description: Option<Value>,
    pub importance: i64,
    pub story_points: Option<i64>,
    pub assignee_ids: Vec<Uuid>,
    pub reporter_id: Option<Uuid>,
    pub custom_fields: Map<String, Value>,
    pub start_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    pub tags: Vec<String>,
}

/// The tracked fields of a task, by their seed page-16 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskField {
    Title,
    Status,
    TaskType,
    Importance,
    StoryPoints,
    Assignee,
    Reporter,
    Sprint,
    ParentTask,
    StartDate,
    DueDate,
    Description,
    Tags,
    CustomFields,
}

impl TaskField {
    pub const ALL: [TaskField; 14] = [
        TaskField::Title,
        TaskField::Status,
        TaskField::TaskType,
        TaskField::Importance,
        TaskField::StoryPoints,
        TaskField::Assignee,
        TaskField::Reporter,
        TaskField::Sprint,
        TaskField::ParentTask,
        TaskField::StartDate,
        TaskField::DueDate,
        TaskField::Description,
        TaskField::Tags,
        TaskField::CustomFields,
    ];

    /// The wire name (`"parent_task"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskField::Title => "title",
            TaskField::Status => "status",
            TaskField::TaskType => "task_type",
            TaskField::Importance => "importance",
            TaskField::StoryPoints => "story_points",
            TaskField::Assignee => "assignee",
            TaskField::Reporter => "reporter",
            TaskField::Sprint => "sprint",
            TaskField::ParentTask => "parent_task",
            TaskField::StartDate => "start_date",
            TaskField::DueDate => "due_date",
            TaskField::Description => "description",
            TaskField::Tags => "tags",
            TaskField::CustomFields => "custom_fields",
        }
    }
}

impl std::fmt::Display for TaskField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side of a change, decoded from its wire encoding. The seeds record
/// ids as strings (`""` for none), several assignees comma-joined, dates as
/// `YYYY-MM-DD`; this is the one place that encoding is read.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    /// Status and task type: the name is on the wire, the id beside it.
    Ref(Option<Uuid>),
    Id(Option<Uuid>),
    Ids(Vec<Uuid>),
    Int(i64),
    OptInt(Option<i64>),
    Date(Option<NaiveDate>),
    Json(Option<Value>),
    Tags(Vec<String>),
    /// Changed custom-field keys; `Null` removes a key.
    Custom(Map<String, Value>),
}

/// One tracked field's change (seed page 16 names and shapes), plus the
/// ids behind names for `status` and `task_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskChange {
    pub field: TaskField,
    pub old: Value,
    pub new: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
#[allow(clippy::large_enum_variant)] // decoded one at a time, never stored in bulk
pub enum TaskEvent {
    #[serde(rename = "task.created")]
    Created {
        task_number: i64,
        #[serde(flatten)]
        fields: TaskFields,
        #[serde(default)]
        status_name: Option<String>,
        #[serde(default)]
        task_type_name: Option<String>,
    },
    #[serde(rename = "task.updated")]
    Updated { changes: Vec<TaskChange> },
    #[serde(rename = "task.deleted")]
    Deleted {},
    #[serde(rename = "task.comment_added")]
    CommentAdded {
        comment_id: Uuid,
        content: Value,
        author_user_id: Uuid,
    },
    #[serde(rename = "task.comment_edited")]
    CommentEdited {
        comment_id: Uuid,
        content: Value,
        old_content: Value,
    },
    #[serde(rename = "task.comment_deleted")]
    CommentDeleted { comment_id: Uuid },
    /// A completed upload attached to the task (the bytes live in object
    /// storage; the log records what was attached).
    #[serde(rename = "task.attachment_added")]
    AttachmentAdded {
        attachment_id: Uuid,
        file_id: Uuid,
        file_name: String,
        content_type: String,
        file_size: i64,
    },
    #[serde(rename = "task.attachment_removed")]
    AttachmentRemoved {
        attachment_id: Uuid,
        file_id: Uuid,
        file_name: String,
        file_size: i64,
    },
    /// A link from this task (the source) to another task of the project
    /// (CONTRACT-NOTES §8 "Links"); it lives on the source's stream.
    #[serde(rename = "task.link.added")]
    LinkAdded {
        link_id: Uuid,
        target_task_id: Uuid,
        link_type: LinkType,
    },
    #[serde(rename = "task.link.removed")]
    LinkRemoved { link_id: Uuid },
}

/// How the source relates to the target. The target side reads the
/// inverse ([`LinkType::inverse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    Blocks,
    Duplicates,
    RelatesTo,
}

impl LinkType {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "blocks" => Ok(Self::Blocks),
            "duplicates" => Ok(Self::Duplicates),
            "relates_to" => Ok(Self::RelatesTo),
            _ => Err(bad(
                "link_type must be one of blocks, duplicates, relates_to",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::Duplicates => "duplicates",
            Self::RelatesTo => "relates_to",
        }
    }

    /// The type as the target task shows it.
    pub fn inverse(self) -> &'static str {
        match self {
            Self::Blocks => "is_blocked_by",
            Self::Duplicates => "is_duplicated_by",
            Self::RelatesTo => "relates_to",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub target_task_id: Uuid,
    pub link_type: LinkType,
}

impl DomainEvent for TaskEvent {
    const STREAM_TYPE: &'static str = "task";
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub author_user_id: Uuid,
    pub content: Value,
    pub deleted: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Task {
    pub exists: bool,
    pub deleted: bool,
    pub task_number: i64,
    pub fields: TaskFields,
    pub comments: BTreeMap<Uuid, Comment>,
    /// Live links from this task.
    pub links: BTreeMap<Uuid, Link>,
    /// attachment id -> (file id, file name, size)
    pub attachments: BTreeMap<Uuid, (Uuid, String, i64)>,
}

/// What a decision needs to know about the world outside this stream. The
/// command handler fills it from the project aggregate and read models.
#[derive(Debug, Clone, Default)]
pub struct TaskContext {
    /// type id -> (name, is Epic)
    pub types: BTreeMap<Uuid, (String, bool)>,
    pub default_type: Option<Uuid>,
    /// status id -> name
    pub statuses: BTreeMap<Uuid, String>,
    pub default_status: Option<Uuid>,
    pub fields: Vec<CustomField>,
    /// Project member ids (assignees and reporters are members).
    pub members: Vec<Uuid>,
    /// Sprints of the project that exist.
    pub sprints: Vec<Uuid>,
    /// For a proposed parent: `None` if it does not exist in this project,
    /// else its ancestors (parent first).
    pub parent: Option<ParentInfo>,
    /// The task being changed (absent on create), for parent-cycle checks.
    pub self_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct ParentInfo {
    pub id: Uuid,
    pub ancestors: Vec<Uuid>,
}

/// A three-state field: absent (`None`), cleared (`Some(None)`), set.
pub type Patch<T> = Option<Option<T>>;

#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub task_type_id: Patch<Uuid>,
    pub status_id: Patch<Uuid>,
    pub sprint_id: Patch<Uuid>,
    pub parent_task_id: Patch<Uuid>,
    pub description: Patch<Value>,
    pub importance: Option<i64>,
    pub story_points: Patch<i64>,
    /// `Some(vec![])` clears.
    pub assignee_ids: Option<Vec<Uuid>>,
    pub reporter_id: Patch<Uuid>,
    /// Merged key by key; a `null` value removes the key.
    pub custom_fields: Option<Map<String, Value>>,
    pub start_date: Patch<NaiveDate>,
    pub due_date: Patch<NaiveDate>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub enum TaskCommand {
    Create {
        task_number: i64,
        fields: TaskFields,
    },
    Update(TaskPatch),
    Delete,
    /// Restore the `old` side of earlier changes, field by field.
    Revert {
        changes: Vec<TaskChange>,
    },
    AddComment {
        comment_id: Uuid,
        author_user_id: Uuid,
        content: Value,
    },
    EditComment {
        comment_id: Uuid,
        actor_user_id: Uuid,
        content: Value,
    },
    DeleteComment {
        comment_id: Uuid,
        actor_user_id: Uuid,
    },
    /// `target_linked_back`: the target already links to this task with
    /// the same type (the handler reads it from the write-side index under
    /// both tasks' locks); a pair is linked once per type.
    AddLink {
        link_id: Uuid,
        target_task_id: Uuid,
        link_type: LinkType,
        target_linked_back: bool,
    },
    RemoveLink {
        link_id: Uuid,
    },
    AddAttachment {
        attachment_id: Uuid,
        file_id: Uuid,
        file_name: String,
        content_type: String,
        file_size: i64,
    },
    RemoveAttachment {
        attachment_id: Uuid,
    },
}

fn err(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

fn bad(message: impl Into<String>) -> DomainError {
    err(ErrorCode::BAD_REQUEST, message)
}

/// BlockNote content: an array of block objects, each with a string `type`.
pub fn validate_blocks(value: &Value, what: &str) -> Result<(), DomainError> {
    let Value::Array(blocks) = value else {
        return Err(bad(format!("{what}: must be an array of BlockNote blocks")));
    };
    for block in blocks {
        let ok = block
            .as_object()
            .and_then(|b| b.get("type"))
            .is_some_and(Value::is_string);
        if !ok {
            return Err(bad(format!(
                "{what}: every block must be an object with a string \"type\""
            )));
        }
    }
    Ok(())
}

/// Comment content: a non-empty BlockNote array, or the legacy `{text}`.
pub fn validate_comment(content: &Value) -> Result<(), DomainError> {
    let invalid = || {
        err(
            ErrorCode::ACTIVITY_COMMENT_CONTENT_INVALID,
            "comment content must be a non-empty BlockNote array or {\"text\": \"...\"}",
        )
    };
    match content {
        Value::Array(blocks) if !blocks.is_empty() => {
            validate_blocks(content, "content").map_err(|_| invalid())
        }
        Value::Object(map)
            if map
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.trim().is_empty()) =>
        {
            Ok(())
        }
        _ => Err(invalid()),
    }
}

impl TaskChange {
    /// The value after the change.
    pub fn new_value(&self) -> Result<FieldValue, DomainError> {
        decode(self.field, &self.new, self.new_id)
    }

    /// The value before the change.
    pub fn old_value(&self) -> Result<FieldValue, DomainError> {
        decode(self.field, &self.old, self.old_id)
    }

    /// The same change undone: old and new swapped.
    pub fn inverse(&self) -> TaskChange {
        TaskChange {
            field: self.field,
            old: self.new.clone(),
            new: self.old.clone(),
            old_id: self.new_id,
            new_id: self.old_id,
        }
    }
}

fn decode(field: TaskField, value: &Value, id: Option<Uuid>) -> Result<FieldValue, DomainError> {
    Ok(match field {
        TaskField::Title => FieldValue::Text(value.as_str().unwrap_or_default().to_owned()),
        TaskField::Status | TaskField::TaskType => FieldValue::Ref(id),
        TaskField::Importance => FieldValue::Int(value.as_i64().unwrap_or_default()),
        TaskField::StoryPoints => FieldValue::OptInt(value.as_i64()),
        TaskField::Assignee => FieldValue::Ids(parse_ids(value)?),
        TaskField::Reporter | TaskField::Sprint | TaskField::ParentTask => {
            FieldValue::Id(parse_id(value)?)
        }
        TaskField::StartDate | TaskField::DueDate => FieldValue::Date(parse_date(value)?),
        TaskField::Description => FieldValue::Json((!value.is_null()).then(|| value.clone())),
        TaskField::Tags => {
            FieldValue::Tags(serde_json::from_value(value.clone()).unwrap_or_default())
        }
        TaskField::CustomFields => match value {
            Value::Object(map) => FieldValue::Custom(map.clone()),
            _ => FieldValue::Custom(Map::new()),
        },
    })
}

fn id_string(id: Option<Uuid>) -> Value {
    Value::String(id.map(|i| i.to_string()).unwrap_or_default())
}

fn ids_string(ids: &[Uuid]) -> Value {
    Value::String(
        ids.iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn date_string(date: Option<NaiveDate>) -> Value {
    Value::String(
        date.map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
    )
}

fn parse_id(value: &Value) -> Result<Option<Uuid>, DomainError> {
    match value.as_str() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("invalid id {s:?}"))),
    }
}

fn parse_ids(value: &Value) -> Result<Vec<Uuid>, DomainError> {
    match value.as_str() {
        None | Some("") => Ok(vec![]),
        Some(s) => s
            .split(',')
            .map(|p| p.parse().map_err(|_| bad(format!("invalid id {p:?}"))))
            .collect(),
    }
}

fn parse_date(value: &Value) -> Result<Option<NaiveDate>, DomainError> {
    match value.as_str() {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| bad(format!("invalid date {s:?}"))),
    }
}

impl Task {
    pub fn evolve(mut self, event: &TaskEvent) -> Self {
        match event {
            TaskEvent::Created {
                task_number,
                fields,
                ..
            } => {
                self.exists = true;
                self.task_number = *task_number;
                self.fields = fields.clone();
            }
            TaskEvent::Updated { changes } => {
                for change in changes {
                    // Changes were validated when decided; a malformed one
                    // (impossible in a log we wrote) leaves the field as is.
                    let _ = apply_change(&mut self.fields, change);
                }
            }
            TaskEvent::Deleted {} => self.deleted = true,
            TaskEvent::CommentAdded {
                comment_id,
                content,
                author_user_id,
            } => {
                self.comments.insert(
                    *comment_id,
                    Comment {
                        author_user_id: *author_user_id,
                        content: content.clone(),
                        deleted: false,
                    },
                );
            }
            TaskEvent::CommentEdited {
                comment_id,
                content,
                ..
            } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.content = content.clone();
                }
            }
            TaskEvent::CommentDeleted { comment_id } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.deleted = true;
                }
            }
            TaskEvent::LinkAdded {
                link_id,
                target_task_id,
                link_type,
            } => {
                self.links.insert(
                    *link_id,
                    Link {
                        target_task_id: *target_task_id,
                        link_type: *link_type,
                    },
                );
            }
            TaskEvent::LinkRemoved { link_id } => {
                self.links.remove(link_id);
            }
            TaskEvent::AttachmentAdded {
                attachment_id,
                file_id,
                file_name,
                file_size,
                ..
            } => {
                self.attachments
                    .insert(*attachment_id, (*file_id, file_name.clone(), *file_size));
            }
            TaskEvent::AttachmentRemoved { attachment_id, .. } => {
                self.attachments.remove(attachment_id);
            }
        }
        self
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.exists || self.deleted {
            return Err(err(ErrorCode::TASK_NOT_FOUND, "task not found"));
        }
        Ok(())
    }

    pub fn decide(&self, command: TaskCommand, ctx: &TaskContext) -> Decision<TaskEvent> {
        match command {
            TaskCommand::Create {
                task_number,
                mut fields,
            } => {
                if self.exists {
                    return Err(err(ErrorCode::CONFLICT, "task already exists"));
                }
                fields.title = check_title(&fields.title)?;
                if fields.task_type_id.is_none() {
                    fields.task_type_id = ctx.default_type;
                }
                if fields.status_id.is_none() {
                    fields.status_id = ctx.default_status;
                }
                check_fields(&fields, ctx, None)?;
                Ok(vec![TaskEvent::Created {
                    task_number,
                    status_name: fields
                        .status_id
                        .and_then(|id| ctx.statuses.get(&id).cloned()),
                    task_type_name: fields
                        .task_type_id
                        .and_then(|id| ctx.types.get(&id).map(|t| t.0.clone())),
                    fields,
                }])
            }
            TaskCommand::Update(patch) => {
                self.live()?;
                let mut next = self.fields.clone();
                apply_patch(&mut next, patch)?;
                next.title = check_title(&next.title)?;
                check_fields(&next, ctx, Some(self))?;
                let changes = diff(&self.fields, &next, ctx);
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![TaskEvent::Updated { changes }])
            }
            TaskCommand::Revert { changes } => {
                self.live()?;
                let mut next = self.fields.clone();
                for change in &changes {
                    apply_change(&mut next, &change.inverse())?;
                }
                check_fields(&next, ctx, Some(self))?;
                let changes = diff(&self.fields, &next, ctx);
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![TaskEvent::Updated { changes }])
            }
            TaskCommand::Delete => {
                self.live()?;
                Ok(vec![TaskEvent::Deleted {}])
            }
            TaskCommand::AddComment {
                comment_id,
                author_user_id,
                content,
            } => {
                self.live()?;
                validate_comment(&content)?;
                Ok(vec![TaskEvent::CommentAdded {
                    comment_id,
                    content,
                    author_user_id,
                }])
            }
            TaskCommand::EditComment {
                comment_id,
                actor_user_id,
                content,
            } => {
                self.live()?;
                let comment = self.comment(comment_id, actor_user_id)?;
                validate_comment(&content)?;
                if comment.content == content {
                    return Ok(vec![]);
                }
                Ok(vec![TaskEvent::CommentEdited {
                    comment_id,
                    old_content: comment.content.clone(),
                    content,
                }])
            }
            TaskCommand::DeleteComment {
                comment_id,
                actor_user_id,
            } => {
                self.live()?;
                self.comment(comment_id, actor_user_id)?;
                Ok(vec![TaskEvent::CommentDeleted { comment_id }])
            }
            TaskCommand::AddLink {
                link_id,
                target_task_id,
                link_type,
                target_linked_back,
            } => {
                self.live()?;
                if target_task_id == ctx.self_id.unwrap_or_default() {
                    return Err(err(
                        ErrorCode::TASK_LINK_CANNOT_LINK_TO_SELF,
                        "a task cannot be linked to itself",
                    ));
                }
                let exists = self
                    .links
                    .values()
                    .any(|l| l.target_task_id == target_task_id && l.link_type == link_type);
                if exists || target_linked_back {
                    return Err(err(
                        ErrorCode::TASK_LINK_ALREADY_EXISTS,
                        format!("these tasks are already linked as {}", link_type.as_str()),
                    ));
                }
                Ok(vec![TaskEvent::LinkAdded {
                    link_id,
                    target_task_id,
                    link_type,
                }])
            }
            TaskCommand::RemoveLink { link_id } => {
                self.live()?;
                if !self.links.contains_key(&link_id) {
                    return Err(err(ErrorCode::TASK_LINK_NOT_FOUND, "link not found"));
                }
                Ok(vec![TaskEvent::LinkRemoved { link_id }])
            }
            TaskCommand::AddAttachment {
                attachment_id,
                file_id,
                file_name,
                content_type,
                file_size,
            } => {
                self.live()?;
                Ok(vec![TaskEvent::AttachmentAdded {
                    attachment_id,
                    file_id,
                    file_name,
                    content_type,
                    file_size,
                }])
            }
            TaskCommand::RemoveAttachment { attachment_id } => {
                self.live()?;
                let Some((file_id, file_name, file_size)) = self.attachments.get(&attachment_id)
                else {
                    return Err(err(ErrorCode::ATTACHMENT_NOT_FOUND, "attachment not found"));
                };
                Ok(vec![TaskEvent::AttachmentRemoved {
                    attachment_id,
                    file_id: *file_id,
                    file_name: file_name.clone(),
                    file_size: *file_size,
                }])
            }
        }
    }

    fn comment(&self, comment_id: Uuid, actor: Uuid) -> Result<&Comment, DomainError> {
        let comment = self
            .comments
            .get(&comment_id)
            .filter(|c| !c.deleted)
            .ok_or_else(|| err(ErrorCode::ACTIVITY_NOT_FOUND, "comment not found"))?;
        if comment.author_user_id != actor {
            return Err(err(
                ErrorCode::ACTIVITY_FORBIDDEN,
                "only the author can change a comment",
            ));
        }
        Ok(comment)
    }
}

fn check_title(title: &str) -> Result<String, DomainError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > TITLE_MAX {
        return Err(err(
            ErrorCode::TASK_TITLE_INVALID,
            format!("title must be 1-{TITLE_MAX} characters"),
        ));
    }
    Ok(title.to_owned())
}

/// Referential and shape checks of a complete set of fields.
fn check_fields(
    fields: &TaskFields,
    ctx: &TaskContext,
    current: Option<&Task>,
) -> Result<(), DomainError> {
    if let Some(id) = fields.task_type_id
        && !ctx.types.contains_key(&id)
        && current.is_none_or(|t| t.fields.task_type_id != Some(id))
    {
        return Err(err(ErrorCode::TASK_TYPE_NOT_FOUND, "task type not found"));
    }
    if let Some(id) = fields.status_id
        && !ctx.statuses.contains_key(&id)
        && current.is_none_or(|t| t.fields.status_id != Some(id))
    {
        return Err(err(
            ErrorCode::TASK_STATUS_NOT_FOUND,
            "task status not found",
        ));
    }
    if let Some(id) = fields.sprint_id
        && !ctx.sprints.contains(&id)
        && current.is_none_or(|t| t.fields.sprint_id != Some(id))
    {
        return Err(err(ErrorCode::SPRINT_NOT_FOUND, "sprint not found"));
    }
    for id in fields.assignee_ids.iter().chain(fields.reporter_id.iter()) {
        if !ctx.members.contains(id) {
            let known = current.is_some_and(|t| {
                t.fields.assignee_ids.contains(id) || t.fields.reporter_id == Some(*id)
            });
            if !known {
                return Err(err(
                    ErrorCode::PROJECT_MEMBER_NOT_FOUND,
                    format!("{id} is not a member of this project"),
                ));
            }
        }
    }
    if let Some(description) = &fields.description {
        validate_blocks(description, "description")?;
    }
    if fields.story_points.is_some_and(|p| p < 0) || fields.importance < 0 {
        return Err(bad("importance and story_points must not be negative"));
    }
    if let Some(start) = fields.start_date {
        crate::validate::date("start_date", start)?;
    }
    if let Some(due) = fields.due_date {
        crate::validate::date("due_date", due)?;
    }
    if let (Some(start), Some(due)) = (fields.start_date, fields.due_date)
        && due < start
    {
        return Err(bad("due_date must not be before start_date"));
    }
    if fields
        .tags
        .iter()
        .any(|t| t.trim().is_empty() || t.chars().count() > 64)
    {
        return Err(bad("tags must be 1-64 characters"));
    }
    for (key, value) in &fields.custom_fields {
        // Only values this command sets are checked: a value kept from
        // before may belong to a field deleted since, and must not block
        // unrelated edits.
        if current.is_some_and(|t| t.fields.custom_fields.get(key) == Some(value)) {
            continue;
        }
        let field = ctx
            .fields
            .iter()
            .find(|f| &f.field_key == key)
            .ok_or_else(|| bad(format!("custom_fields.{key}: no such custom field")))?;
        validate_field_value(field, value)?;
    }
    for field in ctx.fields.iter().filter(|f| f.is_required) {
        let key = &field.field_key;
        let present = fields.custom_fields.get(key).is_some_and(|v| !v.is_null());
        // A field made required after the task existed is not forced on it.
        let had = current.is_some_and(|t| t.fields.custom_fields.contains_key(key));
        if !present && (current.is_none() || had) {
            return Err(bad(format!("custom_fields.{key}: is required")));
        }
    }
    // Parent rules.
    if let Some(parent) = fields.parent_task_id {
        let is_epic = fields
            .task_type_id
            .and_then(|id| ctx.types.get(&id))
            .is_some_and(|t| t.1);
        if is_epic {
            return Err(err(
                ErrorCode::TASK_EPIC_CANNOT_HAVE_PARENT,
                format!("an {EPIC} cannot have a parent"),
            ));
        }
        if current.is_none_or(|t| t.fields.parent_task_id != Some(parent)) {
            let info = ctx
                .parent
                .as_ref()
                .filter(|p| p.id == parent)
                .ok_or_else(|| err(ErrorCode::TASK_NOT_FOUND, "parent task not found"))?;
            if let Some(task_id) = ctx.self_id {
                if parent == task_id {
                    return Err(err(
                        ErrorCode::TASK_CANNOT_BE_OWN_PARENT,
                        "a task cannot be its own parent",
                    ));
                }
                if info.ancestors.contains(&task_id) {
                    return Err(err(
                        ErrorCode::TASK_PARENT_CYCLE_DETECTED,
                        "the parent is a descendant of this task",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn apply_patch(fields: &mut TaskFields, patch: TaskPatch) -> Result<(), DomainError> {
    if let Some(title) = patch.title.filter(|t| !t.trim().is_empty()) {
        fields.title = title;
    }
    if let Some(v) = patch.task_type_id {
        fields.task_type_id = v;
    }
    if let Some(v) = patch.status_id {
        fields.status_id = v;
    }
    if let Some(v) = patch.sprint_id {
        fields.sprint_id = v;
    }
    if let Some(v) = patch.parent_task_id {
        fields.parent_task_id = v;
    }
    if let Some(v) = patch.description {
        fields.description = v;
    }
    if let Some(v) = patch.importance {
        fields.importance = v;
    }
    if let Some(v) = patch.story_points {
        fields.story_points = v;
    }
    if let Some(v) = patch.assignee_ids {
        let mut unique = Vec::new();
        for id in v {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        fields.assignee_ids = unique;
    }
    if let Some(v) = patch.reporter_id {
        fields.reporter_id = v;
    }
    if let Some(values) = patch.custom_fields {
        for (key, value) in values {
            if value.is_null() {
                fields.custom_fields.remove(&key);
            } else {
                fields.custom_fields.insert(key, value);
            }
        }
    }
    if let Some(v) = patch.start_date {
        fields.start_date = v;
    }
    if let Some(v) = patch.due_date {
        fields.due_date = v;
    }
    if let Some(v) = patch.tags {
        fields.tags = v;
    }
    Ok(())
}

/// The tracked changes from `old` to `new`, in the seeds' shapes.
pub fn diff(old: &TaskFields, new: &TaskFields, ctx: &TaskContext) -> Vec<TaskChange> {
    let mut out = Vec::new();
    let mut push =
        |field: TaskField, o: Value, n: Value, ids: Option<(Option<Uuid>, Option<Uuid>)>| {
            if o != n || ids.is_some_and(|(a, b)| a != b) {
                let (old_id, new_id) = ids.unwrap_or_default();
                out.push(TaskChange {
                    field,
                    old: o,
                    new: n,
                    old_id,
                    new_id,
                });
            }
        };
    push(
        TaskField::Title,
        old.title.clone().into(),
        new.title.clone().into(),
        None,
    );
    let status_name = |id: Option<Uuid>| {
        Value::String(
            id.and_then(|i| ctx.statuses.get(&i).cloned())
                .unwrap_or_default(),
        )
    };
    if old.status_id != new.status_id {
        push(
            TaskField::Status,
            status_name(old.status_id),
            status_name(new.status_id),
            Some((old.status_id, new.status_id)),
        );
    }
    let type_name = |id: Option<Uuid>| {
        Value::String(
            id.and_then(|i| ctx.types.get(&i).map(|t| t.0.clone()))
                .unwrap_or_default(),
        )
    };
    if old.task_type_id != new.task_type_id {
        push(
            TaskField::TaskType,
            type_name(old.task_type_id),
            type_name(new.task_type_id),
            Some((old.task_type_id, new.task_type_id)),
        );
    }
    push(
        TaskField::Importance,
        old.importance.into(),
        new.importance.into(),
        None,
    );
    push(
        TaskField::StoryPoints,
        old.story_points.into(),
        new.story_points.into(),
        None,
    );
    push(
        TaskField::Assignee,
        ids_string(&old.assignee_ids),
        ids_string(&new.assignee_ids),
        None,
    );
    push(
        TaskField::Reporter,
        id_string(old.reporter_id),
        id_string(new.reporter_id),
        None,
    );
    push(
        TaskField::Sprint,
        id_string(old.sprint_id),
        id_string(new.sprint_id),
        None,
    );
    push(
        TaskField::ParentTask,
        id_string(old.parent_task_id),
        id_string(new.parent_task_id),
        None,
    );
    push(
        TaskField::StartDate,
        date_string(old.start_date),
        date_string(new.start_date),
        None,
    );
    push(
        TaskField::DueDate,
        date_string(old.due_date),
        date_string(new.due_date),
        None,
    );
    push(
        TaskField::Description,
        old.description.clone().unwrap_or(Value::Null),
        new.description.clone().unwrap_or(Value::Null),
        None,
    );
    push(
        TaskField::Tags,
        serde_json::to_value(&old.tags).unwrap_or_default(),
        serde_json::to_value(&new.tags).unwrap_or_default(),
        None,
    );
    // Custom fields: only the keys that changed, old and new side by side
    // (Paca records "changed" without values; we keep them for diff/revert).
    let mut old_cf = Map::new();
    let mut new_cf = Map::new();
    let keys: std::collections::BTreeSet<&String> = old
        .custom_fields
        .keys()
        .chain(new.custom_fields.keys())
        .collect();
    for key in keys {
        let (o, n) = (old.custom_fields.get(key), new.custom_fields.get(key));
        if o != n {
            old_cf.insert(key.clone(), o.cloned().unwrap_or(Value::Null));
            new_cf.insert(key.clone(), n.cloned().unwrap_or(Value::Null));
        }
    }
    if !old_cf.is_empty() {
        push(
            TaskField::CustomFields,
            Value::Object(old_cf),
            Value::Object(new_cf),
            None,
        );
    }
    out
}

/// Applies one change (its `new` side) to a set of fields.
pub fn apply_change(fields: &mut TaskFields, change: &TaskChange) -> Result<(), DomainError> {
    use FieldValue as V;
    use TaskField as F;
    match (change.field, change.new_value()?) {
        (F::Title, V::Text(v)) => fields.title = v,
        (F::Status, V::Ref(id)) => fields.status_id = id,
        (F::TaskType, V::Ref(id)) => fields.task_type_id = id,
        (F::Importance, V::Int(v)) => fields.importance = v,
        (F::StoryPoints, V::OptInt(v)) => fields.story_points = v,
        (F::Assignee, V::Ids(ids)) => fields.assignee_ids = ids,
        (F::Reporter, V::Id(id)) => fields.reporter_id = id,
        (F::Sprint, V::Id(id)) => fields.sprint_id = id,
        (F::ParentTask, V::Id(id)) => fields.parent_task_id = id,
        (F::StartDate, V::Date(d)) => fields.start_date = d,
        (F::DueDate, V::Date(d)) => fields.due_date = d,
        (F::Description, V::Json(v)) => fields.description = v,
        (F::Tags, V::Tags(v)) => fields.tags = v,
        (F::CustomFields, V::Custom(map)) => {
            for (key, value) in map {
                if value.is_null() {
                    fields.custom_fields.remove(&key);
                } else {
                    fields.custom_fields.insert(key, value);
                }
            }
        }
        (field, value) => {
            return Err(bad(format!("{field} cannot take {value:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_config::FieldOption;

    const TASK_TYPE: Uuid = Uuid::from_u128(1);
    const EPIC_TYPE: Uuid = Uuid::from_u128(2);
    const BACKLOG: Uuid = Uuid::from_u128(10);
    const DOING: Uuid = Uuid::from_u128(11);
    const ALICE: Uuid = Uuid::from_u128(20);
    const BOB: Uuid = Uuid::from_u128(21);
    const SPRINT: Uuid = Uuid::from_u128(30);
    const SPRINT2: Uuid = Uuid::from_u128(31);
    const ME: Uuid = Uuid::from_u128(100);
    const PARENT: Uuid = Uuid::from_u128(101);

    fn ctx() -> TaskContext {
        TaskContext {
            types: [
                (TASK_TYPE, ("Task".into(), false)),
                (EPIC_TYPE, ("Epic".into(), true)),
            ]
            .into(),
            default_type: Some(TASK_TYPE),
            statuses: [(BACKLOG, "Backlog".into()), (DOING, "In Progress".into())].into(),
            default_status: Some(BACKLOG),
            fields: vec![CustomField {
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
                        color: None,
                    },
                ],
                is_required: false,
            }],
            members: vec![ALICE, BOB],
            sprints: vec![SPRINT, SPRINT2],
            parent: Some(ParentInfo {
                id: PARENT,
                ancestors: vec![PARENT],
            }),
            self_id: Some(ME),
        }
    }

    fn created(title: &str) -> Task {
        let events = Task::default()
            .decide(
                TaskCommand::Create {
                    task_number: 7,
                    fields: TaskFields {
                        title: title.into(),
                        ..TaskFields::default()
                    },
                },
                &ctx(),
            )
            .unwrap();
        events.iter().fold(Task::default(), Task::evolve)
    }

    fn when(task: &Task, command: TaskCommand) -> Result<(Task, Vec<TaskEvent>), ErrorCode> {
        task.decide(command, &ctx())
            .map(|events| (events.iter().fold(task.clone(), Task::evolve), events))
            .map_err(|e| e.code)
    }

    #[test]
    fn create_fills_defaults_and_validates() {
        let task = created("  Login  ");
        assert_eq!(task.fields.title, "Login");
        assert_eq!(task.fields.task_type_id, Some(TASK_TYPE));
        assert_eq!(task.fields.status_id, Some(BACKLOG));
        assert_eq!(task.task_number, 7);
        let bad = Task::default().decide(
            TaskCommand::Create {
                task_number: 1,
                fields: TaskFields::default(),
            },
            &ctx(),
        );
        assert_eq!(bad.unwrap_err().code, ErrorCode::TASK_TITLE_INVALID);
    }

    fn link(target: Uuid, link_type: LinkType, back: bool) -> TaskCommand {
        TaskCommand::AddLink {
            link_id: Uuid::from_u128(900 + target.as_u128()),
            target_task_id: target,
            link_type,
            target_linked_back: back,
        }
    }

    #[test]
    fn links_are_unique_per_pair_and_type_and_never_to_self() {
        let task = created("Login");
        let (task, events) = when(&task, link(BOB, LinkType::Blocks, false)).unwrap();
        assert!(matches!(
            events.as_slice(),
            [TaskEvent::LinkAdded {
                target_task_id: BOB,
                link_type: LinkType::Blocks,
                ..
            }]
        ));
        // the same link again, or the target already linking back
        assert_eq!(
            when(&task, link(BOB, LinkType::Blocks, false)).unwrap_err(),
            ErrorCode::TASK_LINK_ALREADY_EXISTS
        );
        assert_eq!(
            when(&task, link(ALICE, LinkType::Duplicates, true)).unwrap_err(),
            ErrorCode::TASK_LINK_ALREADY_EXISTS
        );
        // another type between the same pair is a different link
        assert!(when(&task, link(BOB, LinkType::RelatesTo, false)).is_ok());
        assert_eq!(
            when(&task, link(ME, LinkType::RelatesTo, false)).unwrap_err(),
            ErrorCode::TASK_LINK_CANNOT_LINK_TO_SELF
        );
    }

    #[test]
    fn a_removed_link_is_gone_and_can_be_made_again() {
        let task = created("Login");
        let (task, events) = when(&task, link(BOB, LinkType::Blocks, false)).unwrap();
        let TaskEvent::LinkAdded { link_id, .. } = events[0] else {
            panic!("expected a link")
        };
        let (task, _) = when(&task, TaskCommand::RemoveLink { link_id }).unwrap();
        assert!(task.links.is_empty());
        assert_eq!(
            when(&task, TaskCommand::RemoveLink { link_id }).unwrap_err(),
            ErrorCode::TASK_LINK_NOT_FOUND
        );
        assert!(when(&task, link(BOB, LinkType::Blocks, false)).is_ok());
        assert_eq!(LinkType::Blocks.inverse(), "is_blocked_by");
        assert_eq!(LinkType::Duplicates.inverse(), "is_duplicated_by");
        assert_eq!(
            LinkType::parse("parent_of").unwrap_err().code,
            ErrorCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_patch_that_changes_nothing_records_nothing() {
        let task = created("Login");
        let patch = TaskPatch {
            title: Some("Login".into()),
            status_id: Some(Some(BACKLOG)),
            ..TaskPatch::default()
        };
        assert_eq!(when(&task, TaskCommand::Update(patch)).unwrap().1, vec![]);
    }

    #[test]
    fn three_state_patch_and_names_at_record_time() {
        let task = created("Login");
        let set = TaskPatch {
            status_id: Some(Some(DOING)),
            story_points: Some(Some(5)),
            assignee_ids: Some(vec![ALICE, BOB, ALICE]),
            custom_fields: Some(
                [("severity".to_owned(), Value::from("high"))]
                    .into_iter()
                    .collect(),
            ),
            ..TaskPatch::default()
        };
        let (task, events) = when(&task, TaskCommand::Update(set)).unwrap();
        let TaskEvent::Updated { changes } = &events[0] else {
            panic!()
        };
        let status = changes
            .iter()
            .find(|c| c.field == TaskField::Status)
            .unwrap();
        assert_eq!(
            (status.old.as_str(), status.new.as_str()),
            (Some("Backlog"), Some("In Progress"))
        );
        assert_eq!(task.fields.assignee_ids, vec![ALICE, BOB]);
        let clear = TaskPatch {
            story_points: Some(None),
            custom_fields: Some([("severity".to_owned(), Value::Null)].into_iter().collect()),
            ..TaskPatch::default()
        };
        let (task, _) = when(&task, TaskCommand::Update(clear)).unwrap();
        assert_eq!(task.fields.story_points, None);
        assert!(task.fields.custom_fields.is_empty());
        assert_eq!(task.fields.status_id, Some(DOING), "absent fields are kept");
    }

    #[test]
    fn referential_rules() {
        let task = created("Login");
        let cases = [
            (
                TaskPatch {
                    status_id: Some(Some(Uuid::from_u128(99))),
                    ..Default::default()
                },
                ErrorCode::TASK_STATUS_NOT_FOUND,
            ),
            (
                TaskPatch {
                    sprint_id: Some(Some(Uuid::from_u128(99))),
                    ..Default::default()
                },
                ErrorCode::SPRINT_NOT_FOUND,
            ),
            (
                TaskPatch {
                    assignee_ids: Some(vec![Uuid::from_u128(99)]),
                    ..Default::default()
                },
                ErrorCode::PROJECT_MEMBER_NOT_FOUND,
            ),
            (
                TaskPatch {
                    description: Some(Some(Value::from("text"))),
                    ..Default::default()
                },
                ErrorCode::BAD_REQUEST,
            ),
            (
                TaskPatch {
                    custom_fields: Some(
                        [("severity".to_owned(), Value::from("urgent"))]
                            .into_iter()
                            .collect(),
                    ),
                    ..Default::default()
                },
                ErrorCode::BAD_REQUEST,
            ),
            (
                TaskPatch {
                    parent_task_id: Some(Some(ME)),
                    ..Default::default()
                },
                ErrorCode::TASK_NOT_FOUND,
            ),
            (
                TaskPatch {
                    task_type_id: Some(Some(EPIC_TYPE)),
                    parent_task_id: Some(Some(PARENT)),
                    ..Default::default()
                },
                ErrorCode::TASK_EPIC_CANNOT_HAVE_PARENT,
            ),
        ];
        for (patch, code) in cases {
            assert_eq!(
                when(&task, TaskCommand::Update(patch.clone())).unwrap_err(),
                code,
                "{patch:?}"
            );
        }
        // Own parent and cycles, with the context describing the parent.
        let mut own = ctx();
        own.parent = Some(ParentInfo {
            id: ME,
            ancestors: vec![ME],
        });
        let patch = TaskPatch {
            parent_task_id: Some(Some(ME)),
            ..Default::default()
        };
        assert_eq!(
            task.decide(TaskCommand::Update(patch), &own)
                .unwrap_err()
                .code,
            ErrorCode::TASK_CANNOT_BE_OWN_PARENT
        );
        let mut cycle = ctx();
        cycle.parent = Some(ParentInfo {
            id: PARENT,
            ancestors: vec![PARENT, ME],
        });
        let patch = TaskPatch {
            parent_task_id: Some(Some(PARENT)),
            ..Default::default()
        };
        assert_eq!(
            task.decide(TaskCommand::Update(patch), &cycle)
                .unwrap_err()
                .code,
            ErrorCode::TASK_PARENT_CYCLE_DETECTED
        );
    }

    /// Every tracked field: change it, change it again, revert the second
    /// change: the field is back to the first change's value exactly.
    #[test]
    fn revert_restores_every_tracked_field_exactly() {
        let date = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let blocks = |t: &str| serde_json::json!([{"type": "paragraph", "content": [{"type": "text", "text": t}]}]);
        let patches: Vec<(&str, TaskPatch, TaskPatch)> = vec![
            (
                "title",
                TaskPatch {
                    title: Some("B".into()),
                    ..Default::default()
                },
                TaskPatch {
                    title: Some("C".into()),
                    ..Default::default()
                },
            ),
            (
                "status",
                TaskPatch {
                    status_id: Some(Some(DOING)),
                    ..Default::default()
                },
                TaskPatch {
                    status_id: Some(None),
                    ..Default::default()
                },
            ),
            (
                "task_type",
                TaskPatch {
                    task_type_id: Some(None),
                    ..Default::default()
                },
                TaskPatch {
                    task_type_id: Some(Some(EPIC_TYPE)),
                    ..Default::default()
                },
            ),
            (
                "importance",
                TaskPatch {
                    importance: Some(3),
                    ..Default::default()
                },
                TaskPatch {
                    importance: Some(9),
                    ..Default::default()
                },
            ),
            (
                "story_points",
                TaskPatch {
                    story_points: Some(Some(2)),
                    ..Default::default()
                },
                TaskPatch {
                    story_points: Some(Some(8)),
                    ..Default::default()
                },
            ),
            (
                "assignee",
                TaskPatch {
                    assignee_ids: Some(vec![ALICE, BOB]),
                    ..Default::default()
                },
                TaskPatch {
                    assignee_ids: Some(vec![BOB]),
                    ..Default::default()
                },
            ),
            (
                "reporter",
                TaskPatch {
                    reporter_id: Some(Some(ALICE)),
                    ..Default::default()
                },
                TaskPatch {
                    reporter_id: Some(Some(BOB)),
                    ..Default::default()
                },
            ),
            (
                "sprint",
                TaskPatch {
                    sprint_id: Some(Some(SPRINT)),
                    ..Default::default()
                },
                TaskPatch {
                    sprint_id: Some(Some(SPRINT2)),
                    ..Default::default()
                },
            ),
            (
                "parent_task",
                TaskPatch {
                    parent_task_id: Some(Some(PARENT)),
                    ..Default::default()
                },
                TaskPatch {
                    parent_task_id: Some(None),
                    ..Default::default()
                },
            ),
            (
                "start_date",
                TaskPatch {
                    start_date: Some(Some(date(1))),
                    ..Default::default()
                },
                TaskPatch {
                    start_date: Some(Some(date(2))),
                    ..Default::default()
                },
            ),
            (
                "due_date",
                TaskPatch {
                    due_date: Some(Some(date(20))),
                    ..Default::default()
                },
                TaskPatch {
                    due_date: Some(Some(date(25))),
                    ..Default::default()
                },
            ),
            (
                "description",
                TaskPatch {
                    description: Some(Some(blocks("one"))),
                    ..Default::default()
                },
                TaskPatch {
                    description: Some(Some(blocks("two"))),
                    ..Default::default()
                },
            ),
            (
                "tags",
                TaskPatch {
                    tags: Some(vec!["a".into()]),
                    ..Default::default()
                },
                TaskPatch {
                    tags: Some(vec!["b".into(), "c".into()]),
                    ..Default::default()
                },
            ),
            (
                "custom_fields",
                TaskPatch {
                    custom_fields: Some(
                        [("severity".to_owned(), Value::from("low"))]
                            .into_iter()
                            .collect(),
                    ),
                    ..Default::default()
                },
                TaskPatch {
                    custom_fields: Some(
                        [("severity".to_owned(), Value::from("high"))]
                            .into_iter()
                            .collect(),
                    ),
                    ..Default::default()
                },
            ),
        ];
        for (field, first, second) in patches {
            let original = created("A");
            let (after_first, _) = when(&original, TaskCommand::Update(first)).unwrap();
            let (after_second, events) = when(&after_first, TaskCommand::Update(second)).unwrap();
            let TaskEvent::Updated { changes } = events[0].clone() else {
                panic!()
            };
            assert!(
                changes.iter().any(|c| c.field.as_str() == field),
                "{field}: {changes:?}"
            );
            let (reverted, events) = when(&after_second, TaskCommand::Revert { changes }).unwrap();
            assert_eq!(events.len(), 1, "{field}");
            assert_eq!(reverted.fields, after_first.fields, "{field}");
        }
    }

    #[test]
    fn revert_only_touches_the_fields_it_names() {
        let task = created("A");
        let (task, events) = when(
            &task,
            TaskCommand::Update(TaskPatch {
                title: Some("B".into()),
                ..Default::default()
            }),
        )
        .unwrap();
        let TaskEvent::Updated { changes } = events[0].clone() else {
            panic!()
        };
        let (task, _) = when(
            &task,
            TaskCommand::Update(TaskPatch {
                importance: Some(4),
                ..Default::default()
            }),
        )
        .unwrap();
        let (task, _) = when(&task, TaskCommand::Revert { changes }).unwrap();
        assert_eq!(task.fields.title, "A");
        assert_eq!(task.fields.importance, 4);
    }

    #[test]
    fn comments_belong_to_their_author() {
        let task = created("A");
        let comment_id = Uuid::from_u128(500);
        let add = TaskCommand::AddComment {
            comment_id,
            author_user_id: ALICE,
            content: serde_json::json!({"text": "hi"}),
        };
        let (task, _) = when(&task, add).unwrap();
        let edit = |by| TaskCommand::EditComment {
            comment_id,
            actor_user_id: by,
            content: serde_json::json!({"text": "edited"}),
        };
        assert_eq!(
            when(&task, edit(BOB)).unwrap_err(),
            ErrorCode::ACTIVITY_FORBIDDEN
        );
        assert!(when(&task, edit(ALICE)).is_ok());
        let empty = TaskCommand::AddComment {
            comment_id: Uuid::from_u128(501),
            author_user_id: ALICE,
            content: serde_json::json!([]),
        };
        assert_eq!(
            when(&task, empty).unwrap_err(),
            ErrorCode::ACTIVITY_COMMENT_CONTENT_INVALID
        );
        let (task, _) = when(
            &task,
            TaskCommand::DeleteComment {
                comment_id,
                actor_user_id: ALICE,
            },
        )
        .unwrap();
        assert_eq!(
            when(&task, edit(ALICE)).unwrap_err(),
            ErrorCode::ACTIVITY_NOT_FOUND
        );
    }

    #[test]
    fn events_round_trip() {
        let task = created("A");
        let (_, events) = when(
            &task,
            TaskCommand::Update(TaskPatch {
                status_id: Some(Some(DOING)),
                ..Default::default()
            }),
        )
        .unwrap();
        let created_event = Task::default()
            .decide(
                TaskCommand::Create {
                    task_number: 1,
                    fields: TaskFields {
                        title: "x".into(),
                        ..Default::default()
                    },
                },
                &ctx(),
            )
            .unwrap();
        for event in events.iter().chain(created_event.iter()) {
            assert_eq!(
                &TaskEvent::from_stored(&event.event_type(), &event.to_payload()).unwrap(),
                event
            );
        }
    }
}
