//! The typed GraphQL objects of the read models (`gateways/src/graphql.rs`
//! serves them).
//!
//! Each object is the REST `data` of the same resource with its fields in
//! camelCase: it is built by deserializing the very JSON value REST sends
//! (`crate::graphql::typed`), so a typed field can never disagree with the
//! REST response. Ids are `ID`, timestamps are the REST RFC 3339 strings
//! (`2025-01-31T12:00:00.123456Z`), dates are RFC 3339 at midnight UTC, and
//! a field REST omits is `null`. Only free-form values without a fixed shape
//! stay `JSON`: BlockNote documents (task descriptions, comment and doc
//! content), custom field values and options, view config, project
//! settings, permission maps, and event payloads.

use async_graphql::{ID, Json, SimpleObject};
use serde::Deserialize;
use serde_json::Value;

/// The authenticated user, as `GET /users/me` returns it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "User")]
pub struct User {
    pub id: ID,
    pub username: String,
    pub full_name: String,
    /// Absent (`null`) when the user has none.
    pub email: Option<String>,
    /// The global role's name (`SUPER_ADMIN`, `ADMIN`, `USER`, ...).
    pub role: String,
    pub role_id: ID,
    pub must_change_password: bool,
    pub created_at: String,
}

/// A project member (human or agent), as `GET /projects/:id/members`
/// lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "Member")]
pub struct Member {
    /// The membership's id (what `assigneeIds` and `actorId` refer to).
    pub id: ID,
    pub project_id: ID,
    /// The user; `null` for agent members.
    pub user_id: Option<ID>,
    /// The agent; set for agent members only.
    pub agent_id: Option<ID>,
    pub project_role_id: ID,
    /// The user's username or the agent's handle.
    pub username: String,
    pub full_name: String,
    pub role_name: String,
    /// `human` or `agent`.
    pub member_type: String,
    pub created_at: String,
}

/// A project role, as `GET /projects/:id/roles` lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "Role")]
pub struct Role {
    pub id: ID,
    pub project_id: ID,
    pub role_name: String,
    /// `{"tasks.read": true, ...}`: permission names are not GraphQL
    /// names, so the map stays `JSON`.
    pub permissions: Json<Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// A task type, as `GET /projects/:id/task-types` lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "TaskType")]
pub struct TaskType {
    pub id: ID,
    pub project_id: ID,
    pub name: String,
    pub icon: Option<String>,
    pub color: Option<String>,
    pub description: Option<String>,
    pub is_default: bool,
    pub is_system: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A task status (board column), as `GET /projects/:id/task-statuses`
/// lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "TaskStatus")]
pub struct TaskStatus {
    pub id: ID,
    pub project_id: ID,
    pub name: String,
    pub color: Option<String>,
    pub position: i64,
    /// `backlog`, `refinement`, `ready`, `todo`, `inprogress` or `done`.
    pub category: String,
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A custom field definition, as `GET /projects/:id/custom-fields` lists
/// it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "CustomField")]
pub struct CustomField {
    pub id: ID,
    pub project_id: ID,
    /// The key under which tasks carry the value (`Task.customFields`).
    pub field_key: String,
    pub display_name: String,
    pub field_type: String,
    /// The field type's options (e.g. select choices); shape varies by type.
    pub options: Json<Value>,
    pub is_required: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A sprint, as `GET /projects/:id/sprints/:sprintId` returns it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "Sprint")]
pub struct Sprint {
    pub id: ID,
    pub project_id: ID,
    pub name: String,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub goal: Option<String>,
    /// `planned`, `active` or `completed`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

/// An interaction view (a tab of the backlog or of a sprint), as
/// `GET /projects/:id/views` lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "View")]
pub struct View {
    pub id: ID,
    /// Set for views of the sprint context.
    pub sprint_id: Option<ID>,
    pub project_id: ID,
    pub name: String,
    /// `table`, `board`, `roadmap` or `plugin`.
    pub view_type: String,
    /// The view's settings (grouping, filters, columns); free-form.
    pub config: Json<Value>,
    pub position: f64,
    pub created_at: String,
    pub updated_at: String,
}

/// An entry of a task's activity feed, as
/// `GET /projects/:id/tasks/:taskId/activities` lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "Activity")]
pub struct Activity {
    pub id: ID,
    pub task_id: ID,
    /// The actor's project membership (`null` if no longer a member).
    pub actor_id: Option<ID>,
    pub actor_name: String,
    pub actor_username: String,
    /// `human` or `agent` (`null` when the actor is unknown or gone).
    pub actor_member_type: Option<String>,
    /// The plugin that acted for the actor, if any.
    pub actor_plugin: Option<String>,
    /// `task.created`, `task.updated`, `comment`, ...
    pub activity_type: String,
    /// The entry's content: BlockNote blocks for comments, the change for
    /// task events; shape varies by `activityType`.
    pub content: Json<Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// A comment: its entry in the task's activity feed (what
/// `POST /projects/:id/tasks/:taskId/activities/comments` answers), with
/// the fields of `Activity`.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Comment")]
pub struct Comment {
    #[graphql(flatten)]
    pub activity: Activity,
}

/// One recorded change of a task: one entry per version, as
/// `GET /projects/:id/tasks/:taskId/history` lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "HistoryEntry")]
pub struct HistoryEntry {
    pub version: i64,
    pub event_id: ID,
    pub event_type: String,
    /// The acting user (`null` for system or non-user actors).
    pub actor_id: Option<ID>,
    /// `rest`, `graphql`, `mcp`, ...
    pub source: Option<String>,
    pub request_id: Option<String>,
    pub recorded_at: String,
    /// Update events: the changed fields, `{field: {old, new}}`.
    pub changes: Option<Json<Value>>,
    /// Other events: the whole event payload.
    pub payload: Option<Json<Value>>,
    /// A revert: the event it reverts.
    pub reverts: Option<Json<Value>>,
}

/// A project document without its content, as `GET /projects/:id/docs`
/// lists it.
#[derive(SimpleObject, Deserialize, Clone, Debug)]
#[graphql(name = "DocSummary")]
pub struct DocSummary {
    pub id: ID,
    pub project_id: ID,
    /// `null` at the root.
    pub folder_id: Option<ID>,
    pub title: String,
    pub position: f64,
    pub created_by: Option<ID>,
    pub updated_by: Option<ID>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A project document with its content, as
/// `GET /projects/:id/docs/:docId` returns it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Doc")]
pub struct Doc {
    #[graphql(flatten)]
    pub summary: DocSummary,
    /// The BlockNote document (`null` when empty).
    pub content: Option<Json<Value>>,
}
