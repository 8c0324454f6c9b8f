//! The REST error envelope and the request id every response carries.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use commands::CommandError;
use domain::{DomainError, ErrorCode};
use serde::Serialize;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware so that
    /// envelopes built anywhere in the handler (including error responses
    /// of extractors) carry it.
    pub static REQUEST_ID: String;
}

pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

tokio::task_local! {
    /// Which client surface sent the request, when it says so with
    /// `X-Paca-Source` (our MCP server does): recorded as the events'
    /// `source` for the audit trail. Self-declared, so only a label.
    pub static CLIENT_SOURCE: &'static str;
}

/// `X-Paca-Source` values a client may claim; anything else is `rest`.
pub fn client_source(header: Option<&str>) -> &'static str {
    match header {
        Some("mcp") => "mcp",
        _ => "rest",
    }
}

/// The current request's source (`rest` unless the client declared another).
pub fn source() -> &'static str {
    CLIENT_SOURCE.try_with(|s| *s).unwrap_or("rest")
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (rate limits).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BAD_REQUEST, message)
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::FORBIDDEN, "missing required permission")
    }

    /// An unexpected failure: the details go to the log with the request
    /// id, the client gets an opaque 500.
    /// PostgreSQL is unavailable: `503 DATABASE_UNAVAILABLE`, retry soon.
    pub fn unavailable(detail: &dyn std::fmt::Display) -> Self {
        tracing::warn!(request_id = request_id().unwrap_or_default(), %detail, "database unavailable");
        Self::new(
            ErrorCode::DATABASE_UNAVAILABLE,
            "the database is unavailable; nothing was changed, retry shortly",
        )
        .retry_after(5)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = request_id().unwrap_or_default(), %detail, "internal error");
        Self::new(ErrorCode::INTERNAL_ERROR, "internal server error")
    }
}

/// Displays an error with its whole `source()` chain, for the log.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error_code: &'a str,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(ErrorBody {
            success: false,
            error_code: self.code.as_str(),
            error: &self.message,
            request_id: request_id(),
        })
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        Self::new(error.code, error.message)
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Domain(e) => e.into(),
            CommandError::Conflict(id) => Self::new(
                ErrorCode::CONFLICT,
                format!("{id} was modified concurrently; reload and retry"),
            ),
            CommandError::Stale {
                stream_id,
                expected,
                actual,
            } => Self::new(
                ErrorCode::CONFLICT,
                format!(
                    "{stream_id} is at version {actual}, not {expected} (If-Match); reload and retry"
                ),
            ),
            CommandError::Infra(error) => {
                match sqlx_source(&error as &(dyn std::error::Error + 'static)) {
                    Some(db) if database_unavailable(db) => Self::unavailable(&ErrorChain(&error)),
                    _ => Self::internal(ErrorChain(&error)),
                }
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            return Self::unavailable(&error);
        }
        Self::internal(error)
    }
}

/// True for the failures that mean PostgreSQL is not there (down,
/// restarting, unreachable, or no connection free within the pool's acquire
/// timeout) rather than a bug: the client gets a `503` and retries.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            // 08: connection exception; 57P01-03: admin/crash shutdown,
            // cannot connect now (starting up or shutting down).
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// The first `sqlx::Error` in an error's source chain.
fn sqlx_source<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a sqlx::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<sqlx::Error>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[derive(Serialize)]
struct SuccessBody<T: Serialize> {
    success: bool,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

fn envelope<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(SuccessBody {
        success: true,
        data,
        request_id: request_id(),
    })
}

pub fn ok<T: Serialize>(data: T) -> ApiResult<HttpResponse> {
    Ok(envelope(StatusCode::OK, data))
}

pub fn created<T: Serialize>(data: T) -> ApiResult<HttpResponse> {
    Ok(envelope(StatusCode::CREATED, data))
}

pub fn no_content() -> ApiResult<HttpResponse> {
    Ok(HttpResponse::NoContent().finish())
}
