//! Items the derive macros refer to. Not public API.

pub use serde;
pub use serde_json;

pub use crate::aggregate::IntoEvents;

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
