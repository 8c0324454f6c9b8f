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
    // A value refused whatever the context: a NUL character, a date outside
    // years 1-9999, a non-finite number.
    VALIDATION_ERROR = 400,
    USER_INVALID_CURSOR = 400,
    ROLE_NAME_INVALID = 400,
    ROLE_REQUIRED = 400,
    PROJECT_NAME_INVALID = 400,
    PROJECT_PREFIX_INVALID = 400,
    API_KEY_NAME_INVALID = 400,
    API_KEY_NAME_TOO_LONG = 400,
    TASK_TITLE_INVALID = 400,
    TASK_EPIC_CANNOT_HAVE_PARENT = 400,
    TASK_CANNOT_BE_OWN_PARENT = 400,
    TASK_PARENT_CYCLE_DETECTED = 400,
    TASK_TYPE_NAME_INVALID = 400,
    TASK_STATUS_NAME_INVALID = 400,
    TASK_STATUS_CATEGORY_INVALID = 400,
    TASK_STATUS_REORDER_INVALID = 400,
    CUSTOM_FIELD_KEY_INVALID = 400,
    CUSTOM_FIELD_TYPE_INVALID = 400,
    CUSTOM_FIELD_NAME_INVALID = 400,
    SPRINT_NAME_INVALID = 400,
    SPRINT_STATUS_INVALID = 400,
    VIEW_NAME_INVALID = 400,
    VIEW_TYPE_INVALID = 400,
    VIEW_REORDER_INVALID = 400,
    VIEW_PLUGIN_CONFIG_REQUIRED = 400,
    ACTIVITY_NOT_A_COMMENT = 400,
    ACTIVITY_COMMENT_CONTENT_INVALID = 400,
    ACTIVITY_COMMENT_ACTOR_UNIDENTIFIED = 400,
    AGENT_HANDLE_INVALID = 400,
    AGENT_NAME_INVALID = 400,
    AGENT_TYPE_INVALID = 400,
    AGENT_SKILL_NAME_INVALID = 400,
    AGENT_SKILL_NAME_RESERVED = 400,
    AGENT_CONVERSATION_INVALID_CURSOR = 400,
    AGENT_CONVERSATION_EVENT_INVALID_CURSOR = 400,
    PLUGIN_DOWNGRADE_NOT_ALLOWED = 400,
    TASK_LINK_CANNOT_LINK_TO_SELF = 400,
    TASK_LINK_CROSS_PROJECT = 400,
    DOC_TITLE_INVALID = 400,
    DOC_FOLDER_NAME_INVALID = 400,
    DOC_FOLDER_NOT_IN_PROJECT = 400,
    DOC_FOLDER_SELF_PARENT = 400,
    DOC_FOLDER_CYCLE = 400,
    DOC_ACTIVITY_NOT_A_COMMENT = 400,
    DOC_COMMENT_CONTENT_INVALID = 400,
    DOC_COMMENT_ACTOR_UNIDENTIFIED = 400,
    ATTACHMENT_INVALID = 400,
    ATTACHMENT_MULTIPART_UPLOAD_ID_REQUIRED = 400,
    ATTACHMENT_NOT_MULTIPART_UPLOAD = 400,
    ATTACHMENT_UPLOAD_ID_MISMATCH = 400,
    ATTACHMENT_MULTIPART_PARTS_EMPTY = 400,
    NOTIFICATION_INVALID_CURSOR = 400,

    AUTH_INVALID_CREDENTIALS = 401,
    AUTH_MISSING_TOKEN = 401,
    AUTH_TOKEN_INVALID = 401,
    AUTH_UNAUTHENTICATED = 401,
    API_KEY_REVOKED = 401,
    API_KEY_EXPIRED = 401,

    FORBIDDEN = 403,
    AUTH_PASSWORD_CHANGE_REQUIRED = 403,
    TASK_TYPE_IS_SYSTEM = 403,
    ACTIVITY_FORBIDDEN = 403,
    DOC_ACTIVITY_FORBIDDEN = 403,

    USER_NOT_FOUND = 404,
    ROLE_NOT_FOUND = 404,
    PROJECT_NOT_FOUND = 404,
    PROJECT_MEMBER_NOT_FOUND = 404,
    API_KEY_NOT_FOUND = 404,
    TASK_NOT_FOUND = 404,
    TASK_TYPE_NOT_FOUND = 404,
    TASK_STATUS_NOT_FOUND = 404,
    CUSTOM_FIELD_NOT_FOUND = 404,
    SPRINT_NOT_FOUND = 404,
    VIEW_NOT_FOUND = 404,
    ACTIVITY_NOT_FOUND = 404,
    TASK_LINK_NOT_FOUND = 404,
    AGENT_NOT_FOUND = 404,
    AGENT_MCP_SERVER_NOT_FOUND = 404,
    AGENT_SKILL_NOT_FOUND = 404,
    AGENT_CONVERSATION_NOT_FOUND = 404,
    AGENT_CHAT_SESSION_NOT_FOUND = 404,
    DOC_NOT_FOUND = 404,
    DOC_FOLDER_NOT_FOUND = 404,
    DOC_SNAPSHOT_NOT_FOUND = 404,
    DOC_ACTIVITY_NOT_FOUND = 404,
    FILE_NOT_FOUND = 404,
    ATTACHMENT_NOT_FOUND = 404,
    NOTIFICATION_NOT_FOUND = 404,
    NOT_FOUND = 404,
    PLUGIN_NOT_FOUND = 404,
    PLUGIN_ROUTE_NOT_FOUND = 404,

    CONFLICT = 409,
    USER_USERNAME_TAKEN = 409,
    ROLE_NAME_TAKEN = 409,
    ROLE_IS_SYSTEM = 409,
    ROLE_IN_USE = 409,
    PROJECT_MEMBER_ALREADY_ADDED = 409,
    PROJECT_LAST_ADMIN = 409,
    TASK_TYPE_NAME_RESERVED = 409,
    TASK_TYPE_IS_DEFAULT = 409,
    TASK_TYPE_IN_USE = 409,
    TASK_STATUS_IS_DEFAULT = 409,
    TASK_STATUS_NAME_TAKEN = 409,
    TASK_STATUS_IN_USE = 409,
    CUSTOM_FIELD_KEY_TAKEN = 409,
    SPRINT_ALREADY_COMPLETE = 409,
    VIEW_IS_LAST_VIEW = 409,
    TASK_LINK_ALREADY_EXISTS = 409,
    AGENT_HANDLE_TAKEN = 409,
    AGENT_CONVERSATION_NOT_RUNNING = 409,
    AGENT_CONVERSATION_ALREADY_STOPPED = 409,
    PLUGIN_NAME_TAKEN = 409,
    PLUGIN_ALREADY_UP_TO_DATE = 409,
    PLUGIN_INCOMPATIBLE_HOST_VERSION = 409,
    ATTACHMENT_UPLOAD_NOT_PENDING = 409,

    METHOD_NOT_ALLOWED = 405,
    NOT_ACCEPTABLE = 406,
    PAYLOAD_TOO_LARGE = 413,
    ATTACHMENT_TOO_LARGE = 413,
    URI_TOO_LONG = 414,
    UNSUPPORTED_MEDIA_TYPE = 415,
    USER_INVALID_CURRENT_PASSWORD = 422,
    TOO_MANY_REQUESTS = 429,
    INTERNAL_ERROR = 500,
    PLUGIN_EXECUTION_ERROR = 500,
    PLUGIN_UNAVAILABLE = 503,
    // PostgreSQL does not answer (restarting, unreachable, pool exhausted
    // for 5 s); nothing was written. Retry after the `Retry-After` seconds.
    DATABASE_UNAVAILABLE = 503,
    PLUGIN_TIMEOUT = 504,
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
