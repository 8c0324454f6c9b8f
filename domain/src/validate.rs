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

/// Years PostgreSQL, chrono and every JSON client agree on. A value
/// outside them could be accepted live and then fail (or differ) on
/// replay, so none enters an event.
pub const MIN_YEAR: i32 = 1;
pub const MAX_YEAR: i32 = 9999;

fn out_of_range(field: &str) -> DomainError {
    DomainError::new(
        ErrorCode::VALIDATION_ERROR,
        format!("{field}: dates must be within years {MIN_YEAR:04}-{MAX_YEAR}"),
    )
}

/// A calendar date within years 1-9999.
pub fn date(field: &str, value: chrono::NaiveDate) -> Result<chrono::NaiveDate, DomainError> {
    use chrono::Datelike;
    if (MIN_YEAR..=MAX_YEAR).contains(&value.year()) {
        Ok(value)
    } else {
        Err(out_of_range(field))
    }
}

/// A timestamp within years 1-9999, truncated to microseconds (what
/// PostgreSQL stores): the event then holds exactly what every projector,
/// live or replayed, will store.
pub fn timestamp(
    field: &str,
    value: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, DomainError> {
    use chrono::{Datelike, Timelike};
    if !(MIN_YEAR..=MAX_YEAR).contains(&value.year()) {
        return Err(out_of_range(field));
    }
    let micros = value.nanosecond() / 1_000 * 1_000;
    Ok(value.with_nanosecond(micros).unwrap_or(value))
}

/// Clamps a stored timestamp into years 1-9999 and microseconds: the
/// upcasters' repair of events accepted before these rules existed.
pub fn clamp_timestamp(value: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Utc};
    let clamped = if value.year() < MIN_YEAR {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(MIN_YEAR, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or_default(),
        )
    } else if value.year() > MAX_YEAR {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(MAX_YEAR, 12, 31)
                .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999))
                .unwrap_or_default(),
        )
    } else {
        value
    };
    let micros = clamped.nanosecond() / 1_000 * 1_000;
    clamped.with_nanosecond(micros).unwrap_or(clamped)
}

/// No NUL character: PostgreSQL cannot store one in text or JSONB.
pub fn no_nul(field: &str, value: &str) -> Result<(), DomainError> {
    if value.contains('\0') {
        return Err(DomainError::new(
            ErrorCode::VALIDATION_ERROR,
            format!("{field}: must not contain NUL characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate, Utc};

    #[test]
    fn dates_outside_years_1_to_9999_are_refused() {
        let year = |y| NaiveDate::from_ymd_opt(y, 1, 1).unwrap();
        assert!(date("d", year(1)).is_ok());
        assert!(date("d", year(9999)).is_ok());
        for bad in [0, -1, -9999, 10_000] {
            let e = date("due_date", year(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::VALIDATION_ERROR);
            assert!(e.message.contains("due_date"));
        }
    }

    #[test]
    fn timestamps_keep_microseconds_only() {
        let t: DateTime<Utc> = "2026-01-01T00:00:00.000000999Z".parse().unwrap();
        let n = timestamp("t", t).unwrap();
        assert_eq!(n.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        let t: DateTime<Utc> = "2026-01-01T00:00:00.123456789Z".parse().unwrap();
        assert_eq!(
            timestamp("t", t).unwrap().timestamp_subsec_nanos(),
            123_456_000
        );
    }

    #[test]
    fn clamping_repairs_what_older_versions_accepted() {
        let early: DateTime<Utc> = "-0001-06-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            clamp_timestamp(early).to_rfc3339(),
            "0001-01-01T00:00:00+00:00"
        );
        let late: DateTime<Utc> = "+10000-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            clamp_timestamp(late).to_rfc3339(),
            "9999-12-31T23:59:59.999999+00:00"
        );
    }

    #[test]
    fn nul_is_refused_with_the_field_named() {
        assert!(no_nul("title", "ok").is_ok());
        let e = no_nul("title", "a\0b").unwrap_err();
        assert_eq!(e.code, ErrorCode::VALIDATION_ERROR);
        assert!(e.message.starts_with("title"));
    }
}
