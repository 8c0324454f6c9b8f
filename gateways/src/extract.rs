//! Request bodies and query strings as the API accepts them.
//!
//! [`Json`] replaces actix's `web::Json`: it reads at most
//! [`MAX_JSON_BYTES`] (`413` beyond), parses into a `serde_json::Value`
//! first (serde_json's nesting limit turns a 10,000-deep body into a `400`),
//! refuses what can never be stored whatever the route (a NUL character in
//! any string or key, a date-named field outside years 1-9999) with
//! `400 VALIDATION_ERROR` naming the top-level field, and only then
//! deserializes the route's type. Every failure is the seeds' envelope.

use std::ops::{Deref, DerefMut};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use domain::ErrorCode;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

pub const MAX_JSON_BYTES: usize = 1 << 20;

/// A JSON body, checked as described in the module docs.
pub struct Json<T>(pub T);

/// A JSON body that may be absent (empty or whitespace only).
pub struct OptionalJson<T>(pub Option<T>);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(_: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let payload = payload.take();
        Box::pin(async move {
            let bytes = read_body(payload).await?;
            Ok(Json(parse(&bytes)?))
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(_: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let payload = payload.take();
        Box::pin(async move {
            let bytes = read_body(payload).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            Ok(OptionalJson(Some(parse(&bytes)?)))
        })
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {MAX_JSON_BYTES} bytes"),
    )
}

async fn read_body(mut payload: Payload) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_JSON_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a body: JSON syntax, then the checks every route shares, then
/// the route's type.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    check_value(&value)?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The shared checks, naming the top-level field they fail in.
pub fn check_value(value: &Value) -> Result<(), ApiError> {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key.contains('\0') || has_nul(value) {
                    return Err(validation(format!(
                        "{key}: must not contain NUL characters"
                    )));
                }
                if is_date_field(key)
                    && let Value::String(s) = value
                    && date_out_of_range(s)
                {
                    return Err(validation(format!(
                        "{key}: dates must be within years 0001-9999"
                    )));
                }
            }
            Ok(())
        }
        other if has_nul(other) => Err(validation(
            "body: must not contain NUL characters".to_owned(),
        )),
        _ => Ok(()),
    }
}

fn validation(message: String) -> ApiError {
    ApiError::new(ErrorCode::VALIDATION_ERROR, message)
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Field names that carry dates or timestamps (`start_date`, `due_date`,
/// `expires_at`, ...).
fn is_date_field(key: &str) -> bool {
    key.ends_with("_date") || key.ends_with("_at") || key == "date"
}

/// A date-looking string (`[+-]YYYY…-MM-DD…`) whose year is outside 1-9999:
/// chrono would read some of these and PostgreSQL none, so they are refused
/// before any type sees them. Anything else is left to the route's parser.
fn date_out_of_range(s: &str) -> bool {
    let (signed, rest) = match s.as_bytes().first() {
        Some(b'+') | Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits < 4 || rest.as_bytes().get(digits) != Some(&b'-') {
        return false;
    }
    let year: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
    signed || year == 0 || year > 9999
}

/// A query string's parameters must not carry NUL characters (PostgreSQL
/// cannot compare against one); `Some(name)` names the first that does.
pub fn query_nul(query: &str) -> Option<String> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode(s.replace('+', " ").as_bytes());
        let (key, value) = (decode(key), decode(value));
        if key.contains(&0) || value.contains(&0) {
            return Some(String::from_utf8_lossy(&key).replace('\0', "\\0"));
        }
    }
    None
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_anywhere_names_the_top_level_field() {
        let e = check_value(&json!({"title": "ok", "settings": {"a": ["x\u{0}"]}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::VALIDATION_ERROR);
        assert!(e.message.starts_with("settings"), "{}", e.message);
        let e = check_value(&json!({"config": {"\u{0}": 1}})).unwrap_err();
        assert!(e.message.starts_with("config"));
        assert!(check_value(&json!({"title": "fine \\u0000 text"})).is_ok());
    }

    #[test]
    fn out_of_range_dates_in_date_fields_only() {
        for bad in [
            "0000-01-01",
            "+10000-01-01T00:00:00Z",
            "-0001-01-01",
            "-9999-01-01",
            "10000-01-01",
        ] {
            let e = check_value(&json!({ "due_date": bad })).unwrap_err();
            assert!(e.message.starts_with("due_date"), "{bad}");
        }
        for ok in [
            "2026-01-01",
            "0001-01-01",
            "9999-12-31T23:59:59Z",
            "next week",
        ] {
            assert!(check_value(&json!({ "expires_at": ok })).is_ok(), "{ok}");
        }
        assert!(check_value(&json!({ "title": "0000-01-01" })).is_ok());
    }

    #[test]
    fn query_nul_is_found_through_percent_encoding() {
        assert_eq!(query_nul("search=%00&page=1").as_deref(), Some("search"));
        assert_eq!(query_nul("a=1&b=%2500"), None);
        assert_eq!(query_nul("page=2"), None);
    }
}
