//! Items the derive macros refer to. Not public API.

pub use serde;
pub use serde_json;

pub use crate::aggregate::{Aggregate, Apply, Dispatch, IntoEvents};
pub use crate::error::BoxError;
pub use crate::event::{Decoded, DomainEvent, EventDecodeError};
pub use crate::snapshot::{SnapshotMode, SnapshotPolicy};
pub use crate::upcast::{EventUpcaster, SnapshotUpcaster, UpcastFrom};
pub use core::result::Result;
pub use std::string::String;

use crate::upcast::Values;

pub use crate::snapshot::{
    AllOf, AnyOf, CostlyLoad, EveryNEvents, Never, OnEvents, SnapshotStrategy, TimeSinceSnapshot,
};

/// `#[snapshot(strategy = ...)]`: the bound on `SnapshotStrategy` reads as advice when
/// the expression is not a strategy, and the box keeps it from being reported twice.
pub fn user_strategy<S: SnapshotStrategy + 'static>(strategy: S) -> Box<dyn SnapshotStrategy> {
    Box::new(strategy)
}

/// `true` if `name` is one of `event_types`, or if `event_types` is empty (the
/// fallback of a `#[derive(DomainEvent)]` that failed and already reported why).
/// Used by the compile-time check of `#[snapshot(on(...))]`.
pub const fn has_event_type(event_types: &[&str], name: &str) -> bool {
    if event_types.is_empty() {
        return true;
    }
    let mut i = 0;
    while i < event_types.len() {
        if str_eq(event_types[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// The compile-time error of `#[snapshot(on(name))]` for a name that is not one of
/// `event_types`: `prefix`, then the names it could have been.
pub const fn unknown_event_message(prefix: &str, event_types: &[&str]) -> ConstMessage {
    let mut m = ConstMessage::new().push(prefix);
    let mut i = 0;
    while i < event_types.len() {
        m = m.push(if i == 0 { "; expected one of: " } else { ", " });
        m = m.push(event_types[i]);
        i += 1;
    }
    m
}

/// A message assembled at compile time (const code cannot format), truncated with
/// "..." at a whole piece if too long.
pub struct ConstMessage {
    buf: [u8; 1024],
    len: usize,
    full: bool,
}

impl ConstMessage {
    const ELLIPSIS: &'static str = "...";

    const fn new() -> Self {
        ConstMessage {
            buf: [0; 1024],
            len: 0,
            full: false,
        }
    }

    const fn push(mut self, piece: &str) -> Self {
        if self.full {
            return self;
        }
        let piece = if self.len + piece.len() + Self::ELLIPSIS.len() <= self.buf.len() {
            piece
        } else {
            self.full = true;
            Self::ELLIPSIS
        };
        let bytes = piece.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self.buf[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// The message so far.
    pub const fn as_str(&self) -> &str {
        match ::core::str::from_utf8(self.buf.split_at(self.len).0) {
            Ok(s) => s,
            Err(_) => "",
        }
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The state's snapshot JSON; the bound reads as advice when `Serialize` is missing.
pub fn to_snapshot_json<T: SnapshotSerialize>(state: &T) -> serde_json::Result<String> {
    state.__to_json()
}

/// The state from snapshot JSON; the bound reads as advice when `Deserialize` is missing.
pub fn from_snapshot_json<T: SnapshotDeserialize>(json: &str) -> serde_json::Result<T> {
    T::__from_json(json)
}

#[diagnostic::on_unimplemented(
    message = "aggregate state `{Self}` cannot be snapshotted: it does not implement `serde::Serialize`",
    label = "snapshots store this state as JSON",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait SnapshotSerialize {
    fn __to_json(&self) -> serde_json::Result<String>;
}

// Report the missing `SnapshotSerialize` (worded above), not serde's bound.
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize> SnapshotSerialize for T {
    fn __to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

#[diagnostic::on_unimplemented(
    message = "aggregate state `{Self}` cannot be restored from a snapshot: it does not implement `serde::Deserialize`",
    label = "snapshots store this state as JSON",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait SnapshotDeserialize: Sized {
    fn __from_json(json: &str) -> serde_json::Result<Self>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::de::DeserializeOwned> SnapshotDeserialize for T {
    fn __from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }
}

/// The stored JSON of an event that an upcast chain starts on.
pub fn upcast_start(event_type: &str, payload: &str) -> Result<Values, EventDecodeError> {
    let _ = event_type;
    Ok(Values::One(serde_json::from_str(payload)?))
}

/// One step of an event chain, run on each value the earlier steps produced.
pub fn upcast_event_step<U: EventUpcaster>(
    values: Values,
    event_type: &str,
    from_version: u32,
    step: &U,
) -> Result<Values, EventDecodeError> {
    let failed = |source| EventDecodeError::Upcast {
        event_type: event_type.into(),
        from_version,
        source,
    };
    match values {
        Values::One(v) => step.upcast(v).map_err(failed),
        Values::Many(vs) => {
            let mut out = Vec::with_capacity(vs.len());
            for v in vs {
                match step.upcast(v).map_err(failed)? {
                    Values::One(v) => out.push(v),
                    Values::Many(more) => out.extend(more),
                }
            }
            Ok(Values::Many(out))
        }
    }
}

/// The values at the end of a chain, each decoded as the variant's type.
pub fn upcast_finish<T: serde::de::DeserializeOwned, E>(
    values: Values,
    wrap: fn(T) -> E,
) -> Result<Decoded<E>, EventDecodeError> {
    match values {
        Values::One(v) => Ok(Decoded::One(wrap(serde_json::from_value(v)?))),
        Values::Many(vs) => vs
            .into_iter()
            .map(|v| Ok(wrap(serde_json::from_value(v)?)))
            .collect::<Result<Vec<E>, EventDecodeError>>()
            .map(Decoded::Many),
    }
}

/// A step of a typed chain; the bound explains a missing `From`.
pub fn upcast_typed<T, U: UpcastFrom<T>>(value: T) -> U {
    U::upcast_from(value)
}

/// An event stored by newer code.
pub fn newer_event(event_type: &str, stored: u32, current: u32) -> EventDecodeError {
    EventDecodeError::NewerVersion {
        event_type: event_type.into(),
        stored,
        current,
    }
}

/// An event stored at a version below the first step of its chain (version 0).
pub fn below_chain(event_type: &str, stored: u32) -> EventDecodeError {
    EventDecodeError::Upcast {
        event_type: event_type.into(),
        from_version: stored,
        source: format!("no upcast step reads version {stored}; versions start at 1").into(),
    }
}

/// [`DomainEvent::from_payload`] from [`DomainEvent::decode`]: exactly one event.
pub fn exactly_one<E>(event_type: &str, decoded: Decoded<E>) -> Result<E, EventDecodeError> {
    let count = decoded.len();
    decoded.into_one().ok_or_else(|| EventDecodeError::NotOne {
        event_type: event_type.into(),
        count,
    })
}

/// The JSON of a snapshot that a chain starts on.
pub fn snapshot_start(json: &str) -> Result<serde_json::Value, BoxError> {
    Ok(serde_json::from_str(json)?)
}

/// One step of a snapshot chain, its error saying which step failed.
pub fn upcast_snapshot_step<U: SnapshotUpcaster>(
    value: serde_json::Value,
    from_version: u32,
    step: &U,
) -> Result<serde_json::Value, BoxError> {
    step.upcast(value)
        .map_err(|e| format!("the step from schema version {from_version} failed: {e}").into())
}

/// The state from the JSON at the end of a snapshot chain.
pub fn snapshot_from_value<T: SnapshotDeserialize>(
    value: serde_json::Value,
) -> Result<T, BoxError> {
    // The state type's own decoding, so that it reads as every snapshot does.
    T::__from_json(&value.to_string())
        .map_err(|e| format!("the upcast state does not decode as the current schema: {e}").into())
}

/// The state from the typed end of a snapshot chain, for `upcast_from`.
pub fn snapshot_typed<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, BoxError> {
    Ok(serde_json::from_str(json)?)
}

/// `#[snapshot(keep = N)]`.
pub fn keep_snapshots(policy: SnapshotPolicy, keep: u32) -> SnapshotPolicy {
    // The derive refuses `keep = 0`.
    match std::num::NonZeroU32::new(keep) {
        Some(keep) => policy.with_keep(keep),
        None => policy,
    }
}

/// `#[snapshot(compress_over = "64KiB")]`, in bytes (the derive checks the size: 1 to
/// 1 GiB, which fits a `usize` everywhere).
pub fn compress_snapshots_over(policy: SnapshotPolicy, bytes: usize) -> SnapshotPolicy {
    policy.with_compress_over(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_compared_exactly() {
        assert!(has_event_type(&["A", "Bc"], "Bc"));
        assert!(!has_event_type(&["A", "Bc"], "B"));
        assert!(!has_event_type(&["A", "Bc"], "bc"));
        assert!(has_event_type(&[], "anything"));
    }

    #[test]
    fn messages_list_the_names_and_truncate_whole() {
        let m = unknown_event_message("`X` is not an event", &["A", "B"]);
        assert_eq!(m.as_str(), "`X` is not an event; expected one of: A, B");
        let long = ["x".repeat(600), "y".repeat(600)];
        let names = [long[0].as_str(), long[1].as_str()];
        let m = unknown_event_message("p", &names);
        assert!(m.as_str().ends_with("x, ..."));
        assert!(m.as_str().len() <= 1024);
    }
}
