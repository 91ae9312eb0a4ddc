//! Opening a SQLite database, and the text form of its timestamps.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{BoxError, Error, Result};

/// How long a connection waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a pool as [`SqliteEventStore::open`](super::SqliteEventStore::open) describes,
/// and creates the tables. Errors name the path.
///
/// Switching a fresh file to WAL mode needs an exclusive lock that SQLite does not wait
/// for (the busy timeout does not apply), so a connect failing with `SQLITE_BUSY` is
/// retried, for at most the busy timeout.
pub(crate) async fn open(path: &Path) -> Result<SqlitePool> {
    let opened = async {
        let pool = connect_retrying(path).await.map_err(Error::backend)?;
        if let Err(error) = crate::migrations::migrate_sqlite(&pool).await {
            pool.close().await;
            return Err(error);
        }
        Ok(pool)
    };
    opened.await.map_err(|error| match error {
        Error::Backend { source } => Error::backend(CannotOpen {
            path: path.to_owned(),
            source,
        }),
        other => other,
    })
}

/// An error opening the database at a path.
#[derive(Debug)]
struct CannotOpen {
    path: PathBuf,
    source: BoxError,
}

impl fmt::Display for CannotOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot open SQLite database `{}`: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for CannotOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// [`connect`], retried while it fails with `SQLITE_BUSY`, for at most [`BUSY_TIMEOUT`].
async fn connect_retrying(path: &Path) -> std::result::Result<SqlitePool, sqlx::Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match connect(path).await {
            Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// Whether SQLite answered `SQLITE_BUSY` (primary result code 5, "database is locked"),
/// whatever its extended code.
fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == 5),
        _ => false,
    }
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
