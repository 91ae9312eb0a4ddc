//! Subscription state of the [`PostgresEventStore`]: checkpoints, parked events and
//! leases in the `subscription_*` tables, in the same database as the events.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::{NOTIFY_CHANNEL, PostgresEventStore};
use crate::error::{Error, Result};
use crate::feed::{Checkpoint, FeedEvent};
use crate::store::{EventStore, checks};
use crate::subscription::{ParkedEvent, SubscriptionStore, Wakeup, check_name};

fn i64_of(field: &'static str, v: u64) -> Result<i64> {
    checks::to_i64(field, v)
}

fn checkpoint_of(t: i64, p: i64) -> Result<Checkpoint> {
    match (u64::try_from(t), u64::try_from(p)) {
        (Ok(t), Ok(p)) => Ok(Checkpoint::new(t, p)),
        _ => Err(Error::corrupt_row(
            "subscription_checkpoints",
            None,
            None,
            format!("negative checkpoint {t}/{p}"),
        )),
    }
}

fn parked_of(row: &PgRow) -> Result<ParkedEvent> {
    let corrupt =
        |e: sqlx::Error| Error::corrupt_row("subscription_parked", None, None, e.to_string());
    let position: i64 = row.try_get("position").map_err(corrupt)?;
    let partition: i32 = row.try_get("partition").map_err(corrupt)?;
    let attempts: i32 = row.try_get("attempts").map_err(corrupt)?;
    Ok(ParkedEvent {
        subscription: row.try_get("subscription").map_err(corrupt)?,
        event_id: row.try_get("event_id").map_err(corrupt)?,
        position: position.max(0) as u64,
        aggregate_type: row.try_get("aggregate_type").map_err(corrupt)?,
        aggregate_id: row.try_get("aggregate_id").map_err(corrupt)?,
        partition: partition.max(0) as u32,
        attempts: attempts.max(0) as u32,
        error: row.try_get("error").map_err(corrupt)?,
        parked_at: super::pool::timestamp(row, 8)
            .map_err(|m| Error::corrupt_row("subscription_parked", None, None, m))?,
    })
}

const PARKED_COLUMNS: &str = "p.subscription, p.event_id, p.position, p.aggregate_type, \
     p.aggregate_id, p.partition, p.attempts, p.error, p.parked_at";

fn partition_i32(partition: u32) -> Result<i32> {
    checks::to_i32("partition", partition)
}

fn ttl_secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

#[async_trait]
impl SubscriptionStore for PostgresEventStore {
    async fn events_after(&self, checkpoint: Checkpoint) -> Option<u64> {
        crate::admin::AdminStore::feed_lag(self, checkpoint)
            .await
            .ok()
            .map(|lag| lag.events)
    }

    type Connection = sqlx::PgConnection;
    type Transaction = sqlx::Transaction<'static, Postgres>;

    async fn begin(&self) -> Result<Self::Transaction> {
        self.pool().begin().await.map_err(Error::backend)
    }

    async fn checkpoint(&self, subscription: &str, partition: u32) -> Result<Checkpoint> {
        check_name(subscription)?;
        let (t, p): (i64, i64) = sqlx::query_as(
            "WITH ins AS (INSERT INTO subscription_checkpoints \
             (subscription, partition, transaction_id, position) VALUES ($1, $2, 0, 0) \
             ON CONFLICT (subscription, partition) DO NOTHING RETURNING transaction_id, position) \
             SELECT transaction_id, position FROM ins UNION ALL \
             SELECT transaction_id, position FROM subscription_checkpoints \
             WHERE subscription = $1 AND partition = $2 LIMIT 1",
        )
        .bind(subscription)
        .bind(partition_i32(partition)?)
        .fetch_one(self.pool())
        .await
        .map_err(Error::backend)?;
        checkpoint_of(t, p)
    }

