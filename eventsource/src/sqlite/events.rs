//! [`SqliteEventStore`]: the event log in a SQLite database.
//!
//! The `events` table is created by [`migrate_sqlite`](crate::migrations::migrate_sqlite)
//! (see [`schema`](crate::migrations::schema) for its SQL).
//!
//! Appends start with `BEGIN IMMEDIATE`: the write lock is taken before the stream's
//! head is read, so writers queue up (for as long as the connection's busy timeout)
//! instead of failing on a lock upgrade, and concurrent appends to one stream never
//! conflict unless their expected versions say so.

use std::ops::ControlFlow;
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use uuid::Uuid;

use super::pool::{format_timestamp, parse_timestamp};
use crate::error::{Error, Result};
use crate::event::{EventRef, NewEvent, RecordedEvent};
use crate::feed::{Checkpoint, FeedEvent, FeedPage, FeedQuery};
use crate::snapshot::SnapshotStore;
use crate::store::rows::{column, stream_event, unsigned};
use crate::store::{
    EventStore, EventVisitor, LoadVisitor, already_appended, checks, explain_unique_violation,
    read_snapshot, read_snapshot_at, visit_rows,
};
use crate::version::ExpectedVersion;

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
    appended: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl SqliteEventStore {
    /// A store over this pool. The tables must exist: see
    /// [`migrate_sqlite`](crate::migrations::migrate_sqlite).
    ///
    /// Give the pool's connections a busy timeout (sqlx's default is 5 s): concurrent
    /// appends wait for each other's write lock.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteEventStore {
            pool,
            appended: Default::default(),
        }
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
        Ok(SqliteEventStore::new(
            super::pool::open(path.as_ref()).await?,
        ))
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

    /// A load's events from `from_version` to `to_version`, only the columns it folds.
    async fn load_tail(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        to_version: u64,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        let rows = sqlx::query(LOAD_STREAM_SQL)
            .bind(aggregate_type)
            .bind(aggregate_id.to_string())
            .bind(crate::store::rows::saturating_i64(from_version))
            .bind(crate::store::rows::saturating_i64(to_version))
            .fetch(&self.pool);
        visit_rows(rows, |row| {
            let event = stream_event::<_, i64>(row)
                .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
            visitor.event(event)
        })
        .await
    }

    async fn head(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<u64> {
        let mut conn = self.pool.acquire().await.map_err(Error::backend)?;
        head(&mut conn, aggregate_type, aggregate_id).await
    }

    /// `(version, id)` of the batch's events already stored in this stream.
    async fn stored<'c>(
        &self,
        conn: impl sqlx::SqliteExecutor<'c>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        events: &[NewEvent],
    ) -> Result<Vec<(u64, Uuid)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT version, event_id FROM events WHERE aggregate_type = ?1 \
             AND aggregate_id = ?2 AND event_id IN (SELECT value FROM json_each(?3))",
        )
        .bind(aggregate_type)
        .bind(aggregate_id.to_string())
        .bind(ids_json(events))
        .fetch_all(conn)
        .await
        .map_err(Error::backend)?;
        Ok(rows
            .into_iter()
            .filter_map(|(v, id)| Some((u64::try_from(v).ok()?, Uuid::parse_str(&id).ok()?)))
            .collect())
    }

    /// After a unique violation: what it means (see [`explain_unique_violation`]).
    async fn explain_unique_violation(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64> {
        let stored = self
            .stored(&self.pool, aggregate_type, aggregate_id, events)
            .await?;
        let anywhere: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids_json(events))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::backend)?;
        let anywhere: Vec<Uuid> = anywhere
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        let head = self.head(aggregate_type, aggregate_id).await?;
        explain_unique_violation(
            aggregate_type,
            aggregate_id,
            expected,
            events,
            &stored,
            &anywhere,
            head,
        )
    }
}

/// The batch's event ids as a JSON array, for `json_each`: one parameter for any batch.
fn ids_json(events: &[NewEvent]) -> String {
    let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    serde_json::Value::from(ids).to_string()
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
    u64::try_from(version).map_err(|_| {
        Error::corrupt_event(
            aggregate_type,
            aggregate_id,
            format!("negative version {version}"),
        )
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

/// Reads the columns of an event row (in the order of [`READ_STREAM_SQL`]) into an
/// [`EventRef`] borrowing the row's text.
fn event_ref<'r>(
    row: &'r SqliteRow,
    aggregate_type: &'r str,
    aggregate_id: Uuid,
) -> std::result::Result<EventRef<'r>, String> {
    let position: i64 = column(row, 0, "position")?;
    let event_id: &str = column(row, 1, "event_id")?;
    let version: i64 = column(row, 2, "version")?;
    let event_version: i64 = column(row, 4, "event_version")?;
    let occurred_at: &str = column(row, 7, "occurred_at")?;
    Ok(EventRef {
        position: unsigned("position", position)?,
        event_id: Uuid::parse_str(event_id)
            .map_err(|e| format!("event_id `{event_id}` is not a UUID: {e}"))?,
        aggregate_type,
        aggregate_id,
        version: unsigned("version", version)?,
        event_type: column(row, 3, "event_type")?,
        event_version: unsigned("event_version", event_version)?,
        payload: column(row, 5, "payload")?,
        metadata: column(row, 6, "metadata")?,
        occurred_at: parse_timestamp(occurred_at)?,
    })
}

/// `read_stream`: the columns [`event_ref`] reads, in its order.
const READ_STREAM_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload, metadata, occurred_at FROM events \
     WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 AND version <= ?4 \
     ORDER BY version";

/// `version_as_of`: the version before the stream's first event that occurred after
/// `?3`, or the stream's head when none did; 0 without events.
const VERSION_AS_OF_SQL: &str = "SELECT COALESCE( \
     (SELECT min(version) FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
      AND occurred_at > ?3) - 1, \
     (SELECT max(version) FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2), \
     0)";

