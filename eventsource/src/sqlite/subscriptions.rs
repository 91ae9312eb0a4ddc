//! Subscription state of the [`SqliteEventStore`]: checkpoints, parked events and leases
//! in the `subscription_*` tables, in the same database as the events.
//!
//! A batch's transaction starts with `BEGIN IMMEDIATE`, so it holds the database's write
//! lock while the projection writes: keep batches small when appends must not wait long.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use super::SqliteEventStore;
use super::pool::{format_timestamp, parse_timestamp};
use crate::error::{Error, Result};
use crate::feed::{Checkpoint, FeedEvent};
use crate::store::{EventStore, checks};
use crate::subscription::{ParkedEvent, SubscriptionStore, check_name};

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

fn parked_of(row: &SqliteRow) -> Result<ParkedEvent> {
    let corrupt = |m: String| Error::corrupt_row("subscription_parked", None, None, m);
    let get_text = |name: &str| -> Result<String> {
        row.try_get::<String, _>(name)
            .map_err(|e| corrupt(e.to_string()))
    };
    let get_int = |name: &str| -> Result<i64> {
        row.try_get::<i64, _>(name)
            .map_err(|e| corrupt(e.to_string()))
    };
    let uuid = |name: &str| -> Result<Uuid> {
        let t = get_text(name)?;
        Uuid::parse_str(&t).map_err(|e| corrupt(format!("{name} `{t}`: {e}")))
    };
    Ok(ParkedEvent {
        subscription: get_text("subscription")?,
        event_id: uuid("event_id")?,
        position: get_int("position")?.max(0) as u64,
        aggregate_type: get_text("aggregate_type")?,
        aggregate_id: uuid("aggregate_id")?,
        partition: get_int("partition")?.max(0) as u32,
        attempts: get_int("attempts")?.max(0) as u32,
        error: get_text("error")?,
        parked_at: parse_timestamp(&get_text("parked_at")?).map_err(corrupt)?,
    })
}

fn until(ttl: Duration) -> String {
    format_timestamp(Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX))
}

fn now() -> String {
    format_timestamp(Utc::now())
}

#[async_trait]
impl SubscriptionStore for SqliteEventStore {
    async fn events_after(&self, checkpoint: Checkpoint) -> Option<u64> {
        crate::admin::AdminStore::feed_lag(self, checkpoint)
            .await
            .ok()
            .map(|lag| lag.events)
    }

    type Connection = sqlx::SqliteConnection;
    type Transaction = sqlx::Transaction<'static, Sqlite>;

    async fn begin(&self) -> Result<Self::Transaction> {
        self.pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend)
    }

    async fn checkpoint(&self, subscription: &str, partition: u32) -> Result<Checkpoint> {
        check_name(subscription)?;
        sqlx::query(
            "INSERT INTO subscription_checkpoints \
             (subscription, partition, transaction_id, position, updated_at) \
             VALUES (?1, ?2, 0, 0, ?3) ON CONFLICT (subscription, partition) DO NOTHING",
        )
        .bind(subscription)
        .bind(i64::from(partition))
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(Error::backend)?;
        let (t, p): (i64, i64) = sqlx::query_as(
            "SELECT transaction_id, position FROM subscription_checkpoints \
             WHERE subscription = ?1 AND partition = ?2",
        )
        .bind(subscription)
        .bind(i64::from(partition))
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
            "UPDATE subscription_checkpoints SET transaction_id = ?5, position = ?6, \
             updated_at = ?7 WHERE subscription = ?1 AND partition = ?2 \
             AND transaction_id = ?3 AND position = ?4",
        )
        .bind(subscription)
        .bind(i64::from(partition))
        .bind(checks::to_i64("checkpoint", from.transaction())?)
        .bind(checks::to_i64("checkpoint", from.position())?)
        .bind(checks::to_i64("checkpoint", to.transaction())?)
        .bind(checks::to_i64("checkpoint", to.position())?)
        .bind(now())
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
                 aggregate_type, aggregate_id, partition, attempts, error, parked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (subscription, event_id) DO UPDATE SET attempts = excluded.attempts, \
                 error = excluded.error, parked_at = excluded.parked_at",
            )
            .bind(subscription)
            .bind(p.event_id.to_string())
            .bind(checks::to_i64("position", p.position)?)
            .bind(&p.aggregate_type)
            .bind(p.aggregate_id.to_string())
            .bind(i64::from(p.partition))
            .bind(i64::from(p.attempts))
            .bind(&p.error)
            .bind(format_timestamp(p.parked_at))
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
            "INSERT INTO subscription_checkpoints \
             (subscription, partition, transaction_id, position, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (subscription, partition) DO UPDATE \
             SET transaction_id = excluded.transaction_id, position = excluded.position, \
             updated_at = excluded.updated_at",
        )
        .bind(subscription)
        .bind(i64::from(partition))
        .bind(checks::to_i64("checkpoint", checkpoint.transaction())?)
        .bind(checks::to_i64("checkpoint", checkpoint.position())?)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(Error::backend)?;
        Ok(())
    }

    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>> {
        check_name(subscription)?;
        let rows = sqlx::query(
            "SELECT subscription, event_id, position, aggregate_type, aggregate_id, partition, \
             attempts, error, parked_at FROM subscription_parked WHERE subscription = ?1 \
             ORDER BY position",
        )
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
        Ok(Some((
            parked,
            FeedEvent {
                checkpoint: Checkpoint::new(0, event.position),
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
            "DELETE FROM subscription_parked WHERE subscription = ?1 AND event_id = ?2",
        )
        .bind(subscription)
        .bind(event_id.to_string())
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
        let mut tx = self.begin().await?;
        let (now, until) = (now(), until(ttl));
        sqlx::query(
            "INSERT INTO subscription_members (subscription, owner, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (subscription, owner) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(subscription)
        .bind(owner)
        .bind(&until)
        .execute(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let held: Vec<(i64,)> = sqlx::query_as(
            "UPDATE subscription_leases SET expires_at = ?3 \
             WHERE subscription = ?1 AND owner = ?2 AND expires_at > ?4 RETURNING partition",
        )
        .bind(subscription)
        .bind(owner)
        .bind(&until)
        .bind(&now)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::backend)?;
        let (members,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM subscription_members WHERE subscription = ?1 AND expires_at > ?2",
        )
        .bind(subscription)
        .bind(&now)
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
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (subscription, partition) DO UPDATE \
             SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE subscription_leases.owner = excluded.owner \
             OR subscription_leases.expires_at <= ?5",
        )
        .bind(subscription)
        .bind(i64::from(partition))
        .bind(owner)
        .bind(until(ttl))
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(Error::backend)?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn release(&self, subscription: &str, owner: &str, partition: Option<u32>) -> Result<()> {
        check_name(subscription)?;
        sqlx::query(
            "DELETE FROM subscription_leases WHERE subscription = ?1 AND owner = ?2 \
             AND (?3 IS NULL OR partition = ?3)",
        )
        .bind(subscription)
        .bind(owner)
        .bind(partition.map(i64::from))
        .execute(self.pool())
        .await
        .map_err(Error::backend)?;
        if partition.is_none() {
            sqlx::query("DELETE FROM subscription_members WHERE subscription = ?1 AND owner = ?2")
                .bind(subscription)
                .bind(owner)
                .execute(self.pool())
                .await
                .map_err(Error::backend)?;
        }
        Ok(())
    }
}
