//! Event-sourced aggregates for Rust, with snapshots that keep loads fast however long
//! the history grows.
//!
//! Declare the events with [`#[derive(DomainEvent)]`](macro@DomainEvent), the state with
//! [`#[derive(Aggregate)]`](macro@Aggregate) and one [`Apply`] impl per event; then load
//! and save through an [`AggregateRepository`].
//!
//! ```
//! use std::sync::Arc;
//! use eventsource::prelude::*;
//! use serde::{Deserialize, Serialize};
//! use uuid::Uuid;
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Opened { pub owner: String }
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Deposited { pub amount: u64 }
//!
//! #[derive(DomainEvent, Clone, Debug)]
//! pub enum AccountEvent {
//!     Opened(Opened),
//!     Deposited(Deposited),
//! }
//!
//! #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
//! #[aggregate(name = "Account", event = AccountEvent)]
//! #[snapshot(schema_version = 1, threshold = 100, mode = "sync")]
//! pub struct Account { pub owner: String, pub balance: u64 }
//!
//! impl Apply<Opened> for Account {
//!     fn apply(&mut self, e: &Opened) { self.owner = e.owner.clone(); }
//! }
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, e: &Deposited) { self.balance += e.amount; }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eventsource::Result<()> {
//! let repo = Account::repository(
//!     Arc::new(InMemoryEventStore::new()),
//!     Arc::new(InMemorySnapshotStore::new()),
//! );
//! let id = Uuid::new_v4();
//! let mut account = repo.create_new(id);
//! account.record(Opened { owner: "ada".into() });
//! for _ in 0..150 {
//!     account.record(Deposited { amount: 2 });
//! }
//! repo.save(&mut account).await?; // crosses 100: a snapshot is taken at version 151
//!
//! let loaded = repo.load(id).await?;
//! assert_eq!(loaded.version(), 151);
//! assert_eq!(loaded.state().balance, 300);
//! assert!(loaded.load_history().loaded_from_snapshot);
//! # Ok(())
//! # }
//! ```
//!
//! # Stores and features
//!
//! | store | feature | for |
//! |---|---|---|
//! | [`InMemoryEventStore`], [`InMemorySnapshotStore`] | always | tests, prototypes |
//! | `SqliteEventStore`, `SqliteSnapshotStore` | `sqlite` (default) | embedded, one process |
//! | `PostgresEventStore`, `PostgresSnapshotStore` | `postgres` | several processes sharing a database |
//!
//! [`migrations`] creates the SQL tables. Every store passes the same conformance suite,
//! so an application tested on the in-memory stores behaves the same on a database.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod error;
pub mod event;
mod load;
pub mod migrations;
mod repository;
mod root;
pub mod snapshot;
pub mod store;

pub use aggregate::{Aggregate, Apply, Dispatch, IntoEvents};
pub use error::{BoxError, Error, Result};
pub use event::{DomainEvent, EventMetadata, EventRef, NewEvent, RecordedEvent, StreamEvent};
pub use repository::{AggregateRepository, DEFAULT_MAX_BACKGROUND_SNAPSHOTS, RepositoryBuilder};
pub use root::{AggregateRoot, LoadHistory, Uncommitted};
pub use snapshot::{
    InMemorySnapshotStore, Snapshot, SnapshotMode, SnapshotPolicy, SnapshotStore, SnapshotStrategy,
    SnapshotStrategyExt,
};
pub use store::{EventStore, EventStoreExt, ExpectedVersion, InMemoryEventStore, LoadVisitor};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use {snapshot::PostgresSnapshotStore, store::PostgresEventStore};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use {snapshot::SqliteSnapshotStore, store::SqliteEventStore};

/// Derives [`DomainEvent`] for an enum of newtype variants, one per event type.
///
/// Each variant `Created(OrderCreated)` is stored with event type `"OrderCreated"` (the
/// inner type's name) and version 1, unless `#[event(name = "...", version = N)]` says
/// otherwise. Also generates `From<Inner>` for the enum and the [`Dispatch`] impl that
/// routes each variant to the aggregate's [`Apply`] impl.
pub use eventsource_derive::DomainEvent;

/// Derives [`Aggregate`] for a state struct.
///
/// `#[aggregate(name = "Order", event = OrderEvent)]` names the stored aggregate type and
/// the event enum; `#[snapshot(schema_version = 1, threshold = 100, mode = "background")]`
/// declares the snapshot policy (without it, snapshots are manual only and the schema
/// version is 1). The state must implement `Default`, `Clone`, `Serialize` and
/// `Deserialize`; it may be a struct of any shape or an enum.
///
/// # `#[snapshot(...)]`
///
/// | Key | Example | Meaning |
/// |---|---|---|
/// | `schema_version` | `schema_version = 2` | required; the version of the state's JSON form |
/// | `mode` | `mode = "background"` | `"sync"` (default), `"background"` or `"manual"` |
/// | `every` / `threshold` | `every = 100` | [`EveryNEvents`](snapshot::EveryNEvents) |
/// | `after` | `after = "1h30m"` | [`TimeSinceSnapshot`](snapshot::TimeSinceSnapshot); units `ms`, `s`, `m`, `h`, `d` |
/// | `on` | `on(OrderSubmitted, "order.closed")` | [`OnEvents`](snapshot::OnEvents), names checked at compile time |
/// | `replayed_over` | `replayed_over = 500` | [`CostlyLoad::replayed_over`](snapshot::CostlyLoad::replayed_over) |
/// | `load_slower_than` | `load_slower_than = "200ms"` | [`CostlyLoad::slower_than`](snapshot::CostlyLoad::slower_than) |
/// | `any` / `all` | `all(every = 10, on(OrderSubmitted))` | [`AnyOf`](snapshot::AnyOf) / [`AllOf`](snapshot::AllOf) of the triggers inside |
/// | `strategy` | `strategy = my_strategy()` | any expression of a type implementing [`SnapshotStrategy`] |
/// | `never` | `never` | [`Never`](snapshot::Never): no automatic snapshot |
///
/// Top-level triggers combine with "or". Mistakes (an unknown key, a zero threshold, a
/// bad duration, an event the enum does not have, a trigger with `mode = "manual"`, ...)
/// are compile errors on the offending token, all reported in one build.
///
/// ```
/// use eventsource::{Aggregate, Apply, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// pub struct ItemAdded;
/// #[derive(Clone, Serialize, Deserialize)]
/// pub struct OrderSubmitted;
///
/// #[derive(DomainEvent, Clone)]
/// pub enum OrderEvent {
///     ItemAdded(ItemAdded),
///     Submitted(OrderSubmitted),
/// }
///
/// #[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
/// #[aggregate(name = "Order", event = OrderEvent)]
/// #[snapshot(schema_version = 1, mode = "background", every = 100, any(after = "1h", on(OrderSubmitted)))]
/// pub struct Order {
///     items: u32,
/// }
/// # impl Apply<ItemAdded> for Order { fn apply(&mut self, _: &ItemAdded) { self.items += 1; } }
/// # impl Apply<OrderSubmitted> for Order { fn apply(&mut self, _: &OrderSubmitted) {} }
///
/// assert_eq!(
///     Order::snapshot_policy().to_string(),
///     "background: every 100 events or 1h since last snapshot or on OrderSubmitted"
/// );
/// ```
pub use eventsource_derive::Aggregate;

/// The README's examples, compiled (and run, but for the database ones) as doctests.
#[cfg(all(doctest, feature = "sqlite", feature = "postgres"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The names most programs need: `use eventsource::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, AggregateRepository, AggregateRoot, Apply, DomainEvent, EventStore,
        ExpectedVersion, InMemoryEventStore, InMemorySnapshotStore, SnapshotMode, SnapshotStore,
    };
}

/// Items the derive macros refer to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;

    pub use crate::snapshot::{
        AllOf, AnyOf, CostlyLoad, EveryNEvents, Never, OnEvents, SnapshotStrategy,
        TimeSinceSnapshot,
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
}
