//! Snapshot strategies: deciding after a save whether to take a snapshot.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::root::LoadHistory;

/// What a [`SnapshotStrategy`] knows when it decides, right after events were stored.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SnapshotContext<'a> {
    /// The aggregate type.
    pub aggregate_type: &'a str,
    /// The aggregate id.
    pub aggregate_id: Uuid,
    /// The stream's version before the save.
    pub version_before: u64,
    /// The stream's version after the save.
    pub version_after: u64,
    /// Version of the newest snapshot known for this aggregate.
    pub last_snapshot_version: Option<u64>,
    /// When that snapshot was taken.
    pub last_snapshot_at: Option<DateTime<Utc>>,
    /// The event type names just stored, in order.
    pub event_types: &'a [&'static str],
    /// What the load of this aggregate cost (zero for an aggregate created in this process).
    pub load: &'a LoadHistory,
    /// The time of the decision.
    pub now: DateTime<Utc>,
}

/// Decides whether a save should be followed by a snapshot.
pub trait SnapshotStrategy: Send + Sync + fmt::Debug {
    /// `true` to take a snapshot at `ctx.version_after`.
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool;

    /// The every-N threshold this strategy applies, if it has one (for reporting).
    fn threshold(&self) -> Option<u64> {
        None
    }
}

/// Snapshot whenever a save crosses or lands on a multiple of `N` events
/// (98 → 102 with `N = 100` takes one snapshot, at version 102).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EveryNEvents(u64);

impl EveryNEvents {
    /// Every `n` events; `None` for `n == 0`.
    pub const fn new(n: u64) -> Option<Self> {
        if n == 0 { None } else { Some(EveryNEvents(n)) }
    }

    /// For `#[snapshot(threshold = N)]`, which the derive has already checked to be non-zero.
    #[doc(hidden)]
    pub const fn __from_attribute(n: u64) -> Self {
        EveryNEvents(if n == 0 { 1 } else { n })
    }

    /// The threshold.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl SnapshotStrategy for EveryNEvents {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        ctx.version_after / self.0 > ctx.version_before / self.0
    }

    fn threshold(&self) -> Option<u64> {
        Some(self.0)
    }
}

/// Never snapshot automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Never;

impl SnapshotStrategy for Never {
    fn should_snapshot(&self, _ctx: &SnapshotContext<'_>) -> bool {
        false
    }
}
