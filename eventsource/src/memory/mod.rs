//! The in-memory backend: [`InMemoryEventStore`] and [`InMemorySnapshotStore`], for tests
//! and prototypes.
//!
//! Both enforce exactly the rules of the durable stores (the conformance suite runs on
//! them too), down to timestamps, which keep microseconds as in SQLite and PostgreSQL.

mod admin;
mod events;
mod snapshots;
mod subscriptions;

pub use events::InMemoryEventStore;
pub use snapshots::InMemorySnapshotStore;
pub use subscriptions::MemoryTransaction;
