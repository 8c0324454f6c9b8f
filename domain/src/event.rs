//! How a domain event enum maps to the log's `(event_type, payload)` pair.
//!
//! Event enums are internally tagged with `event_type`, so the stored payload
//! is the variant's fields and the type string is the seeds' dotted name.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
