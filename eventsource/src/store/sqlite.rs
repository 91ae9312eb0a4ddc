//! [`SqliteEventStore`]: the event log in a SQLite database.
//!
//! The `events` table is created by [`migrate_sqlite`](crate::migrations::migrate_sqlite)
//! (see [`schema`](crate::migrations::schema) for its SQL). UUIDs are stored as
//! lower-case hyphenated text, timestamps as RFC 3339 text in UTC with microseconds, so
//! the database reads well in the `sqlite3` shell and timestamps sort as text.
//!
//! Appends start with `BEGIN IMMEDIATE`: the write lock is taken before the stream's
//! head is read, so writers queue up (for as long as the connection's busy timeout)
//! instead of failing on a lock upgrade, and concurrent appends to one stream never
//! conflict unless their expected versions say so.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use uuid::Uuid;

use super::{EventStore, EventVisitor, ExpectedVersion, LoadVisitor};
use crate::error::{Error, Result};
use crate::event::{EventRef, NewEvent, RecordedEvent, StreamEvent};
use crate::snapshot::SnapshotStore;

/// How long a connection waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Bind parameters per row of the multi-row insert (the stream's id and type are bound
/// once per statement).
const PARAMS_PER_ROW: usize = 7;

/// Rows per `INSERT` statement: the bundled SQLite accepts 32 766 bind parameters.
const ROWS_PER_STATEMENT: usize = 4_000;

/// An event store in a SQLite database. Clones share the same pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventsource::Result<()> {
/// use eventsource::{EventStore, ExpectedVersion, SqliteEventStore};
///
/// let store = SqliteEventStore::open(":memory:").await?;
/// let id = uuid::Uuid::new_v4();
/// assert_eq!(store.append("Order", id, ExpectedVersion::Exact(0), &[]).await?, 0);
/// store.close().await;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Clone, Debug)]
pub struct SqliteEventStore {
    pool: SqlitePool,
}

impl SqliteEventStore {
    /// A store over this pool. The tables must exist: see
    /// [`migrate_sqlite`](crate::migrations::migrate_sqlite).
    ///
    /// Give the pool's connections a busy timeout (sqlx's default is 5 s): concurrent
    /// appends wait for each other's write lock.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteEventStore { pool }
    }

    /// Opens (creating it if needed) the database file at `path`, or a private
    /// in-memory database for `":memory:"`, and creates the tables.
    ///
    /// A file is opened in WAL mode with `synchronous = NORMAL`: readers never block
    /// the writer, and a commit survives a crash of the process (a power loss may lose
    /// the last commits, never corrupt the file). An in-memory database lives in a
    /// pool of exactly one connection, kept open until [`close`](Self::close), so every
    /// task sees the same database.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let pool = open_pool(path.as_ref()).await?;
        crate::migrations::migrate_sqlite(&pool).await?;
        Ok(SqliteEventStore::new(pool))
    }

    /// The pool, to share with a [`SqliteSnapshotStore`](crate::SqliteSnapshotStore) or
    /// to run queries of your own.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool's connections, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn head(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<u64> {
        let mut conn = self.pool.acquire().await.map_err(Error::backend)?;
        head(&mut conn, aggregate_type, aggregate_id).await
    }

    /// After a unique violation: the batch's first event id already stored, or else the
    /// stream's head (another writer took the version).
    async fn explain_unique_violation(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Error> {
        // One query for the whole batch: its ids as a JSON array, unpacked by SQLite.
        let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
        let ids_json = serde_json::to_string(&ids).map_err(|source| Error::Encode {
            aggregate_type: aggregate_type.to_owned(),
            what: "event ids".to_owned(),
            source,
        })?;
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids_json)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::backend)?;
        if let Some(event) = events
            .iter()
            .zip(&ids)
            .find_map(|(event, id)| stored.contains(id).then_some(event))
        {
            return Ok(Error::duplicate_event(
                aggregate_type,
                aggregate_id,
                event.event_id,
            ));
        }
        let actual = self.head(aggregate_type, aggregate_id).await?;
        Ok(Error::conflict(
            aggregate_type,
            aggregate_id,
            expected,
            actual,
        ))
    }
}

/// Opens a pool as [`SqliteEventStore::open`] describes.
pub(crate) async fn open_pool(path: &Path) -> Result<SqlitePool> {
    if path == Path::new(":memory:") {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(Error::backend)?
            .busy_timeout(BUSY_TIMEOUT);
        // One connection, never retired: the database lives as long as it does.
        SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(Error::backend)
    } else {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .map_err(Error::backend)
    }
}

