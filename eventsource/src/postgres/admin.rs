//! [`AdminStore`] for [`PostgresEventStore`]: the operations API's queries in SQL.
//!
//! The `snapshots` table read is the one in the event store's database. Every query
//! takes an aggregate's snapshot to be its row of highest version (`DISTINCT ON`), so it
//! stays right when the table keeps several per aggregate. Stream versions come from the
//! first event of each stream (the `events_streams` index) and one index lookup of the
//! last, never from reading every event. The report runs in one read-only
//! repeatable-read transaction, so its numbers agree with each other.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::PostgresEventStore;
use super::pool::timestamp;
use crate::admin::{
    AdminStore, AggregateLag, BehindQuery, Coverage, CoverageOptions, FeedLag, SchemaVersionCount,
    SnapshotSize, SubscriptionPartition, non_negative, saturating_i64,
};
use crate::error::{Error, Result};
use crate::feed::Checkpoint;
use crate::snapshot::SnapshotStore;
use crate::store::checks;
use crate::subscription::{ParkedEvent, SubscriptionStore, check_name};

/// The aggregates of type `$1` with their stream's version.
const STREAMS: &str = "streams AS (\
     SELECT e.aggregate_id, (SELECT MAX(x.version) FROM events x \
       WHERE x.aggregate_type = $1 AND x.aggregate_id = e.aggregate_id) AS stream_version \
     FROM events e WHERE e.aggregate_type = $1 AND e.version = 1)";

/// The snapshot of each aggregate of type `$1`: its row of highest version.
const SNAPS: &str = "snaps AS (\
     SELECT DISTINCT ON (s.aggregate_id) s.aggregate_id, s.version, s.schema_version \
     FROM snapshots s WHERE s.aggregate_type = $1 ORDER BY s.aggregate_id, s.version DESC)";

fn corrupt(message: String) -> Error {
    Error::backend(message)
}

fn column<'r, T>(row: &'r PgRow, index: usize, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(index)
        .map_err(|e| corrupt(format!("admin query, column {name}: {e}")))
}

impl PostgresEventStore {
    /// A read-only transaction whose statements all see the same data.
    async fn consistent(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool().begin().await.map_err(Error::backend)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(Error::backend)?;
        Ok(tx)
    }
}

