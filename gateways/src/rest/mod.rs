//! The REST API under `/api/v1`. This module is the route table; handlers
//! live in one module per resource.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod conversations;
pub mod docs;
pub mod files;
pub mod notifications;
pub mod plugins;
pub mod projects;
pub mod session;
pub mod sprints;
pub mod task_config;
pub mod tasks;
pub mod users;
pub mod views;

use std::collections::BTreeMap;

use projections::audit::AuditItem;
use projections::history::HistoryEntry;
use projections::queries::{
    ApiKeyView, CustomFieldView, GlobalRoleView, MemberView, ProjectRoleView, ProjectView,
    TaskStatusView, TaskTypeView, UserView,
};
use projections::queries_agents::{
    ChatSessionView, ConversationEventPage, ConversationView, McpServerView, SkillView,
};
use projections::queries_notifications::NotificationView;
use projections::queries_plugins::{ExtensionSettingView, PluginView};
use projections::queries_sprints::{SprintView, TaskPositionView, ViewView};
use projections::queries_tasks::{ActivityView, TaskLinkView, TaskView};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::openapi::Routes;

/// Every route of the API, readable as a table of contents.
pub fn routes<R: Routes>(r: &mut R) {
    r.prefixed("/api/v1", |r| {
        // Auth
        r.post("/auth/login", session::login)
            .returns_message()
            .error(401)
            .error(403)
            .error(429);
        r.post("/auth/refresh", session::refresh)
            .returns_message()
            .error(401);
        r.post("/auth/logout", session::logout).returns_message();
        // Users (self-service)
        r.get("/users/me", users::me).returns::<UserView>();
        r.patch("/users/me", users::update_me).returns::<UserView>();
        r.patch("/users/me/password", users::change_password)
            .no_content()
            // The current password is wrong.
            .error(422);
        r.get("/users/me/global-permissions", users::global_permissions)
            .returns_field::<Vec<String>>("permissions");
        r.get("/users/me/api-keys", users::list_api_keys)
            .returns_list::<ApiKeyView>();
        r.post("/users/me/api-keys", users::create_api_key)
            .created()
            // The secret, shown this once.
            .returns_plus::<ApiKeyView>(json!({
                "type": "object",
                "required": ["key"],
                "properties": {"key": {"type": "string"}},
            }));
        r.delete("/users/me/api-keys/{key_id}", users::revoke_api_key);
        r.get("/users/me/notifications", notifications::list)
            .returns_items::<NotificationView>();
        r.post(
            "/users/me/notifications/read-all",
            notifications::mark_all_read,
        )
        .no_content();
        r.patch(
            "/users/me/notifications/{notification_id}/read",
            notifications::mark_read,
        )
        .no_content();
        // Admin: users and global roles
        r.get("/admin/users", admin::list_users)
            .returns_items::<UserView>();
        r.post("/admin/users", admin::create_user)
            .created()
            .returns::<UserView>();
        r.get("/admin/users/{user_id}", admin::get_user)
            .returns::<UserView>();
        r.patch("/admin/users/{user_id}", admin::patch_user)
            .returns::<UserView>();
        r.delete("/admin/users/{user_id}", admin::delete_user);
        r.patch("/admin/users/{user_id}/password", admin::reset_password)
            .no_content();
        r.put("/admin/users/{user_id}/global-roles", admin::assign_roles)
            .returns::<UserView>();
        // Audit: the log as who did what
        r.get("/admin/audit", audit::all)
            .returns_field::<Vec<AuditItem>>("events");
        r.get("/admin/audit/requests/{request_id}", audit::request)
            .returns_field::<Vec<AuditItem>>("events");
        r.get("/admin/global-roles", admin::list_roles)
            .returns_list::<GlobalRoleView>();
        r.post("/admin/global-roles", admin::create_role)
            .created()
            .returns::<GlobalRoleView>();
        r.get("/admin/global-roles/{role_id}", admin::get_role)
            .returns::<GlobalRoleView>();
        r.patch("/admin/global-roles/{role_id}", admin::patch_role)
            .returns::<GlobalRoleView>();
        r.delete("/admin/global-roles/{role_id}", admin::delete_role)
            .ok()
            .returns_message();
        // Plugins: installed list, route proxy, admin lifecycle, marketplace
        r.get("/plugins", plugins::list)
            .returns_field::<Vec<PluginView>>("plugins");
        r.any("/plugins/{plugin_id}/{tail:.*}", plugins::proxy);
        r.get("/admin/plugins/marketplace", plugins::marketplace)
            .error(400);
        r.post(
            "/admin/plugins/marketplace/install",
            plugins::marketplace_install,
        )
        .created()
        .returns::<PluginView>();
        r.post("/admin/plugins", plugins::register)
            .created()
            .returns::<PluginView>();
        r.patch("/admin/plugins/{plugin_id}", plugins::patch)
            .returns::<PluginView>();
        r.delete("/admin/plugins/{plugin_id}", plugins::uninstall)
            .ok()
            .returns_message();
        r.post("/admin/plugins/{plugin_id}/upgrade", plugins::upgrade)
            .returns::<PluginView>();
        r.patch(
            "/admin/plugin-extension-settings",
            plugins::extension_settings,
        )
        // Null when the plugin has no such extension point.
        .returns::<Option<ExtensionSettingView>>();
        // Projects
        r.get("/projects", projects::list)
            .returns_items::<ProjectView>();
        r.post("/projects", projects::create)
            .created()
            .returns::<ProjectView>();
        r.get("/projects/{project_id}/audit", audit::project)
            .returns_field::<Vec<AuditItem>>("events");
        // Plus `plugin_summaries` when plugins wrote some.
        r.get("/projects/{project_id}", projects::get)
            .returns::<ProjectView>();
        r.patch("/projects/{project_id}", projects::patch)
            .returns::<ProjectView>();
        r.delete("/projects/{project_id}", projects::delete)
            .ok()
            .returns_message();
        // Project members and roles
        r.get("/projects/{project_id}/members", projects::members)
            .returns_list::<MemberView>();
        r.post("/projects/{project_id}/members", projects::add_member)
            .created()
            .returns::<MemberView>();
        r.get(
            "/projects/{project_id}/members/me/permissions",
            projects::my_permissions,
        )
        .returns_field::<BTreeMap<String, bool>>("permissions");
        r.patch(
            "/projects/{project_id}/members/{member_id}",
            projects::change_member_role,
        )
        .returns::<MemberView>();
        r.delete(
            "/projects/{project_id}/members/{member_id}",
            projects::remove_member,
        )
        .ok()
        .returns_message();
        r.get("/projects/{project_id}/roles", projects::roles)
            .returns_list::<ProjectRoleView>();
        r.post("/projects/{project_id}/roles", projects::create_role)
            .created()
            .returns::<ProjectRoleView>();
        r.patch(
            "/projects/{project_id}/roles/{role_id}",
            projects::patch_role,
        )
        .returns::<ProjectRoleView>();
        r.delete(
            "/projects/{project_id}/roles/{role_id}",
            projects::delete_role,
        )
        .ok()
        .returns_message();
        // Task configuration
        r.get("/projects/{project_id}/task-types", task_config::list_types)
            .returns_items::<TaskTypeView>();
        r.post(
            "/projects/{project_id}/task-types",
            task_config::create_type,
        )
        .created()
        .returns::<TaskTypeView>();
        r.patch(
            "/projects/{project_id}/task-types/{type_id}",
            task_config::patch_type,
        )
        .returns::<TaskTypeView>();
        r.delete(
            "/projects/{project_id}/task-types/{type_id}",
            task_config::delete_type,
        )
        .ok()
        .returns_message();
        r.put(
            "/projects/{project_id}/task-types/{type_id}/set-default",
            task_config::default_type,
        )
        .returns::<TaskTypeView>();
        r.get(
            "/projects/{project_id}/task-statuses",
            task_config::list_statuses,
        )
        .returns_items::<TaskStatusView>();
        r.post(
            "/projects/{project_id}/task-statuses",
            task_config::create_status,
        )
        .created()
        .returns::<TaskStatusView>();
        r.put(
            "/projects/{project_id}/task-statuses/positions",
            task_config::reorder_statuses,
        )
        .no_content();
        r.patch(
            "/projects/{project_id}/task-statuses/{status_id}",
            task_config::patch_status,
        )
        .returns::<TaskStatusView>();
        r.delete(
            "/projects/{project_id}/task-statuses/{status_id}",
            task_config::delete_status,
        )
        .ok()
        .returns_message();
        r.put(
            "/projects/{project_id}/task-statuses/{status_id}/set-default",
            task_config::default_status,
        )
        .returns::<TaskStatusView>();
        r.get(
            "/projects/{project_id}/custom-fields",
            task_config::list_fields,
        )
        .returns_items::<CustomFieldView>();
        r.post(
            "/projects/{project_id}/custom-fields",
            task_config::create_field,
        )
        .created()
        .returns::<CustomFieldView>();
        r.get(
            "/projects/{project_id}/custom-fields/{field_id}",
            task_config::get_field,
        )
        .returns::<CustomFieldView>();
        r.patch(
            "/projects/{project_id}/custom-fields/{field_id}",
            task_config::patch_field,
        )
        .returns::<CustomFieldView>();
        r.delete(
            "/projects/{project_id}/custom-fields/{field_id}",
            task_config::delete_field,
        )
        .ok()
        .returns_message();
        // Sprints
        r.get("/projects/{project_id}/sprints", sprints::list)
            .returns_items::<SprintView>();
        r.post("/projects/{project_id}/sprints", sprints::create)
            .created()
            .returns::<SprintView>();
        // `?as_of=` answers the sprint as it was: the same shape.
        r.get("/projects/{project_id}/sprints/{sprint_id}", sprints::get)
            .returns::<SprintView>();
        r.patch("/projects/{project_id}/sprints/{sprint_id}", sprints::patch)
            .returns::<SprintView>();
        r.delete(
            "/projects/{project_id}/sprints/{sprint_id}",
            sprints::delete,
        )
        .ok()
        .returns_message();
        r.post(
            "/projects/{project_id}/sprints/{sprint_id}/complete",
            sprints::complete,
        )
        .returns::<SprintView>();
        r.get(
            "/projects/{project_id}/sprints/{sprint_id}/history",
            sprints::history,
        )
        .returns_items::<HistoryEntry>();
        // Interaction views (`?context=sprint|backlog|timeline`)
        r.get("/projects/{project_id}/views", views::list)
            .returns_items::<ViewView>();
        r.post("/projects/{project_id}/views", views::create)
            .created()
            .returns::<ViewView>();
        r.put("/projects/{project_id}/views/positions", views::reorder)
            .no_content();
        r.get("/projects/{project_id}/views/{view_id}", views::get)
            .returns::<ViewView>();
        r.patch("/projects/{project_id}/views/{view_id}", views::patch)
            .returns::<ViewView>();
        r.delete("/projects/{project_id}/views/{view_id}", views::delete);
        r.get(
            "/projects/{project_id}/views/{view_id}/task-positions",
            views::task_positions,
        )
        .returns_items::<TaskPositionView>();
        r.put(
            "/projects/{project_id}/views/{view_id}/task-positions",
            views::put_task_positions,
        )
        .no_content();
        r.put(
            "/projects/{project_id}/views/{view_id}/task-positions/{task_id}",
            views::put_task_position,
        )
        .no_content();
        // Tasks
        r.get("/projects/{project_id}/tasks", tasks::list)
            .returns_items::<TaskView>();
        r.post("/projects/{project_id}/tasks", tasks::create)
            .created()
            .returns::<TaskView>();
        r.get(
            "/projects/{project_id}/tasks/by-number/{number}",
            tasks::by_number,
        )
        .returns::<TaskView>();
        // `?as_of=` answers the task as it was: the same shape.
        r.get("/projects/{project_id}/tasks/{task_id}", tasks::get)
            .returns::<TaskView>();
        r.patch("/projects/{project_id}/tasks/{task_id}", tasks::patch)
            .returns::<TaskView>();
        r.delete("/projects/{project_id}/tasks/{task_id}", tasks::delete)
            .ok()
            .returns_message();
        r.get(
            "/projects/{project_id}/tasks/{task_id}/history",
            tasks::history,
        )
        .returns_items::<HistoryEntry>();
        // Task links
        r.get("/projects/{project_id}/tasks/{task_id}/links", tasks::links)
            .returns_items::<TaskLinkView>();
        r.post(
            "/projects/{project_id}/tasks/{task_id}/links",
            tasks::add_link,
        )
        .created()
        .returns::<TaskLinkView>();
        r.delete(
            "/projects/{project_id}/tasks/{task_id}/links/{link_id}",
            tasks::remove_link,
        );
        // Task activities and comments
        r.get(
            "/projects/{project_id}/tasks/{task_id}/activities",
            tasks::activities,
        )
        .returns_items::<ActivityView>();
        r.post(
            "/projects/{project_id}/tasks/{task_id}/activities/comments",
            tasks::add_comment,
        )
        .created()
        .returns::<ActivityView>();
        r.patch(
            "/projects/{project_id}/tasks/{task_id}/activities/comments/{comment_id}",
            tasks::edit_comment,
        )
        .returns::<ActivityView>();
        r.delete(
            "/projects/{project_id}/tasks/{task_id}/activities/comments/{comment_id}",
            tasks::delete_comment,
        );
        r.get(
            "/projects/{project_id}/tasks/{task_id}/activities/{activity_id}/diff",
            tasks::diff,
        )
        .returns_json(task_diff_schema());
        r.post(
            "/projects/{project_id}/tasks/{task_id}/activities/{activity_id}/revert",
            tasks::revert,
        )
        .returns::<TaskView>();
        agent_routes(r);
        docs::routes(r);
        files::task_routes(r);
        files::storage_routes(r);
    });
}

