//! Opening a SQLite database, and the text form of its timestamps.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Error, Result};

/// How long a connection waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a pool as [`SqliteEventStore::open`](super::SqliteEventStore::open) describes,
/// and creates the tables.
pub(crate) async fn open(path: &Path) -> Result<SqlitePool> {
    let pool = connect(path).await.map_err(|e| {
        Error::backend(format!(
            "cannot open SQLite database `{}`: {e}",
            path.display()
        ))
    })?;
    crate::migrations::migrate_sqlite(&pool).await?;
    Ok(pool)
}

async fn connect(path: &Path) -> std::result::Result<SqlitePool, sqlx::Error> {
    if path == Path::new(":memory:") {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.busy_timeout(BUSY_TIMEOUT);
        // One connection, never retired: the database lives as long as it does.
        SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
    } else {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        SqlitePoolOptions::new().connect_with(options).await
    }
}

/// A timestamp as stored: RFC 3339, UTC, microseconds.
pub(crate) fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored timestamp.
pub(crate) fn parse_timestamp(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("timestamp `{text}` is not RFC 3339: {e}"))
}
