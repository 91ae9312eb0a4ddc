//! Event stores: the append-only log that is the source of truth.
//!
//! # Input every store refuses
//!
//! Every store checks its input before it touches its storage and answers bad input
//! with [`Error::InvalidInput`](crate::Error::InvalidInput) naming the field, nothing
//! written. The rules are those of the strictest backend, so data one store accepts can
//! move to any other:
//!
//! | field | rule |
//! |---|---|
//! | `aggregate_type`, `event_type` | 1 to [`MAX_NAME_LEN`] bytes, no NUL |
//! | `payload` | valid JSON |
//! | `event_version`, `schema_version` | at most `i32::MAX` |
//! | `expected_version`, `version` (of a snapshot) | at most `i64::MAX` |
//! | `occurred_at`, `created_at` | years 1 to 9999 |
//! | `state` (snapshots) | valid JSON without NUL characters in its strings |
//!
//! An append retried after a lost acknowledgement (the same event ids, already stored
//! in this stream in the same order at consecutive versions, starting right after the
//! expected version when it is exact) succeeds without writing and returns the version
//! of the retried batch's last event, as the first append did; so a caller that cannot
//! tell whether its append committed can simply send it again.

use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Result;
use crate::event::{EventRef, NewEvent, RecordedEvent, StreamEvent};
use crate::feed::{FeedPage, FeedQuery};
use crate::snapshot::{Snapshot, SnapshotBound, SnapshotStore};
pub use crate::version::ExpectedVersion;

pub(crate) mod checks;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod guard;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod rows;

