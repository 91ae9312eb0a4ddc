//! [`PostgresEventStore`]: the event log in a PostgreSQL database.
//!
//! The `events` table is created by
//! [`migrate_postgres`](crate::migrations::migrate_postgres) (see
//! [`schema`](crate::migrations::schema) for its SQL). Ids are `uuid`, timestamps
//! `timestamptz` (microsecond precision), and payload and metadata are `json`, not
//! `jsonb`: `json` keeps each payload byte for byte as it was written and reads back
//! 30–40 % faster on replay, because the server does not rebuild text from a binary form
//! for every row. Queries into payloads still work on `json` (`payload ->> 'field'`,
//! expression indexes); only containment operators and GIN indexes need `jsonb`.
//!
//! An append is one statement, so one transaction and one round trip, whatever the
//! number of events: it reads the stream's head and, if that is the expected version,
//! inserts the whole batch after it with `INSERT ... SELECT ... FROM UNNEST(...)`. Two
//! writers that read the same head clash on the unique
//! `(aggregate_type, aggregate_id, version)` constraint; the loser gets
//! [`Error::Conflict`] and nothing of its batch is stored.
//!
//! A batch expected to start a new stream (`ExpectedVersion::Exact(0)`) is inserted at
//! version 1 without reading the head at all: the unique constraint refuses it if the
//! stream exists. An append retried after a lost acknowledgement finds its own events in
//! place (same ids, same versions) and succeeds without writing.
//!
//! [`read_aggregate`](EventStore::read_aggregate) with the [`PostgresSnapshotStore`] of
//! the same pool reads the snapshot and the events after it in one statement, one round
//! trip; with a snapshot store elsewhere, or none, it takes one read per store.
//!
//! Global positions come from a sequence: they increase in the order events are inserted,
//! but a refused append leaves a gap, and two appends that overlap in time can commit out
//! of position order. A reader that follows [`read_all`](EventStore::read_all) page after
//! page can therefore pass a position whose event becomes visible a moment later. The
//! [feed](crate::feed) ([`read_feed`](EventStore::read_feed)) is ordered by committing
//! transaction instead, and never skips.
//!
//! After each append that wrote events, the store sends a `NOTIFY` on the channel
//! [`NOTIFY_CHANNEL`](super::NOTIFY_CHANNEL), so that subscriptions in other processes
//! wake up. It is sent after the commit, by a background task that folds the
//! notifications of concurrent appends into one, so it adds no latency to the append; a
//! lost notification only delays a subscriber until its next poll.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::PostgresSnapshotStore;
use super::pool::timestamp;
use crate::error::{Error, Result};
use crate::event::{EventRef, NewEvent, RecordedEvent};
use crate::feed::{Checkpoint, FeedEvent, FeedPage, FeedQuery};
use crate::snapshot::SnapshotStore;
use crate::store::rows::{column, unsigned};
use crate::store::{
    EventStore, EventVisitor, LoadVisitor, already_appended, checks, explain_unique_violation,
    visit_rows,
};
use crate::version::ExpectedVersion;

/// An event store in a PostgreSQL database. Clones share the same pool.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventsource::Result<()> {
/// use eventsource::{PostgresEventStore, PostgresSnapshotStore};
///
/// let url = "postgres://postgres@127.0.0.1:5432/app?sslmode=disable";
/// let events = PostgresEventStore::connect(url).await?; // connects and migrates
/// let snapshots = PostgresSnapshotStore::new(events.pool().clone());
/// # let _ = snapshots;
/// events.close().await;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone, Debug)]
pub struct PostgresEventStore {
    pool: PgPool,
    appended: Arc<tokio::sync::watch::Sender<u64>>,
    notifier: Arc<super::notify::Notifier>,
}

impl PostgresEventStore {
    /// A store over this pool. The tables must exist: see
    /// [`migrate_postgres`](crate::migrations::migrate_postgres).
    ///
    /// Most loads and saves are one statement, so a pool built with
    /// `PgPoolOptions::test_before_acquire(false)` (as [`connect`](Self::connect) does)
    /// saves a round trip per call: sqlx's default pings a connection before lending it.
    /// Give the pool an `acquire_timeout` of a few seconds (sqlx's default is 30 s): it
    /// bounds how long a call waits for a connection when the pool is exhausted.
    pub fn new(pool: PgPool) -> Self {
        PostgresEventStore {
            pool,
            appended: Default::default(),
            notifier: Default::default(),
        }
    }

