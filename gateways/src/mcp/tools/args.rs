//! Tool inputs. The JSON Schemas clients see are generated from these types
//! (doc comments become the property descriptions); names are page 18's.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Absent -> `None`; `null` -> `Some(None)`; value -> `Some(Some(v))`.
fn three_state<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, JsonSchema)]
pub struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectArgs {
    /// The technical UUID of the project (e.g. '550e8400-e29b-41d4-a716-446655440000'). Use list_projects to get the project ID. Do NOT use the project name.
    pub project_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProjectArgs {
    /// The name of the project
    pub name: String,
    /// The description of the project
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProjectArgs {
    /// The technical UUID of the project. Use list_projects to get the project ID.
    pub project_id: String,
    /// The new name of the project
    #[serde(default)]
    pub name: Option<String>,
    /// The new description of the project
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksArgs {
    /// The technical UUID of the project. Use list_projects to get the project ID.
    pub project_id: String,
    /// Opaque pagination cursor returned as next_cursor by a previous call.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Number of tasks per page (1-200, default 20).
    #[serde(default)]
    pub page_size: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskArgs {
    /// The technical UUID of the project. Use list_projects to get the project ID.
    pub project_id: String,
    /// The technical UUID of the task. Use list_tasks or get_task_by_number to get it.
    pub task_id: String,
}

/// A task number: `42`, or a reference such as `"#42"` or `"PAC-42"`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TaskNumber {
    Number(i64),
    Reference(String),
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskNumberArgs {
    /// The technical UUID of the project. Use list_projects to get the project ID.
    pub project_id: String,
    /// The task number (42), or a reference like "#42" or "PAC-42" whose prefix is the project's task_id_prefix.
    pub task_number: TaskNumber,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTaskArgs {
    /// The technical UUID of the project. Use list_projects to get the project ID.
    pub project_id: String,
    /// The title of the task
    pub title: String,
    /// The description of the task in Markdown (stored as BlockNote)
    #[serde(default)]
    pub description: Option<String>,
    /// The task status UUID. Use list_task_statuses.
    #[serde(default)]
    pub status_id: Option<String>,
    /// The task type UUID. Use list_task_types.
    #[serde(default)]
    pub type_id: Option<String>,
    /// The sprint UUID. Use list_sprints.
    #[serde(default)]
    pub sprint_id: Option<String>,
    /// The project MEMBER id to assign (not the user id). Use list_project_members and read 'Member ID'.
    #[serde(default)]
    pub assignee_id: Option<String>,
    /// The parent task UUID. Epics cannot have a parent.
    #[serde(default)]
    pub parent_task_id: Option<String>,
    /// The importance of the task
    #[serde(default)]
    pub importance: Option<i64>,
    /// Story points estimate (Fibonacci: 1, 2, 3, 5, 8, 13, ...)
    #[serde(default)]
    pub story_points: Option<i64>,
    /// Tags for the task
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The start date (ISO 8601)
    #[serde(default)]
    pub start_date: Option<String>,
    /// The due date (ISO 8601)
    #[serde(default)]
    pub due_date: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTaskArgs {
    /// The technical UUID of the project. Use list_projects to get the project ID.
    pub project_id: String,
    /// The technical UUID of the task.
    pub task_id: String,
    /// The new title of the task
    #[serde(default)]
    pub title: Option<String>,
    /// The new description in Markdown (stored as BlockNote); an empty string clears it
    #[serde(default)]
    pub description: Option<String>,
    /// The task status UUID. Use list_task_statuses.
    #[serde(default)]
    pub status_id: Option<String>,
    /// The task type UUID. Use list_task_types.
    #[serde(default)]
    pub type_id: Option<String>,
    /// The sprint UUID. Use list_sprints.
    #[serde(default)]
    pub sprint_id: Option<String>,
    /// The project MEMBER id to assign (not the user id); an empty string unassigns.
    #[serde(default)]
    pub assignee_id: Option<String>,
    /// The parent task UUID; null removes the parent.
    #[serde(default, deserialize_with = "three_state")]
    pub parent_task_id: Option<Option<String>>,
    /// The importance of the task
    #[serde(default)]
    pub importance: Option<i64>,
    /// Story points estimate; null clears it
    #[serde(default, deserialize_with = "three_state")]
    pub story_points: Option<Option<i64>>,
    /// Tags for the task (replaces the current tags)
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The start date (ISO 8601)
    #[serde(default)]
    pub start_date: Option<String>,
    /// The due date (ISO 8601)
    #[serde(default)]
    pub due_date: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SprintArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The technical UUID of the sprint. Use list_sprints.
    pub sprint_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSprintArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The name of the sprint
    pub name: String,
    /// The start date (ISO 8601)
    pub start_date: String,
    /// The end date (ISO 8601)
    pub end_date: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSprintArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The technical UUID of the sprint.
    pub sprint_id: String,
    /// The new name of the sprint
    #[serde(default)]
    pub name: Option<String>,
    /// The new start date (ISO 8601)
    #[serde(default)]
    pub start_date: Option<String>,
    /// The new end date (ISO 8601)
    #[serde(default)]
    pub end_date: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListDocsArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// Optional folder path to list from (e.g. 'Architecture' or 'Guides/Setup'); omit for the root.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocPathArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// Path of the document or folder, '/'-separated (e.g. 'Architecture/API Design').
    pub path: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteDocArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// Full path for the document; the last segment is the title, the others are folders.
    pub path: String,
    /// Document content in Markdown.
    pub content: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveDocArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// Current path of the document or folder.
    pub source_path: String,
    /// New path; the last segment becomes the new name.
    pub dest_path: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The user's UUID (a member id is accepted too). Use list_project_members.
    pub user_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberRoleArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The user's UUID (a member id is accepted when changing a role).
    pub user_id: String,
    /// The project role UUID. Use list_project_roles.
    pub role_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The role UUID. Use list_project_roles.
    pub role_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateRoleArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The name of the role
    pub name: String,
    /// The description of the role
    #[serde(default)]
    pub description: Option<String>,
    /// Permission keys such as "tasks.read", "tasks.*" or "*" (a {"key": true} map is accepted too)
    pub permissions: Value,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRoleArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The role UUID.
    pub role_id: String,
    /// The new name of the role
    #[serde(default)]
    pub name: Option<String>,
    /// The new description of the role
    #[serde(default)]
    pub description: Option<String>,
    /// The new permission keys (replaces the current set)
    #[serde(default)]
    pub permissions: Option<Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task type UUID. Use list_task_types.
    pub type_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTaskTypeArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The name of the task type
    pub name: String,
    /// Icon for the task type
    #[serde(default)]
    pub icon: Option<String>,
    /// Color for the task type
    #[serde(default)]
    pub color: Option<String>,
    /// Description of the task type
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTaskTypeArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task type UUID.
    pub type_id: String,
    /// The new name
    #[serde(default)]
    pub name: Option<String>,
    /// The new icon
    #[serde(default)]
    pub icon: Option<String>,
    /// The new color
    #[serde(default)]
    pub color: Option<String>,
    /// The new description
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task status UUID. Use list_task_statuses.
    pub status_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateStatusArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The name of the status
    pub name: String,
    /// Category: backlog, refinement, ready, todo, inprogress or done
    pub category: String,
    /// Color for the status
    #[serde(default)]
    pub color: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatusArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task status UUID.
    pub status_id: String,
    /// The new name
    #[serde(default)]
    pub name: Option<String>,
    /// The new color
    #[serde(default)]
    pub color: Option<String>,
    /// The new category (backlog, refinement, ready, todo, inprogress, done)
    #[serde(default)]
    pub category: Option<String>,
    /// The new position
    #[serde(default)]
    pub position: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListViewsArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The view context: 'sprint', 'backlog' (default) or 'timeline'.
    #[serde(default)]
    pub context: Option<String>,
    /// The sprint UUID (required when context is 'sprint').
    #[serde(default)]
    pub sprint_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateViewArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The name of the view
    pub name: String,
    /// The context: sprint, backlog or timeline
    pub context: String,
    /// The view type: table, board or roadmap
    pub view_type: String,
    /// The sprint UUID (required for sprint context)
    #[serde(default)]
    pub sprint_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReorderViewsArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The view UUIDs of one context, in their new order.
    pub view_ids: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViewArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The view UUID. Use list_views.
    pub view_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateViewArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The view UUID.
    pub view_id: String,
    /// The new name
    #[serde(default)]
    pub name: Option<String>,
    /// The context (a view keeps its context; given for compatibility)
    #[serde(default)]
    pub context: Option<String>,
    /// The new view type: table, board or roadmap
    #[serde(default)]
    pub view_type: Option<String>,
    /// The sprint UUID (a view keeps its sprint; given for compatibility)
    #[serde(default)]
    pub sprint_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveTaskArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The view the task is moved from.
    pub view_id: String,
    /// The task UUID.
    pub task_id: String,
    /// The view the task is placed in (often the same view).
    pub target_view_id: String,
    /// The status (board column) to move the task to; also sets the task's status.
    #[serde(default)]
    pub target_status_id: Option<String>,
    /// The position in the target view (default: after the last task).
    #[serde(default)]
    pub target_position: Option<f64>,
}

/// A select option: a plain value or `{value, color}`.
#[derive(Deserialize, JsonSchema, serde::Serialize)]
#[serde(untagged)]
pub enum FieldOption {
    Plain(String),
    Full {
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        color: Option<String>,
    },
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The custom field UUID. Use list_custom_fields.
    pub field_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateFieldArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The field key (immutable)
    pub field_key: String,
    /// The display name
    pub display_name: String,
    /// The field type: text, number, date, select, multi_select, boolean or url
    pub field_type: String,
    /// Options for select/multi_select: strings or {value, color}
    #[serde(default)]
    pub options: Option<Vec<FieldOption>>,
    /// Whether the field is required
    #[serde(default)]
    pub is_required: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateFieldArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The custom field UUID.
    pub field_id: String,
    /// The new display name
    #[serde(default)]
    pub display_name: Option<String>,
    /// The new field type
    #[serde(default)]
    pub field_type: Option<String>,
    /// New options: strings or {value, color}
    #[serde(default)]
    pub options: Option<Vec<FieldOption>>,
    /// Whether the field is required
    #[serde(default)]
    pub is_required: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task UUID.
    pub task_id: String,
    /// The attachment UUID. Use list_task_attachments.
    pub attachment_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddCommentArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task UUID.
    pub task_id: String,
    /// The comment in Markdown
    pub content: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCommentArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task UUID.
    pub task_id: String,
    /// The comment UUID. Use list_task_activities.
    pub comment_id: String,
    /// The new comment in Markdown
    pub content: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentArgs {
    /// The technical UUID of the project.
    pub project_id: String,
    /// The task UUID.
    pub task_id: String,
    /// The comment UUID.
    pub comment_id: String,
}
