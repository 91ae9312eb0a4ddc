//! Snapshots: a cached copy of an aggregate's state at a version.
//!
//! Snapshots are an optimisation only. Events stay the truth: a snapshot that is
//! missing, older than the events, of another schema version or undecodable makes the
//! repository replay the stream in full and log why, never fail.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};

pub(crate) mod background;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod compression;
mod strategy;

pub use strategy::{
    AllOf, AnyOf, CostlyLoad, EveryNEvents, Never, OnEvents, SnapshotContext, SnapshotStrategy,
    SnapshotStrategyExt, TimeSinceSnapshot,
};

/// An aggregate's state captured at a version.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The aggregate's type.
    pub aggregate_type: String,
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The schema version of the state's JSON form when it was taken.
    pub schema_version: u32,
    /// The state as JSON text.
    pub state: String,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
}

impl Snapshot {
    /// The state parsed as a JSON value, for inspection.
    pub fn state_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_str(&self.state)
    }
}

/// Which of an aggregate's stored snapshots [`SnapshotStore::get_at`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotBound {
    /// The newest snapshot whose version is at most this one.
    AtOrBelowVersion(u64),
}

impl SnapshotBound {
    /// `true` if a snapshot at `version` is within the bound.
    pub fn admits(self, version: u64) -> bool {
        match self {
            SnapshotBound::AtOrBelowVersion(bound) => version <= bound,
        }
    }
}

/// A store of snapshots: per aggregate (type and id), the newest few, at most one per
/// version.
///
/// Every implementation obeys the same rules (checked by the conformance suite):
/// - [`save_keeping`](Self::save_keeping) with `keep = N` leaves the aggregate with the
///   `N` highest versions of its stored snapshots and the new one. A snapshot of a
///   version already stored replaces it; an older snapshot never replaces or evicts a
///   newer one (with `N` newer ones stored, the new one is simply not kept); and the
///   newest snapshot is never deleted, even by concurrent saves. Concurrent saves may
///   leave more than `N` for a while; the next save prunes them.
/// - [`save`](Self::save) is `save_keeping` with `keep = 1`: one snapshot per aggregate,
///   never replaced by one of a lower version.
/// - Aggregate types are kept apart even when ids are equal.
///
/// A store without a history implements `save` and `get` only: the defaults of
/// `save_keeping` (which keeps one) and [`get_at`](Self::get_at) (the one snapshot, if
/// within the bound) build on them.
#[async_trait]
pub trait SnapshotStore: Send + Sync + fmt::Debug {
    /// Stores the snapshot unless one with a higher version is already stored
    /// (an equal version is replaced), and deletes the aggregate's lower ones: keeps one.
    async fn save(&self, snapshot: &Snapshot) -> Result<()>;

    /// Stores the snapshot and keeps the `keep` highest versions of the aggregate's
    /// snapshots (those stored and this one), deleting the others. An equal version is
    /// replaced; a snapshot below the `keep` highest stored ones is not kept.
    ///
    /// The default calls [`save`](Self::save): a store without a history keeps one
    /// snapshot per aggregate whatever `keep` asks.
    async fn save_keeping(&self, snapshot: &Snapshot, keep: NonZeroU32) -> Result<()> {
        let _ = keep;
        self.save(snapshot).await
    }

    /// [`save_keeping`](Self::save_keeping), storing the state compressed when its JSON
    /// text is longer than `compress_over` bytes (the policy's
    /// [`compress_over`](SnapshotPolicy::compress_over); `None` never compresses). The
    /// snapshot read back is the same either way: compression is the store's business,
    /// [`Snapshot::state`] is always the JSON text.
    ///
    /// The default ignores `compress_over` and calls `save_keeping`: a store that does
    /// not compress stores every state as it is. The PostgreSQL and SQLite stores
    /// compress with zstd (when that makes the state smaller); the in-memory store does
    /// not compress.
    async fn save_compressing(
        &self,
        snapshot: &Snapshot,
        keep: NonZeroU32,
        compress_over: Option<usize>,
    ) -> Result<()> {
        let _ = compress_over;
        self.save_keeping(snapshot, keep).await
    }

    /// The newest snapshot of this aggregate, if any.
    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>>;

