use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::RecordedEvent;

/// Maps a stored payload of `(event_type, from_version)` to the next schema
/// version. Stored events are never rewritten; upcasting happens on read.
pub trait Upcaster: Send + Sync {
    fn event_type(&self) -> &str;
    #[allow(clippy::wrong_self_convention)] // "the version it upcasts from"
    fn from_version(&self) -> i16;
    /// Returns the payload in schema version `from_version() + 1`.
    fn upcast(&self, payload: Value) -> Value;
}

#[derive(Clone, Default)]
pub struct Upcasters {
    by_key: HashMap<(String, i16), Arc<dyn Upcaster>>,
}

impl Upcasters {
    pub fn register(&mut self, upcaster: Arc<dyn Upcaster>) {
        self.by_key.insert(
            (upcaster.event_type().to_owned(), upcaster.from_version()),
            upcaster,
        );
    }

    /// Applies upcasters one version at a time until none matches.
    pub fn upcast(&self, mut event: RecordedEvent) -> RecordedEvent {
        if self.by_key.is_empty() {
            return event;
        }
        while let Some(upcaster) = self
            .by_key
            .get(&(event.event_type.clone(), event.schema_version))
        {
            event.payload = upcaster.upcast(std::mem::take(&mut event.payload));
            event.schema_version += 1;
        }
        event
    }
}
