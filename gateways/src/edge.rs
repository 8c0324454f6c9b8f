//! The one middleware every request passes through, outermost:
//!
//! - a request id (the client's `X-Request-ID` when sane) for envelopes,
//!   the response header and the log line;
//! - CORS (CONTRACT-NOTES §1): `CORS_ORIGINS` allow-list, empty = `*`;
//!   preflight `OPTIONS` is answered here with `204`;
//! - a query string carrying a NUL character is refused with
//!   `400 VALIDATION_ERROR` before any handler sees it;
//! - every error from any layer (actix's own limits and extractors
//!   included) leaves in the seeds' envelope, never as text/plain;
//! - a body the handler did not read is not read either: the response
//!   closes the connection instead, so a client streaming megabytes at a
//!   route that takes no body gets its answer at once and cannot hold the
//!   connection;
//! - request metrics (count, latency, PostgreSQL round trips per route
//!   pattern) for `GET /metrics`, and a log line per request, also for
//!   one that ends without a response (its future dropped).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};

use domain::ErrorCode;
use futures_util::Stream;

use crate::AppState;
use crate::error::{ApiError, CLIENT_SOURCE, REQUEST_ID};

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, X-Request-ID, X-API-Key, X-Agent-ID, If-Match";
const EXPOSE_HEADERS: &str = "X-Request-ID, ETag, Retry-After";

/// Who may call from a browser: `CORS_ORIGINS`, comma-separated; empty
/// means any origin, without credentials.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub fn new(list: &str) -> Self {
        Self {
            origins: list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// May a browser page from `origin` open a WebSocket here? Browsers do
    /// not apply CORS to WebSockets, so the realtime and GraphQL upgrades
    /// check the `Origin` against the same list (empty list: any).
    pub fn allows_websocket_from(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => {
                self.origins.is_empty()
                    || self
                        .origins
                        .iter()
                        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
            }
        }
    }

    /// The `Access-Control-Allow-Origin` value for this request's origin,
    /// and whether credentials are allowed; `None`: no CORS headers.
    fn allow(&self, origin: Option<&str>) -> Option<(String, bool)> {
        if self.origins.is_empty() {
            return Some(("*".to_owned(), false));
        }
        let origin = origin?;
        self.origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            .then(|| (origin.to_owned(), true))
    }
}

pub(crate) fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request body, shared between the handler and this middleware so
/// that what the handler left unread can be drained (or refused) after it.
/// Actix runs a request on one worker thread, so `Rc`/`RefCell` suffice.
type SharedPayload = std::rc::Rc<std::cell::RefCell<Option<Payload>>>;

/// Tracks whether a request body was read to its end.
struct Tracked {
    inner: SharedPayload,
    finished: Arc<AtomicBool>,
}

impl Stream for Tracked {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut inner = self.inner.borrow_mut();
        let Some(payload) = inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(payload).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }
}

/// How much of a body nobody asked for is read (and discarded) so the
/// connection can serve its next request; beyond it, the connection is
/// closed instead.
const DRAIN_LIMIT: usize = 16 << 20;