/// AI agents, their sub-resources, chat and conversations (seed pages 06,
/// 12, 15).
fn agent_routes<R: Routes>(r: &mut R) {
    const A: &str = "/projects/{project_id}/agents";
    const C: &str = "/projects/{project_id}/conversations";
    r.get("/agents/skill-templates", agents::skill_templates)
        .returns_json(skill_templates_schema());
    // Provider -> model ids.
    r.get("/agents/llm-models", agents::llm_models)
        .returns_json(json!({
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        }));
    // Agents are maps (their settings merged in): objects, no more.
    r.get(A, agents::list)
        .returns_json(json!({"type": "array", "items": {"type": "object"}}));
    r.post(A, agents::create).created();
    r.get(&format!("{A}/{{agent_id}}"), agents::get);
    r.patch(&format!("{A}/{{agent_id}}"), agents::patch);
    r.delete(&format!("{A}/{{agent_id}}"), agents::delete);
    r.get(&format!("{A}/{{agent_id}}/mcp-servers"), agents::list_mcp)
        .returns_list::<McpServerView>();
    r.post(&format!("{A}/{{agent_id}}/mcp-servers"), agents::create_mcp)
        .created()
        .returns::<McpServerView>();
    r.get(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        agents::get_mcp,
    )
    .returns::<McpServerView>();
    r.patch(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        agents::patch_mcp,
    )
    .returns::<McpServerView>();
    r.delete(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        agents::delete_mcp,
    );
    r.get(&format!("{A}/{{agent_id}}/skills"), agents::list_skills)
        .returns_list::<SkillView>();
    r.post(&format!("{A}/{{agent_id}}/skills"), agents::create_skill)
        .created()
        .returns::<SkillView>();
    r.get(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        agents::get_skill,
    )
    .returns::<SkillView>();
    r.patch(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        agents::patch_skill,
    )
    .returns::<SkillView>();
    r.delete(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        agents::delete_skill,
    );
    r.get(
        &format!("{A}/{{agent_id}}/chat-sessions"),
        agents::list_chat_sessions,
    )
    .returns_list::<ChatSessionView>();
    r.post(
        &format!("{A}/{{agent_id}}/chat-sessions"),
        agents::start_chat_session,
    )
    .created()
    // The conversation the first message started (null if already gone).
    .returns_plus::<ChatSessionView>(json!({
        "type": "object",
        "required": ["conversation_id", "conversation"],
        "properties": {"conversation_id": {"type": "string", "format": "uuid"}},
    }));
    r.post(
        &format!("{A}/{{agent_id}}/chat-sessions/{{session_id}}/messages"),
        agents::post_chat_message,
    )
    .created()
    .returns_field::<Option<ConversationView>>("conversation");
    r.post(
        "/projects/{project_id}/tasks/{task_id}/write-with-ai",
        agents::write_with_ai,
    )
    .created()
    .returns_field::<ConversationView>("conversation");
    r.get(C, conversations::list)
        .returns_items::<ConversationView>();
    r.get(&format!("{C}/{{conversation_id}}"), conversations::get)
        .returns::<ConversationView>();
    r.get(
        &format!("{C}/{{conversation_id}}/events"),
        conversations::events,
    )
    .returns::<ConversationEventPage>();
    r.post(
        &format!("{C}/{{conversation_id}}/stop"),
        conversations::stop,
    )
    .returns_message();
    r.post(
        &format!("{C}/{{conversation_id}}/messages"),
        conversations::message,
    )
    .returns_message();
}

