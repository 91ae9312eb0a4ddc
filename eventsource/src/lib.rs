//! Event-sourced aggregates for Rust, with snapshots that keep loads fast however long
//! the history grows.
//!
//! Declare the events with [`#[derive(DomainEvent)]`](macro@DomainEvent), the state with
//! [`#[derive(Aggregate)]`](macro@Aggregate) and one [`Apply`] impl per event; write
//! commands as functions of the state that return events; then run them through an
//! [`AggregateRepository`], which loads the aggregate (from its snapshot when there is
//! one), runs the command, saves its events, and on a conflict with another writer does
//! it again on the fresh state.
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
//! // Commands: the state decides.
//! impl Account {
//!     fn deposit(&self, amount: u64) -> Result<Deposited, String> {
//!         if amount == 0 {
//!             return Err("nothing to deposit".into());
//!         }
//!         Ok(Deposited { amount })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let repo = Account::repository(
//!     Arc::new(InMemoryEventStore::new()),
//!     Arc::new(InMemorySnapshotStore::new()),
//! );
//! let id = Uuid::new_v4();
//! repo.execute_new(id, |_: &Account| Ok::<_, String>(Opened { owner: "ada".into() })).await?;
//! for _ in 0..150 {
//!     repo.execute(id, |a: &Account| a.deposit(2)).await?; // a snapshot at version 100
//! }
//! assert!(repo.execute(id, |a: &Account| a.deposit(0)).await.is_err());
//!
//! let loaded = repo.load(id).await?;
//! assert_eq!(loaded.version(), 151);
//! assert_eq!(loaded.state().balance, 300);
//! assert!(loaded.load_history().loaded_from_snapshot);
//! # Ok(())
//! # }
//! ```
//!
//! # Where to read on
//!
//! - [`command`]: commands, conflict retries, per-command metadata, command ids.
//! - [`testing`]: given events, when a command, then events, without a store.
//! - [`snapshot`]: snapshot strategies, modes, timeouts and schema versions.
//! - [`feed`] and [`subscription`]: reading events out, exactly once where the read model
//!   lives in the same database; projections, retries and parking, partitions.
//! - [`store`]: the store traits and the input rules every store enforces.
//! - [`admin`]: operating a store: snapshot backfill, coverage, verification,
//!   invalidation; with the `cli` feature, `cli` puts them on a command line to
//!   embed in the application's binary.
//! - `guide` (with the `sqlite` and `postgres` features): the README, with setup for
//!   PostgreSQL and SQLite, what the tests show, and how to choose a snapshot policy.
//!
//! # Stores and features
//!
//! | store | feature | for |
//! |---|---|---|
//! | [`InMemoryEventStore`], [`InMemorySnapshotStore`] | always | tests, prototypes |
//! | `SqliteEventStore`, `SqliteSnapshotStore` | `sqlite` (default) | embedded, one process |
//! | `PostgresEventStore`, `PostgresSnapshotStore` | `postgres` | several processes sharing a database |
//!
//! Each backend is a module ([`memory`], `sqlite`, `postgres`) holding its event store
//! and its snapshot store. [`migrations`] creates the SQL tables. Every store passes the
//! same conformance suite and refuses the same bad input with the same error (the rules
//! are in [`store`]), and every store keeps timestamps to the microsecond, so an
//! application tested on the in-memory stores behaves the same on a database.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
mod aggregate;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod command;
mod error;
pub mod event;
pub mod feed;
mod load;
pub mod memory;
pub mod metrics;
pub mod migrations;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod repository;
mod root;
pub mod snapshot;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
pub mod store;
pub mod subscription;
pub mod testing;
mod time;
pub mod upcast;
mod version;

pub use aggregate::{Aggregate, Apply, Dispatch, IntoEvents};
pub use error::{BoxError, Error, Result};
pub use event::{DomainEvent, EventMetadata, EventRef, NewEvent, RecordedEvent, StreamEvent};
pub use memory::{InMemoryEventStore, InMemorySnapshotStore};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresEventStore, PostgresSnapshotStore};
pub use repository::{AggregateRepository, DEFAULT_MAX_BACKGROUND_SNAPSHOTS, RepositoryBuilder};
pub use root::{AggregateRoot, LoadHistory, Uncommitted};
pub use snapshot::{
    Snapshot, SnapshotBound, SnapshotMode, SnapshotPolicy, SnapshotStore, SnapshotStrategy,
    SnapshotStrategyExt,
};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteEventStore, SqliteSnapshotStore};
pub use store::{EventStore, EventStoreExt, LoadVisitor};
pub use version::ExpectedVersion;

/// The sqlx this crate builds on (0.9), for pools and queries of your own without a
/// second, mismatched copy.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use sqlx;

/// The attribute that [`Projection`](subscription::Projection) and the store traits are
/// implemented with, re-exported so that its version always matches.
pub use async_trait::async_trait;

/// Derives [`DomainEvent`] for an enum of newtype variants, one per event type.
///
/// Each variant `Created(OrderCreated)` is stored with event type `"OrderCreated"` (the
/// inner type's name) and version 1, unless `#[event(...)]` says otherwise. Also
/// generates `From<Inner>` for the enum and the [`Dispatch`] impl that routes each
/// variant to the aggregate's [`Apply`] impl; so each variant wraps a type of its own
/// (two variants of one type would reach one `Apply` impl, which could not tell them
/// apart: a compile error).
///
/// # `#[event(...)]`
///
/// | Key | Example | Meaning |
/// |---|---|---|
/// | `name` | `name = "order.created"` | the stored event type (default: the inner type's name) |
/// | `version` | `version = 3` | the current version of the payload's shape (default 1) |
/// | `upcast` | `upcast(1 => v1_to_v2, 2 => v2_to_v3)` | JSON steps from each older stored version; see [`upcast`] |
/// | `upcast_from` | `upcast_from(1 => ItemV1, 2 => ItemV2)` | the typed chain: older versions as structs joined by `From` |
/// | `aliases` | `aliases("OrderPlaced")` | earlier stored names, still decoded as this variant |
pub use eventsource_derive::DomainEvent;

/// Derives [`Aggregate`] for a state type: a struct of any shape, or an enum.
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
/// | `timeout` | `timeout = "500ms"` | bound on each snapshot read and write ([`SnapshotPolicy::timeout`]; default 2 s) |
/// | `keep` | `keep = 10` | snapshots kept per aggregate, newest first ([`SnapshotPolicy::keep`]; default 1), for [`load_at`](AggregateRepository::load_at) |
/// | `compress_over` | `compress_over = "64KiB"` | states whose JSON is longer are stored zstd-compressed by the PostgreSQL and SQLite stores ([`SnapshotPolicy::compress_over`]; default: never). Units `B`, `kB` or `KB` (1000), `KiB` (1024), `MB`, `MiB`; 1 B to 1 GiB. See docs/BENCHMARKS.md before choosing one |
/// | `upcast` | `upcast(1 => order_v1_to_v2)` | JSON steps bringing older snapshots to `schema_version` instead of replaying; see [`upcast`] |
/// | `upcast_from` | `upcast_from(1 => OrderV1)` | the typed form: older states as structs joined by `From` |
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

/// The guide: the README, with its examples compiled (and run, but for the database
/// ones) as doctests.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "sqlite", feature = "postgres"))))]
#[doc = include_str!("../../README.md")]
pub mod guide {}

/// The names most programs need: `use eventsource::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, AggregateRepository, AggregateRoot, Apply, BoxError, DomainEvent, EventStore,
        ExpectedVersion, InMemoryEventStore, InMemorySnapshotStore, SnapshotMode, SnapshotStore,
    };
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
