//! [`SqliteSnapshotStore`]: snapshots in a SQLite database.
//!
//! The `snapshots` table is created by
//! [`migrate_sqlite`](crate::migrations::migrate_sqlite). Ids and timestamps are stored
//! as in the events table (hyphenated text, RFC 3339 with microseconds); the state is
//! stored as the exact JSON text saved, or, when it is longer than the policy's
//! [`compress_over`](crate::SnapshotPolicy::compress_over) and zstd makes it smaller, as
//! a zstd frame in `state_zstd` (`BLOB`) with `state` `NULL`.
//!
//! Writes run on a [`Guarded`] connection: a write cancelled by the repository's
//! snapshot timeout while it waits for SQLite's write lock closes its connection
//! instead of returning it to the pool still waiting (for up to the busy timeout), so
//! timed-out snapshot writes cannot use up the pool that loads and appends share.

use std::num::NonZeroU32;
use std::path::Path;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::pool::{format_timestamp, parse_timestamp};
use crate::error::{Error, Result};
use crate::snapshot::compression;
use crate::snapshot::{Snapshot, SnapshotBound, SnapshotStore};
use crate::store::checks;
use crate::store::guard::Guarded;
use crate::store::rows::saturating_i64;

/// A snapshot store in a SQLite database. Clones share the same pool.
///
/// Share the pool of a [`SqliteEventStore`](crate::SqliteEventStore) to keep events
/// and snapshots in one file:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventsource::Result<()> {
/// use eventsource::{SnapshotStore, SqliteEventStore, SqliteSnapshotStore};
///
/// let events = SqliteEventStore::open(":memory:").await?;
/// let snapshots = SqliteSnapshotStore::new(events.pool().clone());
/// assert!(!snapshots.exists("Order", uuid::Uuid::new_v4()).await?);
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Clone, Debug)]
pub struct SqliteSnapshotStore {
    pool: SqlitePool,
}

impl SqliteSnapshotStore {
    /// A store over this pool. The tables must exist: see
    /// [`migrate_sqlite`](crate::migrations::migrate_sqlite).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteSnapshotStore { pool }
    }

    /// Opens a database and creates the tables, as
    /// [`SqliteEventStore::open`](crate::SqliteEventStore::open) does.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(SqliteSnapshotStore::new(
            super::pool::open(path.as_ref()).await?,
        ))
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool's connections, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode(row: &SqliteRow, aggregate_type: &str, aggregate_id: Uuid) -> Result<Snapshot> {
    let corrupt = |message: String| {
        Error::corrupt_row(
            "snapshots",
            Some(aggregate_type),
            Some(aggregate_id),
            message,
        )
    };
    let version: i64 = row
        .try_get(0)
        .map_err(|e| corrupt(format!("column version: {e}")))?;
    let schema_version: i64 = row
        .try_get(1)
        .map_err(|e| corrupt(format!("column schema_version: {e}")))?;
    let state: Option<String> = row
        .try_get(2)
        .map_err(|e| corrupt(format!("column state: {e}")))?;
    let created_at: &str = row
        .try_get(3)
        .map_err(|e| corrupt(format!("column created_at: {e}")))?;
    let state_zstd: Option<Vec<u8>> = row
        .try_get(4)
        .map_err(|e| corrupt(format!("column state_zstd: {e}")))?;
    let state = compression::state_of(state, state_zstd).map_err(corrupt)?;
    Ok(Snapshot {
        aggregate_id,
        aggregate_type: aggregate_type.to_owned(),
        version: u64::try_from(version)
            .map_err(|_| corrupt(format!("negative version {version}")))?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt(format!("schema_version {schema_version} is out of range")))?,
        state,
        created_at: parse_timestamp(created_at).map_err(corrupt)?,
    })
}

/// Stores the snapshot unless `?7` newer ones of the aggregate are stored (an equal
/// version is replaced); `?5` is the plain state or `NULL`, `?8` the compressed one.
const INSERT_SQL: &str = "INSERT INTO snapshots \
     (aggregate_id, aggregate_type, version, schema_version, state, created_at, state_zstd) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?8 \
     WHERE (SELECT count(*) FROM snapshots \
            WHERE aggregate_id = ?1 AND aggregate_type = ?2 AND version > ?3) < ?7 \
     ON CONFLICT (aggregate_id, aggregate_type, version) DO UPDATE SET \
     schema_version = excluded.schema_version, state = excluded.state, \
     created_at = excluded.created_at, state_zstd = excluded.state_zstd";

/// Deletes the aggregate's snapshots below its `?3 + 1` highest (none when it has fewer:
/// the bound is then `NULL`).
const PRUNE_SQL: &str = "DELETE FROM snapshots \
     WHERE aggregate_id = ?1 AND aggregate_type = ?2 AND version < ( \
         SELECT version FROM snapshots WHERE aggregate_id = ?1 AND aggregate_type = ?2 \
         ORDER BY version DESC LIMIT 1 OFFSET ?3)";

