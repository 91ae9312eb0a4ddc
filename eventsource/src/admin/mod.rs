//! Operating a store: snapshot backfill, a coverage and freshness report, verification
//! of snapshots against a full replay, and bulk invalidation.
//!
//! [`Admin`] is the entry point: built from an event store that implements
//! [`AdminStore`] (every built-in one does: the SQL it needs is per backend) and the
//! snapshot store beside it. Each operation is per aggregate type:
//!
//! - [`Admin::coverage`]: how many aggregates there are, how many have a snapshot, how
//!   many are stale (more events since their snapshot than a limit), which schema
//!   versions the snapshots were written with, and the largest snapshots.
//! - [`Admin::backfill`]: snapshots every aggregate that is at least `N` events past
//!   its snapshot (or has none), longest first, with bounded concurrency and a progress
//!   report. It is resumable: the work list is computed from the store at the start of
//!   each run, so a run that was interrupted and started again only does what is still
//!   behind. It is safe while the application writes: each aggregate is loaded afresh
//!   and snapshotted at the version it was loaded at, and a store never replaces a
//!   snapshot with one of a lower version.
//! - [`Admin::verify`]: rebuilds a sample of the aggregates (or all) by replaying their
//!   events from the first one, up to the snapshot's version, and compares the state
//!   with the one the snapshot restores (as JSON values of
//!   [`Aggregate::to_snapshot`]). A difference means the state changed shape, or its
//!   event handlers changed meaning, without a `schema_version` bump.
//! - [`Admin::invalidate`]: deletes the snapshots of a type, or those below a schema
//!   version ([`SnapshotStore::delete_by_type`]).
//!
//! The same operations are on the command line with the `cli` feature (see
//! `eventsource::cli`).
//!
//! # Several snapshots per aggregate
//!
//! Every query treats the snapshot of highest version of an aggregate as its snapshot,
//! so the reports stay right for a store that keeps a history of snapshots.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::error::Result;
use crate::feed::Checkpoint;
use crate::repository::AggregateRepository;
use crate::snapshot::{SnapshotMode, SnapshotStore};
use crate::store::EventStore;
use crate::subscription::ParkedEvent;

mod backfill;
pub(crate) mod scan;
mod verify;

pub use backfill::{Backfill, BackfillFailure, BackfillProgress, BackfillReport};
pub use scan::scan_behind;
pub use verify::{Mismatch, Unusable, Verify, VerifyReport};

/// An aggregate, how long its stream is, and where its snapshot stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AggregateLag {
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The version of its last event.
    pub stream_version: u64,
    /// The version of its snapshot (the highest one stored), if any.
    pub snapshot_version: Option<u64>,
    /// The schema version that snapshot was written with.
    pub snapshot_schema_version: Option<u32>,
    /// Events a load replays after the snapshot: the stream's version less the
    /// snapshot's, or the whole stream when the snapshot is of another schema version
    /// than the one asked about, or beyond the stream, or missing.
    pub events_behind: u64,
}

/// Which aggregates [`AdminStore::behind`] lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehindQuery {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The schema version the code reads: a snapshot of another one counts as none.
    pub schema_version: u32,
    /// Only aggregates at least this many events behind.
    pub min_events_behind: u64,
    /// At most this many (the most behind), or all.
    pub limit: Option<u64>,
}

/// What [`Admin::coverage`] reports on, beyond the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoverageOptions {
    /// An aggregate is stale when more than this many events were appended since its
    /// snapshot (since its start, without one).
    pub stale_after: u64,
    /// How many of the largest snapshots to list.
    pub largest: u64,
}

impl Default for CoverageOptions {
    /// Stale past 100 events; the 5 largest snapshots.
    fn default() -> Self {
        CoverageOptions {
            stale_after: 100,
            largest: 5,
        }
    }
}

/// The coverage and freshness of one aggregate type's snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The aggregate type.
    pub aggregate_type: String,
    /// Aggregates (streams with at least one event).
    pub aggregates: u64,
    /// Aggregates with a snapshot (of any schema version).
    pub with_snapshot: u64,
    /// Aggregates without one.
    pub without_snapshot: u64,
    /// Aggregates with more than [`stale_after`](Self::stale_after) events since their
    /// snapshot (since their start, without one).
    pub stale: u64,
    /// The limit `stale` was counted with.
    pub stale_after: u64,
    /// Events since the snapshot (since the start, without one), all aggregates
    /// together: what loading every aggregate once would replay.
    pub events_since_snapshots: u64,
    /// The longest history since a snapshot (since the start, without one).
    pub max_events_since_snapshot: u64,
    /// Snapshots whose aggregate has no events, or fewer than the snapshot's version:
    /// every load of such an aggregate replays, then deletes it.
    pub snapshots_ahead: u64,
    /// The schema versions of the snapshots, with how many of each, in version order.
    pub schema_versions: Vec<SchemaVersionCount>,
    /// The largest snapshots, largest first.
    pub largest: Vec<SnapshotSize>,
}

