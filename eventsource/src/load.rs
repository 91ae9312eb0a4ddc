//! Folding a snapshot and a stream of events into an aggregate root.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::event::{DomainEvent, StreamEvent};
use crate::metrics::SnapshotMiss;
use crate::root::AggregateRoot;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::{EventStore, LoadVisitor};

/// Builds one aggregate root from what the stores hand it.
pub(crate) struct Loader<A: Aggregate> {
    root: AggregateRoot<A>,
    anchor: Anchor,
    applied: u64,
    snapshot: Option<(u64, DateTime<Utc>)>,
    snapshot_timeout: Duration,
    /// Why the snapshot lookup gave nothing usable.
    miss: Option<SnapshotMiss>,
}

/// Where a snapshot-anchored read stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// The event at this version (the snapshot's) must come first; it is not applied.
    Expected(u64),
    /// It came, or no snapshot is used.
    Found,
    /// Another version came first, or none: the snapshot is beyond the stream.
    Missing,
}

/// What a read produced.
pub(crate) enum Loaded<A: Aggregate> {
    Root(AggregateRoot<A>),
    /// The snapshot claims a version the stream does not reach: replay in full.
    SnapshotAhead(u64),
}

impl<A: Aggregate> Loader<A> {
    /// A loader giving the snapshot lookup at most `snapshot_timeout`.
    pub(crate) fn new(id: Uuid, snapshot_timeout: Duration) -> Self {
        Loader {
            root: AggregateRoot::new(id),
            anchor: Anchor::Found,
            applied: 0,
            snapshot: None,
            snapshot_timeout,
            miss: None,
        }
    }

    /// The outcome of a read that this loader visited.
    pub(crate) fn finish<T>(self, read: Result<T>) -> Result<Loaded<A>> {
        match (self.anchor, read) {
            (Anchor::Missing | Anchor::Expected(_), _) => Ok(Loaded::SnapshotAhead(
                self.snapshot.map_or(0, |(version, _)| version),
            )),
            (Anchor::Found, Err(e)) => Err(e),
            (Anchor::Found, Ok(_)) => {
                let mut root = self.root;
                let history = root.history_mut();
                history.events_replayed = self.applied;
                if let Some((version, at)) = self.snapshot {
                    history.snapshot_version = Some(version);
                    history.snapshot_at = Some(at);
                    history.loaded_from_snapshot = true;
                } else {
                    history.snapshot_miss = self.miss;
                }
                Ok(Loaded::Root(root))
            }
        }
    }

    /// Restores from the snapshot if it is usable; logs why not otherwise.
    fn restore(&mut self, snapshot: Snapshot) -> Option<u64> {
        let id = self.root.id();
        if snapshot.schema_version > A::SCHEMA_VERSION {
            tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                snapshot_schema = snapshot.schema_version, expected_schema = A::SCHEMA_VERSION,
                "snapshot was written by newer code (higher schema version); replaying all events");
            self.miss = Some(SnapshotMiss::NewerSchema);
            return None;
        }
        if snapshot.version == 0 {
            tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                "snapshot at version 0 is invalid; replaying all events");
            self.miss = Some(SnapshotMiss::Undecodable);
            return None;
        }
        let restored = if snapshot.schema_version == A::SCHEMA_VERSION {
            A::from_snapshot(&snapshot.state).map_err(|error| {
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                    version = snapshot.version, %error,
                    "snapshot state does not decode; replaying all events");
                SnapshotMiss::Undecodable
            })
        } else {
            match A::upcast_snapshot(snapshot.schema_version, &snapshot.state) {
                None => {
                    tracing::info!(aggregate_type = A::TYPE, aggregate_id = %id,
                        snapshot_schema = snapshot.schema_version, expected_schema = A::SCHEMA_VERSION,
                        "snapshot schema version mismatch and no upcaster for it; replaying all events");
                    Err(SnapshotMiss::SchemaMismatch)
                }
                Some(Err(error)) => {
                    tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                        version = snapshot.version, snapshot_schema = snapshot.schema_version,
                        expected_schema = A::SCHEMA_VERSION, %error,
                        "snapshot upcast failed; replaying all events");
                    Err(SnapshotMiss::UpcastFailed)
                }
                Some(Ok(state)) => {
                    tracing::debug!(aggregate_type = A::TYPE, aggregate_id = %id,
                        version = snapshot.version, snapshot_schema = snapshot.schema_version,
                        expected_schema = A::SCHEMA_VERSION, "snapshot upcast to the current schema");
                    Ok(state)
                }
            }
        };
        let state = match restored {
            Ok(state) => state,
            Err(miss) => {
                self.miss = Some(miss);
                return None;
            }
        };
        self.root = AggregateRoot::from_parts(id, snapshot.version, state);
        self.anchor = Anchor::Expected(snapshot.version);
        self.snapshot = Some((snapshot.version, snapshot.created_at));
        Some(snapshot.version)
    }
}

impl<A: Aggregate> LoadVisitor for Loader<A> {
    fn snapshot(&mut self, found: Result<Option<Snapshot>>) -> u64 {
        match found {
            Ok(Some(snapshot)) => self.restore(snapshot).unwrap_or(1),
            Ok(None) => {
                self.miss = Some(SnapshotMiss::NoneStored);
                1
            }
            Err(error) => {
                self.miss = Some(match &error {
                    Error::Timeout { .. } => SnapshotMiss::StoreTimeout,
                    Error::CorruptRow { .. } => SnapshotMiss::Undecodable,
                    _ => SnapshotMiss::StoreError,
                });
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %self.root.id(), %error,
                    "snapshot store failed; replaying all events");
                1
            }
        }
    }

    fn event(&mut self, e: StreamEvent<'_>) -> Result<ControlFlow<()>> {
        if let Anchor::Expected(version) = self.anchor {
            // Reading from the snapshot's own version proves the stream reaches it,
            // without a second round trip.
            if e.version != version {
                self.anchor = Anchor::Missing;
                return Ok(ControlFlow::Break(()));
            }
            self.anchor = Anchor::Found;
            return Ok(ControlFlow::Continue(()));
        }
        let events =
            A::Event::decode(e.event_type, e.event_version, e.payload).map_err(|source| {
                Error::EventDecode {
                    aggregate_type: A::TYPE.to_owned(),
                    aggregate_id: self.root.id(),
                    version: e.version,
                    event_type: e.event_type.to_owned(),
                    event_version: e.event_version,
                    source,
                }
            })?;
        self.root.apply_stored(e.version, events)?;
        self.applied += 1;
        Ok(ControlFlow::Continue(()))
    }

    fn snapshot_timeout(&self) -> Option<Duration> {
        Some(self.snapshot_timeout)
    }
}

/// Reads the aggregate as it was at `version`: from the newest snapshot at or below it
/// (when `snapshots` is given and it is usable), then the events after the snapshot up to
/// `version` ([`EventStore::read_aggregate_at`]). The snapshot lookup is bounded by the
/// snapshot timeout and never an error: a failure or a timeout is handed to the loader,
/// which replays instead.
pub(crate) async fn read_at<A: Aggregate>(
    events: &dyn EventStore,
    snapshots: Option<&dyn SnapshotStore>,
    id: Uuid,
    version: u64,
    snapshot_timeout: Duration,
) -> Result<Loaded<A>> {
    let mut loader = Loader::<A>::new(id, snapshot_timeout);
    let read = events
        .read_aggregate_at(snapshots, A::TYPE, id, version, &mut loader)
        .await;
    loader.finish(read)
}
