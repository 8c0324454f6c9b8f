//! Plugin tools. Paca imports each plugin's `mcp.remoteEntryUrl` JavaScript
//! into its MCP process; we run no plugin code here. A plugin declares its
//! tools in its manifest and each tool names the plugin route it calls:
//!
//! ```json
//! "mcp": { "tools": [ {
//!     "name": "checklist_list_items",
//!     "description": "List checklist items of a task",
//!     "inputSchema": { "type": "object", "properties": {
//!         "project_id": {"type": "string"}, "task_id": {"type": "string"} },
//!         "required": ["project_id", "task_id"] },
//!     "route": { "method": "GET", "path": "projects/{project_id}/tasks/{task_id}/items" }
//! } ] }
//! ```
//!
//! A call fills the `{placeholders}` from the arguments (percent-encoded),
//! sends the other arguments as the query (GET/DELETE) or JSON body, to
//! `/api/v1/plugins/<plugin name>/<path>` with the caller's credentials, so
//! the plugin host's route middleware authorizes it like any request.
//! Plugins without `route`d tools (JavaScript-only `remoteEntryUrl`) are
//! skipped with a warning on stderr.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::Method;
use rmcp::model::{JsonObject, Tool};
use serde_json::{Map, Value};

use super::client::{Api, ApiError, items};
use super::tools::seg;

