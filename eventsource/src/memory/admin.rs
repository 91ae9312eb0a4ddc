//! [`AdminStore`] for [`InMemoryEventStore`]: the operations API's queries, answered by
//! walking the store's streams and asking the snapshot store handed in.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::InMemoryEventStore;
use crate::admin::{
    AdminStore, AggregateLag, BehindQuery, Coverage, CoverageOptions, FeedLag,
    SubscriptionPartition,
};
use crate::error::Result;
use crate::feed::{Checkpoint, FeedQuery};
use crate::snapshot::SnapshotStore;
use crate::store::{EventStore, checks};
use crate::subscription::{ParkedEvent, SubscriptionStore, check_name};

/// Events read per page when walking the log.
const PAGE: usize = 10_000;

#[async_trait]
impl AdminStore for InMemoryEventStore {
    /// The types with events (the snapshot store is not asked: it lists no types).
    async fn aggregate_types(&self, _snapshots: &dyn SnapshotStore) -> Result<Vec<String>> {
        let mut types = BTreeSet::new();
        let mut from = 1;
        loop {
            let page = self.read_all(from, PAGE).await?;
            for event in &page {
                if event.version == 1 {
                    types.insert(event.aggregate_type.clone());
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => from = last.position + 1,
                _ => break,
            }
        }
        Ok(types.into_iter().collect())
    }

    async fn behind(
        &self,
        snapshots: &dyn SnapshotStore,
        query: &BehindQuery,
    ) -> Result<Vec<AggregateLag>> {
        checks::name("aggregate_type", &query.aggregate_type)?;
        crate::admin::scan::behind(self, snapshots, query).await
    }

    async fn coverage(
        &self,
        snapshots: &dyn SnapshotStore,
        aggregate_type: &str,
        options: &CoverageOptions,
    ) -> Result<Coverage> {
        checks::name("aggregate_type", aggregate_type)?;
        crate::admin::scan::coverage(self, snapshots, aggregate_type, options).await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionPartition>> {
        Ok(self
            .checkpoints()
            .into_iter()
            .map(
                |(subscription, partition, checkpoint, parked)| SubscriptionPartition {
                    subscription,
                    partition,
                    checkpoint,
                    updated_at: None,
                    parked,
                },
            )
            .collect())
    }

    async fn feed_lag(&self, checkpoint: Checkpoint) -> Result<FeedLag> {
        let mut lag = FeedLag::default();
        let mut after = checkpoint;
        loop {
            let page = self.read_feed(&FeedQuery::after(after).limit(PAGE)).await?;
            for fed in &page.events {
                lag.events += 1;
                let at = fed.event.occurred_at;
                lag.oldest_at = Some(lag.oldest_at.map_or(at, |o| o.min(at)));
            }
            if page.events.len() < PAGE {
                return Ok(lag);
            }
            after = page.next;
        }
    }

    async fn reset_subscription(&self, subscription: &str, checkpoint: Checkpoint) -> Result<u64> {
        check_name(subscription)?;
        let partitions: Vec<u32> = self
            .checkpoints()
            .into_iter()
            .filter(|(name, ..)| name == subscription)
            .map(|(_, partition, ..)| partition)
            .collect();
        for &partition in &partitions {
            self.set_checkpoint(subscription, partition, checkpoint)
                .await?;
        }
        Ok(partitions.len() as u64)
    }

    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>> {
        SubscriptionStore::parked(self, subscription).await
    }
}