/// Reads what the handler left of the body, up to [`DRAIN_LIMIT`]; false
/// when the body goes on beyond it (or breaks).
async fn drain(shared: &SharedPayload) -> bool {
    use futures_util::StreamExt;
    let Some(mut payload) = shared.borrow_mut().take() else {
        return true;
    };
    let mut read = 0usize;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(bytes) => {
                read += bytes.len();
                if read > DRAIN_LIMIT {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

pub async fn edge(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        // Time-ordered: the id becomes every event's correlation id, and the
        // log's correlation index then grows at its right edge instead of
        // touching a random leaf page per append.
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let source = crate::error::client_source(
        req.headers()
            .get("x-paca-source")
            .and_then(|v| v.to_str().ok()),
    );
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cors = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.cors.allow(origin.as_deref()))
        .unwrap_or_default();

    let mut unanswered = Unanswered {
        id: &id,
        method: &method,
        path: &path,
        started,
        answered: false,
    };
    // The round-trip counter covers the handler and the drain below.
    let (res, db_round_trips) = crate::metrics::counting_round_trips(REQUEST_ID.scope(
        id.clone(),
        CLIENT_SOURCE.scope(source, async {
            // A preflight is answered here, for any path.
            if method == Method::OPTIONS
                && req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                let res = HttpResponse::NoContent().finish();
                return Ok::<_, actix_web::Error>(req.into_response(res).map_into_right_body());
            }
            if let Some(name) = crate::extract::query_nul(req.query_string()) {
                let error = ApiError::new(
                    ErrorCode::VALIDATION_ERROR,
                    format!("{name}: must not contain NUL characters"),
                );
                return Ok(req.error_response(error).map_into_right_body());
            }
            let body_expected = has_body(&req);
            let finished = Arc::new(AtomicBool::new(!body_expected));
            let shared: SharedPayload =
                std::rc::Rc::new(std::cell::RefCell::new(Some(req.take_payload())));
            req.set_payload(Payload::Stream {
                payload: Box::pin(Tracked {
                    inner: shared.clone(),
                    finished: finished.clone(),
                }),
            });
            // Handler errors arrive as responses; an `Err` here comes from
            // a middleware further in and is actix's to answer.
            let mut res = envelope_errors(next.call(req).await?);
            if !finished.load(Ordering::Acquire) && !drain(&shared).await {
                res.response_mut()
                    .head_mut()
                    .set_connection_type(ConnectionType::Close);
            }
            Ok(res)
        }),
    ))
    .await;
    unanswered.answered = true;
    let mut res = res?;

    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    if let Some((allow, credentials)) = cors {
        if let Ok(value) = HeaderValue::from_str(&allow) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        if credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    let elapsed = started.elapsed();
    crate::metrics::record_request(
        &method,
        res.request().match_pattern(),
        res.status().as_u16(),
        elapsed,
        db_round_trips,
    );
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        status = res.status().as_u16(),
        ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    Ok(res)
}

/// Logs a request whose handling ended without a response: its future was
/// dropped (the client closed the connection, or the server is stopping)
/// or a handler panicked. Without this such a request leaves no line at
/// all, and a client's "connection closed without response" cannot be
/// matched to anything in the server's log.
struct Unanswered<'a> {
    id: &'a str,
    method: &'a Method,
    path: &'a str,
    started: Instant,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        // `info`, not `warn`: a browser closing a tab mid long-poll ends
        // requests this way all the time.
        if !self.answered {
            tracing::info!(
                request_id = %self.id,
                method = %self.method,
                path = %self.path,
                ms = self.started.elapsed().as_secs_f64() * 1e3,
                panicking = std::thread::panicking(),
                "request ended without a response (client gone, server stopping, or a panic)"
            );
        }
    }
}

/// The code for an error status that reached us without an envelope.
fn code_for(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::AUTH_UNAUTHENTICATED,
        403 => ErrorCode::FORBIDDEN,
        404 => ErrorCode::NOT_FOUND,
        405 => ErrorCode::METHOD_NOT_ALLOWED,
        406 => ErrorCode::NOT_ACCEPTABLE,
        409 => ErrorCode::CONFLICT,
        413 => ErrorCode::PAYLOAD_TOO_LARGE,
        414 => ErrorCode::URI_TOO_LONG,
        415 => ErrorCode::UNSUPPORTED_MEDIA_TYPE,
        429 => ErrorCode::TOO_MANY_REQUESTS,
        s if s >= 500 => ErrorCode::INTERNAL_ERROR,
        _ => ErrorCode::BAD_REQUEST,
    }
}

/// Wraps an error response that is not JSON (actix's own limits, a
/// `PayloadConfig` overflow, ...) in the envelope, keeping its status.
fn envelope_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<BoxBody>> {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return res.map_body(|_, body| EitherBody::left(body.boxed()));
    }
    let message = res
        .response()
        .error()
        .map(|e| e.to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned()
        });
    let code = code_for(status);
    let message = if code == ErrorCode::INTERNAL_ERROR {
        "internal server error".to_owned()
    } else {
        message
    };
    let (req, _) = res.into_parts();
    let mut response = ApiError::new(code, message).error_response();
    *response.status_mut() = status;
    ServiceResponse::new(req, response).map_into_right_body()
}
