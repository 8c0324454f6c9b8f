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

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::openapi::Routes;

/// Every route of the API, readable as a table of contents.
pub fn routes<R: Routes>(r: &mut R) {
    r.prefixed("/api/v1", |r| {
        // Auth
        r.post("/auth/login", session::login)
            .error(401)
            .error(403)
            .error(429);
        r.post("/auth/refresh", session::refresh).error(401);
        r.post("/auth/logout", session::logout);
        // Users (self-service)
        r.get("/users/me", users::me);
        r.patch("/users/me", users::update_me);
        r.patch("/users/me/password", users::change_password)
            .no_content()
            // The current password is wrong.
            .error(422);
        r.get("/users/me/global-permissions", users::global_permissions);
        r.get("/users/me/api-keys", users::list_api_keys);
        r.post("/users/me/api-keys", users::create_api_key)
            .created();
        r.delete("/users/me/api-keys/{key_id}", users::revoke_api_key);
        r.get("/users/me/notifications", notifications::list);
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
        r.get("/admin/users", admin::list_users);
        r.post("/admin/users", admin::create_user).created();
        r.get("/admin/users/{user_id}", admin::get_user);
        r.patch("/admin/users/{user_id}", admin::patch_user);
        r.delete("/admin/users/{user_id}", admin::delete_user);
        r.patch("/admin/users/{user_id}/password", admin::reset_password)
            .no_content();
        r.put("/admin/users/{user_id}/global-roles", admin::assign_roles);
        // Audit: the log as who did what
        r.get("/admin/audit", audit::all);
        r.get("/admin/audit/requests/{request_id}", audit::request);
        r.get("/admin/global-roles", admin::list_roles);
        r.post("/admin/global-roles", admin::create_role).created();
        r.get("/admin/global-roles/{role_id}", admin::get_role);
        r.patch("/admin/global-roles/{role_id}", admin::patch_role);
        r.delete("/admin/global-roles/{role_id}", admin::delete_role)
            .ok();
        // Plugins: installed list, route proxy, admin lifecycle, marketplace
        r.get("/plugins", plugins::list);
        r.any("/plugins/{plugin_id}/{tail:.*}", plugins::proxy);
        r.get("/admin/plugins/marketplace", plugins::marketplace)
            .error(400);
        r.post(
            "/admin/plugins/marketplace/install",
            plugins::marketplace_install,
        )
        .created();
        r.post("/admin/plugins", plugins::register).created();
        r.patch("/admin/plugins/{plugin_id}", plugins::patch);
        r.delete("/admin/plugins/{plugin_id}", plugins::uninstall)
            .ok();
        r.post("/admin/plugins/{plugin_id}/upgrade", plugins::upgrade);
        r.patch(
            "/admin/plugin-extension-settings",
            plugins::extension_settings,
        );
        // Projects
        r.get("/projects", projects::list);
        r.post("/projects", projects::create).created();
        r.get("/projects/{project_id}/audit", audit::project);
        r.get("/projects/{project_id}", projects::get);
        r.patch("/projects/{project_id}", projects::patch);
        r.delete("/projects/{project_id}", projects::delete).ok();
        // Project members and roles
        r.get("/projects/{project_id}/members", projects::members);
        r.post("/projects/{project_id}/members", projects::add_member)
            .created();
        r.get(
            "/projects/{project_id}/members/me/permissions",
            projects::my_permissions,
        );
        r.patch(
            "/projects/{project_id}/members/{member_id}",
            projects::change_member_role,
        );
        r.delete(
            "/projects/{project_id}/members/{member_id}",
            projects::remove_member,
        )
        .ok();
        r.get("/projects/{project_id}/roles", projects::roles);
        r.post("/projects/{project_id}/roles", projects::create_role)
            .created();
        r.patch(
            "/projects/{project_id}/roles/{role_id}",
            projects::patch_role,
        );
        r.delete(
            "/projects/{project_id}/roles/{role_id}",
            projects::delete_role,
        )
        .ok();
        // Task configuration
        r.get("/projects/{project_id}/task-types", task_config::list_types);
        r.post(
            "/projects/{project_id}/task-types",
            task_config::create_type,
        )
        .created();
        r.patch(
            "/projects/{project_id}/task-types/{type_id}",
            task_config::patch_type,
        );
        r.delete(
            "/projects/{project_id}/task-types/{type_id}",
            task_config::delete_type,
        )
        .ok();
        r.put(
            "/projects/{project_id}/task-types/{type_id}/set-default",
            task_config::default_type,
        );
        r.get(
            "/projects/{project_id}/task-statuses",
            task_config::list_statuses,
        );
        r.post(
            "/projects/{project_id}/task-statuses",
            task_config::create_status,
        )
        .created();
        r.put(
            "/projects/{project_id}/task-statuses/positions",
            task_config::reorder_statuses,
        )
        .no_content();
        r.patch(
            "/projects/{project_id}/task-statuses/{status_id}",
            task_config::patch_status,
        );
        r.delete(
            "/projects/{project_id}/task-statuses/{status_id}",
            task_config::delete_status,
        )
        .ok();
        r.put(
            "/projects/{project_id}/task-statuses/{status_id}/set-default",
            task_config::default_status,
        );
        r.get(
            "/projects/{project_id}/custom-fields",
            task_config::list_fields,
        );
        r.post(
            "/projects/{project_id}/custom-fields",
            task_config::create_field,
        )
        .created();
        r.get(
            "/projects/{project_id}/custom-fields/{field_id}",
            task_config::get_field,
        );
        r.patch(
            "/projects/{project_id}/custom-fields/{field_id}",
            task_config::patch_field,
        );
        r.delete(
            "/projects/{project_id}/custom-fields/{field_id}",
            task_config::delete_field,
        )
        .ok();
        // Sprints
        r.get("/projects/{project_id}/sprints", sprints::list);
        r.post("/projects/{project_id}/sprints", sprints::create)
            .created();
        r.get("/projects/{project_id}/sprints/{sprint_id}", sprints::get);
        r.patch("/projects/{project_id}/sprints/{sprint_id}", sprints::patch);
        r.delete(
            "/projects/{project_id}/sprints/{sprint_id}",
            sprints::delete,
        )
        .ok();
        r.post(
            "/projects/{project_id}/sprints/{sprint_id}/complete",
            sprints::complete,
        );
        r.get(
            "/projects/{project_id}/sprints/{sprint_id}/history",
            sprints::history,
        );
        // Interaction views (`?context=sprint|backlog|timeline`)
        r.get("/projects/{project_id}/views", views::list);
        r.post("/projects/{project_id}/views", views::create)
            .created();
        r.put("/projects/{project_id}/views/positions", views::reorder)
            .no_content();
        r.get("/projects/{project_id}/views/{view_id}", views::get);
        r.patch("/projects/{project_id}/views/{view_id}", views::patch);
        r.delete("/projects/{project_id}/views/{view_id}", views::delete);
        r.get(
            "/projects/{project_id}/views/{view_id}/task-positions",
            views::task_positions,
        );
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
        r.get("/projects/{project_id}/tasks", tasks::list);
        r.post("/projects/{project_id}/tasks", tasks::create)
            .created();
        r.get(
            "/projects/{project_id}/tasks/by-number/{number}",
            tasks::by_number,
        );
        r.get("/projects/{project_id}/tasks/{task_id}", tasks::get);
        r.patch("/projects/{project_id}/tasks/{task_id}", tasks::patch);
        r.delete("/projects/{project_id}/tasks/{task_id}", tasks::delete)
            .ok();
        r.get(
            "/projects/{project_id}/tasks/{task_id}/history",
            tasks::history,
        );
        // Task links
        r.get("/projects/{project_id}/tasks/{task_id}/links", tasks::links);
        r.post(
            "/projects/{project_id}/tasks/{task_id}/links",
            tasks::add_link,
        )
        .created();
        r.delete(
            "/projects/{project_id}/tasks/{task_id}/links/{link_id}",
            tasks::remove_link,
        );
        // Task activities and comments
        r.get(
            "/projects/{project_id}/tasks/{task_id}/activities",
            tasks::activities,
        );
        r.post(
            "/projects/{project_id}/tasks/{task_id}/activities/comments",
            tasks::add_comment,
        )
        .created();
        r.patch(
            "/projects/{project_id}/tasks/{task_id}/activities/comments/{comment_id}",
            tasks::edit_comment,
        );
        r.delete(
            "/projects/{project_id}/tasks/{task_id}/activities/comments/{comment_id}",
            tasks::delete_comment,
        );
        r.get(
            "/projects/{project_id}/tasks/{task_id}/activities/{activity_id}/diff",
            tasks::diff,
        );
        r.post(
            "/projects/{project_id}/tasks/{task_id}/activities/{activity_id}/revert",
            tasks::revert,
        );
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
    r.get("/agents/skill-templates", agents::skill_templates);
    r.get("/agents/llm-models", agents::llm_models);
    r.get(A, agents::list);
    r.post(A, agents::create).created();
    r.get(&format!("{A}/{{agent_id}}"), agents::get);
    r.patch(&format!("{A}/{{agent_id}}"), agents::patch);
    r.delete(&format!("{A}/{{agent_id}}"), agents::delete);
    r.get(&format!("{A}/{{agent_id}}/mcp-servers"), agents::list_mcp);
    r.post(&format!("{A}/{{agent_id}}/mcp-servers"), agents::create_mcp)
        .created();
    r.get(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        agents::get_mcp,
    );
    r.patch(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        agents::patch_mcp,
    );
    r.delete(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        agents::delete_mcp,
    );
    r.get(&format!("{A}/{{agent_id}}/skills"), agents::list_skills);
    r.post(&format!("{A}/{{agent_id}}/skills"), agents::create_skill)
        .created();
    r.get(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        agents::get_skill,
    );
    r.patch(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        agents::patch_skill,
    );
    r.delete(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        agents::delete_skill,
    );
    r.get(
        &format!("{A}/{{agent_id}}/chat-sessions"),
        agents::list_chat_sessions,
    );
    r.post(
        &format!("{A}/{{agent_id}}/chat-sessions"),
        agents::start_chat_session,
    )
    .created();
    r.post(
        &format!("{A}/{{agent_id}}/chat-sessions/{{session_id}}/messages"),
        agents::post_chat_message,
    )
    .created();
    r.post(
        "/projects/{project_id}/tasks/{task_id}/write-with-ai",
        agents::write_with_ai,
    )
    .created();
    r.get(C, conversations::list);
    r.get(&format!("{C}/{{conversation_id}}"), conversations::get);
    r.get(
        &format!("{C}/{{conversation_id}}/events"),
        conversations::events,
    );
    r.post(
        &format!("{C}/{{conversation_id}}/stop"),
        conversations::stop,
    );
    r.post(
        &format!("{C}/{{conversation_id}}/messages"),
        conversations::message,
    );
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
