//! How a domain event enum maps to the log's `(event_type, payload)` pair.
//!
//! Event enums are internally tagged with `event_type`, so the stored payload
//! is the variant's fields and the type string is the seeds' dotted name.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The current schema version of every event type that is past version 1.
/// Version 2 of these types guarantees normalised values (timestamps within
/// years 1-9999, microseconds); version 1 payloads are repaired on read.
pub const SCHEMA_VERSIONS: &[(&str, &str, i16)] = &[
    ("sprint", "sprint.created", 2),
    ("sprint", "sprint.updated", 2),
    ("user", "user.api_key_created", 2),
];

pub fn schema_version(stream_type: &str, event_type: &str) -> i16 {
    SCHEMA_VERSIONS
        .iter()
        .find(|(s, t, _)| *s == stream_type && *t == event_type)
        .map_or(1, |(_, _, v)| *v)
}

pub trait DomainEvent: Serialize + DeserializeOwned + Sized {
    /// The `stream_type` of the aggregate these events belong to.
    const STREAM_TYPE: &'static str;

    fn event_type(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map
                .get("event_type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        }
    }

    /// The schema version this code writes for the event's type. A type's
    /// version goes up when the meaning or shape of its stored payload
    /// changes; an upcaster (see [`crate::upcast`]) brings older stored
    /// payloads to it on read.
    fn schema_version(&self) -> i16 {
        schema_version(Self::STREAM_TYPE, &self.event_type())
    }

    /// The stored payload: the variant's fields without the tag.
    fn to_payload(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => {
                map.remove("event_type");
                Value::Object(map)
            }
            _ => Value::Object(Default::default()),
        }
    }

    /// Rebuilds the event from a stored `(event_type, payload)`.
    fn from_stored(event_type: &str, payload: &Value) -> Result<Self, serde_json::Error> {
        let mut map = match payload {
            Value::Object(map) => map.clone(),
            _ => Default::default(),
        };
        map.insert("event_type".into(), Value::String(event_type.to_owned()));
        serde_json::from_value(Value::Object(map))
    }
}
