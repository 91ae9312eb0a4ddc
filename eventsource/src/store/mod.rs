//! Event stores: the append-only log that is the source of truth.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::Result;
use crate::event::{EventRef, NewEvent, RecordedEvent, StreamEvent};
use crate::snapshot::{Snapshot, SnapshotStore};

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

pub use memory::InMemoryEventStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresEventStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteEventStore;

/// The stream version a writer expects before its events are appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version. Concurrent writers can still clash on a
    /// version, which is then reported as a conflict.
    Any,
    /// The stream must be exactly at this version; `Exact(0)` means it must not exist.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::Exact(0) => f.write_str("no stream (version 0)"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The visitor handed to [`EventStore::read_stream`]: called once per event, in version
/// order; an error stops the read and is returned.
pub type EventVisitor<'v> = dyn FnMut(EventRef<'_>) -> Result<()> + Send + 'v;

/// An append-only store of events, grouped in streams by aggregate type and id.
///
/// Every implementation behaves the same way (the crate's conformance suite checks it):
/// - [`append`](Self::append) writes all events or none. The stream's versions continue
///   from its head (1, 2, 3...); an expected version that does not match yields
///   [`Error::Conflict`](crate::Error::Conflict), an event id already stored yields
///   [`Error::DuplicateEventId`](crate::Error::DuplicateEventId), and nothing is written.
///   The version is checked first. A payload that is not JSON is refused with
///   [`Error::InvalidInput`](crate::Error::InvalidInput) before anything else.
/// - Streams of different aggregate types never mix, even with the same id.
/// - Global positions start at 1 and increase with every event appended.
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Appends events to a stream and returns the stream's new version.
    ///
    /// An empty batch appends nothing and returns the current version (after checking
    /// `expected`).
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64>;

    /// Reads a stream's events with `version >= from_version`, in version order, handing
    /// each to `visit` as it arrives. Returns how many were visited.
    ///
    /// Backends stream rows: a long history is never held in memory at once.
    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64>;

    /// The stream's version (the version of its last event), or `None` when it has no events.
    async fn stream_version(&self, aggregate_type: &str, aggregate_id: Uuid)
    -> Result<Option<u64>>;

    /// Up to `limit` events of every stream with `position >= from_position`, in global order.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// Reads what rebuilding an aggregate needs: its snapshot from `snapshots` (when
    /// given), which `visitor` judges and answers with the version the stream starts at,
    /// then the events from there. Returns how many events were visited.
    ///
    /// Without a snapshot store the stream starts at version 1 and the visitor's
    /// [`snapshot`](LoadVisitor::snapshot) is not called.
    ///
    /// The default does it with [`SnapshotStore::get`] and [`read_stream`](Self::read_stream).
    /// Backends override it to read only the columns a load needs, and, when the
    /// snapshots live in the same database (recognised through
    /// [`SnapshotStore::as_any`]), to read the snapshot and its events in one round trip.
    /// An override must behave exactly like the default.
    async fn read_aggregate(
        &self,
        snapshots: Option<&dyn SnapshotStore>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        let from_version = match snapshots {
            Some(store) => visitor.snapshot(store.get(aggregate_type, aggregate_id).await),
            None => 1,
        };
        self.read_stream(aggregate_type, aggregate_id, from_version, &mut |e| {
            visitor.event(e.stream_event())
        })
        .await
    }
}

/// Receives what [`EventStore::read_aggregate`] reads: the snapshot lookup first,
/// then the events.
pub trait LoadVisitor: Send {
    /// Gets the outcome of the snapshot lookup and returns the version the event stream
    /// starts at: the snapshot's own version to build on it, `1` to replay everything.
    fn snapshot(&mut self, found: Result<Option<Snapshot>>) -> u64;

    /// Gets each event from that version on, in version order; an error stops the read.
    fn event(&mut self, event: StreamEvent<'_>) -> Result<()>;
}

/// Refuses a batch with an event whose payload is not JSON, naming the event: every
/// store calls it before anything else, so that a bad payload fails alike everywhere.
pub(crate) fn check_payloads(
    aggregate_type: &str,
    aggregate_id: Uuid,
    events: &[NewEvent],
) -> Result<()> {
    for event in events {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&event.payload) {
            return Err(crate::Error::invalid_input(format!(
                "the payload of event {} ({}) for {aggregate_type}/{aggregate_id} is not valid JSON: {e}",
                event.event_id, event.event_type
            )));
        }
    }
    Ok(())
}

/// Conveniences over any [`EventStore`].
#[async_trait]
pub trait EventStoreExt: EventStore {
    /// Reads a stream's events with `version >= from_version` into memory.
    async fn load_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        self.read_stream(aggregate_type, aggregate_id, from_version, &mut |e| {
            out.push(e.to_recorded()?);
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

impl<S: EventStore + ?Sized> EventStoreExt for S {}