#[derive(Debug, Clone)]
pub struct PluginTool {
    pub plugin: String,
    pub tool: Tool,
    pub method: Method,
    pub path: String,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Builds the plugin tool list from `GET /api/v1/plugins`' payload.
/// `taken` holds the core tool names (a plugin cannot shadow them).
pub fn from_plugins(payload: &Value, taken: &HashSet<&str>) -> Vec<PluginTool> {
    let plugins = items(payload.clone(), &["plugins"]);
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for plugin in plugins {
        if plugin.get("enabled").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let name = plugin
            .get("name")
            .or_else(|| plugin.get("manifest").and_then(|m| m.get("id")))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(mcp) = plugin.get("manifest").and_then(|m| m.get("mcp")) else {
            continue;
        };
        let tools = mcp.get("tools").and_then(Value::as_array);
        if tools.is_none() {
            if mcp.get("remoteEntryUrl").is_some() {
                tracing::warn!(
                    target: "plugin-loader",
                    plugin = %name,
                    "skipped: declares only a JavaScript mcp.remoteEntryUrl; declare mcp.tools with routes"
                );
            }
            continue;
        }
        for t in tools.into_iter().flatten() {
            let tool_name = t.get("name").and_then(Value::as_str).unwrap_or("");
            if !valid_name(tool_name) {
                tracing::warn!(target: "plugin-loader", plugin = %name, tool = %tool_name, "skipped: tool names must match [a-z][a-z0-9_]*");
                continue;
            }
            if taken.contains(tool_name) || !seen.insert(tool_name.to_owned()) {
                tracing::warn!(target: "plugin-loader", plugin = %name, tool = %tool_name, "skipped: duplicate tool name");
                continue;
            }
            let route = t.get("route");
            let path = route
                .and_then(|r| r.get("path"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim_start_matches('/')
                .to_owned();
            let method = route
                .and_then(|r| r.get("method"))
                .and_then(Value::as_str)
                .unwrap_or("GET")
                .to_ascii_uppercase();
            let Ok(method) = Method::from_bytes(method.as_bytes()) else {
                continue;
            };
            if path.is_empty() {
                tracing::warn!(target: "plugin-loader", plugin = %name, tool = %tool_name, "skipped: no route.path");
                continue;
            }
            let schema: JsonObject = t
                .get("inputSchema")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_else(|| {
                    let mut m = Map::new();
                    m.insert("type".into(), Value::String("object".into()));
                    m
                });
            let mut tool = Tool::new(
                tool_name.to_owned(),
                t.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                Arc::new(schema),
            );
            if let Some(title) = t.get("title").and_then(Value::as_str) {
                tool.title = Some(title.to_owned());
            }
            out.push(PluginTool {
                plugin: name.clone(),
                tool,
                method,
                path,
            });
        }
    }
    out
}

/// Loads plugin tools through the API (failures start without plugins).
pub async fn load(api: &Api, core: &HashSet<&str>) -> Vec<PluginTool> {
    match api.get("/plugins").await {
        Ok(payload) => from_plugins(&payload, core),
        Err(e) => {
            tracing::warn!(target: "plugin-loader", "plugin list unavailable, starting without plugin tools: {e}");
            Vec::new()
        }
    }
}

/// Fills `{name}` placeholders; returns the path and the unused arguments.
pub fn fill(path: &str, args: &Map<String, Value>) -> Result<(String, Map<String, Value>), String> {
    let mut rest = args.clone();
    let mut out = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '{' {
            out.push(c);
            continue;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '}').collect();
        let value = rest
            .remove(&key)
            .ok_or_else(|| format!("missing required argument {key}"))?;
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(format!("argument {key} must be a string or number")),
        };
        out.push_str(&seg(&text));
    }
    Ok((out, rest))
}

/// Calls a plugin tool's route as the caller.
pub async fn call(
    api: &Api,
    tool: &PluginTool,
    args: &Map<String, Value>,
) -> Result<String, ApiError> {
    let (path, rest) = fill(&tool.path, args).map_err(|message| ApiError {
        status: 0,
        code: "BAD_REQUEST".into(),
        message,
    })?;
    let url = format!(
        "{}/api/v1/plugins/{}/{}",
        api.base(),
        seg(&tool.plugin),
        path
    );
    let with_body = !matches!(tool.method, Method::GET | Method::DELETE | Method::HEAD);
    let query: Vec<(&str, String)> = if with_body {
        Vec::new()
    } else {
        rest.iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect()
    };
    let body = Value::Object(rest.clone());
    let result = api
        .send(
            tool.method.clone(),
            &url,
            &query,
            if with_body { Some(&body) } else { None },
        )
        .await?;
    Ok(match result {
        Value::String(s) => s,
        Value::Null => "OK".into(),
        other => serde_json::to_string_pretty(&other).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn manifest_tools_are_listed_and_filtered() {
        let payload = json!({"plugins": [
            {"name": "com.paca.checklist", "enabled": true, "manifest": {"mcp": {"tools": [
                {"name": "checklist_list_items", "description": "d", "inputSchema": {"type": "object"},
                 "route": {"method": "get", "path": "/projects/{project_id}/items"}},
                {"name": "Bad-Name", "route": {"path": "x"}},
                {"name": "list_tasks", "route": {"path": "x"}},
                {"name": "checklist_no_route"}
            ]}}},
            {"name": "com.off", "enabled": false, "manifest": {"mcp": {"tools": [
                {"name": "off_tool", "route": {"path": "x"}}]}}},
            {"name": "com.js", "enabled": true, "manifest": {"mcp": {"remoteEntryUrl": "/plugins-mcp/x/mcp.js"}}},
            {"name": "com.dup", "enabled": true, "manifest": {"mcp": {"tools": [
                {"name": "checklist_list_items", "route": {"path": "y"}}]}}}
        ]});
        let core: HashSet<&str> = ["list_tasks"].into_iter().collect();
        let tools = from_plugins(&payload, &core);
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].plugin, "com.paca.checklist");
        assert_eq!(tools[0].method, Method::GET);
        assert_eq!(tools[0].path, "projects/{project_id}/items");
    }

    #[test]
    fn placeholders_are_encoded_and_consumed() {
        let args = json!({"project_id": "p/1", "q": "x"});
        let (path, rest) = fill("projects/{project_id}/items", args.as_object().unwrap()).unwrap();
        assert_eq!(path, "projects/p%2F1/items");
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["q"]);
        assert!(fill("a/{missing}", &Map::new()).is_err());
    }
}
