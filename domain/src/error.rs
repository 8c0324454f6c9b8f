//! The one error-code table (DESIGN.md §8): every code the API can answer
//! with, its stable name and its HTTP status, in one place.

use std::fmt;

macro_rules! codes {
    ($($variant:ident = $status:literal),* $(,)?) => {
        /// Stable, client-visible error codes (the seeds' `error_code`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant)),* }
            }
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),* }
            }
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];
        }
    };
}

codes! {
    BAD_REQUEST = 400,
    USER_INVALID_CURSOR = 400,
    ROLE_NAME_INVALID = 400,
    ROLE_REQUIRED = 400,
    PROJECT_NAME_INVALID = 400,
    PROJECT_PREFIX_INVALID = 400,
    API_KEY_NAME_INVALID = 400,
    API_KEY_NAME_TOO_LONG = 400,

    AUTH_INVALID_CREDENTIALS = 401,
    AUTH_MISSING_TOKEN = 401,
    AUTH_TOKEN_INVALID = 401,
    AUTH_UNAUTHENTICATED = 401,
    API_KEY_REVOKED = 401,
    API_KEY_EXPIRED = 401,

    FORBIDDEN = 403,
    AUTH_PASSWORD_CHANGE_REQUIRED = 403,

    USER_NOT_FOUND = 404,
    ROLE_NOT_FOUND = 404,
    PROJECT_NOT_FOUND = 404,
    PROJECT_MEMBER_NOT_FOUND = 404,
    API_KEY_NOT_FOUND = 404,
    NOT_FOUND = 404,

    CONFLICT = 409,
    USER_USERNAME_TAKEN = 409,
    ROLE_NAME_TAKEN = 409,
    ROLE_IS_SYSTEM = 409,
    ROLE_IN_USE = 409,
    PROJECT_MEMBER_ALREADY_ADDED = 409,
    PROJECT_LAST_ADMIN = 409,

    PAYLOAD_TOO_LARGE = 413,
    USER_INVALID_CURRENT_PASSWORD = 422,
    TOO_MANY_REQUESTS = 429,
    INTERNAL_ERROR = 500,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule of the domain was broken. Carries the client-visible code and a
/// human-readable message; never used for infrastructure failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DomainError {
    pub code: ErrorCode,
    pub message: String,
}

impl DomainError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub type Decision<E> = Result<Vec<E>, DomainError>;
