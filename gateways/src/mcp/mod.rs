//! MCP: Paca's 62 tools (seed page 18) as a client of the REST API.
//!
//! Two transports share one tool implementation:
//! - `paca mcp` ([`stdio`]): a local process configured exactly like Paca's
//!   npm server (`PACA_API_KEY`, `PACA_API_URL`, `PACA_GATEWAY_URL`,
//!   `PACA_AGENT_ID`, `PACA_PROJECT_ID`);
//! - `/api/mcp` on the API port ([`http`]): MCP streamable HTTP, where each
//!   request's own credentials are forwarded to the server's REST API on its
//!   loopback address, so every permission check stays in the REST layer.

pub mod client;
pub mod format;
pub mod http;
pub mod markdown;
pub mod permissions;
pub mod plugins;
pub mod stdio;
pub mod tools;

use std::collections::HashSet;

use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig,
    Tool,
};
use serde_json::Value;

use self::client::Api;
use self::permissions::{Granted, Mode};
use self::plugins::PluginTool;

/// The server's identity in `initialize`.
pub fn server_config() -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new("paca", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Paca project management: projects, tasks, sprints, docs, members, roles, views and \
         custom fields. Resolve project ids with list_projects (match task_id_prefix for \
         references like PAC-42), then use get_task_by_number. Descriptions, doc content and \
         comments are Markdown.",
        )
}

/// Everything one MCP session serves: the REST client acting as the caller,
/// the mode, the project it is locked to, and the tool list.
pub struct Session {
    pub api: Api,
    pub mode: Mode,
    pub project_lock: Option<String>,
    pub granted: Granted,
    pub plugin_tools: Vec<PluginTool>,
}

fn core_names() -> HashSet<&'static str> {
    tools::catalog().iter().map(|t| t.name).collect()
}

impl Session {
    /// Reads the permissions the mode needs and the plugin tools, once (as
    /// Paca does at startup; restart after role changes).
    pub async fn start(api: Api, mode: Mode, project_id: Option<String>) -> Self {
        let granted = permissions::fetch(&api, mode, project_id.as_deref()).await;
        let plugin_tools = plugins::load(&api, &core_names()).await;
        Self {
            api,
            mode,
            project_lock: project_id,
            granted,
            plugin_tools,
        }
    }

    /// Core tools the permissions grant, then plugin tools (not filtered:
    /// the plugin's routes authorize).
    pub fn tools(&self) -> Vec<Tool> {
        let mut list: Vec<Tool> = tools::catalog()
            .iter()
            .filter(|t| {
                permissions::tool_visible(
                    self.mode,
                    &self.granted,
                    t.permission,
                    t.requires_project,
                )
            })
            .map(|t| Tool::new(t.name, t.description, (t.schema)()))
            .collect();
        list.extend(self.plugin_tools.iter().map(|p| p.tool.clone()));
        list
    }

    pub async fn call(&self, name: &str, args: Option<JsonObject>) -> CallToolResult {
        call_tool(
            &self.api,
            self.project_lock.as_deref(),
            &self.plugin_tools,
            name,
            args,
        )
        .await
    }
}

fn text_result(text: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// In single-project mode a `projectId` (or a plugin's `project_id`) other
/// than the configured project is refused before any API request.
pub fn project_lock_error(lock: Option<&str>, args: &JsonObject) -> Option<String> {
    let lock = lock?;
    for key in ["projectId", "project_id"] {
        if let Some(given) = args.get(key) {
            let given_text = given
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| given.to_string());
            if given_text != lock {
                return Some(format!(
                    "Error: projectId must be {lock} in single-project agent mode. Got {given_text}"
                ));
            }
        }
    }
    None
}

/// One `tools/call`: the project lock, then a plugin route or a core tool;
/// every failure is an `isError` result, never a protocol error.
pub async fn call_tool(
    api: &Api,
    lock: Option<&str>,
    plugin_tools: &[PluginTool],
    name: &str,
    args: Option<JsonObject>,
) -> CallToolResult {
    let args = args.unwrap_or_default();
    if let Some(message) = project_lock_error(lock, &args) {
        return error_result(message);
    }
    if let Some(tool) = plugin_tools.iter().find(|t| t.tool.name == name) {
        return match plugins::call(api, tool, &args).await {
            Ok(text) => text_result(text),
            Err(e) => error_result(format!("Plugin tool \"{name}\" failed: {e}")),
        };
    }
    let ctx = tools::Ctx { api: api.clone() };
    match tools::call(&ctx, name, Value::Object(args)).await {
        Some(Ok(text)) => text_result(text),
        Some(Err(e)) => error_result(e.text()),
        None => error_result(format!("Error: Unknown tool: {name}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lock_refuses_other_projects_only() {
        let args = |v: Value| v.as_object().unwrap().clone();
        assert!(project_lock_error(None, &args(json!({"projectId": "b"}))).is_none());
        assert!(project_lock_error(Some("a"), &args(json!({"projectId": "a"}))).is_none());
        assert!(project_lock_error(Some("a"), &args(json!({"name": "x"}))).is_none());
        let msg = project_lock_error(Some("a"), &args(json!({"projectId": "b"}))).unwrap();
        assert_eq!(
            msg,
            "Error: projectId must be a in single-project agent mode. Got b"
        );
        assert!(project_lock_error(Some("a"), &args(json!({"project_id": "c"}))).is_some());
    }
}
