//! eventsource's SQL stores over the benchmark's pools.

use std::sync::Arc;

use eventsource::{EventStore, SnapshotStore};
use sqlx::{PgPool, SqlitePool};

/// eventsource's PostgreSQL stores, sharing the benchmark's pool.
pub fn postgres(pool: &PgPool) -> (Arc<dyn EventStore>, Arc<dyn SnapshotStore>) {
    (
        Arc::new(eventsource::PostgresEventStore::new(pool.clone())),
        Arc::new(eventsource::PostgresSnapshotStore::new(pool.clone())),
    )
}

/// eventsource's SQLite stores, sharing the benchmark's pool.
pub fn sqlite(pool: &SqlitePool) -> (Arc<dyn EventStore>, Arc<dyn SnapshotStore>) {
    (
        Arc::new(eventsource::SqliteEventStore::new(pool.clone())),
        Arc::new(eventsource::SqliteSnapshotStore::new(pool.clone())),
    )
}
