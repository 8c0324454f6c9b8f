//! The 62 core tools of seed page 18: their catalog (names, descriptions,
//! input schemas generated from the argument types, permission keys) and
//! their dispatch to the REST API.

mod args;
mod core;
mod docs;

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_type;
use rmcp::model::JsonObject;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use self::args::*;
use super::client::{Api, ApiError};

/// One core tool.
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// The permission key of page 18 that lists the tool.
    pub permission: &'static str,
    /// Project-scoped tools are hidden in user-global mode.
    pub requires_project: bool,
    pub schema: fn() -> Arc<JsonObject>,
}

/// A failed call, rendered as an `isError` result.
#[derive(Debug)]
pub enum ToolError {
    /// The REST API refused or failed: its code and message.
    Api(ApiError),
    /// The arguments do not match the input schema.
    Args(String),
    /// A tool-level failure with Paca's own wording (e.g. `Not found: x`).
    Text(String),
}

impl ToolError {
    pub fn text(&self) -> String {
        match self {
            ToolError::Api(e) => format!("Error: {e}"),
            ToolError::Args(m) => format!("Error: Invalid arguments: {m}"),
            ToolError::Text(t) => t.clone(),
        }
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        ToolError::Api(e)
    }
}

pub type ToolResult = Result<String, ToolError>;

/// What a handler works with.
pub struct Ctx {
    pub api: Api,
}

fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args
    };
    serde_json::from_value(args).map_err(|e| ToolError::Args(e.to_string()))
}

