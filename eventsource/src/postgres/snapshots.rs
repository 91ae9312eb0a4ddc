//! [`PostgresSnapshotStore`]: snapshots in a PostgreSQL database.
//!
//! The `snapshots` table is created by
//! [`migrate_postgres`](crate::migrations::migrate_postgres). The state is `json`, as
//! event payloads are: kept byte for byte as it was written (`jsonb` would rewrite
//! numbers, turning `-0.0` into `0`), read back without rebuilding its text, and still
//! open to SQL (`state ->> 'field'`).
//!
//! Each call runs in a transaction with a `lock_timeout` (the snapshot timeout by
//! default, [`PostgresSnapshotStore::with_lock_timeout`]): a lock on the table fails
//! the call on the server, which frees its connection, instead of holding it until the
//! lock is released. A state longer than the policy's
//! [`compress_over`](crate::SnapshotPolicy::compress_over) is stored as a zstd frame in
//! `state_zstd` (`bytea`) with `state` `NULL`, when that makes it smaller; PostgreSQL
//! already compresses large `json` values itself (TOAST, pglz); zstd still stores a
//! quarter fewer bytes and writes and loads states of 100 kB and more faster than pglz
//! (docs/BENCHMARKS.md, "Snapshot compression"). Each runs on a [`Guarded`] connection too: a call cancelled by the
//! repository's timeout closes its connection instead of handing the pool a busy one.
//! That is four short statements for a snapshot write, which happens once every many
//! saves (the write itself, pruning included, is one); loads with both stores on one
//! pool read the snapshot inside their one statement (`load.rs`) and pay none of it,
//! and [`get_at`](SnapshotStore::get_at) reads through a function that sets the lock
//! timeout itself, in one statement.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

use super::pool::timestamp;
use crate::error::{Error, Result};
use crate::snapshot::compression;
use crate::snapshot::{DEFAULT_SNAPSHOT_TIMEOUT, Snapshot, SnapshotBound, SnapshotStore};
use crate::store::checks;
use crate::store::guard::Guarded;
use crate::store::rows::saturating_i64;

/// A snapshot store in a PostgreSQL database. Clones share the same pool.
///
/// Share the pool of a [`PostgresEventStore`](crate::PostgresEventStore):
/// `PostgresSnapshotStore::new(events.pool().clone())`.
///
/// ```no_run
/// # use eventsource::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Account", event = AccountEvent)]
/// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
/// # pub struct Account { pub cents: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventsource::Result<()> {
/// use std::sync::Arc;
/// use eventsource::{PostgresEventStore, PostgresSnapshotStore};
///
/// let events = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let snapshots = PostgresSnapshotStore::new(events.pool().clone());
/// // One pool for both: a load reads the snapshot and the events after it in one statement.
/// let repo = Account::repository(Arc::new(events), Arc::new(snapshots));
/// # let _ = repo;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone, Debug)]
pub struct PostgresSnapshotStore {
    pool: PgPool,
    /// `lock_timeout` of each call, as PostgreSQL reads it (`"2000ms"`).
    lock_timeout: String,
}

impl PostgresSnapshotStore {
    /// A store over this pool, whose calls wait at most
    /// [`DEFAULT_SNAPSHOT_TIMEOUT`] for a lock on the table. The tables must exist: see
    /// [`migrate_postgres`](crate::migrations::migrate_postgres).
    pub fn new(pool: PgPool) -> Self {
        PostgresSnapshotStore {
            pool,
            lock_timeout: lock_timeout(DEFAULT_SNAPSHOT_TIMEOUT),
        }
    }

    /// The same store, whose calls wait at most `limit` for a lock on the `snapshots`
    /// table (then fail, and a load replays). Match it to the repositories' snapshot
    /// timeout: past that timeout the repository gives up anyway, and a statement still
    /// waiting on the server would hold a server connection until the lock is gone.
    pub fn with_lock_timeout(mut self, limit: Duration) -> Self {
        self.lock_timeout = lock_timeout(limit);
        self
    }

