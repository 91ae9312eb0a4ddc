//! The input rules every store applies before it touches its storage, written once so
//! that every backend refuses the same bad input with the same [`Error::InvalidInput`].
//!
//! The rules are those of the strictest backend, so that data accepted by one store can
//! move to any other: names fit PostgreSQL's indexes and hold no NUL, numbers fit the
//! signed SQL columns, timestamps are years 1 to 9999 (RFC 3339, as SQLite stores them),
//! snapshot states are JSON without NUL characters (so that every state can be cast to
//! `jsonb` in SQL, which refuses `\u0000`).

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::NewEvent;
use crate::snapshot::Snapshot;
use crate::version::ExpectedVersion;

/// The longest aggregate or event type name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// An aggregate or event type name: 1 to [`MAX_NAME_LEN`] bytes, no NUL.
pub(crate) fn name(field: &'static str, value: &str) -> Result<()> {
    let problem = if value.is_empty() {
        "is empty"
    } else if value.len() > MAX_NAME_LEN {
        "is longer than 255 bytes"
    } else if value.contains('\0') {
        "contains a NUL character"
    } else {
        return Ok(());
    };
    let shown: String = value
        .chars()
        .take(40)
        .collect::<String>()
        .replace('\0', "\\0");
    let more = if shown.len() < value.len() { "..." } else { "" };
    Err(Error::invalid(
        field,
        format!("{field} `{shown}{more}` {problem}"),
    ))
}

/// A version, position or count stored in a signed 64-bit column.
pub(crate) fn to_i64(field: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::invalid(
            field,
            format!(
                "{field} {value} is above the largest storable value {}",
                i64::MAX
            ),
        )
    })
}

/// A schema or event version stored in a signed 32-bit column.
pub(crate) fn to_i32(field: &'static str, value: u32) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::invalid(
            field,
            format!(
                "{field} {value} is above the largest storable value {}",
                i32::MAX
            ),
        )
    })
}

/// A timestamp every backend can store and read back: years 1 to 9999.
pub(crate) fn timestamp(field: &'static str, at: DateTime<Utc>) -> Result<()> {
    if (1..=9999).contains(&at.year()) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{field} {at} is outside the years 1 to 9999"),
        ))
    }
}

/// Everything an append is checked for before a store is touched: the names, the
/// expected version, and each event (type name, version, payload JSON, time). The first
/// problem is returned, naming the event.
pub(crate) fn append(
    aggregate_type: &str,
    aggregate_id: Uuid,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<()> {
    name("aggregate_type", aggregate_type)?;
    if let ExpectedVersion::Exact(v) = expected {
        to_i64("expected_version", v)?;
    }
    for event in events {
        let which = || format!("event {} ({:.60})", event.event_id, event.event_type);
        let in_event = |e: Error| match e {
            Error::InvalidInput { field, message } => Error::invalid(
                field,
                format!(
                    "{message}, in {} for {aggregate_type}/{aggregate_id}",
                    which()
                ),
            ),
            other => other,
        };
        name("event_type", &event.event_type).map_err(in_event)?;
        to_i32("event_version", event.event_version).map_err(in_event)?;
        timestamp("occurred_at", event.occurred_at).map_err(in_event)?;
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&event.payload) {
            return Err(Error::invalid(
                "payload",
                format!(
                    "the payload of {} for {aggregate_type}/{aggregate_id} is not valid JSON: {e}",
                    which()
                ),
            ));
        }
    }
    Ok(())
}

/// A batch whose event ids are not all distinct: [`Error::DuplicateEventId`] for the
/// first id seen twice. Stores check it after the expected version.
pub(crate) fn distinct_ids(
    aggregate_type: &str,
    aggregate_id: Uuid,
    events: &[NewEvent],
) -> Result<()> {
    let mut ids = HashSet::with_capacity(events.len());
    match events.iter().find(|e| !ids.insert(e.event_id)) {
        Some(e) => Err(Error::duplicate_event(
            aggregate_type,
            aggregate_id,
            e.event_id,
        )),
        None => Ok(()),
    }
}

/// Everything a snapshot is checked for before a store is touched: the type name, the
/// version columns, the time, and a state that is JSON every backend stores as is.
pub(crate) fn snapshot(snapshot: &Snapshot) -> Result<()> {
    name("aggregate_type", &snapshot.aggregate_type)?;
    to_i64("version", snapshot.version)?;
    to_i32("schema_version", snapshot.schema_version)?;
    timestamp("created_at", snapshot.created_at)?;
    state(&snapshot.state).map_err(|problem| {
        Error::invalid(
            "state",
            format!(
                "the snapshot state of {}/{} at version {} {problem}",
                snapshot.aggregate_type, snapshot.aggregate_id, snapshot.version
            ),
        )
    })
}

/// Why a snapshot state cannot be stored: it is not JSON (a lone surrogate escape is
/// not), or a string in it holds a NUL character.
fn state(text: &str) -> std::result::Result<(), String> {
    // A lone surrogate escape does not parse into a `Value` string: it is caught here.
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(&value) {
        return Err(
            "holds a NUL character (\\u0000) in a string, which PostgreSQL's jsonb cannot hold"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("aggregate_type", "Order").is_ok());
        assert!(name("aggregate_type", &"x".repeat(255)).is_ok());
        for bad in ["", "a\0b", &"x".repeat(256)] {
            match name("aggregate_type", bad) {
                Err(Error::InvalidInput { field, message }) => {
                    assert_eq!(field, "aggregate_type");
                    assert!(message.starts_with("aggregate_type `"), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn states() {
        assert!(state(r#"{"a":[1,"x",{"b":null}]}"#).is_ok());
        assert!(state(r#"{"a":"nul\u0000"}"#).is_err());
        assert!(state(r#"{"k\u0000":1}"#).is_err());
        assert!(state(r#"{"a":"\ud800"}"#).is_err(), "lone surrogate");
        assert!(
            state(r#"{"a":"\\u0000"}"#).is_ok(),
            "an escaped backslash is not a NUL"
        );
        assert!(state("not json").is_err());
    }
}
