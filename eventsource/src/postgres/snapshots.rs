//! [`PostgresSnapshotStore`]: snapshots in a PostgreSQL database.
//!
//! The `snapshots` table is created by
//! [`migrate_postgres`](crate::migrations::migrate_postgres). The state is `json`, as
//! event payloads are: kept byte for byte as it was written (`jsonb` would rewrite
//! numbers, turning `-0.0` into `0`), read back without rebuilding its text, and still
//! open to SQL (`state ->> 'field'`).
//!
//! Each call runs on a [`Guarded`] connection: a call cancelled by the repository's
//! snapshot timeout (say, waiting for a lock on the table) closes its connection
//! instead of handing the pool one that is still busy.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::pool::{Guarded, timestamp};
use crate::error::{Error, Result};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::checks;

/// A snapshot store in a PostgreSQL database. Clones share the same pool.
///
/// Share the pool of a [`PostgresEventStore`](crate::PostgresEventStore):
/// `PostgresSnapshotStore::new(events.pool().clone())`.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone, Debug)]
pub struct PostgresSnapshotStore {
    pool: PgPool,
}

impl PostgresSnapshotStore {
    /// A store over this pool. The tables must exist: see
    /// [`migrate_postgres`](crate::migrations::migrate_postgres).
    pub fn new(pool: PgPool) -> Self {
        PostgresSnapshotStore { pool }
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

/// The snapshot in the four columns from `at` on (version, schema version, state,
/// created at), `None` when the version is `NULL` (no snapshot row was joined). The
/// columns are the store's own, so every value is checked, never trusted.
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
    let state: String = row
        .try_get(at + 2)
        .map_err(|e| corrupt(format!("column state: {e}")))?;
    let created_at =
        timestamp(row, at + 3).map_err(|e| corrupt(format!("column created_at: {e}")))?;
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

#[async_trait]
impl SnapshotStore for PostgresSnapshotStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        checks::snapshot(snapshot)?;
        let version = checks::to_i64("version", snapshot.version)?;
        let schema_version = checks::to_i32("schema_version", snapshot.schema_version)?;
        let mut conn = Guarded::acquire(&self.pool).await?;
        let done = sqlx::query(
            "INSERT INTO snapshots \
             (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
             VALUES ($1, $2, $3, $4, $5::json, $6) \
             ON CONFLICT (aggregate_id, aggregate_type) DO UPDATE SET \
             version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, \
             state = EXCLUDED.state, created_at = EXCLUDED.created_at \
             WHERE snapshots.version <= EXCLUDED.version",
        )
        .bind(snapshot.aggregate_id)
        .bind(snapshot.aggregate_type.as_str())
        .bind(version)
        .bind(schema_version)
        .bind(snapshot.state.as_str())
        .bind(snapshot.created_at)
        .execute(&mut *conn)
        .await;
        conn.release();
        done.map_err(Error::backend)?;
        Ok(())
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut conn = Guarded::acquire(&self.pool).await?;
        let row = sqlx::query(
            "SELECT version, schema_version, state::text, created_at FROM snapshots \
             WHERE aggregate_id = $1 AND aggregate_type = $2",
        )
        .bind(aggregate_id)
        .bind(aggregate_type)
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
        let mut conn = Guarded::acquire(&self.pool).await?;
        let done =
            sqlx::query("DELETE FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2")
                .bind(aggregate_id)
                .bind(aggregate_type)
                .execute(&mut *conn)
                .await;
        conn.release();
        Ok(done.map_err(Error::backend)?.rows_affected() > 0)
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut conn = Guarded::acquire(&self.pool).await?;
        let row =
            sqlx::query("SELECT 1 FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2")
                .bind(aggregate_id)
                .bind(aggregate_type)
                .fetch_optional(&mut *conn)
                .await;
        conn.release();
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
        let mut conn = Guarded::acquire(&self.pool).await?;
        let done = query.execute(&mut *conn).await;
        conn.release();
        Ok(done.map_err(Error::backend)?.rows_affected())
    }

    /// Lets a [`PostgresEventStore`](crate::PostgresEventStore) on the same pool read a
    /// snapshot and its events in one statement.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