/// Percent-encodes one path segment, so an id can never add path segments.
pub fn seg(id: &str) -> String {
    // Dot segments (also percent-encoded ones) are normalised away by URL
    // parsers; they are never an id.
    if matches!(id, "" | "." | "..") {
        return "invalid-id".into();
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

macro_rules! tools {
    ($( $name:literal, $args:ty, $perm:literal, $proj:expr, $desc:expr; )*) => {
        /// Every core tool, in page 18's order.
        pub fn catalog() -> &'static [ToolSpec] {
            static CATALOG: &[ToolSpec] = &[
                $( ToolSpec {
                    name: $name,
                    description: $desc,
                    permission: $perm,
                    requires_project: $proj,
                    schema: || schema_for_type::<$args>(),
                }, )*
            ];
            CATALOG
        }
    };
}

const P: bool = true;
const G: bool = false;

tools! {
    // Projects (5)
    "list_projects", NoArgs, "projects.read", G, "List all projects accessible to the authenticated user";
    "get_project", ProjectArgs, "projects.read", P, "Get details of a specific project";
    "create_project", CreateProjectArgs, "projects.create", G, "Create a new project";
    "update_project", UpdateProjectArgs, "projects.write", P, "Update an existing project";
    "delete_project", ProjectArgs, "projects.delete", P, "Delete a project";
    // Tasks (6)
    "list_tasks", ListTasksArgs, "tasks.read", P, "List tasks in a project (cursor pagination)";
    "get_task", TaskArgs, "tasks.read", P, "Get comprehensive details of a specific task including all properties, subtasks, attachments, and activities - everything that users can see in the task detail component of the web app";
    "get_task_by_number", TaskNumberArgs, "tasks.read", P, "Get comprehensive details of a task by its number within a project (accepts 42, \"#42\" or \"PREFIX-42\") including all properties, subtasks, attachments, and activities";
    "create_task", CreateTaskArgs, "tasks.write", P, "Create a new task";
    "update_task", UpdateTaskArgs, "tasks.write", P, "Update an existing task";
    "delete_task", TaskArgs, "tasks.write", P, "Delete a task";
    // Sprints (6)
    "list_sprints", ProjectArgs, "sprints.read", P, "List all sprints in a project";
    "get_sprint", SprintArgs, "sprints.read", P, "Get details of a specific sprint";
    "create_sprint", CreateSprintArgs, "sprints.write", P, "Create a new sprint";
    "update_sprint", UpdateSprintArgs, "sprints.write", P, "Update an existing sprint";
    "delete_sprint", SprintArgs, "sprints.write", P, "Delete a sprint";
    "complete_sprint", SprintArgs, "sprints.write", P, "Mark a sprint as completed";
    // Documentation, filesystem model (5)
    "list_docs", ListDocsArgs, "docs.read", P, "List the documentation tree for a project, showing folders and documents in a filesystem-like hierarchy. Optionally start from a specific folder path. Use this to explore the project documentation structure.";
    "read_doc", DocPathArgs, "docs.read", P, "Read the Markdown content of a document by its path (e.g. 'Architecture/API Design'). Use list_docs first to discover available paths.";
    "write_doc", WriteDocArgs, "docs.write", P, "Create or update a document at the given path. If the document already exists it will be updated; otherwise it will be created. Missing intermediate folders are created automatically. Always prefer this over creating local files when writing project documentation.";
    "delete_doc", DocPathArgs, "docs.write", P, "Delete a document or folder by path. Deleting a folder also removes all documents and subfolders inside it.";
    "move_doc", MoveDocArgs, "docs.write", P, "Move or rename a document or folder by specifying a source path and destination path. Missing intermediate folders in the destination are created automatically.";
    // Project members (5)
    "list_project_members", ProjectArgs, "project.members.read", P, "List all members of a project";
    "add_project_member", MemberRoleArgs, "project.members.write", P, "Add a member to a project";
    "get_my_project_permissions", ProjectArgs, "project.members.read", P, "Get the current user's (or agent's) permissions in a project";
    "update_project_member_role", MemberRoleArgs, "project.members.write", P, "Update a project member's role";
    "remove_project_member", MemberArgs, "project.members.write", P, "Remove a member from a project";
    // Project roles (4)
    "list_project_roles", ProjectArgs, "project.roles.read", P, "List all roles in a project";
    "create_project_role", CreateRoleArgs, "project.roles.write", P, "Create a new project role";
    "update_project_role", UpdateRoleArgs, "project.roles.write", P, "Update an existing project role";
    "delete_project_role", RoleArgs, "project.roles.write", P, "Delete a project role";
    // Task types (5)
    "list_task_types", ProjectArgs, "tasks.read", P, "List all task types in a project";
    "create_task_type", CreateTaskTypeArgs, "tasks.write", P, "Create a new task type";
    "update_task_type", UpdateTaskTypeArgs, "tasks.write", P, "Update an existing task type";
    "delete_task_type", TypeArgs, "tasks.write", P, "Delete a task type";
    "set_default_task_type", TypeArgs, "tasks.write", P, "Set a task type as the default for the project";
    // Task statuses (5)
    "list_task_statuses", ProjectArgs, "tasks.read", P, "List all task statuses in a project";
    "create_task_status", CreateStatusArgs, "tasks.write", P, "Create a new task status";
    "update_task_status", UpdateStatusArgs, "tasks.write", P, "Update an existing task status";
    "delete_task_status", StatusArgs, "tasks.write", P, "Delete a task status";
    "set_default_task_status", StatusArgs, "tasks.write", P, "Set a task status as the default for the project";
    // Views and task positioning (9)
    "list_views", ListViewsArgs, "tasks.read", P, "List all views in a project. Use context='backlog' or context='timeline' to list non-sprint views. Use context='sprint' with sprintId to list views for a specific sprint.";
    "create_view", CreateViewArgs, "tasks.write", P, "Create a new view";
    "reorder_views", ReorderViewsArgs, "tasks.write", P, "Reorder views in a project (the views of one context, in their new order)";
    "get_view", ViewArgs, "tasks.read", P, "Get details of a specific view";
    "update_view", UpdateViewArgs, "tasks.write", P, "Update an existing view";
    "delete_view", ViewArgs, "tasks.write", P, "Delete a view";
    "list_task_positions", ViewArgs, "tasks.read", P, "List task positions in a view";
    "bulk_move_tasks", MoveTaskArgs, "tasks.write", P, "Bulk move tasks in a view";
    "move_task", MoveTaskArgs, "tasks.write", P, "Move a task within a view";
    // Custom fields (5)
    "list_custom_fields", ProjectArgs, "tasks.read", P, "List all custom field definitions in a project";
    "create_custom_field", CreateFieldArgs, "tasks.write", P, "Create a new custom field definition";
    "get_custom_field", FieldArgs, "tasks.read", P, "Get details of a custom field definition";
    "update_custom_field", UpdateFieldArgs, "tasks.write", P, "Update a custom field definition";
    "delete_custom_field", FieldArgs, "tasks.write", P, "Delete a custom field definition";
    // Attachments (3)
    "list_task_attachments", TaskArgs, "tasks.read", P, "List all attachments for a task";
    "get_attachment_download_url", AttachmentArgs, "tasks.read", P, "Get a presigned download URL for an attachment";
    "delete_task_attachment", AttachmentArgs, "tasks.write", P, "Delete an attachment from a task";
    // Task activities and comments (4)
    "list_task_activities", TaskArgs, "tasks.read", P, "List all activities for a task";
    "add_task_comment", AddCommentArgs, "tasks.write", P, "Add a comment to a task (Markdown)";
    "update_task_comment", UpdateCommentArgs, "tasks.write", P, "Update a task comment (Markdown)";
    "delete_task_comment", CommentArgs, "tasks.write", P, "Delete a task comment";
}

pub fn find(name: &str) -> Option<&'static ToolSpec> {
    catalog().iter().find(|t| t.name == name)
}

