//! The PostgreSQL backend: [`PostgresEventStore`] and [`PostgresSnapshotStore`], for
//! several processes sharing one database.
//!
//! With both stores on one pool, a load reads the snapshot and the events after it in
//! one statement (`load.rs`); either store also works alone.

mod admin;
mod events;
mod load;
mod notify;
mod pool;
mod snapshots;
mod subscriptions;

/// The channel [`PostgresEventStore`] notifies after each append that wrote events, and
/// that subscriptions listen on (the payload is empty).
pub const NOTIFY_CHANNEL: &str = "eventsource_events";

pub use events::PostgresEventStore;
pub use snapshots::PostgresSnapshotStore;
