//! Payload repairs from one schema version to the next, as pure functions
//! (the event store's upcaster registry calls them on read; stored events
//! are never rewritten).
//!
//! Version 1 -> 2 of `sprint.created`, `sprint.updated` and
//! `user.api_key_created`: before values were validated, a timestamp
//! outside years 1-9999 (which PostgreSQL's text parser refuses, so a
//! replay failed) or with sub-microsecond digits (stored truncated live,
//! rounded on replay) could enter the log. Version 2 guarantees normalised
//! values; a version-1 payload is repaired by clamping into years 1-9999
//! and truncating to microseconds, the same normalisation new commands
//! apply. A rebuild then reproduces what the live tables held (for
//! in-range values) or the repaired value (for values no replay could
//! store at all).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::validate::clamp_timestamp;

/// `(event_type, from_version)` pairs [`upcast`] handles.
pub const UPCASTS: &[(&str, i16)] = &[
    ("sprint.created", 1),
    ("sprint.updated", 1),
    ("user.api_key_created", 1),
];

/// The payload of `event_type` at `from_version`, in `from_version + 1`.
pub fn upcast(event_type: &str, from_version: i16, mut payload: Value) -> Value {
    match (event_type, from_version) {
        ("sprint.created", 1) => {
            for key in ["start_date", "end_date"] {
                normalise_field(&mut payload, key);
            }
        }
        ("sprint.updated", 1) => {
            if let Some(changes) = payload.get_mut("changes").and_then(Value::as_array_mut) {
                for change in changes {
                    let dated = matches!(
                        change.get("field").and_then(Value::as_str),
                        Some("start_date" | "end_date")
                    );
                    if dated {
                        normalise_field(change, "old");
                        normalise_field(change, "new");
                    }
                }
            }
        }
        ("user.api_key_created", 1) => normalise_field(&mut payload, "expires_at"),
        _ => {}
    }
    payload
}

fn normalise_field(object: &mut Value, key: &str) {
    if let Some(slot) = object.get_mut(key)
        && let Some(raw) = slot.as_str()
        && let Some(fixed) = normalise(raw)
    {
        *slot = Value::String(fixed);
    }
}

/// A timestamp string as version 2 stores it (`None`: not a timestamp,
/// left alone).
fn normalise(raw: &str) -> Option<String> {
    let parsed: DateTime<Utc> = raw.parse().ok()?;
    let fixed = clamp_timestamp(parsed);
    Some(fixed.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn poisoned_sprint_dates_are_clamped_and_truncated() {
        let v1 = json!({"project_id": "x", "name": "S", "start_date": "0000-01-01T00:00:00Z",
                        "end_date": "2026-01-01T00:00:00.000000999Z", "goal": null, "status": "planned"});
        let v2 = upcast("sprint.created", 1, v1);
        assert_eq!(v2["start_date"], "0001-01-01T00:00:00Z");
        assert_eq!(v2["end_date"], "2026-01-01T00:00:00Z");
        let v1 = json!({"changes": [{"field": "end_date", "old": null, "new": "+10000-01-01T00:00:00Z"},
                                    {"field": "name", "old": "a", "new": "0000-01-01T00:00:00Z"}]});
        let v2 = upcast("sprint.updated", 1, v1);
        assert_eq!(v2["changes"][0]["new"], "9999-12-31T23:59:59.999999Z");
        assert_eq!(
            v2["changes"][1]["new"], "0000-01-01T00:00:00Z",
            "only date fields"
        );
    }

    #[test]
    fn good_payloads_pass_unchanged_in_meaning() {
        let v1 = json!({"key_id": "k", "name": "n", "key_prefix": "p", "expires_at": "2031-01-01T00:00:00.123456Z"});
        let v2 = upcast("user.api_key_created", 1, v1.clone());
        assert_eq!(v2, v1);
        let none = json!({"key_id": "k", "name": "n", "key_prefix": "p", "expires_at": null});
        assert_eq!(upcast("user.api_key_created", 1, none.clone()), none);
    }
}
