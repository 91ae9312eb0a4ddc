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
