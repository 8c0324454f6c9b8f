//! The write side's errors, kept apart by meaning (STYLE.md): a domain
//! rule said no, another writer got there first, the caller's precondition
//! is stale, or the infrastructure failed (with its source kept).

use domain::{DomainError, ErrorCode};
use eventstore::AppendError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Lost an optimistic-concurrency race (or kept losing it): the
    /// command is re-decided on fresh state by [`crate::transact!`], and
    /// the caller only sees it after the bounded retries.
    #[error("concurrent modification of {0}; retry")]
    Conflict(Uuid),
    /// The caller asked for a specific version (`If-Match`) and the stream
    /// has moved on: a precondition, never retried.
    #[error("{stream_id} is at version {actual}, not {expected}")]
    Stale {
        stream_id: Uuid,
        expected: i64,
        actual: i64,
    },
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// A failure of something the command depends on, never of the caller.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("append failed")]
    Append(#[source] AppendError),
    #[error("cannot decode stored {event_type} (version {version}) of stream {stream_id}")]
    Decode {
        stream_id: Uuid,
        version: i64,
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} failed")]
    Crypto {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server is not configured for what was asked.
    #[error("not configured: {0}")]
    Config(&'static str),
    #[error("credential {name} of agent {agent_id}: {reason}")]
    Credential {
        name: String,
        agent_id: Uuid,
        reason: &'static str,
    },
    /// A handler was called with arguments it cannot act on: a bug in the
    /// caller, not bad input.
    #[error("invariant violated: {0}")]
    Bug(&'static str),
}

impl CommandError {
    pub fn domain(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Domain(DomainError::new(code, message))
    }

    pub fn crypto(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Infra(InfraError::Crypto {
            what,
            source: source.into(),
        })
    }

    /// Whether running the whole command again on a fresh transaction can
    /// succeed: a lost race, or PostgreSQL rolled the transaction back for
    /// a reason that is about timing, not about the command (SQLSTATE
    /// `40P01` deadlock victim, `40001` serialization failure, `55P03`
    /// lock not available).
    pub fn is_retryable(&self) -> bool {
        match self {
            CommandError::Conflict(_) => true,
            CommandError::Infra(InfraError::Database(e)) => retryable_sqlstate(e),
            CommandError::Infra(InfraError::Append(e)) => match e {
                AppendError::Database(e) => retryable_sqlstate(e),
                AppendError::Projector { source, .. } => source
                    .downcast_ref::<sqlx::Error>()
                    .is_some_and(retryable_sqlstate),
                _ => false,
            },
            _ => false,
        }
    }
}

/// SQLSTATEs that mean "the same transaction may succeed if run again".
pub fn retryable_sqlstate(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "55P03"))
}

/// A unique violation on the log's own keys means another writer created
/// the same stream version first: a lost race, not a failure.
fn is_log_conflict(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.code().as_deref() == Some("23505")
            && matches!(
                e.constraint(),
                Some("streams_pkey" | "events_stream_id_version_key")
            )
    })
}

impl From<sqlx::Error> for CommandError {
    fn from(error: sqlx::Error) -> Self {
        if is_log_conflict(&error) {
            return Self::Conflict(Uuid::nil());
        }
        Self::Infra(InfraError::Database(error))
    }
}

impl From<AppendError> for CommandError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::VersionConflict { stream_id, .. }
            | AppendError::GuardMoved { stream_id } => Self::Conflict(stream_id),
            AppendError::Database(e) => e.into(),
            other => Self::Infra(InfraError::Append(other)),
        }
    }
}

pub type CommandResult<T> = Result<T, CommandError>;

/// An error with its whole `source()` chain, for logs.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_races_are_retryable_and_domain_errors_are_not() {
        assert!(CommandError::Conflict(Uuid::nil()).is_retryable());
        assert!(!CommandError::domain(ErrorCode::BAD_REQUEST, "no").is_retryable());
        assert!(
            !CommandError::Stale {
                stream_id: Uuid::nil(),
                expected: 1,
                actual: 2
            }
            .is_retryable()
        );
        assert!(!CommandError::from(sqlx::Error::RowNotFound).is_retryable());
    }
}
