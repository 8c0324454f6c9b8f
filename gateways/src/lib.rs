//! Every edge that talks to clients: the REST API (actix-web) and MCP.

pub mod auth;
pub mod error;
pub mod mcp;
pub mod rest;

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use commands::Commands;
use domain::ErrorCode;
use sqlx::PgPool;

use crate::auth::LoginLimiter;
use crate::error::{ApiError, REQUEST_ID};

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
}

impl AppState {
    pub fn new(commands: Commands, login_max_failures: usize) -> Self {
        Self {
            pool: commands.store.pool().clone(),
            commands,
            login_limiter: LoginLimiter::new(login_max_failures, Duration::from_secs(60)),
        }
    }
}

const MAX_JSON_BYTES: usize = 1 << 20;

fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Gives every request an id (the client's `X-Request-ID` when sane),
/// makes it available to envelope builders, echoes it, and logs the request.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let mut res = REQUEST_ID.scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        status = res.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    Ok(res)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NOT_FOUND, "no such route"))
}

/// Wires the whole HTTP surface into an actix `App` (shared by the server
/// and by in-process tests).
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_JSON_BYTES)
                    .content_type_required(false)
                    .error_handler(|err, _| {
                        let api = match &err {
                            JsonPayloadError::Overflow { .. }
                            | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
                                ErrorCode::PAYLOAD_TOO_LARGE,
                                format!("request body exceeds {MAX_JSON_BYTES} bytes"),
                            ),
                            _ => ApiError::bad_request(format!("invalid JSON body: {err}")),
                        };
                        api.into()
                    }),
            )
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::bad_request(format!("invalid query string: {err}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                ApiError::bad_request(format!("invalid path parameter: {err}")).into()
            }))
            .route("/api/healthz", web::get().to(healthz))
            .configure(rest::routes)
            .configure(mcp::http::routes)
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
            .wrap(from_fn(request_id))
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