    /// Connects to `url` (e.g. `postgres://user@host/db`) and creates the tables.
    ///
    /// A server that is down, unreachable or refuses the login fails this within 5 s
    /// with the real cause (e.g. "connection refused"). The pool does not ping
    /// connections before lending them (a broken connection fails its statement and is
    /// dropped instead), waits at most 5 s for a free connection, and otherwise keeps
    /// sqlx's defaults (10 connections at most).
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = super::pool::connect(url).await?;
        crate::migrations::migrate_postgres(&pool).await?;
        Ok(PostgresEventStore::new(pool))
    }

    /// The pool, to share with a [`PostgresSnapshotStore`]
    /// or to run queries of your own.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool's connections, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `true` when `snapshots` is a [`PostgresSnapshotStore`] on this store's pool, so
    /// that a load can read both in one statement.
    fn is_sibling(&self, snapshots: &dyn SnapshotStore) -> bool {
        snapshots
            .as_any()
            .and_then(|any| any.downcast_ref::<PostgresSnapshotStore>())
            .is_some_and(|s| Arc::ptr_eq(&s.pool().connect_options(), &self.pool.connect_options()))
    }

    /// `(version, id)` of the batch's events already stored in this stream.
    async fn stored(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<(u64, Uuid)>> {
        let rows: Vec<(i64, Uuid)> = sqlx::query_as(
            "SELECT version, event_id FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_id = ANY($3)",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::backend)?;
        Ok(rows
            .into_iter()
            .filter_map(|(v, id)| Some((u64::try_from(v).ok()?, id)))
            .collect())
    }

    /// After a unique violation: what it means (see [`explain_unique_violation`]).
    async fn explain_unique_violation(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
        ids: &[Uuid],
    ) -> Result<u64> {
        let stored = self.stored(aggregate_type, aggregate_id, ids).await?;
        let anywhere: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::backend)?;
        let head = head(&self.pool, aggregate_type, aggregate_id).await?;
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

async fn head<'c, E>(executor: E, aggregate_type: &str, aggregate_id: Uuid) -> Result<u64>
where
    E: sqlx::PgExecutor<'c>,
{
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0)::bigint FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(executor)
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

/// An append statement: the `head` CTE gives the stream's version, and if it is the
/// expected version (`$3`, `NULL` for any), the rows are inserted after it. The statement
/// returns the head and how many rows were inserted.
macro_rules! append_sql {
    (head: $head:ident, rows: $rows:ident) => {
        concat!(
            "WITH head AS (",
            $head!(),
            "), inserted AS ( \
             INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
             event_version, payload, metadata, occurred_at) ",
            $rows!(),
            " RETURNING 1) \
             SELECT head.version, (SELECT COUNT(*) FROM inserted) FROM head"
        )
    };
}

/// The head of an existing stream.
macro_rules! stream_head {
    () => {
        "SELECT COALESCE(MAX(version), 0)::bigint AS version FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2"
    };
}

/// The head of a stream the writer expects to be new: 0 without reading it. Versions
/// have no gaps, so inserting version 1 succeeds only into an empty stream, and the
/// unique (aggregate_type, aggregate_id, version) constraint reports the clash otherwise.
macro_rules! new_stream_head {
    () => {
        "SELECT 0::bigint AS version"
    };
}

/// The rows of a batch: one array per column, unnested in order.
macro_rules! batch_rows {
    () => {
        "SELECT e.event_id, $2, $1, head.version + e.n, e.event_type, e.event_version, \
         e.payload::json, e.metadata::json, e.occurred_at \
         FROM head, UNNEST($4::uuid[], $5::text[], $6::integer[], $7::text[], $8::text[], \
         $9::timestamptz[]) WITH ORDINALITY \
         AS e(event_id, event_type, event_version, payload, metadata, occurred_at, n) \
         WHERE $3::bigint IS NULL OR head.version = $3::bigint ORDER BY e.n"
    };
}