/// The columns [`decode`] reads, of the aggregate's newest snapshot at or below `?3`.
const GET_SQL: &str = "SELECT version, schema_version, state, created_at, state_zstd \
     FROM snapshots \
     WHERE aggregate_id = ?1 AND aggregate_type = ?2 AND version <= ?3 \
     ORDER BY version DESC LIMIT 1";

impl SqliteSnapshotStore {
    /// The newest snapshot at or below `at_or_below`.
    async fn newest(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        at_or_below: u64,
    ) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        let row = sqlx::query(GET_SQL)
            .bind(aggregate_id.to_string())
            .bind(aggregate_type)
            .bind(saturating_i64(at_or_below))
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::backend)?;
        row.map(|row| decode(&row, aggregate_type, aggregate_id))
            .transpose()
    }
}

/// The two statements of a write, in the caller's transaction.
async fn insert_and_prune(
    conn: &mut sqlx::SqliteConnection,
    snapshot: &Snapshot,
    version: i64,
    compressed: Option<&[u8]>,
    keep: NonZeroU32,
) -> std::result::Result<(), sqlx::Error> {
    let id = snapshot.aggregate_id.to_string();
    let plain = compressed.is_none().then_some(snapshot.state.as_str());
    sqlx::query(INSERT_SQL)
        .bind(id.as_str())
        .bind(snapshot.aggregate_type.as_str())
        .bind(version)
        .bind(i64::from(snapshot.schema_version))
        .bind(plain)
        .bind(format_timestamp(snapshot.created_at))
        .bind(i64::from(keep.get()))
        .bind(compressed)
        .execute(&mut *conn)
        .await?;
    sqlx::query(PRUNE_SQL)
        .bind(id.as_str())
        .bind(snapshot.aggregate_type.as_str())
        .bind(i64::from(keep.get() - 1))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl SnapshotStore for SqliteSnapshotStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        self.save_keeping(snapshot, NonZeroU32::MIN).await
    }

    async fn save_keeping(&self, snapshot: &Snapshot, keep: NonZeroU32) -> Result<()> {
        self.save_compressing(snapshot, keep, None).await
    }

    /// Inserts, then prunes, in one `BEGIN IMMEDIATE` transaction: writers take turns, so
    /// the aggregate holds exactly the `keep` highest versions after each write. A state
    /// longer than `compress_over` is stored compressed when zstd makes it smaller
    /// (compressed before the transaction starts, so the write lock is held no longer).
    async fn save_compressing(
        &self,
        snapshot: &Snapshot,
        keep: NonZeroU32,
        compress_over: Option<usize>,
    ) -> Result<()> {
        checks::snapshot(snapshot)?;
        let version = checks::to_i64("version", snapshot.version)?;
        let compressed = compression::compress(&snapshot.state, compress_over);
        let mut conn = Guarded::<Sqlite>::acquire(&self.pool).await?;
        if let Err(e) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
            conn.release();
            return Err(Error::backend(e));
        }
        let done =
            insert_and_prune(&mut conn, snapshot, version, compressed.as_deref(), keep).await;
        let end = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match sqlx::raw_sql(end).execute(&mut *conn).await {
            Ok(_) => conn.release(),
            // The transaction may still be open: the guard closes the connection.
            Err(e) => {
                drop(conn);
                done.map_err(Error::backend)?;
                return Err(Error::backend(e));
            }
        }
        done.map_err(Error::backend)
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        self.newest(aggregate_type, aggregate_id, u64::MAX).await
    }

    async fn get_at(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>> {
        let SnapshotBound::AtOrBelowVersion(at_or_below) = bound;
        self.newest(aggregate_type, aggregate_id, at_or_below).await
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut conn = Guarded::<Sqlite>::acquire(&self.pool).await?;
        let done =
            sqlx::query("DELETE FROM snapshots WHERE aggregate_id = ?1 AND aggregate_type = ?2")
                .bind(aggregate_id.to_string())
                .bind(aggregate_type)
                .execute(&mut *conn)
                .await;
        conn.release();
        Ok(done.map_err(Error::backend)?.rows_affected() > 0)
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        let row = sqlx::query(
            "SELECT 1 FROM snapshots WHERE aggregate_id = ?1 AND aggregate_type = ?2 LIMIT 1",
        )
        .bind(aggregate_id.to_string())
        .bind(aggregate_type)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::backend)?;
        Ok(row.is_some())
    }

    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let query = match schema_version_below {
            None => {
                sqlx::query("DELETE FROM snapshots WHERE aggregate_type = ?1").bind(aggregate_type)
            }
            Some(below) => sqlx::query(
                "DELETE FROM snapshots WHERE aggregate_type = ?1 AND schema_version < ?2",
            )
            .bind(aggregate_type)
            .bind(i64::from(below)),
        };
        let mut conn = Guarded::<Sqlite>::acquire(&self.pool).await?;
        let done = query.execute(&mut *conn).await;
        conn.release();
        Ok(done.map_err(Error::backend)?.rows_affected())
    }
}