    async fn commit(
        &self,
        mut tx: Self::Transaction,
        subscription: &str,
        partition: u32,
        from: Checkpoint,
        to: Checkpoint,
        park: Option<&ParkedEvent>,
    ) -> Result<bool> {
        check_name(subscription)?;
        let moved = sqlx::query(
            "UPDATE subscription_checkpoints SET transaction_id = $5, position = $6, \
             updated_at = now() WHERE subscription = $1 AND partition = $2 \
             AND transaction_id = $3 AND position = $4",
        )
        .bind(subscription)
        .bind(partition_i32(partition)?)
        .bind(i64_of("checkpoint", from.transaction())?)
        .bind(i64_of("checkpoint", from.position())?)
        .bind(i64_of("checkpoint", to.transaction())?)
        .bind(i64_of("checkpoint", to.position())?)
        .execute(&mut *tx)
        .await
        .map_err(Error::backend)?
        .rows_affected();
        if moved != 1 {
            let _ = tx.rollback().await;
            return Ok(false);
        }
        if let Some(p) = park {
            sqlx::query(
                "INSERT INTO subscription_parked (subscription, event_id, position, \
                 aggregate_type, aggregate_id, partition, attempts, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (subscription, event_id) DO UPDATE SET attempts = EXCLUDED.attempts, \
                 error = EXCLUDED.error, parked_at = now()",
            )
            .bind(subscription)
            .bind(p.event_id)
            .bind(i64_of("position", p.position)?)
            .bind(&p.aggregate_type)
            .bind(p.aggregate_id)
            .bind(partition_i32(p.partition)?)
            .bind(i32::try_from(p.attempts).unwrap_or(i32::MAX))
            .bind(&p.error)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend)?;
        }
        tx.commit().await.map_err(Error::backend)?;
        Ok(true)
    }

    async fn set_checkpoint(
        &self,
        subscription: &str,
        partition: u32,
        checkpoint: Checkpoint,
    ) -> Result<()> {
        check_name(subscription)?;
        sqlx::query(
            "INSERT INTO subscription_checkpoints (subscription, partition, transaction_id, position) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (subscription, partition) DO UPDATE \
             SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position, \
             updated_at = now()",
        )
        .bind(subscription)
        .bind(partition_i32(partition)?)
        .bind(i64_of("checkpoint", checkpoint.transaction())?)
        .bind(i64_of("checkpoint", checkpoint.position())?)
        .execute(self.pool())
        .await
        .map_err(Error::backend)?;
        Ok(())
    }

    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>> {
        check_name(subscription)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PARKED_COLUMNS} FROM subscription_parked p WHERE p.subscription = $1 \
             ORDER BY p.position"
        )))
        .bind(subscription)
        .fetch_all(self.pool())
        .await
        .map_err(Error::backend)?;
        rows.iter().map(parked_of).collect()
    }

    async fn parked_event(
        &self,
        subscription: &str,
        event_id: Uuid,
    ) -> Result<Option<(ParkedEvent, FeedEvent)>> {
        check_name(subscription)?;
        let Some(parked) = self
            .parked(subscription)
            .await?
            .into_iter()
            .find(|p| p.event_id == event_id)
        else {
            return Ok(None);
        };
        let event = self
            .read_all(parked.position, 1)
            .await?
            .into_iter()
            .find(|e| e.event_id == event_id)
            .ok_or_else(|| {
                Error::corrupt_row(
                    "events",
                    Some(&parked.aggregate_type),
                    Some(parked.aggregate_id),
                    format!("parked event {event_id} is not in the log"),
                )
            })?;
        let (t,): (i64,) =
            sqlx::query_as("SELECT transaction_id::text::bigint FROM events WHERE position = $1")
                .bind(i64_of("position", event.position)?)
                .fetch_one(self.pool())
                .await
                .map_err(Error::backend)?;
        Ok(Some((
            parked,
            FeedEvent {
                checkpoint: checkpoint_of(t, i64_of("position", event.position)?)?,
                event,
            },
        )))
    }

    async fn unpark(
        &self,
        mut tx: Self::Transaction,
        subscription: &str,
        event_id: Uuid,
    ) -> Result<bool> {
        check_name(subscription)?;
        let removed = sqlx::query(
            "DELETE FROM subscription_parked WHERE subscription = $1 AND event_id = $2",
        )
        .bind(subscription)
        .bind(event_id)
        .execute(&mut *tx)
        .await
        .map_err(Error::backend)?
        .rows_affected();
        if removed == 0 {
            let _ = tx.rollback().await;
            return Ok(false);
        }
        tx.commit().await.map_err(Error::backend)?;
        Ok(true)
    }

    async fn heartbeat(
        &self,
        subscription: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Vec<u32>, usize)> {
        check_name(subscription)?;
        checks::name("owner", owner)?;
        let mut tx = self.pool().begin().await.map_err(Error::backend)?;
        sqlx::query(
            "INSERT INTO subscription_members (subscription, owner, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (subscription, owner) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .bind(subscription)
        .bind(owner)
        .bind(ttl_secs(ttl))
        .execute(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let held: Vec<(i32,)> = sqlx::query_as(
            "UPDATE subscription_leases SET expires_at = now() + make_interval(secs => $3) \
             WHERE subscription = $1 AND owner = $2 AND expires_at > now() RETURNING partition",
        )
        .bind(subscription)
        .bind(owner)
        .bind(ttl_secs(ttl))
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let (members,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM subscription_members WHERE subscription = $1 AND expires_at > now()",
        )
        .bind(subscription)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::backend)?;
        tx.commit().await.map_err(Error::backend)?;
        let mut held: Vec<u32> = held.into_iter().map(|(p,)| p.max(0) as u32).collect();
        held.sort_unstable();
        Ok((held, members.max(1) as usize))
    }

    async fn claim(
        &self,
        subscription: &str,
        owner: &str,
        partition: u32,
        ttl: Duration,
    ) -> Result<bool> {
        check_name(subscription)?;
        checks::name("owner", owner)?;
        let taken = sqlx::query(
            "INSERT INTO subscription_leases (subscription, partition, owner, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (subscription, partition) DO UPDATE \
             SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
             WHERE subscription_leases.owner = EXCLUDED.owner \
             OR subscription_leases.expires_at <= now()",
        )
        .bind(subscription)
        .bind(partition_i32(partition)?)
        .bind(owner)
        .bind(ttl_secs(ttl))
        .execute(self.pool())
        .await
        .map_err(Error::backend)?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn release(&self, subscription: &str, owner: &str, partition: Option<u32>) -> Result<()> {
        check_name(subscription)?;
        let partition = partition.map(partition_i32).transpose()?;
        sqlx::query(
            "DELETE FROM subscription_leases WHERE subscription = $1 AND owner = $2 \
             AND ($3::integer IS NULL OR partition = $3)",
        )
        .bind(subscription)
        .bind(owner)
        .bind(partition)
        .execute(self.pool())
        .await
        .map_err(Error::backend)?;
        if partition.is_none() {
            sqlx::query("DELETE FROM subscription_members WHERE subscription = $1 AND owner = $2")
                .bind(subscription)
                .bind(owner)
                .execute(self.pool())
                .await
                .map_err(Error::backend)?;
        }
        Ok(())
    }

    async fn wakeup(&self) -> Wakeup {
        let listener = match PgListener::connect_with(self.pool()).await {
            Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "eventsource: LISTEN failed; the subscription polls");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "eventsource: no LISTEN connection; the subscription polls");
                None
            }
        };
        Wakeup::new(self.append_signal(), listener)
    }

    async fn describe_horizon(&self) -> Option<String> {
        let row: Option<(i32, Option<String>, Option<f64>, Option<String>)> = sqlx::query_as(
            "SELECT pid, state, extract(epoch FROM now() - xact_start)::float8, \
             left(query, 200) FROM pg_stat_activity \
             WHERE backend_xid = pg_snapshot_xmin(pg_current_snapshot())::xid LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .ok()?;
        let (pid, state, secs, query) = row?;
        Some(format!(
            "transaction of backend pid {pid} ({}, open for {:.1} s; last query: {})",
            state.unwrap_or_default(),
            secs.unwrap_or(0.0),
            query.unwrap_or_default()
        ))
    }
}
