//! `/api/mcp`: the same tools over MCP streamable HTTP on the API port.
//!
//! The request is authenticated like any other (`Auth`: cookie, Bearer, API
//! key; agent key + `X-Agent-ID` once agents exist), then handed to rmcp's
//! streamable HTTP service in stateless JSON mode. The tool handler forwards
//! the caller's credential headers to this server's own REST API on its
//! loopback address, so authorization, validation and the event log's actor
//! are exactly those of a direct REST call.
//!
//! Scope headers (or query parameters) choose the mode:
//! `X-Project-ID` / `?project_id=` binds single-project mode (and is
//! required with `X-Agent-ID`); `?mode=global` selects user-global mode.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use http_body_util::{BodyStream, Full};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::client::{Api, http_client};
use super::permissions::Mode;
use super::{Session, call_tool, core_names, plugins};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::openapi::Routes;

/// Credential and identity headers forwarded to the REST API.
const FORWARDED: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "x-agent-id",
    "x-actor-user-id",
    "x-conversation-id",
    "x-request-id",
];

/// Shared by every worker: where the API listens (set once bound).
#[derive(Clone, Default)]
pub struct McpHttp {
    base: Arc<OnceLock<String>>,
}

impl McpHttp {
    pub fn new() -> Self {
        Self::default()
    }

    /// The loopback URL of this server's own API.
    pub fn set_base(&self, base: String) {
        let _ = self.base.set(base);
    }
}

thread_local! {
    // One client (and connection pool) per worker thread: an actix worker
    // runs its own runtime, and pooled connections belong to a runtime.
    static CLIENT: RefCell<Option<reqwest::Client>> = const { RefCell::new(None) };
}

fn thread_client() -> reqwest::Client {
    CLIENT.with(|c| c.borrow_mut().get_or_insert_with(http_client).clone())
}

#[derive(Clone)]
struct HttpHandler {
    base: String,
}

/// What one HTTP request asks for: its forwarded headers, mode and project.
struct Scope {
    api: Api,
    mode: Mode,
    project: Option<String>,
}

fn query_param(parts: &http::request::Parts, key: &str) -> Option<String> {
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key && !v.is_empty()).then(|| v.to_owned())
        })
    })
}

impl HttpHandler {
    fn scope(&self, context: &RequestContext<RoleServer>) -> Result<Scope, ErrorData> {
        let parts = context
            .extensions
            .get::<http::request::Parts>()
            .ok_or_else(|| ErrorData::internal_error("HTTP request parts missing", None))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for name in FORWARDED {
            for value in parts.headers.get_all(*name) {
                if let (Ok(n), Ok(v)) = (
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                    reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    headers.append(n, v);
                }
            }
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let project = header("x-project-id").or_else(|| query_param(parts, "project_id"));
        let agent = header("x-agent-id");
        let mode = match (&agent, &project) {
            (Some(_), Some(_)) => Mode::AgentProject,
            (Some(_), None) => {
                return Err(ErrorData::invalid_params(
                    "X-Project-ID (or ?project_id=) is required with X-Agent-ID",
                    None,
                ));
            }
            (None, Some(_)) => Mode::UserProject,
            (None, None) if query_param(parts, "mode").as_deref() == Some("global") => {
                Mode::UserGlobal
            }
            (None, None) => Mode::Personal,
        };
        Ok(Scope {
            api: Api::new(thread_client(), &self.base, headers),
            mode,
            project,
        })
    }
}

impl ServerHandler for HttpHandler {
    fn get_info(&self) -> ServerConfig {
        super::server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let scope = self.scope(&context)?;
        let session = Session::start(scope.api, scope.mode, scope.project).await;
        Ok(ListToolsResult::with_all_items(session.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let scope = self.scope(&context)?;
        // Plugin routes are only looked up for names that are not core tools.
        let plugin_tools = if core_names().contains(request.name.as_ref()) {
            Vec::new()
        } else {
            plugins::load(&scope.api, &core_names()).await
        };
        Ok(call_tool(
            &scope.api,
            scope.project.as_deref(),
            &plugin_tools,
            &request.name,
            request.arguments,
        )
        .await
        .into())
    }
}

/// `ANY /api/mcp`.
pub async fn endpoint(
    req: HttpRequest,
    body: web::Bytes,
    _auth: Auth,
) -> Result<HttpResponse, ApiError> {
    let base = req
        .app_data::<web::Data<McpHttp>>()
        .and_then(|m| m.base.get().cloned())
        .ok_or_else(|| ApiError::internal("/api/mcp is not configured on this server"))?;
    let service = StreamableHttpService::new(
        move || Ok(HttpHandler { base: base.clone() }),
        Arc::new(NeverSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            // Every request is authenticated above; Host checks guard
            // unauthenticated local servers, which this is not.
            .disable_allowed_hosts(),
    );

    let mut builder = http::Request::builder()
        .method(req.method().as_str())
        .uri(req.uri().to_string());
    for (name, value) in req.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?;

    let response = service.handle(request).await;
    let (parts, body) = response.into_parts();
    let mut out = HttpResponse::build(
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (name, value) in &parts.headers {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()) {
            out.append_header((name.as_str(), value));
        }
    }
    let stream = BodyStream::new(body).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame
                .into_data()
                .ok()
                .map(Ok::<_, std::convert::Infallible>),
            Err(never) => match never {},
        }
    });
    Ok(out.streaming(stream))
}

pub fn routes<R: Routes>(r: &mut R) {
    // Streamable HTTP: JSON-RPC in, JSON or an event stream out.
    r.any("/api/mcp", endpoint)
        .raw("application/json", serde_json::json!({"type": "object"}))
        .or_as("text/event-stream")
        // A request that does not accept both JSON and an event stream.
        .error(406);
}
