//! The PostgreSQL backend: [`PostgresEventStore`] and [`PostgresSnapshotStore`], for
//! several processes sharing one database.
//!
//! With both stores on one pool, a load reads the snapshot and the events after it in
//! one statement (`load.rs`); either store also works alone.

mod events;
mod load;
mod pool;
mod snapshots;

pub use events::PostgresEventStore;
pub use snapshots::PostgresSnapshotStore;