/// A load's stream: only the columns [`stream_event`] reads (sqlx copies every selected
/// column of every row, so a replay selects no more than it decodes).
const LOAD_STREAM_SQL: &str = "SELECT version, event_type, event_version, payload FROM events \
     WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 AND version <= ?4 \
     ORDER BY version";

/// `read_all`: the columns [`event_ref`] reads, then the stream's type and id.
const READ_ALL_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload, metadata, occurred_at, aggregate_type, aggregate_id FROM events \
     WHERE position >= ?1 ORDER BY position LIMIT ?2";

/// `read_feed`: the columns [`event_ref`] reads, the stream's type and id, then the
/// head position, all from one snapshot. Without a matching event the one row has NULL
/// event columns and the head.
const READ_FEED_SQL: &str = "WITH head AS (SELECT coalesce(max(position), 0) AS h FROM events) \
     SELECT e.position, e.event_id, e.version, e.event_type, e.event_version, e.payload, \
     e.metadata, e.occurred_at, e.aggregate_type, e.aggregate_id, head.h \
     FROM head LEFT JOIN (SELECT * FROM events WHERE position > ?1 \
     AND position <= (SELECT h FROM head) \
     AND (?2 IS NULL OR aggregate_type IN (SELECT value FROM json_each(?2))) \
     AND (?3 IS NULL OR event_type IN (SELECT value FROM json_each(?3))) \
     ORDER BY position LIMIT ?4) e ON 1 ORDER BY e.position";

/// Reads a row of [`READ_ALL_SQL`] or [`FIND_EVENT_SQL`].
fn recorded(row: &SqliteRow) -> Result<RecordedEvent> {
    let aggregate_type: &str = row.try_get(8).map_err(|e| {
        Error::corrupt_row("events", None, None, format!("column aggregate_type: {e}"))
    })?;
    let corrupt =
        |id: Option<Uuid>, m: String| Error::corrupt_row("events", Some(aggregate_type), id, m);
    let id_text: &str = row
        .try_get(9)
        .map_err(|e| corrupt(None, format!("column aggregate_id: {e}")))?;
    let aggregate_id = Uuid::parse_str(id_text)
        .map_err(|e| corrupt(None, format!("aggregate_id `{id_text}` is not a UUID: {e}")))?;
    let event =
        event_ref(row, aggregate_type, aggregate_id).map_err(|m| corrupt(Some(aggregate_id), m))?;
    event.to_recorded()
}

