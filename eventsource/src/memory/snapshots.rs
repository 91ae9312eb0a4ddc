//! [`InMemorySnapshotStore`]: snapshots in process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::SubsecRound;
use uuid::Uuid;

use crate::error::Result;
use crate::snapshot::{Snapshot, SnapshotStore};
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
    inner: Arc<Mutex<HashMap<(String, Uuid), Snapshot>>>,
}

impl InMemorySnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of snapshots stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// `true` when no snapshot is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, Uuid), Snapshot>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SnapshotStore for InMemorySnapshotStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        checks::snapshot(snapshot)?;
        let mut map = self.lock();
        let key = (snapshot.aggregate_type.clone(), snapshot.aggregate_id);
        match map.get(&key) {
            Some(existing) if existing.version > snapshot.version => {}
            _ => {
                let mut stored = snapshot.clone();
                // Microseconds, as the SQL stores keep them.
                stored.created_at = stored.created_at.trunc_subsecs(6);
                map.insert(key, stored);
            }
        }
        Ok(())
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        checks::name("aggregate_type", aggregate_type)?;
        Ok(self
            .lock()
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .cloned())
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        Ok(self
            .lock()
            .remove(&(aggregate_type.to_owned(), aggregate_id))
            .is_some())
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        checks::name("aggregate_type", aggregate_type)?;
        Ok(self
            .lock()
            .contains_key(&(aggregate_type.to_owned(), aggregate_id)))
    }

    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let mut map = self.lock();
        let before = map.len();
        map.retain(|(t, _), s| {
            t != aggregate_type || schema_version_below.is_some_and(|b| s.schema_version >= b)
        });
        Ok((before - map.len()) as u64)
    }
}