// The `data` of handlers that build it with `json!` from parts without a
// Rust type of their own, written out by hand.

/// A task activity's diff: the event, and per field what it was and became.
fn task_diff_schema() -> Value {
    json!({
        "type": "object",
        "required": ["activity_id", "event_id", "event_type", "version", "recorded_at", "changes"],
        "properties": {
            "activity_id": {"type": "string", "format": "uuid"},
            "event_id": {"type": "string", "format": "uuid"},
            "event_type": {"type": "string"},
            "version": {"type": "integer"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "changes": {"type": "array", "items": {
                "type": "object",
                "required": ["field", "old", "new"],
                "properties": {
                    "field": {"type": "string"},
                    "diff": {"type": "string"},
                    "old_id": {"type": "string", "format": "uuid"},
                    "new_id": {"type": "string", "format": "uuid"},
                },
            }},
        },
    })
}

/// `domain::agent::SkillTemplate`, which has no schema of its own.
fn skill_templates_schema() -> Value {
    json!({"type": "array", "items": {
        "type": "object",
        "required": ["slug", "name", "description", "content", "triggers"],
        "properties": {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "content": {"type": "string"},
            "triggers": {"type": "array", "items": {"type": "string"}},
        },
    }})
}

/// Two document versions compared: which, the title's change, a unified
/// diff of the content's text.
pub(crate) fn doc_diff_schema() -> Value {
    let side = json!({
        "type": "object",
        "required": ["id", "snapshot_number", "title", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "snapshot_number": {"type": "integer"},
            "title": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    });
    json!({
        "type": "object",
        "required": ["document_id", "from", "to", "title", "content_changed", "content_diff"],
        "properties": {
            "document_id": {"type": "string", "format": "uuid"},
            "from": side,
            "to": side,
            // Null when the title did not change.
            "title": {"anyOf": [
                {
                    "type": "object",
                    "required": ["old", "new"],
                    "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                },
                {"type": "null"},
            ]},
            "content_changed": {"type": "boolean"},
            "content_diff": {"type": "string"},
        },
    })
}

/// An upload begun: one presigned `PUT`, or the parts of a multipart one.
pub(crate) fn upload_schema() -> Value {
    json!({
        "type": "object",
        "required": ["file_id", "is_multipart"],
        "properties": {
            "file_id": {"type": "string", "format": "uuid"},
            "is_multipart": {"type": "boolean"},
            "upload_url": {"type": "string"},
            "multipart": {
                "type": "object",
                "required": ["upload_id", "part_size", "parts"],
                "properties": {
                    "upload_id": {"type": "string"},
                    "part_size": {"type": "integer"},
                    "parts": {"type": "array", "items": {
                        "type": "object",
                        "required": ["part_number", "upload_url", "size"],
                        "properties": {
                            "part_number": {"type": "integer"},
                            "upload_url": {"type": "string"},
                            "size": {"type": "integer"},
                        },
                    }},
                },
            },
        },
    })
}

/// A presigned download URL and how long it lives (seconds).
pub(crate) fn download_url_schema() -> Value {
    json!({
        "type": "object",
        "required": ["url", "expires_in"],
        "properties": {
            "url": {"type": "string"},
            "expires_in": {"type": "integer", "minimum": 0},
        },
    })
}

/// Offset pagination: `page` from 1, `page_size` 1-100; values outside
/// fall back to the defaults, as Paca does.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Paging {
    page: Option<i64>,
    page_size: Option<i64>,
}

impl Paging {
    pub fn new(page: Option<i64>, page_size: Option<i64>) -> Self {
        Self { page, page_size }
    }

    pub fn resolve(&self) -> (i64, i64) {
        // Past the last row every page is empty; the cap keeps
        // `(page - 1) * page_size` far from overflowing.
        const MAX_PAGE: i64 = 1 << 40;
        let page = self.page.filter(|p| *p >= 1).unwrap_or(1).min(MAX_PAGE);
        let page_size = self
            .page_size
            .filter(|s| (1..=100).contains(s))
            .unwrap_or(20);
        (page, page_size)
    }
}

/// Permissions arrive as `{"perm": true}` maps (Paca's web app) or arrays.
pub fn parse_permissions(value: Value) -> ApiResult<Vec<String>> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad_request("permissions must be strings")),
            })
            .collect(),
        Value::Object(map) => Ok(map
            .into_iter()
            .filter(|(_, granted)| granted.as_bool().unwrap_or(false))
            .map(|(k, _)| k)
            .collect()),
        Value::Null => Ok(vec![]),
        _ => Err(ApiError::bad_request(
            "permissions must be an array or a {permission: true} map",
        )),
    }
}