    /// A connection in a transaction whose lock waits are bounded: a lock on the table
    /// makes the call fail after the lock timeout rather than wait for the lock.
    async fn begin(&self) -> Result<Guarded<Postgres>> {
        let mut conn = Guarded::<Postgres>::acquire(&self.pool).await?;
        sqlx::raw_sql("BEGIN")
            .execute(&mut *conn)
            .await
            .map_err(Error::backend)?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(self.lock_timeout.as_str())
            .execute(&mut *conn)
            .await
            .map_err(Error::backend)?;
        Ok(conn)
    }

    /// Ends the transaction of [`begin`](Self::begin): committed when the call
    /// succeeded, rolled back otherwise; then the connection goes back to the pool.
    async fn end(&self, mut conn: Guarded<Postgres>, succeeded: bool) -> Result<()> {
        let end = if succeeded { "COMMIT" } else { "ROLLBACK" };
        sqlx::raw_sql(end)
            .execute(&mut *conn)
            .await
            .map_err(Error::backend)?;
        conn.release();
        Ok(())
    }

    /// One snapshot write statement (`sql` binds the snapshot's columns as `$1` to `$7`,
    /// `$5` the plain state or `NULL`, `$7` the compressed one or `NULL`, and `keep` as
    /// `$8` if it uses it), in a transaction of [`begin`](Self::begin).
    async fn write(
        &self,
        sql: &'static str,
        snapshot: &Snapshot,
        compressed: Option<&[u8]>,
        keep: NonZeroU32,
    ) -> Result<()> {
        let version = checks::to_i64("version", snapshot.version)?;
        let schema_version = checks::to_i32("schema_version", snapshot.schema_version)?;
        let plain = compressed.is_none().then_some(snapshot.state.as_str());
        let mut query = sqlx::query(sql)
            .bind(snapshot.aggregate_id)
            .bind(snapshot.aggregate_type.as_str())
            .bind(version)
            .bind(schema_version)
            .bind(plain)
            .bind(snapshot.created_at)
            .bind(compressed);
        if sql == SAVE_SQL {
            query = query.bind(i64::from(keep.get()));
        }
        let mut conn = self.begin().await?;
        let done = query.execute(&mut *conn).await;
        self.end(conn, done.is_ok()).await?;
        done.map_err(Error::backend)?;
        Ok(())
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool's connections, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `true` for PostgreSQL's unique violation (SQLSTATE 23505).
fn is_unique_violation(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .and_then(sqlx::Error::as_database_error)
        .is_some_and(|e| e.code().as_deref() == Some("23505"))
}

/// A lock timeout as PostgreSQL reads it: `"1500ms"`; at least a millisecond (`0`
/// would mean no limit).
pub(super) fn lock_timeout(limit: Duration) -> String {
    format!("{}ms", limit.as_millis().max(1))
}

/// The snapshot in the five columns from `at` on (version, schema version, state,
/// created at, compressed state), `None` when the version is `NULL` (no snapshot row was
/// joined). The columns are the store's own, so every value is checked, never trusted:
/// a compressed state that does not decompress is a corrupt row.
pub(super) fn snapshot_columns(
    row: &PgRow,
    at: usize,
    aggregate_type: &str,
    aggregate_id: Uuid,
) -> Result<Option<Snapshot>> {
    let corrupt = |message: String| {
        Error::corrupt_row(
            "snapshots",
            Some(aggregate_type),
            Some(aggregate_id),
            message,
        )
    };
    let version: Option<i64> = row
        .try_get(at)
        .map_err(|e| corrupt(format!("column version: {e}")))?;
    let Some(version) = version else {
        return Ok(None);
    };
    let schema_version: i32 = row
        .try_get(at + 1)
        .map_err(|e| corrupt(format!("column schema_version: {e}")))?;
    let state: Option<String> = row
        .try_get(at + 2)
        .map_err(|e| corrupt(format!("column state: {e}")))?;
    let created_at =
        timestamp(row, at + 3).map_err(|e| corrupt(format!("column created_at: {e}")))?;
    let state_zstd: Option<Vec<u8>> = row
        .try_get(at + 4)
        .map_err(|e| corrupt(format!("column state_zstd: {e}")))?;
    let state = compression::state_of(state, state_zstd).map_err(corrupt)?;
    Ok(Some(Snapshot {
        aggregate_id,
        aggregate_type: aggregate_type.to_owned(),
        version: u64::try_from(version)
            .map_err(|_| corrupt(format!("negative version {version}")))?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt(format!("negative schema_version {schema_version}")))?,
        state,
        created_at,
    }))
}

/// A snapshot write in one statement: `$8` is how many to keep. `lowest` is the lowest
/// of the `$8` highest versions among the stored ones and the new one; the rows below it
/// are deleted, and the new one is stored (an equal version replaced) unless it is below
/// it. Every part reads the table as it was when the statement started: a row that a
/// concurrent write commits meanwhile is not seen, and so never deleted; the newest
/// snapshot is never below any `lowest`, and so never deleted.
///
/// Rows are locked in version order, whoever writes: first the ones to delete (`doomed`,
/// locked in order by `ORDER BY ... FOR UPDATE`), then the one written, which is above
/// them (the `INSERT` waits for the `DELETE` through its `count(*)` of `pruned`). Two
/// writers therefore never wait for each other in a cycle, even when one replaces a
/// version that the other prunes.
const SAVE_SQL: &str = "WITH lowest AS ( \
         SELECT min(version) AS version FROM ( \
             SELECT version FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2 \
             UNION SELECT $3::bigint \
             ORDER BY version DESC LIMIT $8 \
         ) AS kept \
     ), doomed AS ( \
         SELECT id FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2 \
         AND version < (SELECT version FROM lowest) \
         ORDER BY version FOR UPDATE \
     ), pruned AS ( \
         DELETE FROM snapshots WHERE id IN (SELECT id FROM doomed) RETURNING 1 \
     ) \
     INSERT INTO snapshots \
     (aggregate_id, aggregate_type, version, schema_version, state, created_at, state_zstd) \
     SELECT $1, $2, $3, $4, $5::json, $6, $7::bytea FROM lowest \
     WHERE $3 >= lowest.version AND (SELECT count(*) FROM pruned) >= 0 \
     ON CONFLICT (aggregate_id, aggregate_type, version) DO UPDATE SET \
     schema_version = EXCLUDED.schema_version, state = EXCLUDED.state, \
     created_at = EXCLUDED.created_at, state_zstd = EXCLUDED.state_zstd";

/// The write with `keep = 1`, in one statement: the aggregate's newest row is rewritten
/// in place when the new snapshot is not older (the write before the history was that
/// one-row upsert, and a row updated in place costs less than one deleted and one
/// inserted), the rows below the newest are deleted, and a row is inserted only when
/// the aggregate had none. The same lock order as [`SAVE_SQL`]: the rows deleted in
/// version order, then the newest. The deleted rows are those below the newest when the
/// statement started, checked again on the row as it is when locked, so a row another
/// writer has just moved up is not deleted. When another writer has stored the new
/// version meanwhile, the update breaks the unique constraint, and the write is done
/// again with [`SAVE_SQL`].
const SAVE_ONE_SQL: &str = "WITH newest AS ( \
         SELECT id, version FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2 \
         ORDER BY version DESC LIMIT 1 \
     ), doomed AS ( \
         SELECT id FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2 \
         AND version < (SELECT version FROM newest) \
         ORDER BY version FOR UPDATE \
     ), pruned AS ( \
         DELETE FROM snapshots WHERE id IN (SELECT id FROM doomed) RETURNING 1 \
     ), moved AS ( \
         UPDATE snapshots SET version = $3, schema_version = $4, state = $5::json, \
         created_at = $6, state_zstd = $7::bytea \
         WHERE id = (SELECT id FROM newest) AND version <= $3 \
         AND (SELECT count(*) FROM pruned) >= 0 \
         RETURNING 1 \
     ) \
     INSERT INTO snapshots \
     (aggregate_id, aggregate_type, version, schema_version, state, created_at, state_zstd) \
     SELECT $1, $2, $3, $4, $5::json, $6, $7::bytea \
     WHERE NOT EXISTS (SELECT 1 FROM newest) AND (SELECT count(*) FROM moved) >= 0 \
     ON CONFLICT (aggregate_id, aggregate_type, version) DO UPDATE SET \
     schema_version = EXCLUDED.schema_version, state = EXCLUDED.state, \
     created_at = EXCLUDED.created_at, state_zstd = EXCLUDED.state_zstd";

/// The newest snapshot at or below `$3`, read through the `eventsource_snapshot_at`
/// function (migration 8; migration 9 adds the compressed state), which bounds its wait for a lock on `snapshots` by `$4`: one
/// statement, no transaction of its own.
const GET_AT_SQL: &str = "SELECT version, schema_version, state, created_at, state_zstd \
     FROM eventsource_snapshot_at($1, $2, $3, $4)";

#[async_trait]
impl SnapshotStore for PostgresSnapshotStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        self.save_keeping(snapshot, NonZeroU32::MIN).await
    }

    async fn save_keeping(&self, snapshot: &Snapshot, keep: NonZeroU32) -> Result<()> {
        self.save_compressing(snapshot, keep, None).await
    }

    /// Compresses the state with zstd when it is longer than `compress_over` and that
    /// makes it smaller (see the module docs); otherwise stores it as plain `json`.
    async fn save_compressing(
        &self,
        snapshot: &Snapshot,
        keep: NonZeroU32,
        compress_over: Option<usize>,
    ) -> Result<()> {
        checks::snapshot(snapshot)?;
        let compressed = compression::compress(&snapshot.state, compress_over);
        let compressed = compressed.as_deref();
        if keep == NonZeroU32::MIN {
            match self.write(SAVE_ONE_SQL, snapshot, compressed, keep).await {
                // Another writer stored this version meanwhile: the general statement
                // replaces it.
                Err(Error::Backend { source }) if is_unique_violation(&*source) => {}
                done => return done,
            }
        }
        self.write(SAVE_SQL, snapshot, compressed, keep).await
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut conn = self.begin().await?;
        let row = sqlx::query(
            "SELECT version, schema_version, state::text, created_at, state_zstd FROM snapshots \
             WHERE aggregate_id = $1 AND aggregate_type = $2 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(aggregate_id)
        .bind(aggregate_type)
        .fetch_optional(&mut *conn)
        .await;
        self.end(conn, row.is_ok()).await?;
        match row.map_err(Error::backend)? {
            Some(row) => snapshot_columns(&row, 0, aggregate_type, aggregate_id),
            None => Ok(None),
        }
    }

    async fn get_at(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        let SnapshotBound::AtOrBelowVersion(at_or_below) = bound;
        let mut conn = Guarded::<Postgres>::acquire(&self.pool).await?;
        let row = sqlx::query(GET_AT_SQL)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(saturating_i64(at_or_below))
            .bind(self.lock_timeout.as_str())
            .fetch_optional(&mut *conn)
            .await;
        conn.release();
        match row.map_err(Error::backend)? {
            Some(row) => snapshot_columns(&row, 0, aggregate_type, aggregate_id),
            None => Ok(None),
        }
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut conn = self.begin().await?;
        let done =
            sqlx::query("DELETE FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2")
                .bind(aggregate_id)
                .bind(aggregate_type)
                .execute(&mut *conn)
                .await;
        self.end(conn, done.is_ok()).await?;
        Ok(done.map_err(Error::backend)?.rows_affected() > 0)
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut conn = self.begin().await?;
        let row = sqlx::query(
            "SELECT 1 FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2 LIMIT 1",
        )
        .bind(aggregate_id)
        .bind(aggregate_type)
        .fetch_optional(&mut *conn)
        .await;
        self.end(conn, row.is_ok()).await?;
        Ok(row.map_err(Error::backend)?.is_some())
    }

    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let query = match schema_version_below {
            None => {
                sqlx::query("DELETE FROM snapshots WHERE aggregate_type = $1").bind(aggregate_type)
            }
            // Every stored schema version fits in an integer: a bound above that range
            // deletes them all.
            Some(below) => sqlx::query(
                "DELETE FROM snapshots WHERE aggregate_type = $1 AND schema_version < $2",
            )
            .bind(aggregate_type)
            .bind(i64::from(below)),
        };
        let mut conn = self.begin().await?;
        let done = query.execute(&mut *conn).await;
        self.end(conn, done.is_ok()).await?;
        Ok(done.map_err(Error::backend)?.rows_affected())
    }

    /// Lets a [`PostgresEventStore`](crate::PostgresEventStore) on the same pool read a
    /// snapshot and its events in one statement.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