pub use checks::MAX_NAME_LEN;

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
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventsource::Result<()> {
/// use eventsource::{EventStore, EventStoreExt, ExpectedVersion, InMemoryEventStore, NewEvent};
///
/// let store = InMemoryEventStore::new();
/// let id = uuid::Uuid::new_v4();
/// let event = |n: u32| NewEvent {
///     event_id: uuid::Uuid::new_v4(),
///     event_type: "Deposited".into(),
///     event_version: 1,
///     payload: format!(r#"{{"cents":{n}}}"#),
///     metadata: Default::default(),
///     occurred_at: chrono::Utc::now(),
/// };
/// assert_eq!(store.append("Account", id, ExpectedVersion::Exact(0), &[event(1), event(2)]).await?, 2);
/// // A writer that expected the stream to be new is refused.
/// assert!(store.append("Account", id, ExpectedVersion::Exact(0), &[event(3)]).await.is_err());
/// let stored = store.load_stream("Account", id, 1).await?;
/// assert_eq!(stored[1].payload, r#"{"cents":2}"#);
/// assert_eq!(store.stream_version("Account", id).await?, Some(2));
/// # Ok(())
/// # }
/// ```
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

    /// Reads a stream's events with `from_version <= version <= to_version`, in version
    /// order, handing each to `visit` as it arrives. Returns how many were visited.
    ///
    /// The default reads with [`read_stream`](Self::read_stream) and skips the events
    /// after `to_version`; backends override it to stop the read there.
    async fn read_stream_range(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        from_version: u64,
        to_version: u64,
        visit: &mut EventVisitor<'_>,
    ) -> Result<u64> {
        let mut visited = 0;
        self.read_stream(aggregate_type, aggregate_id, from_version, &mut |e| {
            if e.version > to_version {
                return Ok(());
            }
            visited += 1;
            visit(e)
        })
        .await?;
        Ok(visited)
    }

    /// The stream's version as it was at `time`: the version of the last event of the
    /// longest run of events from the first on that all occurred at or before `time`
    /// (the version before the first event that occurred after it). `None` when the
    /// first event occurred after `time`, or the stream has no events.
    ///
    /// The default scans the stream with [`read_stream`](Self::read_stream); backends
    /// override it with a query.
    async fn version_as_of(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        time: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let mut last = 0;
        let mut after = false;
        self.read_stream(aggregate_type, aggregate_id, 1, &mut |e| {
            if !after && e.occurred_at <= time {
                last = e.version;
            } else {
                after = true;
            }
            Ok(())
        })
        .await?;
        Ok((last > 0).then_some(last))
    }

    /// The stream's version (the version of its last event), or `None` when it has no events.
    async fn stream_version(&self, aggregate_type: &str, aggregate_id: Uuid)
    -> Result<Option<u64>>;

    /// Up to `limit` events of every stream with `position >= from_position`, in position
    /// order.
    ///
    /// On PostgreSQL, position order is not commit order: a reader that pages through
    /// `read_all` can pass a position whose event commits a moment later. Consumers that
    /// must see every event read the [feed](crate::feed) with
    /// [`read_feed`](Self::read_feed) instead.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// The ids of the aggregates of a type (the streams with at least one event), in id
    /// order, after `after` when given, at most `limit` of them. Page on with the last id
    /// of a page.
    async fn aggregate_ids(
        &self,
        aggregate_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>>;

    /// The event with this id, in any stream, or `None`.
    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>>;

    /// A page of the global [feed](crate::feed): up to `query`'s limit of the committed
    /// events after its checkpoint that pass its filters, in feed order.
    ///
    /// Read again from the page's [`next`](FeedPage::next) checkpoint, the feed yields
    /// every event committed since, once, and never an event ordered before it.
    async fn read_feed(&self, query: &FeedQuery) -> Result<FeedPage>;

    /// A signal that changes after every append this store (or a clone of it) commits,
    /// so that a reader in the same process can wait for new events instead of polling.
    /// `None` when the store has none; appends by other processes never change it.
    fn append_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

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
            Some(store) => read_snapshot(store, aggregate_type, aggregate_id, visitor).await,
            None => 1,
        };
        let mut visited = 0;
        let mut stopped = false;
        self.read_stream(aggregate_type, aggregate_id, from_version, &mut |e| {
            if stopped {
                return Ok(());
            }
            match visitor.event(e.stream_event())? {
                ControlFlow::Continue(()) => visited += 1,
                ControlFlow::Break(()) => stopped = true,
            }
            Ok(())
        })
        .await?;
        Ok(visited)
    }

    /// Reads what rebuilding an aggregate as it was at `to_version` needs: the newest
    /// snapshot at or below that version from `snapshots` (when given), which `visitor`
    /// judges and answers with the version the stream starts at, as for
    /// [`read_aggregate`](Self::read_aggregate); then the events from there up to
    /// `to_version`. Returns how many events were visited.
    ///
    /// The default does it with [`SnapshotStore::get_at`] and
    /// [`read_stream_range`](Self::read_stream_range). Backends override it to read
    /// only the columns a load needs and, with the snapshots in the same database, the
    /// snapshot and its events in one round trip. An override must behave exactly like
    /// the default.
    async fn read_aggregate_at(
        &self,
        snapshots: Option<&dyn SnapshotStore>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        to_version: u64,
        visitor: &mut dyn LoadVisitor,
    ) -> Result<u64> {
        let from_version = match snapshots {
            Some(store) => {
                read_snapshot_at(store, aggregate_type, aggregate_id, to_version, visitor).await
            }
            None => 1,
        };
        let mut visited = 0;
        let mut stopped = false;
        self.read_stream_range(
            aggregate_type,
            aggregate_id,
            from_version,
            to_version,
            &mut |e| {
                if stopped {
                    return Ok(());
                }
                match visitor.event(e.stream_event())? {
                    ControlFlow::Continue(()) => visited += 1,
                    ControlFlow::Break(()) => stopped = true,
                }
                Ok(())
            },
        )
        .await?;
        Ok(visited)
    }
}

/// [`read_snapshot`] for the newest snapshot at or below `to_version`
/// ([`SnapshotStore::get_at`]).
pub(crate) async fn read_snapshot_at(
    store: &dyn SnapshotStore,
    aggregate_type: &str,
    aggregate_id: Uuid,
    to_version: u64,
    visitor: &mut dyn LoadVisitor,
) -> u64 {
    let get = store.get_at(
        aggregate_type,
        aggregate_id,
        SnapshotBound::AtOrBelowVersion(to_version),
    );
    let found = match visitor.snapshot_timeout() {
        Some(limit) => crate::time::within(limit, get)
            .await
            .unwrap_or_else(|| Err(crate::Error::timeout("reading the snapshot", limit))),
        None => get.await,
    };
    visitor.snapshot(found)
}

