//! The REST client the MCP tools call. Every tool goes through the REST API
//! as the caller (API key, or the credential headers forwarded by
//! `/api/mcp`), so authorization, validation and the event log stay where
//! they are for every other client.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An API failure as the server reported it (or a transport failure).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status; 0 when the request never got an answer.
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 {
            write!(f, "{}: {}", self.code, self.message)
        } else {
            write!(
                f,
                "API request failed: {} {}: {}",
                self.status, self.code, self.message
            )
        }
    }
}

impl std::error::Error for ApiError {}

/// Builds the HTTP client once per process (or worker thread): TLS roots and
/// connection pools are not free.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default crypto provider so the workspace
    // does not compile two of them; `ring` is ours. A second install (the
    // server may have installed another provider) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A REST client bound to one base URL and one set of credential headers.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    headers: HeaderMap,
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, mut headers: HeaderMap) -> Self {
        // The audit trail records these calls' events as coming from MCP.
        headers.insert(
            HeaderName::from_static("x-paca-source"),
            HeaderValue::from_static("mcp"),
        );
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            headers,
        }
    }

    /// Headers for an API key, plus `X-Agent-ID` when acting as an agent.
    pub fn key_headers(api_key: &str, agent_id: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(api_key) {
            headers.insert(HeaderName::from_static("x-api-key"), v);
        }
        if let Some(agent) = agent_id
            && let Ok(v) = HeaderValue::from_str(agent)
        {
            headers.insert(HeaderName::from_static("x-agent-id"), v);
        }
        headers
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` is relative to `/api/v1` (e.g. `/projects`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/api/v1{}", self.base, path);
        self.send(method, &url, query, body).await
    }

    /// A request to any absolute URL under the base (plugin routes).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        // `X-Paca-Source` names the channel for the audit trail once the
        // REST layer records it (the credential still decides who acts).
        let mut req = self
            .http
            .request(method, url)
            .headers(self.headers.clone())
            .header("accept", "application/json")
            .header("x-paca-source", "mcp");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req.send().await.map_err(|e| ApiError {
            status: 0,
            code: "CONNECTION_FAILED".into(),
            message: format!("cannot reach the Paca API at {}: {e}", self.base),
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return if status.is_success() {
                Ok(Value::Null)
            } else {
                Err(ApiError {
                    status: status.as_u16(),
                    code: status_code_name(status),
                    message: status.canonical_reason().unwrap_or("error").to_owned(),
                })
            };
        }
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !status.is_success() {
            let code = json
                .get("error_code")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| status_code_name(status));
            let message = json
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| truncate(&text, 500));
            return Err(ApiError {
                status: status.as_u16(),
                code,
                message,
            });
        }
        // Unwrap the success envelope; other bodies pass through.
        if json.get("success").and_then(Value::as_bool) == Some(true) {
            return Ok(json.get("data").cloned().unwrap_or(Value::Null));
        }
        Ok(json)
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.request(Method::GET, path, &[], None).await
    }

    pub async fn get_q(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.request(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.request(Method::DELETE, path, &[], None).await
    }
}

fn status_code_name(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "AUTH_UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        429 => "TOO_MANY_REQUESTS",
        _ => "HTTP_ERROR",
    }
    .to_owned()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The list inside a response: a bare array, or `{items}` (or another
/// named array key).
pub fn items(value: Value, keys: &[&str]) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Object(mut map) => {
            for key in ["items"].iter().chain(keys) {
                if let Some(Value::Array(items)) = map.remove(*key) {
                    return items;
                }
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}
