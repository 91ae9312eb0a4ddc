//! Loading an aggregate from PostgreSQL: with the snapshots on the same pool, the
//! snapshot and the events after it come in one statement, one round trip.
//!
//! The statement can fail or wait because of its snapshot half alone (the table
//! missing, renamed or not readable, a lock on it). A snapshot problem is never an
//! error: the server gives up waiting for a lock on `snapshots` after the snapshot
//! timeout (the snapshot is read through a function that sets `lock_timeout` first),
//! the client gives up on the first row a little later still (a hung connection), and
//! on a failure or a timeout the visitor is told why and the events are read alone.

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row, ValueRef};
use uuid::Uuid;

use super::snapshots::snapshot_columns;
use crate::error::{Error, Result};
use crate::store::guard::Guarded;
use crate::store::rows::{saturating_i64, stream_event};
use crate::store::{LoadVisitor, visit_rows};

/// A load's stream: only the columns [`stream_event`] reads.
const LOAD_STREAM_SQL: &str = "SELECT version, event_type, event_version, payload::text \
     FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3 \
     AND version <= $4 ORDER BY version";

/// One row per event from the snapshot's version on (or from 1) up to `$4`, in version
/// order, with the columns [`stream_event`] reads, then the snapshot's (all `NULL`
/// without one). The state (plain or compressed) is sent once, on the first row. Without events from there,
/// one row whose event columns are `NULL`. `$snapshot` is the function the snapshot comes
/// through, which bounds its wait for a lock on `snapshots` by `$3`.
macro_rules! snapshot_and_tail_sql {
    ($snapshot:literal) => {
        concat!(
            "SELECT e.version, e.event_type, e.event_version, \
             e.payload, s.version, s.schema_version, \
             CASE WHEN e.version IS NULL OR e.version = s.version THEN s.state END, \
             s.created_at, \
             CASE WHEN e.version IS NULL OR e.version = s.version THEN s.state_zstd END \
             FROM (SELECT 1) AS one \
             LEFT JOIN ",
            $snapshot,
            " s ON true \
             LEFT JOIN LATERAL ( \
                 SELECT version, event_type, event_version, payload::text AS payload FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 AND version >= COALESCE(s.version, 1) AND version <= $4 ORDER BY version \
             ) e ON true"
        )
    };
}

/// A load: the aggregate's newest snapshot, through `eventsource_snapshot` (migration 4;
/// migration 8 makes it pick the highest version, migration 9 adds the compressed
/// state), and the events after it.
const SNAPSHOT_AND_TAIL_SQL: &str = snapshot_and_tail_sql!("eventsource_snapshot($1, $2, $3)");

/// A load at version `$4`: the newest snapshot at or below it, through
/// `eventsource_snapshot_at` (migration 8), and the events after it up to `$4`.
const SNAPSHOT_AT_AND_TAIL_SQL: &str =
    snapshot_and_tail_sql!("eventsource_snapshot_at($1, $2, $4, $3)");

/// How much longer than the snapshot timeout the client waits for the first row, so
/// that a lock wait ends on the server (which then frees the connection) rather than
/// by closing the connection.
const CLIENT_MARGIN: Duration = Duration::from_millis(500);

/// Where the snapshot's columns start in a row of [`SNAPSHOT_AND_TAIL_SQL`].
const SNAPSHOT_COLUMNS: usize = 4;

/// The events from `from_version` to `to_version`, alone.
pub(super) async fn tail(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: Uuid,
    from_version: u64,
    to_version: u64,
    visitor: &mut dyn LoadVisitor,
) -> Result<u64> {
    let rows = sqlx::query(LOAD_STREAM_SQL)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(saturating_i64(from_version))
        .bind(saturating_i64(to_version))
        .fetch(pool);
    visit_rows(rows, |row| {
        let event = stream_event::<_, i32>(row)
            .map_err(|m| Error::corrupt_event(aggregate_type, aggregate_id, m))?;
        visitor.event(event)
    })
    .await
}

