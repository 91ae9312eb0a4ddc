//! [`InMemorySnapshotStore`]: snapshots in process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use super::{Snapshot, SnapshotStore};
use crate::error::Result;

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
        let mut map = self.lock();
        let key = (snapshot.aggregate_type.clone(), snapshot.aggregate_id);
        match map.get(&key) {
            Some(existing) if existing.version > snapshot.version => {}
            _ => {
                map.insert(key, snapshot.clone());
            }
        }
        Ok(())
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        Ok(self
            .lock()
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .cloned())
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        Ok(self
            .lock()
            .remove(&(aggregate_type.to_owned(), aggregate_id))
            .is_some())
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        Ok(self
            .lock()
            .contains_key(&(aggregate_type.to_owned(), aggregate_id)))
    }

    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64> {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|(t, _), s| {
            t != aggregate_type || schema_version_below.is_some_and(|b| s.schema_version >= b)
        });
        Ok((before - map.len()) as u64)
    }
}
