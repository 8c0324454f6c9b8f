//! What the log adds to every stream-backed read: one entry per version
//! (`GET …/history`) and reads as of a version or a time (`?as_of=`).

use chrono::{DateTime, Utc};
use eventstore::{EventStore, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One recorded change of a stream, as history endpoints show it (the
/// same shape as a task's history): `changes` for update events, the whole
/// `payload` for the others.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HistoryEntry {
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    /// The acting user (`null` for system or non-user actors).
    pub actor_id: Option<Uuid>,
    pub source: Option<String>,
    pub request_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// For a revert: the event it reverts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverts: Option<Value>,
}

impl HistoryEntry {
    pub fn of(event: &RecordedEvent) -> Self {
        let text = |pointer: &str| {
            event
                .metadata
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let changes = event.payload.get("changes").cloned();
        Self {
            version: event.version,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            actor_id: text("/actor/user_id").and_then(|id| id.parse().ok()),
            source: text("/source"),
            request_id: text("/request_id"),
            recorded_at: event.recorded_at,
            payload: changes.is_none().then(|| event.payload.clone()),
            changes,
            reverts: event.metadata.pointer("/extra/reverts").cloned(),
        }
    }
}

/// A point in a stream's life: a version (events `1..=v`) or a time
/// (events recorded at or before it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AsOf {
    Version(i64),
    Time(DateTime<Utc>),
}

impl AsOf {
    /// `as_of=<version>` or `as_of=<RFC 3339 timestamp>`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(version) = text.parse::<i64>() {
            return (version >= 0).then_some(Self::Version(version));
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Self::Time(t.with_timezone(&Utc)))
    }

    pub fn includes(&self, event: &RecordedEvent) -> bool {
        match self {
            Self::Version(v) => event.version <= *v,
            Self::Time(t) => event.recorded_at <= *t,
        }
    }
}

/// A stream's events, when the stream is of `stream_type` and belongs to
/// `project_id` (`None` otherwise, so callers answer 404).
pub async fn project_stream(
    store: &EventStore,
    stream_type: &str,
    project_id: Uuid,
    stream_id: Uuid,
) -> Result<Option<Vec<RecordedEvent>>, sqlx::Error> {
    let events = store.read_stream(stream_id, 0).await?;
    let ours = events
        .first()
        .is_some_and(|e| e.stream_type == stream_type && e.project_id == Some(project_id));
    Ok(ours.then_some(events))
}