/// The snapshot and its tail in one statement (see the module docs): the newest
/// snapshot and every event after it, or, with `to_version` below `u64::MAX`, the
/// newest snapshot at or below it and the events after it up to `to_version`.
pub(super) async fn snapshot_and_tail(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: Uuid,
    to_version: u64,
    visitor: &mut dyn LoadVisitor,
) -> Result<u64> {
    let sql = if to_version == u64::MAX {
        SNAPSHOT_AND_TAIL_SQL
    } else {
        SNAPSHOT_AT_AND_TAIL_SQL
    };
    let limit = visitor.snapshot_timeout();
    // The server's bound on the lock wait ("0" is PostgreSQL's "no limit").
    let lock_timeout = limit.map_or_else(|| "0".to_owned(), super::snapshots::lock_timeout);
    let mut conn = Guarded::<sqlx::Postgres>::acquire(pool).await?;
    let mut rows = sqlx::query(sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(lock_timeout)
        .bind(saturating_i64(to_version))
        .fetch(&mut *conn);
    let first = match limit {
        // The server answers at `limit` on a lock; the client waits a little longer,
        // for a connection or server that does not answer at all.
        Some(limit) => crate::time::within(limit + CLIENT_MARGIN, rows.try_next()).await,
        None => Some(rows.try_next().await),
    };
    let first = match first {
        Some(Ok(first)) => first,
        failed => {
            drop(rows);
            let reason = match failed {
                Some(Err(e)) => {
                    conn.release();
                    Error::backend(e)
                }
                // Timed out: the guard closes the connection, still busy with the statement.
                _ => {
                    drop(conn);
                    Error::timeout(
                        "reading the snapshot",
                        limit.unwrap_or_default() + CLIENT_MARGIN,
                    )
                }
            };
            let from_version = visitor.snapshot(Err(reason)).max(1);
            return tail(
                pool,
                aggregate_type,
                aggregate_id,
                from_version,
                to_version,
                visitor,
            )
            .await;
        }
    };
    let read = visit_rows_after(first, &mut rows, aggregate_type, aggregate_id, visitor).await;
    drop(rows);
    conn.release();
    match read? {
        Next::Done(visited) => Ok(visited),
        Next::ReadApart(from_version) => {
            tail(
                pool,
                aggregate_type,
                aggregate_id,
                from_version,
                to_version,
                visitor,
            )
            .await
        }
    }
}

/// What is left to do after the one-statement read.
enum Next {
    /// Every event was visited; this many.
    Done(u64),
    /// The visitor wants events from a version the statement did not read.
    ReadApart(u64),
}

/// Hands the visitor the snapshot of the first row, then each event it asked for.
async fn visit_rows_after(
    first: Option<PgRow>,
    rows: &mut (impl futures_util::Stream<Item = std::result::Result<PgRow, sqlx::Error>> + Unpin),
    aggregate_type: &str,
    aggregate_id: Uuid,
    visitor: &mut dyn LoadVisitor,
) -> Result<Next> {
    let found = match &first {
        Some(row) => snapshot_columns(row, SNAPSHOT_COLUMNS, aggregate_type, aggregate_id),
        None => Ok(None),
    };
    // The version the rows start at; unknown when the snapshot did not decode.
    let streamed_from = match &found {
        Ok(Some(snapshot)) => Some(snapshot.version.max(1)),
        Ok(None) => Some(1),
        Err(_) => None,
    };
    let from_version = visitor.snapshot(found).max(1);
    if streamed_from.is_none_or(|start| from_version < start) {
        return Ok(Next::ReadApart(from_version));
    }
    let corrupt = |m: String| Error::corrupt_event(aggregate_type, aggregate_id, m);
    let mut visited = 0;
    let mut next = first;
    while let Some(row) = next {
        // Without events from the snapshot on, the one row has no event columns.
        let has_event = !row
            .try_get_raw(0)
            .map_err(|e| corrupt(format!("column version: {e}")))?
            .is_null();
        if has_event {
            let event = stream_event::<_, i32>(&row).map_err(corrupt)?;
            if event.version >= from_version {
                if visitor.event(event)?.is_break() {
                    break;
                }
                visited += 1;
            }
        }
        next = rows.try_next().await.map_err(Error::backend)?;
    }
    Ok(Next::Done(visited))
}