/// How many snapshots have this schema version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SchemaVersionCount {
    /// The schema version.
    pub schema_version: u32,
    /// Snapshots written with it.
    pub snapshots: u64,
}

/// One snapshot and the size of its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotSize {
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The snapshot's version.
    pub version: u64,
    /// Its schema version.
    pub schema_version: u32,
    /// The bytes its state takes in the store: the JSON text, or the zstd frame of a
    /// compressed state.
    pub bytes: u64,
}

/// One partition of a subscription, as its checkpoint row says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriptionPartition {
    /// The subscription's name.
    pub subscription: String,
    /// The partition (0 for a subscription that is not partitioned).
    pub partition: u32,
    /// What it has handled up to.
    pub checkpoint: Checkpoint,
    /// When the checkpoint last moved, where the store records it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Its parked events.
    pub parked: u64,
}

/// How far a checkpoint is behind the head of the feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FeedLag {
    /// Committed events after the checkpoint, of every aggregate type and partition: an
    /// upper bound for a subscription that filters or is partitioned.
    pub events: u64,
    /// When the oldest of them occurred.
    pub oldest_at: Option<DateTime<Utc>>,
}

impl FeedLag {
    /// How long the oldest event after the checkpoint has waited, at `now`.
    pub fn seconds(&self, now: DateTime<Utc>) -> f64 {
        self.oldest_at.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        })
    }
}

/// The queries of the operations API, written once per backend.
///
/// Implemented by each built-in event store. The SQL stores read the `snapshots` table
/// of their own database, so the snapshot store handed in must be that database's (as
/// with one pool for both); the in-memory store asks the snapshot store handed in.
/// A store of your own can answer [`behind`](Self::behind) and
/// [`coverage`](Self::coverage) with [`scan_behind`], which only needs the store traits.
#[async_trait]
pub trait AdminStore: Send + Sync + fmt::Debug {
    /// The aggregate types with events or snapshots, in name order.
    async fn aggregate_types(&self, snapshots: &dyn SnapshotStore) -> Result<Vec<String>>;

    /// The aggregates of a type at least `min_events_behind` events past their snapshot,
    /// most behind first (then by id).
    async fn behind(
        &self,
        snapshots: &dyn SnapshotStore,
        query: &BehindQuery,
    ) -> Result<Vec<AggregateLag>>;

    /// The coverage and freshness of a type's snapshots.
    async fn coverage(
        &self,
        snapshots: &dyn SnapshotStore,
        aggregate_type: &str,
        options: &CoverageOptions,
    ) -> Result<Coverage>;

    /// Every partition of every subscription with a checkpoint, by name then partition.
    async fn subscriptions(&self) -> Result<Vec<SubscriptionPartition>>;

    /// How far `checkpoint` is behind the head of the feed.
    async fn feed_lag(&self, checkpoint: Checkpoint) -> Result<FeedLag>;

    /// Sets every partition of a subscription to `checkpoint`; returns how many
    /// partitions there were (0 for an unknown subscription: nothing is written).
    async fn reset_subscription(&self, subscription: &str, checkpoint: Checkpoint) -> Result<u64>;

    /// The parked events of a subscription, in position order.
    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>>;
}

