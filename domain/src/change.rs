//! Field-level changes, the one shape every `*.updated` event records and
//! the activity feed, diffs and reverts show: `{field, old, new}` (seed page
//! 16).
//!
//! The field is typed per aggregate (`ProjectField`, `SprintField`, ...):
//! the domain's `evolve`, the projectors and the write-side indexes match on
//! enum variants, so adding a field makes every non-exhaustive place a
//! compile error instead of a silently skipped column, and a stored event
//! naming a field the code no longer knows fails decoding (an upcaster's
//! job) rather than being applied halfway. The serialized form is the wire
//! name, so events written before the enums existed decode unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange<F> {
    pub field: F,
    pub old: Value,
    pub new: Value,
}

/// A typed field name with its wire form.
pub trait Field: Copy + Eq + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
}

/// Changes being collected by a `decide`: only real changes are kept.
#[derive(Debug)]
pub struct Changes<F>(Vec<FieldChange<F>>);

impl<F> Default for Changes<F> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<F: Field> Changes<F> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `field` going from `old` to `new`, unless they are equal.
    pub fn record(&mut self, field: F, old: impl Into<Value>, new: impl Into<Value>) {
        let (old, new) = (old.into(), new.into());
        if old != new {
            self.0.push(FieldChange { field, old, new });
        }
    }

    /// [`Self::record`] of two serialisable values.
    pub fn record_json<T: Serialize + PartialEq>(&mut self, field: F, old: &T, new: &T) {
        if old != new {
            self.record(field, json(old), json(new));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldChange<F>> {
        self.0
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The changed fields between two serialisable structs whose serde field
/// names are `F`'s wire names, in `new`'s field order. A field `F` does not
/// know is a programming error in `F`'s declaration, caught by the
/// aggregate's tests (`debug_assert`) and skipped in release.
pub fn diff<T: Serialize, F: Field>(old: &T, new: &T) -> Vec<FieldChange<F>> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec![];
    };
    new.iter()
        .filter_map(|(name, value)| {
            let before = old.get(name).cloned().unwrap_or(Value::Null);
            if before == *value {
                return None;
            }
            let field = F::ALL.iter().copied().find(|f| f.as_str() == name);
            debug_assert!(field.is_some(), "field `{name}` has no variant");
            Some(FieldChange {
                field: field?,
                old: before,
                new: value.clone(),
            })
        })
        .collect()
}

/// Applies recorded changes to a serialisable struct whose serde field
/// names are `F`'s wire names (the inverse of [`diff`]).
pub fn apply<T, F: Field>(value: &T, changes: &[FieldChange<F>]) -> T
where
    T: Serialize + serde::de::DeserializeOwned + Clone,
{
    let Ok(Value::Object(mut map)) = serde_json::to_value(value) else {
        return value.clone();
    };
    for change in changes {
        let name = change.field.as_str();
        if map.contains_key(name) {
            map.insert(name.to_owned(), change.new.clone());
        }
    }
    serde_json::from_value(Value::Object(map)).unwrap_or_else(|_| value.clone())
}

/// Declares an aggregate's fields: an enum serialised as the wire names,
/// with [`Field`] and `Display`.
#[macro_export]
macro_rules! fields {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $(#[serde(rename = $wire)] $variant,)+
        }

        impl $crate::change::Field for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::change::Field::as_str(*self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fields! {
        enum Sample { Name = "name", IsOn = "is_on" }
    }

    #[derive(Clone, Serialize, Deserialize)]
    struct S {
        name: String,
        is_on: bool,
    }

    #[test]
    fn wire_shape_is_the_seeds() {
        let change = FieldChange {
            field: Sample::IsOn,
            old: json!(false),
            new: json!(true),
        };
        let value = serde_json::to_value(&change).unwrap();
        assert_eq!(value, json!({"field": "is_on", "old": false, "new": true}));
        assert_eq!(
            serde_json::from_value::<FieldChange<Sample>>(value).unwrap(),
            change
        );
        // A name the enum does not know is a decoding error, not skipped.
        let unknown = json!({"field": "colour", "old": 1, "new": 2});
        assert!(serde_json::from_value::<FieldChange<Sample>>(unknown).is_err());
    }

    #[test]
    fn record_keeps_only_real_changes_and_diff_apply_round_trip() {
        let mut changes = Changes::new();
        changes.record(Sample::Name, "a", "a");
        assert!(changes.is_empty());
        changes.record(Sample::Name, "a", "b");
        assert_eq!(changes.into_vec().len(), 1);

        let old = S {
            name: "a".into(),
            is_on: false,
        };
        let new = S {
            name: "b".into(),
            is_on: false,
        };
        let changes: Vec<FieldChange<Sample>> = diff(&old, &new);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, Sample::Name);
        let applied = apply(&old, &changes);
        assert_eq!(applied.name, "b");
        assert_eq!(Sample::IsOn.to_string(), "is_on");
    }
}