async fn head(
    conn: &mut sqlx::SqliteConnection,
    aggregate_type: &str,
    aggregate_id: Uuid,
) -> Result<u64> {
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM events \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id.to_string())
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::backend)?;
    u64::try_from(version).map_err(|_| Error::CorruptRow {
        table: "events",
        aggregate: format!("{aggregate_type}/{aggregate_id}"),
        message: format!("negative version {version}"),
    })
}

/// The `INSERT` of `rows` events: the stream's id and type are `?1` and `?2`, each row's
/// own values follow in order. Only placeholders are formatted into the text.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) VALUES ",
    );
    for row in 0..rows {
        let p = 3 + row * PARAMS_PER_ROW;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(?{p}, ?1, ?2, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6
        ));
    }
    sql
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

/// Reads the columns of an event row (in the order of [`READ_STREAM_SQL`]) into an
/// [`EventRef`] borrowing the row's text.
fn event_ref<'r>(
    row: &'r SqliteRow,
    aggregate_type: &'r str,
    aggregate_id: Uuid,
) -> std::result::Result<EventRef<'r>, String> {
    fn col<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
        row: &'r SqliteRow,
        index: usize,
        name: &str,
    ) -> std::result::Result<T, String> {
        row.try_get(index)
            .map_err(|e| format!("column {name}: {e}"))
    }
    let position: i64 = col(row, 0, "position")?;
    let event_id: &str = col(row, 1, "event_id")?;
    let version: i64 = col(row, 2, "version")?;
    let event_version: i64 = col(row, 4, "event_version")?;
    let occurred_at: &str = col(row, 7, "occurred_at")?;
    Ok(EventRef {
        position: u64::try_from(position).map_err(|_| format!("negative position {position}"))?,
        event_id: Uuid::parse_str(event_id)
            .map_err(|e| format!("event_id `{event_id}` is not a UUID: {e}"))?,
        aggregate_type,
        aggregate_id,
        version: u64::try_from(version).map_err(|_| format!("negative version {version}"))?,
        event_type: col(row, 3, "event_type")?,
        event_version: u32::try_from(event_version)
            .map_err(|_| format!("event_version {event_version} is out of range"))?,
        payload: col(row, 5, "payload")?,
        metadata: col(row, 6, "metadata")?,
        occurred_at: parse_timestamp(occurred_at)?,
    })
}

/// `read_stream`: the columns [`event_ref`] reads, in its order.
const READ_STREAM_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload, metadata, occurred_at FROM events \
     WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 ORDER BY version";

/// A load's stream: only the columns [`stream_event`] reads (sqlx copies every selected
/// column of every row, so a replay selects no more than it decodes).
const LOAD_STREAM_SQL: &str = "SELECT version, event_type, event_version, payload FROM events \
     WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 ORDER BY version";

/// The four columns of a [`LOAD_STREAM_SQL`] row, whose types the schema fixes, so they
/// are read without a per-row type check.
fn stream_event(row: &SqliteRow) -> std::result::Result<StreamEvent<'_>, String> {
    let version: i64 = row
        .try_get_unchecked(0)
        .map_err(|e| format!("column version: {e}"))?;
    let event_version: i64 = row
        .try_get_unchecked(2)
        .map_err(|e| format!("column event_version: {e}"))?;
    Ok(StreamEvent {
        version: u64::try_from(version).map_err(|_| format!("negative version {version}"))?,
        event_type: row
            .try_get_unchecked(1)
            .map_err(|e| format!("column event_type: {e}"))?,
        event_version: u32::try_from(event_version)
            .map_err(|_| format!("event_version {event_version} out of range"))?,
        payload: row
            .try_get_unchecked(3)
            .map_err(|e| format!("column payload: {e}"))?,
    })
}

