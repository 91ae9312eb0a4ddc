//! The SQLite backend: [`SqliteEventStore`] and [`SqliteSnapshotStore`], in one file or
//! in memory.
//!
//! UUIDs are stored as lower-case hyphenated text and timestamps as RFC 3339 text in UTC
//! with microseconds, so the database reads well in the `sqlite3` shell and timestamps
//! sort as text.

mod admin;
mod events;
mod pool;
mod snapshots;
mod subscriptions;

pub use events::SqliteEventStore;
pub use snapshots::SqliteSnapshotStore;
