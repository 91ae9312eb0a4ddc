//! [`InMemoryEventStore`]: an event store in process memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{EventRef, NewEvent, RecordedEvent};
use crate::feed::{Checkpoint, FeedEvent, FeedPage, FeedQuery};
use crate::store::{EventStore, EventVisitor, already_appended, checks};
use crate::version::ExpectedVersion;

/// An event store kept in memory. Clones share the same events.
///
/// It enforces exactly the rules of the durable stores (input checks, conflicts,
/// duplicate ids, idempotent retries, order), so tests written against it hold on
/// SQLite and PostgreSQL.
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
/// let store = InMemoryEventStore::new();
/// let repo = AggregateRepository::<Account>::new(std::sync::Arc::new(store.clone()));
/// repo.execute_new(uuid::Uuid::new_v4(), |_: &Account| Ok::<_, String>(Deposited { cents: 1 })).await?;
/// assert_eq!(store.len(), 1); // clones share the events
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryEventStore {
    inner: Arc<RwLock<Log>>,
    appended: Arc<tokio::sync::watch::Sender<u64>>,
    pub(super) subscriptions: Arc<std::sync::Mutex<super::subscriptions::Subscriptions>>,
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<Stored>,
    streams: HashMap<(String, Uuid), Vec<usize>>,
    /// Every event id, with the index of its event.
    ids: HashMap<Uuid, usize>,
}

#[derive(Debug)]
struct Stored {
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: Uuid,
    version: u64,
    event_type: String,
    event_version: u32,
    payload: String,
    metadata: String,
    occurred_at: DateTime<Utc>,
}

impl Stored {
    fn as_ref(&self, index: usize) -> EventRef<'_> {
        EventRef {
            position: index as u64 + 1,
            event_id: self.event_id,
            aggregate_type: &self.aggregate_type,
            aggregate_id: self.aggregate_id,
            version: self.version,
            event_type: &self.event_type,
            event_version: self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            occurred_at: self.occurred_at,
        }
    }
}