/// Hands `visitor` the snapshot lookup, bounded by its
/// [`snapshot_timeout`](LoadVisitor::snapshot_timeout), and returns the version it
/// answers with. A lookup that times out is reported to the visitor as
/// [`Error::Timeout`](crate::Error::Timeout), and is cancelled.
pub(crate) async fn read_snapshot(
    store: &dyn SnapshotStore,
    aggregate_type: &str,
    aggregate_id: Uuid,
    visitor: &mut dyn LoadVisitor,
) -> u64 {
    let get = store.get(aggregate_type, aggregate_id);
    let found = match visitor.snapshot_timeout() {
        Some(limit) => crate::time::within(limit, get)
            .await
            .unwrap_or_else(|| Err(crate::Error::timeout("reading the snapshot", limit))),
        None => get.await,
    };
    visitor.snapshot(found)
}

/// Receives what [`EventStore::read_aggregate`] reads: the snapshot lookup first,
/// then the events.
pub trait LoadVisitor: Send {
    /// Gets the outcome of the snapshot lookup and returns the version the event stream
    /// starts at: the snapshot's own version to build on it, `1` to replay everything.
    fn snapshot(&mut self, found: Result<Option<Snapshot>>) -> u64;

    /// Gets each event from that version on, in version order. `Break` stops the read
    /// (the visitor has seen enough), an error stops it and is returned.
    fn event(&mut self, event: StreamEvent<'_>) -> Result<ControlFlow<()>>;

    /// How long the snapshot lookup may take before the read gives up on it and reads
    /// the events alone; `None` (the default) waits as long as the store takes.
    fn snapshot_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Reads rows as they arrive, handing each to `visit` (which decodes it and passes it on)
/// until it answers `Break`; returns how many were visited. The loop every SQL backend's reads share.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) async fn visit_rows<R>(
    mut rows: impl futures_util::Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin,
    mut visit: impl FnMut(&R) -> Result<ControlFlow<()>>,
) -> Result<u64> {
    use futures_util::TryStreamExt;
    let mut visited = 0;
    while let Some(row) = rows.try_next().await.map_err(crate::Error::backend)? {
        if visit(&row)?.is_break() {
            break;
        }
        visited += 1;
    }
    Ok(visited)
}

/// `Some(version)` when the batch was already appended to its stream, so that an append
/// retried after a lost acknowledgement succeeds instead of conflicting.
///
/// `stored` holds `(version, event id)` of the events of the stream whose ids are in the
/// batch. It is this batch when every id is there, in batch order, at consecutive
/// versions that start right after `expected` (when exact). The answer is the version
/// of the batch's last event, as the first append returned.
pub(crate) fn already_appended(
    expected: ExpectedVersion,
    events: &[NewEvent],
    stored: &[(u64, Uuid)],
) -> Option<u64> {
    let version_of = |id: Uuid| stored.iter().find(|(_, s)| *s == id).map(|(v, _)| *v);
    let first = version_of(events.first()?.event_id)?;
    if let ExpectedVersion::Exact(v) = expected
        && first != v.checked_add(1)?
    {
        return None;
    }
    let consecutive = events
        .iter()
        .zip(first..)
        .all(|(e, version)| version_of(e.event_id) == Some(version));
    consecutive.then(|| first + events.len() as u64 - 1)
}

/// What an append refused by the unique constraints means, from what the store holds
/// once it is refused: `stored`, the `(version, id)` of the batch's events in this
/// stream; `anywhere`, the batch's ids stored in any stream; `head`, the stream's
/// version. In order: the batch itself, stored by an earlier try (its version, see
/// [`already_appended`]); a stream not at the expected version (checked first, as for
/// every append); an id repeated in the batch or already stored; else another writer
/// took the version. Every SQL store answers a unique violation with this.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn explain_unique_violation(
    aggregate_type: &str,
    aggregate_id: Uuid,
    expected: ExpectedVersion,
    events: &[NewEvent],
    stored: &[(u64, Uuid)],
    anywhere: &[Uuid],
    head: u64,
) -> Result<u64> {
    use crate::Error;
    if let Some(version) = already_appended(expected, events, stored) {
        return Ok(version);
    }
    let conflict = || Error::conflict(aggregate_type, aggregate_id, expected, head);
    if matches!(expected, ExpectedVersion::Exact(v) if v != head) {
        return Err(conflict());
    }
    checks::distinct_ids(aggregate_type, aggregate_id, events)?;
    match events.iter().find(|e| anywhere.contains(&e.event_id)) {
        Some(e) => Err(Error::duplicate_event(
            aggregate_type,
            aggregate_id,
            e.event_id,
        )),
        None => Err(conflict()),
    }
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
