//! [`InMemorySnapshotStore`]: snapshots in process memory.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::SubsecRound;
use uuid::Uuid;

use crate::error::Result;
use crate::snapshot::{Snapshot, SnapshotBound, SnapshotStore};
use crate::store::checks;

/// A snapshot store kept in memory. Clones share the same snapshots.
///
/// ```
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
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
///
/// let snapshots = InMemorySnapshotStore::new();
/// let repo = Account::repository(Arc::new(InMemoryEventStore::new()), Arc::new(snapshots.clone()));
/// let id = uuid::Uuid::new_v4();
/// let mut account = repo.create_new(id);
/// for _ in 0..10 {
///     account.record(Deposited { cents: 1 });
/// }
/// repo.save(&mut account).await?; // the declared threshold is 10: a snapshot
/// assert_eq!(snapshots.get("Account", id).await?.map(|s| s.version), Some(10));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemorySnapshotStore {
    inner: Arc<Mutex<Snapshots>>,
}

/// Per aggregate, its snapshots by version.
type Snapshots = HashMap<(String, Uuid), BTreeMap<u64, Snapshot>>;

impl InMemorySnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of snapshots stored (every version of every aggregate).
    pub fn len(&self) -> usize {
        self.lock().values().map(BTreeMap::len).sum()
    }

    /// `true` when no snapshot is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Snapshots> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SnapshotStore for InMemorySnapshotStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        self.save_keeping(snapshot, NonZeroU32::MIN).await
    }

    async fn save_keeping(&self, snapshot: &Snapshot, keep: NonZeroU32) -> Result<()> {
        checks::snapshot(snapshot)?;
        let mut map = self.lock();
        let versions = map
            .entry((snapshot.aggregate_type.clone(), snapshot.aggregate_id))
            .or_default();
        let mut stored = snapshot.clone();
        // Microseconds, as the SQL stores keep them.
        stored.created_at = stored.created_at.trunc_subsecs(6);
        versions.insert(stored.version, stored);
        let keep = usize::try_from(keep.get()).unwrap_or(usize::MAX);
        while versions.len() > keep {
            versions.pop_first();
        }
        Ok(())
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        Ok(self
            .lock()
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .and_then(|versions| versions.last_key_value())
            .map(|(_, snapshot)| snapshot.clone()))
    }

    async fn get_at(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        let SnapshotBound::AtOrBelowVersion(at_or_below) = bound;
        Ok(self
            .lock()
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .and_then(|versions| versions.range(..=at_or_below).next_back())
            .map(|(_, snapshot)| snapshot.clone()))
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        Ok(self
            .lock()
            .remove(&(aggregate_type.to_owned(), aggregate_id))
            .is_some_and(|versions| !versions.is_empty()))
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        Ok(self
            .lock()
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .is_some_and(|versions| !versions.is_empty()))
    }

    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut map = self.lock();
        let mut deleted = 0;
        for ((t, _), versions) in map.iter_mut() {
            if t != aggregate_type {
                continue;
            }
            let before = versions.len();
            versions.retain(|_, s| schema_version_below.is_some_and(|b| s.schema_version >= b));
            deleted += (before - versions.len()) as u64;
        }
        map.retain(|_, versions| !versions.is_empty());
        Ok(deleted)
    }
}