/// `find_event`: the columns of [`READ_ALL_SQL`], for one event id.
const FIND_EVENT_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload, metadata, occurred_at, aggregate_type, aggregate_id FROM events \
     WHERE event_id = ?1";

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64> {
        checks::append(aggregate_type, aggregate_id, expected, events)?;
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
            let stored = self
                .stored(&mut *tx, aggregate_type, aggregate_id, events)
                .await?;
            return already_appended(expected, events, &stored)
                .ok_or_else(|| Error::conflict(aggregate_type, aggregate_id, expected, current));
        }
        checks::distinct_ids(aggregate_type, aggregate_id, events)?;

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
                query = query
                    .bind(event.event_id.to_string())
                    .bind(checks::to_i64("version", version)?)
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
                self.appended.send_modify(|n| *n = n.wrapping_add(1));
                Ok(version)
            }
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                tx.rollback().await.map_err(Error::backend)?;
                self.explain_unique_violation(aggregate_type, aggregate_id, expected, events)
                    .await
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
        checks::name("aggregate_type", aggregate_type)?;
        // In-process, a second statement costs no round trip: the snapshot is read apart.
        let from_version = match snapshots {
            Some(store) => read_snapshot(store, aggregate_type, aggregate_id, visitor).await,
            None => 1,
        };
        self.load_tail(
            aggregate_type,
            aggregate_id,
            from_version,
            u64::MAX,
            visitor,
        )
        .await
    }

    async fn read_aggregate_at(
        &self,
        snapshots: Option<&dyn SnapshotStore>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        to_version: u64,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let from_version = match snapshots {
            Some(store) => {
                read_snapshot_at(store, aggregate_type, aggregate_id, to_version, visitor).await
            }
            None => 1,
        };
        self.load_tail(
            aggregate_type,
            aggregate_id,
            from_version,
            to_version,
            visitor,
        )
        .await
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64> {
        self.read_stream_range(aggregate_type, aggregate_id, from_version, u64::MAX, visit)
            .await
    }

    async fn read_stream_range(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        to_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let rows = sqlx::query(READ_STREAM_SQL)
            .bind(aggregate_type)
            .bind(aggregate_id.to_string())
            .bind(crate::store::rows::saturating_i64(from_version))
            .bind(crate::store::rows::saturating_i64(to_version))
            .fetch(&self.pool);
        visit_rows(rows, |row| {
            let event = event_ref(row, aggregate_type, aggregate_id)
                .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
            visit(event).map(ControlFlow::Continue)
        })
        .await
    }

    async fn version_as_of(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        time: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        checks::name("aggregate_type", aggregate_type)?;
        let version: i64 = sqlx::query_scalar(VERSION_AS_OF_SQL)
            .bind(aggregate_type)
            .bind(aggregate_id.to_string())
            .bind(format_timestamp(time))
            .fetch_one(&self.pool)
            .await
            .map_err(Error::backend)?;
        Ok(u64::try_from(version).ok().filter(|v| *v > 0))
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<u64>> {
        checks::name("aggregate_type", aggregate_type)?;
        let version = self.head(aggregate_type, aggregate_id).await?;
        Ok((version > 0).then_some(version))
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(READ_ALL_SQL)
            .bind(crate::store::rows::saturating_i64(from_position))
            .bind(crate::store::rows::saturating_i64(limit as u64))
            .fetch(&self.pool);
        let mut out = Vec::new();
        visit_rows(rows, |row| {
            out.push(recorded(row)?);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    async fn aggregate_ids(
        &self,
        aggregate_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>> {
        checks::name("aggregate_type", aggregate_type)?;
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT aggregate_id FROM events WHERE aggregate_type = ?1 AND version = 1 \
             AND (?2 IS NULL OR aggregate_id > ?2) ORDER BY aggregate_id LIMIT ?3",
        )
        .bind(aggregate_type)
        .bind(after.map(|a| a.to_string()))
        .bind(crate::store::rows::saturating_i64(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::backend)?;
        rows.into_iter()
            .map(|(id,)| {
                Uuid::parse_str(&id).map_err(|e| {
                    Error::corrupt_row(
                        "events",
                        Some(aggregate_type),
                        None,
                        format!("aggregate_id `{id}` is not a UUID: {e}"),
                    )
                })
            })
            .collect()
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>> {
        let rows = sqlx::query(FIND_EVENT_SQL)
            .bind(event_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(Error::backend)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        recorded(row).map(Some)
    }

    async fn read_feed(&self, query: &FeedQuery) -> Result<FeedPage> {
        query.check()?;
        let after = query.after;
        let filter = |names: &Option<Vec<String>>| {
            names
                .as_ref()
                .map(|n| serde_json::to_string(n).unwrap_or_else(|_| String::from("[]")))
        };
        let rows = sqlx::query(READ_FEED_SQL)
            .bind(checks::to_i64("checkpoint", after.position())?)
            .bind(filter(&query.aggregate_types))
            .bind(filter(&query.event_types))
            .bind(crate::store::rows::saturating_i64(query.limit as u64))
            .fetch(&self.pool);
        let mut events = Vec::new();
        let mut head = 0u64;
        visit_rows(rows, |row| {
            let h: u64 = column::<_, i64>(row, 10, "head")
                .and_then(|h| unsigned("position", h))
                .map_err(|m| Error::corrupt_row("events", None, None, m))?;
            head = h;
            let position: Option<i64> = row.try_get(0).map_err(|e| {
                Error::corrupt_row("events", None, None, format!("column position: {e}"))
            })?;
            if position.is_none() {
                return Ok(ControlFlow::Continue(()));
            }
            let aggregate_type: &str = row.try_get(8).map_err(|e| {
                Error::corrupt_row("events", None, None, format!("column aggregate_type: {e}"))
            })?;
            let corrupt = |id: Option<Uuid>, m: String| {
                Error::corrupt_row("events", Some(aggregate_type), id, m)
            };
            let id_text: &str = row
                .try_get(9)
                .map_err(|e| corrupt(None, format!("column aggregate_id: {e}")))?;
            let aggregate_id = Uuid::parse_str(id_text).map_err(|e| {
                corrupt(None, format!("aggregate_id `{id_text}` is not a UUID: {e}"))
            })?;
            let event = event_ref(row, aggregate_type, aggregate_id)
                .map_err(|m| corrupt(Some(aggregate_id), m))?;
            events.push(FeedEvent {
                checkpoint: Checkpoint::new(0, event.position),
                event: event.to_recorded()?,
            });
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        if after.transaction() != 0 || after.position() > head {
            return Err(Error::invalid(
                "checkpoint",
                format!("{after} is ahead of this store's feed, which ends at 0/{head}"),
            ));
        }
        let next = match events.last() {
            Some(last) if events.len() >= query.limit => last.checkpoint,
            _ if query.limit == 0 => after,
            _ => Checkpoint::new(0, head),
        };
        Ok(FeedPage {
            events,
            next,
            held_back: false,
        })
    }

    fn append_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.appended.subscribe())
    }
}