/// Runs one core tool. `None` when no core tool has that name.
pub async fn call(ctx: &Ctx, name: &str, args: Value) -> Option<ToolResult> {
    use self::core as c;
    use self::docs as d;
    let result = match name {
        "list_projects" => c::list_projects(ctx).await,
        "get_project" => async { c::get_project(ctx, parse(args)?).await }.await,
        "create_project" => async { c::create_project(ctx, parse(args)?).await }.await,
        "update_project" => async { c::update_project(ctx, parse(args)?).await }.await,
        "delete_project" => async { c::delete_project(ctx, parse(args)?).await }.await,
        "list_tasks" => async { c::list_tasks(ctx, parse(args)?).await }.await,
        "get_task" => async { c::get_task(ctx, parse(args)?).await }.await,
        "get_task_by_number" => async { c::get_task_by_number(ctx, parse(args)?).await }.await,
        "create_task" => async { c::create_task(ctx, parse(args)?).await }.await,
        "update_task" => async { c::update_task(ctx, parse(args)?).await }.await,
        "delete_task" => async { c::delete_task(ctx, parse(args)?).await }.await,
        "list_sprints" => async { c::list_sprints(ctx, parse(args)?).await }.await,
        "get_sprint" => async { c::get_sprint(ctx, parse(args)?).await }.await,
        "create_sprint" => async { c::create_sprint(ctx, parse(args)?).await }.await,
        "update_sprint" => async { c::update_sprint(ctx, parse(args)?).await }.await,
        "delete_sprint" => async { c::delete_sprint(ctx, parse(args)?).await }.await,
        "complete_sprint" => async { c::complete_sprint(ctx, parse(args)?).await }.await,
        "list_docs" => async { d::list_docs(ctx, parse(args)?).await }.await,
        "read_doc" => async { d::read_doc(ctx, parse(args)?).await }.await,
        "write_doc" => async { d::write_doc(ctx, parse(args)?).await }.await,
        "delete_doc" => async { d::delete_doc(ctx, parse(args)?).await }.await,
        "move_doc" => async { d::move_doc(ctx, parse(args)?).await }.await,
        "list_project_members" => async { c::list_members(ctx, parse(args)?).await }.await,
        "add_project_member" => async { c::add_member(ctx, parse(args)?).await }.await,
        "get_my_project_permissions" => async { c::my_permissions(ctx, parse(args)?).await }.await,
        "update_project_member_role" => {
            async { c::update_member_role(ctx, parse(args)?).await }.await
        }
        "remove_project_member" => async { c::remove_member(ctx, parse(args)?).await }.await,
        "list_project_roles" => async { c::list_roles(ctx, parse(args)?).await }.await,
        "create_project_role" => async { c::create_role(ctx, parse(args)?).await }.await,
        "update_project_role" => async { c::update_role(ctx, parse(args)?).await }.await,
        "delete_project_role" => async { c::delete_role(ctx, parse(args)?).await }.await,
        "list_task_types" => async { c::list_types(ctx, parse(args)?).await }.await,
        "create_task_type" => async { c::create_type(ctx, parse(args)?).await }.await,
        "update_task_type" => async { c::update_type(ctx, parse(args)?).await }.await,
        "delete_task_type" => async { c::delete_type(ctx, parse(args)?).await }.await,
        "set_default_task_type" => async { c::default_type(ctx, parse(args)?).await }.await,
        "list_task_statuses" => async { c::list_statuses(ctx, parse(args)?).await }.await,
        "create_task_status" => async { c::create_status(ctx, parse(args)?).await }.await,
        "update_task_status" => async { c::update_status(ctx, parse(args)?).await }.await,
        "delete_task_status" => async { c::delete_status(ctx, parse(args)?).await }.await,
        "set_default_task_status" => async { c::default_status(ctx, parse(args)?).await }.await,
        "list_views" => async { c::list_views(ctx, parse(args)?).await }.await,
        "create_view" => async { c::create_view(ctx, parse(args)?).await }.await,
        "reorder_views" => async { c::reorder_views(ctx, parse(args)?).await }.await,
        "get_view" => async { c::get_view(ctx, parse(args)?).await }.await,
        "update_view" => async { c::update_view(ctx, parse(args)?).await }.await,
        "delete_view" => async { c::delete_view(ctx, parse(args)?).await }.await,
        "list_task_positions" => async { c::list_positions(ctx, parse(args)?).await }.await,
        "bulk_move_tasks" => async { c::bulk_move_tasks(ctx, parse(args)?).await }.await,
        "move_task" => async { c::move_task(ctx, parse(args)?).await }.await,
        "list_custom_fields" => async { c::list_fields(ctx, parse(args)?).await }.await,
        "create_custom_field" => async { c::create_field(ctx, parse(args)?).await }.await,
        "get_custom_field" => async { c::get_field(ctx, parse(args)?).await }.await,
        "update_custom_field" => async { c::update_field(ctx, parse(args)?).await }.await,
        "delete_custom_field" => async { c::delete_field(ctx, parse(args)?).await }.await,
        "list_task_attachments" => async { c::list_attachments(ctx, parse(args)?).await }.await,
        "get_attachment_download_url" => async { c::attachment_url(ctx, parse(args)?).await }.await,
        "delete_task_attachment" => async { c::delete_attachment(ctx, parse(args)?).await }.await,
        "list_task_activities" => async { c::list_activities(ctx, parse(args)?).await }.await,
        "add_task_comment" => async { c::add_comment(ctx, parse(args)?).await }.await,
        "update_task_comment" => async { c::update_comment(ctx, parse(args)?).await }.await,
        "delete_task_comment" => async { c::delete_comment(ctx, parse(args)?).await }.await,
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_two_unique_tools_with_object_schemas() {
        let all = catalog();
        assert_eq!(all.len(), 62);
        let mut names: Vec<&str> = all.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 62);
        for t in all {
            let schema = (t.schema)();
            assert_eq!(
                schema.get("type").and_then(Value::as_str),
                Some("object"),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn required_inputs_match_page_18() {
        let required = |name: &str| -> Vec<String> {
            let schema = (find(name).unwrap().schema)();
            let mut r: Vec<String> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            r.sort();
            r
        };
        assert!(required("list_projects").is_empty());
        assert_eq!(required("create_task"), ["projectId", "title"]);
        assert_eq!(
            required("create_sprint"),
            ["endDate", "name", "projectId", "startDate"]
        );
        assert_eq!(
            required("move_doc"),
            ["destPath", "projectId", "sourcePath"]
        );
        assert_eq!(
            required("bulk_move_tasks"),
            ["projectId", "targetViewId", "taskId", "viewId"]
        );
        assert_eq!(
            required("create_custom_field"),
            ["displayName", "fieldKey", "fieldType", "projectId"]
        );
        assert_eq!(
            required("update_task_comment"),
            ["commentId", "content", "projectId", "taskId"]
        );
        assert_eq!(
            required("create_project_role"),
            ["name", "permissions", "projectId"]
        );
        let props = (find("create_task").unwrap().schema)();
        let keys: Vec<&String> = props["properties"].as_object().unwrap().keys().collect();
        for k in [
            "description",
            "statusId",
            "typeId",
            "sprintId",
            "assigneeId",
            "parentTaskId",
            "importance",
            "storyPoints",
            "tags",
            "startDate",
            "dueDate",
        ] {
            assert!(keys.iter().any(|x| *x == k), "create_task lacks {k}");
        }
    }

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(seg("abc-1"), "abc-1");
        assert_eq!(seg("../admin"), "..%2Fadmin");
        assert_eq!(seg("a b?c"), "a%20b%3Fc");
        assert_eq!(seg(".."), "invalid-id");
    }
}