/// `read_all`: the columns [`event_ref`] reads, then the stream's type and id.
const READ_ALL_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload, metadata, occurred_at, aggregate_type, aggregate_id FROM events \
     WHERE position >= ?1 ORDER BY position LIMIT ?2";

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64> {
        super::check_payloads(aggregate_type, aggregate_id, events)?;
        if events.is_empty() {
            let current = self.head(aggregate_type, aggregate_id).await?;
            return match expected {
                ExpectedVersion::Exact(v) if v != current => Err(Error::conflict(
                    aggregate_type,
                    aggregate_id,
                    expected,
                    current,
                )),
                _ => Ok(current),
            };
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend)?;
        let current = head(&mut tx, aggregate_type, aggregate_id).await?;
        if let ExpectedVersion::Exact(v) = expected
            && v != current
        {
            return Err(Error::conflict(
                aggregate_type,
                aggregate_id,
                expected,
                current,
            ));
        }
        let mut batch = HashSet::with_capacity(events.len());
        for event in events {
            if !batch.insert(event.event_id) {
                return Err(Error::duplicate_event(
                    aggregate_type,
                    aggregate_id,
                    event.event_id,
                ));
            }
        }

        let stream_id = aggregate_id.to_string();
        let mut version = current;
        let mut inserted = Ok(());
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_sql(chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(stream_id.as_str())
                .bind(aggregate_type);
            for event in chunk {
                version += 1;
                let stored_version = i64::try_from(version).map_err(|_| {
                    Error::invalid_input(format!("version {version} does not fit in SQLite"))
                })?;
                query = query
                    .bind(event.event_id.to_string())
                    .bind(stored_version)
                    .bind(event.event_type.as_str())
                    .bind(i64::from(event.event_version))
                    .bind(event.payload.as_str())
                    .bind(event.metadata.to_json())
                    .bind(format_timestamp(event.occurred_at));
            }
            if let Err(e) = query.execute(&mut *tx).await {
                inserted = Err(e);
                break;
            }
        }
        match inserted {
            Ok(()) => {
                tx.commit().await.map_err(Error::backend)?;
                Ok(version)
            }
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                tx.rollback().await.map_err(Error::backend)?;
                Err(self
                    .explain_unique_violation(aggregate_type, aggregate_id, expected, events)
                    .await?)
            }
            Err(e) => Err(Error::backend(e)),
        }
    }

    async fn read_aggregate(
        &self,
        snapshots: Option<&dyn SnapshotStore>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        // In-process, a second statement costs no round trip: the snapshot is read apart.
        let from_version = match snapshots {
            Some(store) => visitor.snapshot(store.get(aggregate_type, aggregate_id).await),
            None => 1,
        };
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        let mut rows = sqlx::query(LOAD_STREAM_SQL)
            .bind(aggregate_type)
            .bind(aggregate_id.to_string())
            .bind(from)
            .fetch(&self.pool);
        let mut visited = 0;
        while let Some(row) = rows.try_next().await.map_err(Error::backend)? {
            let event = stream_event(&row)
                .map_err(|m| Error::corrupt_event(format!("{aggregate_type}/{aggregate_id}"), m))?;
            visitor.event(event)?;
            visited += 1;
        }
        Ok(visited)
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64> {
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        let mut rows = sqlx::query(READ_STREAM_SQL)
            .bind(aggregate_type)
            .bind(aggregate_id.to_string())
            .bind(from)
            .fetch(&self.pool);
        let mut visited = 0;
        while let Some(row) = rows.try_next().await.map_err(Error::backend)? {
            let event = event_ref(&row, aggregate_type, aggregate_id)
                .map_err(|m| Error::corrupt_event(format!("{aggregate_type}/{aggregate_id}"), m))?;
            visit(event)?;
            visited += 1;
        }
        Ok(visited)
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<u64>> {
        let version = self.head(aggregate_type, aggregate_id).await?;
        Ok((version > 0).then_some(version))
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from = i64::try_from(from_position).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = sqlx::query(READ_ALL_SQL)
            .bind(from)
            .bind(limit)
            .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(Error::backend)? {
            let aggregate_type: &str = row.try_get(8).map_err(|e| {
                Error::corrupt_event("?".to_owned(), format!("column aggregate_type: {e}"))
            })?;
            let aggregate_id_text: &str = row.try_get(9).map_err(|e| {
                Error::corrupt_event(
                    format!("{aggregate_type}/?"),
                    format!("column aggregate_id: {e}"),
                )
            })?;
            let aggregate = format!("{aggregate_type}/{aggregate_id_text}");
            let aggregate_id = Uuid::parse_str(aggregate_id_text).map_err(|e| {
                Error::corrupt_event(
                    aggregate.clone(),
                    format!("aggregate_id `{aggregate_id_text}` is not a UUID: {e}"),
                )
            })?;
            let event = event_ref(&row, aggregate_type, aggregate_id)
                .map_err(|m| Error::corrupt_event(aggregate, m))?;
            out.push(event.to_recorded()?);
        }
        Ok(out)
    }
}
