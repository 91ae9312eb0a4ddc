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
//!     Arc::new(InMemorySnapshotStore::new()) as Arc<dyn SnapshotStore>,
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
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod error;
pub mod event;
mod repository;
mod root;
pub mod snapshot;
pub mod store;

pub use aggregate::{Aggregate, Apply, Dispatch, IntoEvents};
pub use error::{BoxError, Error, Result};
pub use event::{DomainEvent, EventMetadata, EventRef, NewEvent, RecordedEvent};
pub use repository::{AggregateRepository, DEFAULT_MAX_BACKGROUND_SNAPSHOTS, RepositoryBuilder};
pub use root::{AggregateRoot, LoadHistory, Uncommitted};
pub use snapshot::{
    InMemorySnapshotStore, Snapshot, SnapshotMode, SnapshotPolicy, SnapshotStore, SnapshotStrategy,
};
pub use store::{EventStore, EventStoreExt, ExpectedVersion, InMemoryEventStore};

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
/// `Deserialize`.
pub use eventsource_derive::Aggregate;

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

    pub use crate::snapshot::{EveryNEvents, Never};
}
