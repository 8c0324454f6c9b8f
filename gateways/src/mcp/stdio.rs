//! `paca mcp`: the MCP server over stdio, configured like Paca's npm server.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use super::Session;
use super::client::{Api, http_client};
use super::permissions::Mode;

pub const PACA_API_KEY: &str = "PACA_API_KEY";
pub const PACA_API_URL: &str = "PACA_API_URL";
pub const PACA_GATEWAY_URL: &str = "PACA_GATEWAY_URL";
pub const PACA_AGENT_ID: &str = "PACA_AGENT_ID";
pub const PACA_PROJECT_ID: &str = "PACA_PROJECT_ID";
/// Ours: `global` selects page 18's user-global mode for a key-only config.
pub const PACA_MCP_MODE: &str = "PACA_MCP_MODE";

/// The environment of seed page 10.
#[derive(Debug, Clone)]
pub struct StdioConfig {
    pub api_key: String,
    pub api_url: String,
    /// Kept for configuration compatibility: Paca resolves plugin
    /// JavaScript bundles against it; our plugin tools call API routes.
    pub gateway_url: Option<String>,
    pub agent_id: Option<String>,
    pub project_id: Option<String>,
    pub mode: Mode,
}

impl StdioConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let api_key = var(PACA_API_KEY).ok_or("PACA_API_KEY environment variable is required")?;
        let agent_id = var(PACA_AGENT_ID);
        let project_id = var(PACA_PROJECT_ID);
        if agent_id.is_some() && project_id.is_none() {
            return Err(
                "PACA_PROJECT_ID environment variable is required when using PACA_AGENT_ID".into(),
            );
        }
        let mode = match (&agent_id, &project_id) {
            (Some(_), _) => Mode::AgentProject,
            (None, Some(_)) => Mode::UserProject,
            (None, None) => match var(PACA_MCP_MODE).as_deref() {
                None | Some("personal") => Mode::Personal,
                Some("global") => Mode::UserGlobal,
                Some(other) => {
                    return Err(format!(
                        "PACA_MCP_MODE must be 'personal' or 'global', not {other:?}"
                    ));
                }
            },
        };
        Ok(Self {
            api_key,
            api_url: var(PACA_API_URL).unwrap_or_else(|| "http://localhost:8080".into()),
            gateway_url: var(PACA_GATEWAY_URL),
            agent_id,
            project_id,
            mode,
        })
    }

    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[derive(Clone)]
struct StdioServer {
    session: Arc<Session>,
}

impl ServerHandler for StdioServer {
    fn get_info(&self) -> ServerConfig {
        super::server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.session.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self
            .session
            .call(&request.name, request.arguments)
            .await
            .into())
    }
}

/// Runs until the client closes stdin.
pub async fn run(config: StdioConfig) -> Result<(), String> {
    let api = Api::new(
        http_client(),
        &config.api_url,
        Api::key_headers(&config.api_key, config.agent_id.as_deref()),
    );
    let session = Session::start(api, config.mode, config.project_id.clone()).await;
    tracing::info!(
        target: "server",
        mode = config.mode.name(),
        api = %config.api_url,
        tools = session.tools().len(),
        plugin_tools = session.plugin_tools.len(),
        "paca mcp ready on stdio"
    );
    let server = StdioServer {
        session: Arc::new(session),
    };
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP initialization failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP server stopped: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<StdioConfig, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StdioConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn env_rules_of_page_10() {
        assert!(cfg(&[]).unwrap_err().contains("PACA_API_KEY"));
        let c = cfg(&[("PACA_API_KEY", "k")]).unwrap();
        assert_eq!(c.api_url, "http://localhost:8080");
        assert_eq!(c.mode, Mode::Personal);
        let err = cfg(&[("PACA_API_KEY", "k"), ("PACA_AGENT_ID", "a")]).unwrap_err();
        assert!(err.contains("PACA_PROJECT_ID"));
        let c = cfg(&[
            ("PACA_API_KEY", "k"),
            ("PACA_AGENT_ID", "a"),
            ("PACA_PROJECT_ID", "p"),
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::AgentProject);
        let c = cfg(&[("PACA_API_KEY", "k"), ("PACA_PROJECT_ID", "p")]).unwrap();
        assert_eq!(c.mode, Mode::UserProject);
        let c = cfg(&[("PACA_API_KEY", "k"), ("PACA_MCP_MODE", "global")]).unwrap();
        assert_eq!(c.mode, Mode::UserGlobal);
    }
}
