//! Every edge that talks to clients: the REST API (actix-web), MCP, and
//! realtime (Socket.IO over the Valkey bus).

pub mod auth;
pub mod edge;
pub mod error;
pub mod extract;
pub mod graphql;
pub mod graphql_types;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod plugin_api;
pub mod realtime;
pub mod rest;
pub mod storage;

use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use commands::Commands;
use domain::ErrorCode;
use sqlx::PgPool;

use crate::auth::LoginLimiter;
use crate::error::ApiError;
use crate::openapi::{Actix, Routes};

/// Installs the process's TLS crypto provider (ring) for every outgoing
/// HTTPS client (reqwest is built without a default provider, so that one
/// provider serves the whole binary). Idempotent; call once at start-up.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct AppState {
    pub commands: Commands,
    pub pool: PgPool,
    pub login_limiter: LoginLimiter,
    pub cors: Cors,
    /// The WASM plugin host (`None`: plugin routes answer PLUGIN_NOT_FOUND).
    pub plugins: Option<std::sync::Arc<plugin_host::PluginHost>>,
    /// Where attachment bytes go (local files by default).
    pub storage: std::sync::Arc<storage::Storage>,
    /// This node's Socket.IO server and realtime fan-out.
    pub realtime: realtime::Hub,
    /// `METRICS_TOKEN`: when set, `GET /metrics` wants it as a bearer token.
    pub metrics_token: Option<String>,
    /// `PACA_TRUSTED_PROXIES`: peers (the gateway) whose `X-Real-IP` /
    /// `X-Forwarded-For` name the client; see [`AppState::client_ip`].
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AppState {
    pub fn new(commands: Commands, login_max_failures: usize) -> Self {
        Self {
            pool: commands.store.pool().clone(),
            realtime: realtime::Hub::new(commands.clone()),
            commands,
            login_limiter: LoginLimiter::new(login_max_failures, Duration::from_secs(60)),
            cors: Cors::default(),
            plugins: None,
            storage: std::sync::Arc::new(default_storage()),
            metrics_token: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// `PACA_TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges of
    /// the reverse proxies in front of this node.
    pub fn with_trusted_proxies(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    fn trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted
    /// proxy, then what the proxy says: `X-Real-IP`, else the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy (entries
    /// further left were written by the client and prove nothing).
    pub fn client_ip(&self, req: &actix_web::HttpRequest) -> String {
        let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
            return String::new();
        };
        if !self.trusted(peer) {
            return peer.to_string();
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(ip) =
            header("x-real-ip").and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
        {
            return ip.to_string();
        }
        if let Some(list) = header("x-forwarded-for") {
            for entry in list.rsplit(',') {
                match entry.trim().parse::<std::net::IpAddr>() {
                    Ok(ip) if self.trusted(ip) => continue,
                    Ok(ip) => return ip.to_string(),
                    Err(_) => break,
                }
            }
        }
        peer.to_string()
    }

    pub fn with_plugins(mut self, host: std::sync::Arc<plugin_host::PluginHost>) -> Self {
        self.plugins = Some(host);
        self
    }

    pub fn with_storage(mut self, storage: storage::Storage) -> Self {
        self.storage = std::sync::Arc::new(storage);
        self
    }

    /// `CORS_ORIGINS` (comma-separated; empty allows any origin without
    /// credentials).
    pub fn with_cors(mut self, origins: &str) -> Self {
        self.cors = Cors::new(origins);
        self
    }

    /// `METRICS_TOKEN` (`None` or empty: `GET /metrics` is open, like
    /// `/api/healthz`).
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty());
        self
    }

    /// Count failed logins in Valkey, so every node shares the limits.
    pub fn with_shared_login_limits(mut self, client: fred::clients::Client) -> Self {
        self.login_limiter.share_through(client);
        self
    }

    /// The failed-login ceiling per client IP, whatever the usernames.
    pub fn with_login_ip_ceiling(mut self, max_failures: usize) -> Self {
        self.login_limiter.set_ip_ceiling(max_failures);
        self
    }
}

pub use edge::{Cors, edge};

/// Local files in a private temporary directory, signed with a random key:
/// what in-process tests and embedders get unless they configure storage.
fn default_storage() -> storage::Storage {
    let dir = std::env::temp_dir().join(format!("paca-files-{}", uuid::Uuid::new_v4().simple()));
    let secret = uuid::Uuid::new_v4().to_string();
    storage::Storage::local(dir.clone(), &secret)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /api/v1/version`: what this node runs, for operators and rolling
/// upgrades (which read-model generation it builds, which migration its
/// database is at). Public, like `/api/healthz`.
async fn version(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let migration: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&state.pool)
        .await?;
    error::ok(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "read_model_version": projections::READ_MODEL_VERSION,
        "database_migration": migration,
    }))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NOT_FOUND, "no such route"))
}

/// Every documented route: the REST API, health, version, metrics, the
/// OpenAPI document itself, MCP over HTTP, plugin bundles and GraphQL.
/// Registered with actix by [`configure`], described by [`openapi`].
pub fn routes<R: Routes>(r: &mut R) {
    r.get("/api/healthz", healthz)
        .raw("application/json", openapi::health_schema());
    r.get("/api/v1/version", version)
        .returns_json(serde_json::json!({
            "type": "object",
            "required": ["version", "read_model_version", "database_migration"],
            "properties": {
                "version": {"type": "string"},
                "read_model_version": {"type": "integer"},
                // Null before the first migration.
                "database_migration": {"type": ["integer", "null"]},
            },
        }));
    r.get("/api/openapi.json", openapi::serve)
        .raw("application/json", serde_json::json!({"type": "object"}));
    r.get("/metrics", metrics::scrape)
        .raw("text/plain", serde_json::json!({"type": "string"}));
    rest::routes(r);
    mcp::http::routes(r);
    // Plugin bundles (seed page 07: the gateway serves these).
    r.get("/plugins/{name}/{path:.*}", rest::plugins::static_frontend)
        .raw("*/*", serde_json::json!({}));
    r.get("/plugins-mcp/{name}/{path:.*}", rest::plugins::static_mcp)
        .raw("*/*", serde_json::json!({}));
    r.get(
        "/plugins-skills/{name}/{path:.*}",
        rest::plugins::static_skills,
    )
    .raw("*/*", serde_json::json!({}));
    graphql::routes(r);
}

/// Wires the whole HTTP surface into an actix `App` (shared by the server
/// and by in-process tests).
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if let Some(host) = &state.plugins {
            // The orchestration host functions run REST's handlers.
            host.set_core_api(std::sync::Arc::new(plugin_api::PluginCoreApi(
                state.clone().into_inner(),
            )));
        }
        let schema = web::Data::new(graphql::schema(state.clone()));
        cfg.app_data(state)
            .app_data(web::PayloadConfig::new(extract::MAX_JSON_BYTES))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::bad_request(format!("invalid query string: {err}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                ApiError::bad_request(format!("invalid path parameter: {err}")).into()
            }))
            .app_data(schema)
            .configure(|cfg| {
                let mut actix = Actix::new(cfg);
                routes(&mut actix);
                actix.finish();
            })
            // Socket.IO speaks its own protocol (docs/realtime.md), so it
            // stays out of the OpenAPI document.
            .configure(realtime::socketio::routes)
            .default_service(web::to(not_found));
    }
}

/// Starts the HTTP server. Signals are left to the caller, which stops the
/// server through the returned handle (so it can also stop what it started,
/// such as an embedded PostgreSQL, afterwards).
pub fn server(
    state: AppState,
    bind: (&str, u16),
    workers: usize,
) -> std::io::Result<(actix_web::dev::Server, ServerHandle)> {
    let state = web::Data::new(state);
    let mcp = web::Data::new(mcp::http::McpHttp::new());
    let mcp_data = mcp.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(edge))
            .app_data(mcp_data.clone())
            .configure(configure(state.clone()))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .bind(bind)?;
    // `/api/mcp` calls this server's own REST API on loopback.
    if let Some(addr) = server.addrs().first() {
        let host = if addr.is_ipv6() { "[::1]" } else { "127.0.0.1" };
        mcp.set_base(format!("http://{host}:{}", addr.port()));
    }
    let server = server.run();
    let handle = server.handle();
    Ok((server, handle))
}