/// The operations API over one event store and its snapshot store.
///
/// ```
/// # use eventsource::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Account", event = AccountEvent)]
/// # #[snapshot(schema_version = 1, mode = "manual")]
/// # pub struct Account { pub cents: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use eventsource::admin::{Admin, Backfill, CoverageOptions, Verify};
///
/// let events = InMemoryEventStore::new();
/// let snapshots = InMemorySnapshotStore::new();
/// let repo = Account::repository(Arc::new(events.clone()), Arc::new(snapshots.clone()));
/// for n in 0..3u64 {
///     let mut account = repo.create_new(uuid::Uuid::new_v4());
///     for _ in 0..(n + 1) * 50 {
///         account.record(Deposited { cents: 1 });
///     }
///     repo.save(&mut account).await?; // manual mode: no snapshot
/// }
///
/// let admin = Admin::new(Arc::new(events), Arc::new(snapshots));
/// let before = admin.coverage("Account", &CoverageOptions::default()).await?;
/// assert_eq!((before.aggregates, before.with_snapshot, before.stale), (3, 0, 1));
///
/// // Snapshot every account 100 or more events behind, longest first, 4 at a time.
/// let done = admin.backfill::<Account>(&Backfill::new(100).concurrency(4)).await?;
/// assert_eq!((done.total, done.snapshotted), (2, 2));
/// // A second run finds nothing left to do.
/// assert_eq!(admin.backfill::<Account>(&Backfill::new(100)).await?.total, 0);
///
/// // Every snapshot gives the state a full replay gives.
/// let verified = admin.verify::<Account>(&Verify::all()).await?;
/// assert_eq!((verified.checked, verified.matching), (2, 2));
/// assert!(verified.is_clean());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Admin {
    events: Arc<dyn EventStore>,
    admin: Arc<dyn AdminStore>,
    snapshots: Arc<dyn SnapshotStore>,
}

impl Admin {
    /// The operations API over an event store and its snapshot store (for the SQL
    /// stores, the snapshot store of the same database).
    pub fn new<S>(events: Arc<S>, snapshots: Arc<dyn SnapshotStore>) -> Self
    where
        S: EventStore + AdminStore + 'static,
    {
        Admin {
            admin: Arc::clone(&events) as Arc<dyn AdminStore>,
            events,
            snapshots,
        }
    }

    /// The event store.
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    /// The snapshot store.
    pub fn snapshot_store(&self) -> &Arc<dyn SnapshotStore> {
        &self.snapshots
    }

    /// The store's administrative queries.
    pub fn store(&self) -> &Arc<dyn AdminStore> {
        &self.admin
    }

    /// The aggregate types with events or snapshots, in name order.
    pub async fn aggregate_types(&self) -> Result<Vec<String>> {
        self.admin.aggregate_types(self.snapshots.as_ref()).await
    }

    /// The coverage and freshness of a type's snapshots.
    pub async fn coverage(
        &self,
        aggregate_type: &str,
        options: &CoverageOptions,
    ) -> Result<Coverage> {
        crate::store::checks::name("aggregate_type", aggregate_type)?;
        self.admin
            .coverage(self.snapshots.as_ref(), aggregate_type, options)
            .await
    }

    /// The aggregates of `A` at least `min_events_behind` events past a snapshot of
    /// `A`'s current schema version (or without one), most behind first.
    pub async fn behind<A: Aggregate>(
        &self,
        min_events_behind: u64,
        limit: Option<u64>,
    ) -> Result<Vec<AggregateLag>> {
        self.admin
            .behind(
                self.snapshots.as_ref(),
                &BehindQuery {
                    aggregate_type: A::TYPE.to_owned(),
                    schema_version: A::SCHEMA_VERSION,
                    min_events_behind,
                    limit,
                },
            )
            .await
    }

    /// Deletes every snapshot of a type, or only those whose schema version is below
    /// `schema_version_below`; returns how many were deleted. Loads replay until new
    /// snapshots are taken ([`backfill`](Self::backfill) takes them).
    pub async fn invalidate(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64> {
        self.snapshots
            .delete_by_type(aggregate_type, schema_version_below)
            .await
    }

    /// A repository of `A` on these stores that takes no snapshot by itself, with `A`'s
    /// declared snapshot timeout.
    fn repository<A: Aggregate>(&self) -> Result<AggregateRepository<A>> {
        AggregateRepository::<A>::builder(Arc::clone(&self.events))
            .snapshot_store(Arc::clone(&self.snapshots))
            .mode(SnapshotMode::Manual)
            .build()
    }
}

/// The rate of `done` items over `elapsed`, per second.
pub(crate) fn per_second(done: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { done as f64 / secs } else { 0.0 }
}

/// Waits for every worker of a backfill or a verification; a worker's panic is the
/// caller's.
pub(crate) async fn join_workers(mut tasks: tokio::task::JoinSet<()>) {
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// `value` as an `i64` bind parameter, saturating (limits and counts).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A count or version read from SQL that must not be negative.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn non_negative(what: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| crate::Error::backend(format!("negative {what} {value}")))
}
