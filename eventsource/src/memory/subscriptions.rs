//! Subscription state of the [`InMemoryEventStore`]: checkpoints, parked events and
//! leases in process memory.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use super::InMemoryEventStore;
use crate::error::{Error, Result};
use crate::feed::{Checkpoint, FeedEvent};
use crate::subscription::{ParkedEvent, SubscriptionStore, check_name};

/// The subscriptions' state of one store.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    checkpoints: HashMap<(String, u32), Checkpoint>,
    parked: HashMap<(String, Uuid), ParkedEvent>,
    leases: HashMap<(String, u32), (String, Instant)>,
    members: HashMap<(String, String), Instant>,
}

/// The "transaction" of an in-memory subscription batch: there is nothing to roll back,
/// so a projection of the memory store gets `()` as its connection.
#[derive(Debug, Default)]
pub struct MemoryTransaction(());

impl Deref for MemoryTransaction {
    type Target = ();

    fn deref(&self) -> &() {
        &self.0
    }
}

impl DerefMut for MemoryTransaction {
    fn deref_mut(&mut self) -> &mut () {
        &mut self.0
    }
}

impl InMemoryEventStore {
    fn subscriptions(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every checkpoint (subscription, partition, checkpoint, parked events there), by
    /// name then partition: for the operations API.
    pub(super) fn checkpoints(&self) -> Vec<(String, u32, Checkpoint, u64)> {
        let subs = self.subscriptions();
        let mut out: Vec<_> = subs
            .checkpoints
            .iter()
            .map(|((name, partition), checkpoint)| {
                let parked = subs
                    .parked
                    .values()
                    .filter(|p| &p.subscription == name && p.partition == *partition)
                    .count() as u64;
                (name.clone(), *partition, *checkpoint, parked)
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }
}

#[async_trait]
impl SubscriptionStore for InMemoryEventStore {
    async fn events_after(&self, checkpoint: Checkpoint) -> Option<u64> {
        crate::admin::AdminStore::feed_lag(self, checkpoint)
            .await
            .ok()
            .map(|lag| lag.events)
    }

    type Connection = ();
    type Transaction = MemoryTransaction;

    async fn begin(&self) -> Result<MemoryTransaction> {
        Ok(MemoryTransaction(()))
    }

    async fn checkpoint(&self, subscription: &str, partition: u32) -> Result<Checkpoint> {
        check_name(subscription)?;
        Ok(*self
            .subscriptions()
            .checkpoints
            .entry((subscription.to_owned(), partition))
            .or_default())
    }

    async fn commit(
        &self,
        _tx: MemoryTransaction,
        subscription: &str,
        partition: u32,
        from: Checkpoint,
        to: Checkpoint,
        park: Option<&ParkedEvent>,
    ) -> Result<bool> {
        check_name(subscription)?;
        let mut subs = self.subscriptions();
        let current = subs
            .checkpoints
            .entry((subscription.to_owned(), partition))
            .or_default();
        if *current != from {
            return Ok(false);
        }
        *current = to;
        if let Some(p) = park {
            subs.parked
                .insert((subscription.to_owned(), p.event_id), p.clone());
        }
        Ok(true)
    }

    async fn set_checkpoint(
        &self,
        subscription: &str,
        partition: u32,
        checkpoint: Checkpoint,
    ) -> Result<()> {
        check_name(subscription)?;
        self.subscriptions()
            .checkpoints
            .insert((subscription.to_owned(), partition), checkpoint);
        Ok(())
    }

    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>> {
        check_name(subscription)?;
        let mut out: Vec<ParkedEvent> = self
            .subscriptions()
            .parked
            .values()
            .filter(|p| p.subscription == subscription)
            .cloned()
            .collect();
        out.sort_by_key(|p| p.position);
        Ok(out)
    }

    async fn parked_event(
        &self,
        subscription: &str,
        event_id: Uuid,
    ) -> Result<Option<(ParkedEvent, FeedEvent)>> {
        check_name(subscription)?;
        let Some(parked) = self
            .subscriptions()
            .parked
            .get(&(subscription.to_owned(), event_id))
            .cloned()
        else {
            return Ok(None);
        };
        let event = self.event_at(parked.position).ok_or_else(|| {
            Error::corrupt_row(
                "events",
                Some(&parked.aggregate_type),
                Some(parked.aggregate_id),
                format!("parked event {event_id} is not in the log"),
            )
        })??;
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
        _tx: MemoryTransaction,
        subscription: &str,
        event_id: Uuid,
    ) -> Result<bool> {
        check_name(subscription)?;
        Ok(self
            .subscriptions()
            .parked
            .remove(&(subscription.to_owned(), event_id))
            .is_some())
    }

    async fn heartbeat(
        &self,
        subscription: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Vec<u32>, usize)> {
        check_name(subscription)?;
        let now = Instant::now();
        let mut subs = self.subscriptions();
        subs.members
            .insert((subscription.to_owned(), owner.to_owned()), now + ttl);
        let mut held = Vec::new();
        for ((s, p), (o, until)) in subs.leases.iter_mut() {
            if s == subscription && o == owner && *until > now {
                *until = now + ttl;
                held.push(*p);
            }
        }
        held.sort_unstable();
        let members = subs
            .members
            .iter()
            .filter(|((s, _), until)| s == subscription && **until > now)
            .count();
        Ok((held, members))
    }

    async fn claim(
        &self,
        subscription: &str,
        owner: &str,
        partition: u32,
        ttl: Duration,
    ) -> Result<bool> {
        check_name(subscription)?;
        let now = Instant::now();
        let mut subs = self.subscriptions();
        let lease = subs
            .leases
            .entry((subscription.to_owned(), partition))
            .or_insert_with(|| (owner.to_owned(), now));
        if lease.0 == owner || lease.1 <= now {
            *lease = (owner.to_owned(), now + ttl);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn release(&self, subscription: &str, owner: &str, partition: Option<u32>) -> Result<()> {
        check_name(subscription)?;
        let mut subs = self.subscriptions();
        subs.leases.retain(|(s, p), (o, _)| {
            !(s == subscription && o == owner && partition.is_none_or(|q| q == *p))
        });
        if partition.is_none() {
            subs.members
                .remove(&(subscription.to_owned(), owner.to_owned()));
        }
        Ok(())
    }
}
