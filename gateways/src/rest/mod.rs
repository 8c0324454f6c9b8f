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

use actix_web::web;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Every route of the API, readable as a table of contents.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            // Auth
            .route("/auth/login", web::post().to(session::login))
            .route("/auth/refresh", web::post().to(session::refresh))
            .route("/auth/logout", web::post().to(session::logout))
            // Users (self-service)
            .route("/users/me", web::get().to(users::me))
            .route("/users/me", web::patch().to(users::update_me))
            .route(
                "/users/me/password",
                web::patch().to(users::change_password),
            )
            .route(
                "/users/me/global-permissions",
                web::get().to(users::global_permissions),
            )
            .route("/users/me/api-keys", web::get().to(users::list_api_keys))
            .route("/users/me/api-keys", web::post().to(users::create_api_key))
            .route(
                "/users/me/api-keys/{key_id}",
                web::delete().to(users::revoke_api_key),
            )
            .route(
                "/users/me/notifications",
                web::get().to(notifications::list),
            )
            .route(
                "/users/me/notifications/read-all",
                web::post().to(notifications::mark_all_read),
            )
            .route(
                "/users/me/notifications/{notification_id}/read",
                web::patch().to(notifications::mark_read),
            )
            // Admin: users and global roles
            .route("/admin/users", web::get().to(admin::list_users))
            .route("/admin/users", web::post().to(admin::create_user))
            .route("/admin/users/{user_id}", web::get().to(admin::get_user))
            .route("/admin/users/{user_id}", web::patch().to(admin::patch_user))
            .route(
                "/admin/users/{user_id}",
                web::delete().to(admin::delete_user),
            )
            .route(
                "/admin/users/{user_id}/password",
                web::patch().to(admin::reset_password),
            )
            .route(
                "/admin/users/{user_id}/global-roles",
                web::put().to(admin::assign_roles),
            )
            // Audit: the log as who did what
            .route("/admin/audit", web::get().to(audit::all))
            .route(
                "/admin/audit/requests/{request_id}",
                web::get().to(audit::request),
            )
            .route("/admin/global-roles", web::get().to(admin::list_roles))
            .route("/admin/global-roles", web::post().to(admin::create_role))
            .route(
                "/admin/global-roles/{role_id}",
                web::get().to(admin::get_role),
            )
            .route(
                "/admin/global-roles/{role_id}",
                web::patch().to(admin::patch_role),
            )
            .route(
                "/admin/global-roles/{role_id}",
                web::delete().to(admin::delete_role),
            )
            // Plugins: installed list, route proxy, admin lifecycle, marketplace
            .route("/plugins", web::get().to(plugins::list))
            .route(
                "/plugins/{plugin_id}/{tail:.*}",
                web::route().to(plugins::proxy),
            )
            .route(
                "/admin/plugins/marketplace",
                web::get().to(plugins::marketplace),
            )
            .route(
                "/admin/plugins/marketplace/install",
                web::post().to(plugins::marketplace_install),
            )
            .route("/admin/plugins", web::post().to(plugins::register))
            .route(
                "/admin/plugins/{plugin_id}",
                web::patch().to(plugins::patch),
            )
            .route(
                "/admin/plugins/{plugin_id}",
                web::delete().to(plugins::uninstall),
            )
            .route(
                "/admin/plugins/{plugin_id}/upgrade",
                web::post().to(plugins::upgrade),
            )
            .route(
                "/admin/plugin-extension-settings",
                web::patch().to(plugins::extension_settings),
            )
            // Projects
            .route("/projects", web::get().to(projects::list))
            .route("/projects", web::post().to(projects::create))
            .route(
                "/projects/{project_id}/audit",
                web::get().to(audit::project),
            )
            .route("/projects/{project_id}", web::get().to(projects::get))
            .route("/projects/{project_id}", web::patch().to(projects::patch))
            .route("/projects/{project_id}", web::delete().to(projects::delete))
            // Project members and roles
            .route(
                "/projects/{project_id}/members",
                web::get().to(projects::members),
            )
            .route(
                "/projects/{project_id}/members",
                web::post().to(projects::add_member),
            )
            .route(
                "/projects/{project_id}/members/me/permissions",
                web::get().to(projects::my_permissions),
            )
            .route(
                "/projects/{project_id}/members/{member_id}",
                web::patch().to(projects::change_member_role),
            )
            .route(
                "/projects/{project_id}/members/{member_id}",
                web::delete().to(projects::remove_member),
            )
            .route(
                "/projects/{project_id}/roles",
                web::get().to(projects::roles),
            )
            .route(
                "/projects/{project_id}/roles",
                web::post().to(projects::create_role),
            )
            .route(
                "/projects/{project_id}/roles/{role_id}",
                web::patch().to(projects::patch_role),
            )
            .route(
                "/projects/{project_id}/roles/{role_id}",
                web::delete().to(projects::delete_role),
            )
            // Task configuration
            .route(
                "/projects/{project_id}/task-types",
                web::get().to(task_config::list_types),
            )
            .route(
                "/projects/{project_id}/task-types",
                web::post().to(task_config::create_type),
            )
            .route(
                "/projects/{project_id}/task-types/{type_id}",
                web::patch().to(task_config::patch_type),
            )
            .route(
                "/projects/{project_id}/task-types/{type_id}",
                web::delete().to(task_config::delete_type),
            )
            .route(
                "/projects/{project_id}/task-types/{type_id}/set-default",
                web::put().to(task_config::default_type),
            )
            .route(
                "/projects/{project_id}/task-statuses",
                web::get().to(task_config::list_statuses),
            )
            .route(
                "/projects/{project_id}/task-statuses",
                web::post().to(task_config::create_status),
            )
            .route(
                "/projects/{project_id}/task-statuses/positions",
                web::put().to(task_config::reorder_statuses),
            )
            .route(
                "/projects/{project_id}/task-statuses/{status_id}",
                web::patch().to(task_config::patch_status),
            )
            .route(
                "/projects/{project_id}/task-statuses/{status_id}",
                web::delete().to(task_config::delete_status),
            )
            .route(
                "/projects/{project_id}/task-statuses/{status_id}/set-default",
                web::put().to(task_config::default_status),
            )
            .route(
                "/projects/{project_id}/custom-fields",
                web::get().to(task_config::list_fields),
            )
            .route(
                "/projects/{project_id}/custom-fields",
                web::post().to(task_config::create_field),
            )
            .route(
                "/projects/{project_id}/custom-fields/{field_id}",
                web::get().to(task_config::get_field),
            )
            .route(
                "/projects/{project_id}/custom-fields/{field_id}",
                web::patch().to(task_config::patch_field),
            )
            .route(
                "/projects/{project_id}/custom-fields/{field_id}",
                web::delete().to(task_config::delete_field),
            )
            // Sprints
            .route(
                "/projects/{project_id}/sprints",
                web::get().to(sprints::list),
            )
            .route(
                "/projects/{project_id}/sprints",
                web::post().to(sprints::create),
            )
            .route(
                "/projects/{project_id}/sprints/{sprint_id}",
                web::get().to(sprints::get),
            )
            .route(
                "/projects/{project_id}/sprints/{sprint_id}",
                web::patch().to(sprints::patch),
            )
            .route(
                "/projects/{project_id}/sprints/{sprint_id}",
                web::delete().to(sprints::delete),
            )
            .route(
                "/projects/{project_id}/sprints/{sprint_id}/complete",
                web::post().to(sprints::complete),
            )
            .route(
                "/projects/{project_id}/sprints/{sprint_id}/history",
                web::get().to(sprints::history),
            )
            // Interaction views (`?context=sprint|backlog|timeline`)
            .route("/projects/{project_id}/views", web::get().to(views::list))
            .route(
                "/projects/{project_id}/views",
                web::post().to(views::create),
            )
            .route(
                "/projects/{project_id}/views/positions",
                web::put().to(views::reorder),
            )
            .route(
                "/projects/{project_id}/views/{view_id}",
                web::get().to(views::get),
            )
            .route(
                "/projects/{project_id}/views/{view_id}",
                web::patch().to(views::patch),
            )
            .route(
                "/projects/{project_id}/views/{view_id}",
                web::delete().to(views::delete),
            )
            .route(
                "/projects/{project_id}/views/{view_id}/task-positions",
                web::get().to(views::task_positions),
            )
            .route(
                "/projects/{project_id}/views/{view_id}/task-positions",
                web::put().to(views::put_task_positions),
            )
            .route(
                "/projects/{project_id}/views/{view_id}/task-positions/{task_id}",
                web::put().to(views::put_task_position),
            )
            // Tasks
            .route("/projects/{project_id}/tasks", web::get().to(tasks::list))
            .route(
                "/projects/{project_id}/tasks",
                web::post().to(tasks::create),
            )
            .route(
                "/projects/{project_id}/tasks/by-number/{number}",
                web::get().to(tasks::by_number),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}",
                web::get().to(tasks::get),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}",
                web::patch().to(tasks::patch),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}",
                web::delete().to(tasks::delete),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/history",
                web::get().to(tasks::history),
            )
            // Task links
            .route(
                "/projects/{project_id}/tasks/{task_id}/links",
                web::get().to(tasks::links),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/links",
                web::post().to(tasks::add_link),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/links/{link_id}",
                web::delete().to(tasks::remove_link),
            )
            // Task activities and comments
            .route(
                "/projects/{project_id}/tasks/{task_id}/activities",
                web::get().to(tasks::activities),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/activities/comments",
                web::post().to(tasks::add_comment),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/activities/comments/{comment_id}",
                web::patch().to(tasks::edit_comment),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/activities/comments/{comment_id}",
                web::delete().to(tasks::delete_comment),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/activities/{activity_id}/diff",
                web::get().to(tasks::diff),
            )
            .route(
                "/projects/{project_id}/tasks/{task_id}/activities/{activity_id}/revert",
                web::post().to(tasks::revert),
            )
            .configure(agent_routes)
            .configure(docs::routes)
            .configure(files::task_routes)
            .configure(files::storage_routes),
    );
}