/// The row of a batch of one event, from plain parameters: most saves record one event,
/// and binding and unnesting arrays costs the server more than a plain row.
macro_rules! one_row {
    () => {
        "SELECT $4, $2, $1, head.version + 1, $5, $6, $7::json, $8::json, $9 \
         FROM head WHERE $3::bigint IS NULL OR head.version = $3::bigint"
    };
}

/// Appends a batch to a stream.
const APPEND_SQL: &str = append_sql!(head: stream_head, rows: batch_rows);
/// Appends one event to a stream.
const APPEND_ONE_SQL: &str = append_sql!(head: stream_head, rows: one_row);
/// Appends a batch to a stream expected to be new.
const APPEND_NEW_SQL: &str = append_sql!(head: new_stream_head, rows: batch_rows);
/// Appends one event to a stream expected to be new.
const APPEND_NEW_ONE_SQL: &str = append_sql!(head: new_stream_head, rows: one_row);

/// `read_stream`: the columns [`event_ref`] reads, in its order.
const READ_STREAM_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload::text, metadata::text, occurred_at FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3 AND version <= $4 \
     ORDER BY version";

/// `version_as_of`: the version before the stream's first event that occurred after
/// `$3`, or the stream's head when none did; 0 without events.
const VERSION_AS_OF_SQL: &str = "SELECT COALESCE( \
     (SELECT min(version) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
      AND occurred_at > $3) - 1, \
     (SELECT max(version) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2), \
     0)";

/// `read_all`: the columns [`event_ref`] reads, then the stream's type and id.
const READ_ALL_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload::text, metadata::text, occurred_at, aggregate_type, aggregate_id FROM events \
     WHERE position >= $1 ORDER BY position LIMIT $2";

/// Reads the columns of an event row (in the order of [`READ_STREAM_SQL`]) into an
/// [`EventRef`] borrowing the row's text.
fn event_ref<'r>(
    row: &'r PgRow,
    aggregate_type: &'r str,
    aggregate_id: Uuid,
) -> std::result::Result<EventRef<'r>, String> {
    let position: i64 = column(row, 0, "position")?;
    let version: i64 = column(row, 2, "version")?;
    let event_version: i32 = column(row, 4, "event_version")?;
    Ok(EventRef {
        position: unsigned("position", position)?,
        event_id: column(row, 1, "event_id")?,
        aggregate_type,
        aggregate_id,
        version: unsigned("version", version)?,
        event_type: column(row, 3, "event_type")?,
        event_version: unsigned("event_version", event_version)?,
        payload: column(row, 5, "payload")?,
        metadata: column(row, 6, "metadata")?,
        occurred_at: timestamp(row, 7).map_err(|e| format!("column occurred_at: {e}"))?,
    })
}

/// The feed's filters, shared by the page and the held-back check.
macro_rules! feed_filters {
    () => {
        "($3::text[] IS NULL OR aggregate_type = ANY($3)) \
         AND ($4::text[] IS NULL OR event_type = ANY($4))"
    };
}

/// `read_feed`: the columns [`event_ref`] reads, the stream's type and id, the event's
/// transaction, then the horizon and whether committed events wait beyond it, from one
/// snapshot. Without a matching event the one row has NULL event columns.
const READ_FEED_SQL: &str = concat!(
    "SELECT e.position, e.event_id, e.version, e.event_type, e.event_version, ",
    "e.payload::text, e.metadata::text, e.occurred_at, e.aggregate_type, e.aggregate_id, ",
    "e.transaction_id::text::bigint, h.horizon::text::bigint, h.held ",
    "FROM (SELECT x.horizon, EXISTS (SELECT 1 FROM events WHERE transaction_id >= x.horizon AND ",
    feed_filters!(),
    ") AS held FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) x) h ",
    "LEFT JOIN LATERAL (SELECT * FROM events ",
    "WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) ",
    "AND transaction_id < h.horizon AND ",
    feed_filters!(),
    " ORDER BY transaction_id, position LIMIT $5) e ON true ",
    "ORDER BY e.transaction_id, e.position"
);