    /// The newest snapshot of this aggregate within `bound`, if any: with
    /// [`SnapshotBound::AtOrBelowVersion`], the one a state at that version is rebuilt
    /// from.
    ///
    /// The default filters [`get`](Self::get): right for a store that keeps one.
    async fn get_at(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>> {
        Ok(self
            .get(aggregate_type, aggregate_id)
            .await?
            .filter(|snapshot| bound.admits(snapshot.version)))
    }

    /// Deletes every snapshot of this aggregate; `true` if there was one.
    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool>;

    /// `true` if a snapshot of this aggregate is stored.
    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool>;

    /// Deletes every snapshot of a type, or only those whose schema version is strictly
    /// below `schema_version_below`; returns how many were deleted (every version of
    /// every aggregate counts).
    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> Result<u64>;

    /// Not for implementors: the concrete store, so that an event store of the same
    /// backend can recognise it
    /// and read a snapshot and its events in one round trip
    /// (see [`EventStore::read_aggregate`](crate::EventStore::read_aggregate)).
    /// `None` (the default) keeps the generic two-read path.
    #[doc(hidden)]
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// When the repository writes the snapshots its strategy asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SnapshotMode {
    /// Written before `save` returns: the next load is sure to find it.
    #[default]
    Sync,
    /// Written by a background task: `save` returns as soon as the events are stored.
    Background,
    /// Never automatic: only [`create_snapshot`](crate::AggregateRepository::create_snapshot).
    Manual,
}

impl SnapshotMode {
    /// The mode's name as written in `#[snapshot(mode = "...")]`.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMode::Sync => "sync",
            SnapshotMode::Background => "background",
            SnapshotMode::Manual => "manual",
        }
    }
}

impl fmt::Display for SnapshotMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SnapshotMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sync" => Ok(SnapshotMode::Sync),
            "background" => Ok(SnapshotMode::Background),
            "manual" => Ok(SnapshotMode::Manual),
            other => Err(Error::invalid(
                "mode",
                format!(
                    "unknown snapshot mode `{other}`, expected one of \"sync\", \"background\", \"manual\""
                ),
            )),
        }
    }
}

/// How long a snapshot read or write may take by default before the repository gives up
/// on it: the load replays from the events, the save stands without the snapshot.
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// When and how an aggregate type is snapshotted: a strategy deciding when, a mode
/// deciding how the snapshot is written, how long snapshot I/O may take, and how many
/// snapshots of each aggregate are kept.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// Decides after each save whether to take a snapshot.
    pub strategy: Arc<dyn SnapshotStrategy>,
    /// How the snapshot is written.
    pub mode: SnapshotMode,
    /// The longest a snapshot read or write may take (declared with
    /// `#[snapshot(timeout = "500ms")]`, default [`DEFAULT_SNAPSHOT_TIMEOUT`]). Past
    /// it, the read or write is cancelled: a load replays the events instead, a save
    /// stands without its snapshot.
    pub timeout: Duration,
    /// How many snapshots of each aggregate are kept, the newest ones (declared with
    /// `#[snapshot(keep = 3)]`, default 1). More than one keeps a history that
    /// [`load_at`](crate::AggregateRepository::load_at) and
    /// [`load_as_of`](crate::AggregateRepository::load_as_of) start from; a load always
    /// starts from the newest.
    pub keep: NonZeroU32,
    /// States whose JSON text is longer than this many bytes are stored compressed
    /// (declared with `#[snapshot(compress_over = "64KiB")]`, default `None`: never).
    /// Passed to [`SnapshotStore::save_compressing`]; the PostgreSQL and SQLite stores
    /// compress with zstd, the in-memory store ignores it. Measured (docs/BENCHMARKS.md):
    /// on PostgreSQL it saves bytes and time from about 16 KiB on; on SQLite it saves
    /// three quarters of the bytes for slower loads.
    pub compress_over: Option<usize>,
}

impl SnapshotPolicy {
    /// A policy with this strategy and mode, and the default timeout.
    pub fn new(strategy: impl SnapshotStrategy + 'static, mode: SnapshotMode) -> Self {
        SnapshotPolicy {
            strategy: Arc::new(strategy),
            mode,
            timeout: DEFAULT_SNAPSHOT_TIMEOUT,
            keep: NonZeroU32::MIN,
            compress_over: None,
        }
    }

    /// The same policy, storing states longer than `bytes` compressed (`None`: never).
    pub fn with_compress_over(mut self, bytes: Option<usize>) -> Self {
        self.compress_over = bytes;
        self
    }

    /// The same policy, keeping the `keep` newest snapshots of each aggregate.
    pub fn with_keep(mut self, keep: NonZeroU32) -> Self {
        self.keep = keep;
        self
    }

    /// The same policy with this snapshot I/O timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Display for SnapshotPolicy {
    /// The mode, then the strategy: `background: every 100 events or 1h since last
    /// snapshot`. In manual mode the strategy is not applied, and says so. A `keep`
    /// above 1 follows: `sync: every 100 events, keeping 3`, then a compression
    /// threshold: `sync: every 100 events, compressing states over 65536 bytes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let strategy = self.strategy.to_string();
        match self.mode {
            SnapshotMode::Manual if strategy == "never" => f.write_str("manual")?,
            SnapshotMode::Manual => write!(f, "manual (not applied: {strategy})")?,
            mode => write!(f, "{mode}: {strategy}")?,
        }
        if self.keep > NonZeroU32::MIN {
            write!(f, ", keeping {}", self.keep)?;
        }
        if let Some(bytes) = self.compress_over {
            write!(f, ", compressing states over {bytes} bytes")?;
        }
        Ok(())
    }
}

impl Default for SnapshotPolicy {
    /// No automatic snapshots, synchronous writes for manual ones.
    fn default() -> Self {
        SnapshotPolicy::new(Never, SnapshotMode::Sync)
    }
}