/// AI agents, their sub-resources, chat and conversations (seed pages 06,
/// 12, 15).
fn agent_routes(cfg: &mut web::ServiceConfig) {
    const A: &str = "/projects/{project_id}/agents";
    const C: &str = "/projects/{project_id}/conversations";
    cfg.route(
        "/agents/skill-templates",
        web::get().to(agents::skill_templates),
    )
    .route("/agents/llm-models", web::get().to(agents::llm_models))
    .route(A, web::get().to(agents::list))
    .route(A, web::post().to(agents::create))
    .route(&format!("{A}/{{agent_id}}"), web::get().to(agents::get))
    .route(&format!("{A}/{{agent_id}}"), web::patch().to(agents::patch))
    .route(
        &format!("{A}/{{agent_id}}"),
        web::delete().to(agents::delete),
    )
    .route(
        &format!("{A}/{{agent_id}}/mcp-servers"),
        web::get().to(agents::list_mcp),
    )
    .route(
        &format!("{A}/{{agent_id}}/mcp-servers"),
        web::post().to(agents::create_mcp),
    )
    .route(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        web::get().to(agents::get_mcp),
    )
    .route(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        web::patch().to(agents::patch_mcp),
    )
    .route(
        &format!("{A}/{{agent_id}}/mcp-servers/{{server_id}}"),
        web::delete().to(agents::delete_mcp),
    )
    .route(
        &format!("{A}/{{agent_id}}/skills"),
        web::get().to(agents::list_skills),
    )
    .route(
        &format!("{A}/{{agent_id}}/skills"),
        web::post().to(agents::create_skill),
    )
    .route(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        web::get().to(agents::get_skill),
    )
    .route(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        web::patch().to(agents::patch_skill),
    )
    .route(
        &format!("{A}/{{agent_id}}/skills/{{skill_id}}"),
        web::delete().to(agents::delete_skill),
    )
    .route(
        &format!("{A}/{{agent_id}}/chat-sessions"),
        web::get().to(agents::list_chat_sessions),
    )
    .route(
        &format!("{A}/{{agent_id}}/chat-sessions"),
        web::post().to(agents::start_chat_session),
    )
    .route(
        &format!("{A}/{{agent_id}}/chat-sessions/{{session_id}}/messages"),
        web::post().to(agents::post_chat_message),
    )
    .route(
        "/projects/{project_id}/tasks/{task_id}/write-with-ai",
        web::post().to(agents::write_with_ai),
    )
    .route(C, web::get().to(conversations::list))
    .route(
        &format!("{C}/{{conversation_id}}"),
        web::get().to(conversations::get),
    )
    .route(
        &format!("{C}/{{conversation_id}}/events"),
        web::get().to(conversations::events),
    )
    .route(
        &format!("{C}/{{conversation_id}}/stop"),
        web::post().to(conversations::stop),
    )
    .route(
        &format!("{C}/{{conversation_id}}/messages"),
        web::post().to(conversations::message),
    );
}

/// Offset pagination: `page` from 1, `page_size` 1-100; values outside
/// fall back to the defaults, as Paca does.
#[derive(Debug, Deserialize)]
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