/// Reads a row of [`READ_ALL_SQL`] or [`FIND_EVENT_SQL`].
fn recorded(row: &PgRow) -> Result<RecordedEvent> {
    let aggregate_type: &str = row.try_get(8).map_err(|e| {
        Error::corrupt_row("events", None, None, format!("column aggregate_type: {e}"))
    })?;
    let aggregate_id: Uuid = row.try_get(9).map_err(|e| {
        Error::corrupt_row(
            "events",
            Some(aggregate_type),
            None,
            format!("column aggregate_id: {e}"),
        )
    })?;
    let event = event_ref(row, aggregate_type, aggregate_id)
        .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
    event.to_recorded()
}

/// `find_event`: the columns of [`READ_ALL_SQL`], for one event id.
const FIND_EVENT_SQL: &str = "SELECT position, event_id, version, event_type, event_version, \
     payload::text, metadata::text, occurred_at, aggregate_type, aggregate_id FROM events \
     WHERE event_id = $1";

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64> {
        checks::append(aggregate_type, aggregate_id, expected, events)?;
        let expected_param = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::Exact(v) => Some(checks::to_i64("expected_version", v)?),
        };
        let n = events.len();
        let (mut ids, mut types, mut type_versions) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut payloads, mut metadata, mut occurred) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for event in events {
            ids.push(event.event_id);
            types.push(event.event_type.as_str());
            type_versions.push(checks::to_i32("event_version", event.event_version)?);
            payloads.push(event.payload.as_str());
            metadata.push(event.metadata.to_json());
            occurred.push(event.occurred_at);
        }
        let sql = match (expected, n) {
            (ExpectedVersion::Exact(0), 1) => APPEND_NEW_ONE_SQL,
            (ExpectedVersion::Exact(0), _) => APPEND_NEW_SQL,
            (_, 1) => APPEND_ONE_SQL,
            _ => APPEND_SQL,
        };
        let query = sqlx::query_as(sql)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(expected_param);
        let query = if n == 1 {
            query
                .bind(ids[0])
                .bind(types[0])
                .bind(type_versions[0])
                .bind(payloads[0])
                .bind(&metadata[0])
                .bind(occurred[0])
        } else {
            query
                .bind(&ids)
                .bind(&types)
                .bind(&type_versions)
                .bind(&payloads)
                .bind(&metadata)
                .bind(&occurred)
        };
        let outcome: std::result::Result<(i64, i64), sqlx::Error> =
            query.fetch_one(&self.pool).await;
        match outcome {
            Ok((head, inserted)) => {
                let head = u64::try_from(head).map_err(|_| {
                    Error::corrupt_event(
                        aggregate_type,
                        aggregate_id,
                        format!("negative version {head}"),
                    )
                })?;
                if let ExpectedVersion::Exact(v) = expected
                    && v != head
                {
                    let stored = self.stored(aggregate_type, aggregate_id, &ids).await?;
                    return already_appended(expected, events, &stored).ok_or_else(|| {
                        Error::conflict(aggregate_type, aggregate_id, expected, head)
                    });
                }
                if inserted != n as i64 {
                    return Err(Error::backend(format!(
                        "appending to {aggregate_type}/{aggregate_id}: \
                         {inserted} of {n} events inserted"
                    )));
                }
                if n > 0 {
                    self.appended.send_modify(|n| *n = n.wrapping_add(1));
                    self.notifier.notify(&self.pool);
                }
                Ok(head + n as u64)
            }
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                self.explain_unique_violation(aggregate_type, aggregate_id, expected, events, &ids)
                    .await
            }
            Err(e) => Err(Error::backend(e)),
        }
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
            .bind(aggregate_id)
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
            .bind(aggregate_id)
            .bind(time)
            .fetch_one(&self.pool)
            .await
            .map_err(Error::backend)?;
        Ok(u64::try_from(version).ok().filter(|v| *v > 0))
    }

    async fn read_aggregate(
        &self,
        snapshots: Option<&dyn SnapshotStore>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        self.read_aggregate_at(snapshots, aggregate_type, aggregate_id, u64::MAX, visitor)
            .await
    }

    /// `to_version = u64::MAX` is a load of the current state: the newest snapshot and
    /// every event after it.
    async fn read_aggregate_at(
        &self,
        snapshots: Option<&dyn SnapshotStore>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        to_version: u64,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let pool = &self.pool;
        match snapshots {
            Some(snapshots) if self.is_sibling(snapshots) => {
                super::load::snapshot_and_tail(
                    pool,
                    aggregate_type,
                    aggregate_id,
                    to_version,
                    visitor,
                )
                .await
            }
            Some(snapshots) => {
                // Another database: two reads.
                let from_version = if to_version == u64::MAX {
                    crate::store::read_snapshot(snapshots, aggregate_type, aggregate_id, visitor)
                        .await
                } else {
                    crate::store::read_snapshot_at(
                        snapshots,
                        aggregate_type,
                        aggregate_id,
                        to_version,
                        visitor,
                    )
                    .await
                };
                super::load::tail(
                    pool,
                    aggregate_type,
                    aggregate_id,
                    from_version,
                    to_version,
                    visitor,
                )
                .await
            }
            None => {
                super::load::tail(pool, aggregate_type, aggregate_id, 1, to_version, visitor).await
            }
        }
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<u64>> {
        checks::name("aggregate_type", aggregate_type)?;
        let version = head(&self.pool, aggregate_type, aggregate_id).await?;
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
        visit_rows(rows, |row: &PgRow| {
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
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT aggregate_id FROM events WHERE aggregate_type = $1 AND version = 1 \
             AND ($2::uuid IS NULL OR aggregate_id > $2) ORDER BY aggregate_id LIMIT $3",
        )
        .bind(aggregate_type)
        .bind(after)
        .bind(crate::store::rows::saturating_i64(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::backend)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>> {
        let rows = sqlx::query(FIND_EVENT_SQL)
            .bind(event_id)
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
        let rows = sqlx::query(READ_FEED_SQL)
            .bind(checks::to_i64("checkpoint", after.transaction())?)
            .bind(checks::to_i64("checkpoint", after.position())?)
            .bind(query.aggregate_types.as_deref())
            .bind(query.event_types.as_deref())
            .bind(crate::store::rows::saturating_i64(query.limit as u64))
            .fetch(&self.pool);
        let mut events = Vec::new();
        let mut horizon = (0u64, false);
        visit_rows(rows, |row: &PgRow| {
            let corrupt = |m: String| Error::corrupt_row("events", None, None, m);
            let h: i64 = column(row, 11, "horizon").map_err(corrupt)?;
            let held: bool = column(row, 12, "held").map_err(corrupt)?;
            horizon = (unsigned("horizon", h).map_err(corrupt)?, held);
            let position: Option<i64> = column(row, 0, "position").map_err(corrupt)?;
            if position.is_none() {
                return Ok(ControlFlow::Continue(()));
            }
            let aggregate_type: &str = column(row, 8, "aggregate_type").map_err(corrupt)?;
            let aggregate_id: Uuid = column(row, 9, "aggregate_id")
                .map_err(|m| Error::corrupt_row("events", Some(aggregate_type), None, m))?;
            let event = event_ref(row, aggregate_type, aggregate_id)
                .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
            let transaction: i64 = column(row, 10, "transaction_id")
                .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
            let transaction = unsigned("transaction_id", transaction)
                .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
            events.push(FeedEvent {
                checkpoint: Checkpoint::new(transaction, event.position),
                event: event.to_recorded()?,
            });
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        let (horizon, held_back) = horizon;
        if after.transaction() > horizon {
            return Err(Error::invalid(
                "checkpoint",
                format!(
                    "{after} is ahead of this database's transactions (the feed's horizon is \
                     transaction {horizon}): the checkpoint comes from another database or \
                     cluster, such as the one this database was restored from"
                ),
            ));
        }
        let next = match events.last() {
            Some(last) if events.len() >= query.limit => last.checkpoint,
            _ if query.limit == 0 => after,
            // Everything below the horizon has been seen.
            _ => after.max(Checkpoint::new(horizon, 0)),
        };
        Ok(FeedPage {
            events,
            next,
            held_back,
        })
    }

    fn append_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.appended.subscribe())
    }
}