impl Log {
    /// `(version, id)` of the batch's events already stored in this stream.
    fn stored(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        events: &[NewEvent],
    ) -> Vec<(u64, Uuid)> {
        events
            .iter()
            .filter_map(|e| {
                let stored = &self.events[*self.ids.get(&e.event_id)?];
                (stored.aggregate_type == aggregate_type && stored.aggregate_id == aggregate_id)
                    .then_some((stored.version, e.event_id))
            })
            .collect()
    }
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of events stored, all streams together.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// `true` when no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The event at a feed position.
    pub(super) fn event_at(&self, position: u64) -> Option<Result<RecordedEvent>> {
        let index = usize::try_from(position.checked_sub(1)?).ok()?;
        let log = self.read();
        log.events.get(index).map(|e| e.as_ref(index).to_recorded())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written: every write
        // is validated before anything is pushed.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64> {
        checks::append(aggregate_type, aggregate_id, expected, events)?;
        let mut log = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let key = (aggregate_type.to_owned(), aggregate_id);
        let current = log.streams.get(&key).map_or(0, |s| s.len() as u64);
        if let ExpectedVersion::Exact(v) = expected
            && v != current
        {
            let stored = log.stored(aggregate_type, aggregate_id, events);
            return already_appended(expected, events, &stored)
                .ok_or_else(|| Error::conflict(aggregate_type, aggregate_id, expected, current));
        }
        if events.is_empty() {
            return Ok(current);
        }
        checks::distinct_ids(aggregate_type, aggregate_id, events)?;
        if let Some(e) = events.iter().find(|e| log.ids.contains_key(&e.event_id)) {
            let stored = log.stored(aggregate_type, aggregate_id, events);
            return already_appended(expected, events, &stored)
                .ok_or_else(|| Error::duplicate_event(aggregate_type, aggregate_id, e.event_id));
        }
        let mut version = current;
        let mut positions = Vec::with_capacity(events.len());
        for e in events {
            version += 1;
            let index = log.events.len();
            positions.push(index);
            log.ids.insert(e.event_id, index);
            log.events.push(Stored {
                event_id: e.event_id,
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id,
                version,
                event_type: e.event_type.clone(),
                event_version: e.event_version,
                payload: e.payload.clone(),
                metadata: e.metadata.to_json(),
                // Microseconds, as the SQL stores keep them.
                occurred_at: e.occurred_at.trunc_subsecs(6),
            });
        }
        log.streams.entry(key).or_default().extend(positions);
        drop(log);
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok(version)
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64> {
        self.read_stream_range(aggregate_type, aggregate_id, from_version, u64::MAX, visit)
            .await
    }

    async fn read_stream_range(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        to_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64> {
        checks::name("aggregate_type", aggregate_type)?;
        let log = self.read();
        let Some(stream) = log.streams.get(&(aggregate_type.to_owned(), aggregate_id)) else {
            return Ok(0);
        };
        // Versions run 1, 2, 3...: version v is at index v - 1.
        let skip = usize::try_from(from_version.saturating_sub(1)).unwrap_or(usize::MAX);
        let take = usize::try_from(to_version).unwrap_or(usize::MAX);
        let mut visited = 0;
        for &index in stream.iter().take(take).skip(skip) {
            visit(log.events[index].as_ref(index))?;
            visited += 1;
        }
        Ok(visited)
    }

    async fn version_as_of(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        time: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        checks::name("aggregate_type", aggregate_type)?;
        let log = self.read();
        let Some(stream) = log.streams.get(&(aggregate_type.to_owned(), aggregate_id)) else {
            return Ok(None);
        };
        let before = stream
            .iter()
            .take_while(|&&index| log.events[index].occurred_at <= time)
            .count();
        Ok((before > 0).then_some(before as u64))
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<u64>> {
        checks::name("aggregate_type", aggregate_type)?;
        let log = self.read();
        Ok(log
            .streams
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .map(|s| s.len() as u64))
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let log = self.read();
        let start = usize::try_from(from_position.saturating_sub(1)).unwrap_or(usize::MAX);
        log.events
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, e)| e.as_ref(i).to_recorded())
            .collect()
    }

    async fn aggregate_ids(
        &self,
        aggregate_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>> {
        checks::name("aggregate_type", aggregate_type)?;
        let log = self.read();
        let mut ids: Vec<Uuid> = log
            .streams
            .keys()
            .filter(|(t, id)| t == aggregate_type && after.is_none_or(|a| *id > a))
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>> {
        let log = self.read();
        log.ids
            .get(&event_id)
            .map(|&i| log.events[i].as_ref(i).to_recorded())
            .transpose()
    }

    async fn read_feed(&self, query: &FeedQuery) -> Result<FeedPage> {
        query.check()?;
        let log = self.read();
        let head = log.events.len() as u64;
        let after = query.after;
        if after.transaction() != 0 || after.position() > head {
            return Err(Error::invalid(
                "checkpoint",
                format!("{after} is ahead of this store's feed, which ends at 0/{head}"),
            ));
        }
        let mut events = Vec::new();
        let mut next = after;
        if query.limit > 0 {
            let start = usize::try_from(after.position()).unwrap_or(usize::MAX);
            for (i, e) in log.events.iter().enumerate().skip(start) {
                if !query.matches(&e.aggregate_type, &e.event_type) {
                    continue;
                }
                let checkpoint = Checkpoint::new(0, i as u64 + 1);
                events.push(FeedEvent {
                    checkpoint,
                    event: e.as_ref(i).to_recorded()?,
                });
                if events.len() == query.limit {
                    next = checkpoint;
                    break;
                }
            }
            if events.len() < query.limit {
                next = Checkpoint::new(0, head);
            }
        }
        Ok(FeedPage {
            events,
            next,
            held_back: false,
        })
    }

    fn append_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.appended.subscribe())
    }
}
