//! Small validation rules shared by the aggregates, each failing with the
//! caller's own error code.

use crate::{DomainError, ErrorCode};

/// A name trimmed of surrounding whitespace, 1 to `max` characters.
pub fn bounded_name(
    value: &str,
    max: usize,
    code: ErrorCode,
    what: &str,
) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(DomainError::new(
            code,
            format!("{what} must be 1-{max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// `value` must be one of `allowed`.
pub fn one_of(
    value: &str,
    allowed: &[&str],
    code: ErrorCode,
    what: &str,
) -> Result<(), DomainError> {
    if !allowed.contains(&value) {
        return Err(DomainError::new(
            code,
            format!("{what} must be one of {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

/// `name` (case-insensitively) is not used by any entry but `except`.
pub fn name_free<'a, K: PartialEq + 'a>(
    existing: impl IntoIterator<Item = (&'a K, &'a str)>,
    name: &str,
    except: Option<&K>,
    code: ErrorCode,
    what: &str,
) -> Result<(), DomainError> {
    let taken = existing
        .into_iter()
        .any(|(id, other)| Some(id) != except && other.eq_ignore_ascii_case(name));
    if taken {
        return Err(DomainError::new(
            code,
            format!("a {what} named {name:?} already exists"),
        ));
    }
    Ok(())
}