#[async_trait]
impl AdminStore for PostgresEventStore {
    async fn aggregate_types(&self, _snapshots: &dyn SnapshotStore) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT aggregate_type FROM events WHERE version = 1 \
             UNION SELECT aggregate_type FROM snapshots ORDER BY 1",
        )
        .fetch_all(self.pool())
        .await
        .map_err(Error::backend)?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    async fn behind(
        &self,
        _snapshots: &dyn SnapshotStore,
        query: &BehindQuery,
    ) -> Result<Vec<AggregateLag>> {
        checks::name("aggregate_type", &query.aggregate_type)?;
        let sql = format!(
            "WITH {STREAMS}, {SNAPS} \
             SELECT aggregate_id, stream_version, snapshot_version, snapshot_schema, behind FROM (\
               SELECT st.aggregate_id, st.stream_version, sn.version AS snapshot_version, \
                 sn.schema_version AS snapshot_schema, st.stream_version - CASE \
                   WHEN sn.schema_version = $2 AND sn.version <= st.stream_version \
                   THEN sn.version ELSE 0 END AS behind \
               FROM streams st LEFT JOIN snaps sn ON sn.aggregate_id = st.aggregate_id) t \
             WHERE behind >= $3 ORDER BY behind DESC, aggregate_id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query.aggregate_type.as_str())
            .bind(checks::to_i32("schema_version", query.schema_version)?)
            .bind(saturating_i64(query.min_events_behind))
            .bind(query.limit.map(saturating_i64))
            .fetch_all(self.pool())
            .await
            .map_err(Error::backend)?;
        rows.iter()
            .map(|row| {
                let version: Option<i64> = column(row, 2, "snapshot_version")?;
                let schema: Option<i32> = column(row, 3, "snapshot_schema")?;
                Ok(AggregateLag {
                    aggregate_id: column(row, 0, "aggregate_id")?,
                    stream_version: non_negative("version", column(row, 1, "stream_version")?)?,
                    snapshot_version: version.map(|v| non_negative("version", v)).transpose()?,
                    snapshot_schema_version: schema.map(|v| v as u32),
                    events_behind: non_negative("events behind", column(row, 4, "behind")?)?,
                })
            })
            .collect()
    }

    async fn coverage(
        &self,
        _snapshots: &dyn SnapshotStore,
        aggregate_type: &str,
        options: &CoverageOptions,
    ) -> Result<Coverage> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut tx = self.consistent().await?;
        let counts = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH {STREAMS}, {SNAPS} \
             SELECT COUNT(*), COUNT(snapshot_version), COUNT(*) FILTER (WHERE behind > $2), \
               COALESCE(SUM(behind), 0)::bigint, COALESCE(MAX(behind), 0)::bigint FROM (\
               SELECT sn.version AS snapshot_version, st.stream_version - CASE \
                 WHEN sn.version <= st.stream_version THEN sn.version ELSE 0 END AS behind \
               FROM streams st LEFT JOIN snaps sn ON sn.aggregate_id = st.aggregate_id) t"
        )))
        .bind(aggregate_type)
        .bind(saturating_i64(options.stale_after))
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let ahead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH {STREAMS}, {SNAPS} \
             SELECT COUNT(*) FROM snaps sn LEFT JOIN streams st \
             ON st.aggregate_id = sn.aggregate_id \
             WHERE st.aggregate_id IS NULL OR sn.version > st.stream_version"
        )))
        .bind(aggregate_type)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let versions = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH {SNAPS} SELECT schema_version, COUNT(*) FROM snaps GROUP BY 1 ORDER BY 1"
        )))
        .bind(aggregate_type)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let largest = sqlx::query(
            "SELECT aggregate_id, version, schema_version, bytes FROM (\
               SELECT DISTINCT ON (s.aggregate_id) s.aggregate_id, s.version, s.schema_version, \
                 COALESCE(octet_length(s.state::text), octet_length(s.state_zstd))::bigint AS bytes \
               FROM snapshots s WHERE s.aggregate_type = $1 \
               ORDER BY s.aggregate_id, s.version DESC) t \
             ORDER BY bytes DESC, aggregate_id LIMIT $2",
        )
        .bind(aggregate_type)
        .bind(saturating_i64(options.largest))
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::backend)?;
        tx.commit().await.map_err(Error::backend)?;

        let aggregates = non_negative("count", column(&counts, 0, "count")?)?;
        let with_snapshot = non_negative("count", column(&counts, 1, "count")?)?;
        Ok(Coverage {
            aggregate_type: aggregate_type.to_owned(),
            aggregates,
            with_snapshot,
            without_snapshot: aggregates - with_snapshot,
            stale: non_negative("count", column(&counts, 2, "stale")?)?,
            stale_after: options.stale_after,
            events_since_snapshots: non_negative("sum", column(&counts, 3, "sum")?)?,
            max_events_since_snapshot: non_negative("max", column(&counts, 4, "max")?)?,
            snapshots_ahead: non_negative("count", ahead)?,
            schema_versions: versions
                .iter()
                .map(|row| {
                    Ok(SchemaVersionCount {
                        schema_version: column::<i32>(row, 0, "schema_version")? as u32,
                        snapshots: non_negative("count", column(row, 1, "count")?)?,
                    })
                })
                .collect::<Result<_>>()?,
            largest: largest
                .iter()
                .map(|row| {
                    Ok(SnapshotSize {
                        aggregate_id: column::<Uuid>(row, 0, "aggregate_id")?,
                        version: non_negative("version", column(row, 1, "version")?)?,
                        schema_version: column::<i32>(row, 2, "schema_version")? as u32,
                        bytes: non_negative("bytes", column(row, 3, "bytes")?)?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionPartition>> {
        let rows = sqlx::query(
            "SELECT c.subscription, c.partition, c.transaction_id, c.position, c.updated_at, \
               (SELECT COUNT(*) FROM subscription_parked p \
                WHERE p.subscription = c.subscription AND p.partition = c.partition) \
             FROM subscription_checkpoints c ORDER BY c.subscription, c.partition",
        )
        .fetch_all(self.pool())
        .await
        .map_err(Error::backend)?;
        rows.iter()
            .map(|row| {
                Ok(SubscriptionPartition {
                    subscription: column(row, 0, "subscription")?,
                    partition: column::<i32>(row, 1, "partition")? as u32,
                    checkpoint: Checkpoint::new(
                        non_negative("transaction_id", column(row, 2, "transaction_id")?)?,
                        non_negative("position", column(row, 3, "position")?)?,
                    ),
                    updated_at: Some(timestamp(row, 4).map_err(corrupt)?),
                    parked: non_negative("count", column(row, 5, "parked")?)?,
                })
            })
            .collect()
    }

    async fn feed_lag(&self, checkpoint: Checkpoint) -> Result<FeedLag> {
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(occurred_at) FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)",
        )
        .bind(saturating_i64(checkpoint.transaction()))
        .bind(saturating_i64(checkpoint.position()))
        .fetch_one(self.pool())
        .await
        .map_err(Error::backend)?;
        Ok(FeedLag {
            events: non_negative("count", column(&row, 0, "count")?)?,
            oldest_at: column(&row, 1, "occurred_at")?,
        })
    }

    async fn reset_subscription(&self, subscription: &str, checkpoint: Checkpoint) -> Result<u64> {
        check_name(subscription)?;
        let done = sqlx::query(
            "UPDATE subscription_checkpoints SET transaction_id = $2, position = $3, \
             updated_at = now() WHERE subscription = $1",
        )
        .bind(subscription)
        .bind(checks::to_i64("checkpoint", checkpoint.transaction())?)
        .bind(checks::to_i64("checkpoint", checkpoint.position())?)
        .execute(self.pool())
        .await
        .map_err(Error::backend)?;
        Ok(done.rows_affected())
    }

    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>> {
        SubscriptionStore::parked(self, subscription).await
    }
}
