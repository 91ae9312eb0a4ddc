//! [`SnapshotContext`]: what a strategy knows when it decides, and how to build one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::root::LoadHistory;

/// The load history of an aggregate created in this process: nothing loaded, no cost.
static NOT_LOADED: LoadHistory = LoadHistory {
    snapshot_version: None,
    snapshot_at: None,
    loaded_from_snapshot: false,
    events_replayed: 0,
    load_time: Duration::ZERO,
    snapshot_miss: None,
};

/// What a [`SnapshotStrategy`](super::SnapshotStrategy) knows when it decides, right
/// after events were stored.
///
/// The repository fills it in. To unit-test a strategy, build one with
/// [`SnapshotContext::new`] and the `with_*` methods; [`at`](Self::at) fixes the clock.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use eventsource::snapshot::{SnapshotContext, SnapshotStrategy, TimeSinceSnapshot};
/// use std::time::Duration;
///
/// let noon = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
/// let ctx = SnapshotContext::new(40, 41)
///     .with_last_snapshot(30, noon)
///     .at(noon + chrono::Duration::minutes(90));
/// assert!(TimeSinceSnapshot::new(Duration::from_secs(3600)).should_snapshot(&ctx));
/// ```
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
    /// The time of the decision: the clock every time-based strategy reads.
    pub now: DateTime<Utc>,
}

impl SnapshotContext<'static> {
    /// A save that moved the stream from `version_before` to `version_after`, decided now,
    /// of an aggregate with no known snapshot, no stored event types, an empty type name,
    /// the nil id and a free load. Change what the test needs with the `with_*` methods.
    pub fn new(version_before: u64, version_after: u64) -> Self {
        SnapshotContext {
            aggregate_type: "",
            aggregate_id: Uuid::nil(),
            version_before,
            version_after,
            last_snapshot_version: None,
            last_snapshot_at: None,
            event_types: &[],
            load: &NOT_LOADED,
            now: Utc::now(),
        }
    }
}

impl<'a> SnapshotContext<'a> {
    /// The aggregate's type name and id.
    pub fn with_aggregate(mut self, aggregate_type: &'a str, aggregate_id: Uuid) -> Self {
        self.aggregate_type = aggregate_type;
        self.aggregate_id = aggregate_id;
        self
    }

    /// The newest known snapshot: its version and when it was taken.
    pub fn with_last_snapshot(mut self, version: u64, taken_at: DateTime<Utc>) -> Self {
        self.last_snapshot_version = Some(version);
        self.last_snapshot_at = Some(taken_at);
        self
    }

    /// The event type names the save stored, in order.
    pub fn with_event_types(mut self, event_types: &'a [&'static str]) -> Self {
        self.event_types = event_types;
        self
    }

    /// What the last load of this aggregate cost.
    pub fn with_load(mut self, load: &'a LoadHistory) -> Self {
        self.load = load;
        self
    }

    /// The time of the decision (instead of the current time).
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    /// Events stored since the newest known snapshot (all of them without one), counting
    /// the events of this save.
    pub fn events_since_snapshot(&self) -> u64 {
        self.version_after
            .saturating_sub(self.last_snapshot_version.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_is_a_fresh_aggregate_decided_now() {
        let before = Utc::now();
        let ctx = SnapshotContext::new(3, 5);
        assert_eq!((ctx.version_before, ctx.version_after), (3, 5));
        assert_eq!(ctx.last_snapshot_version, None);
        assert_eq!(ctx.last_snapshot_at, None);
        assert!(ctx.event_types.is_empty());
        assert_eq!(*ctx.load, LoadHistory::default());
        assert!(ctx.now >= before);
        assert_eq!(ctx.events_since_snapshot(), 5);
    }

    #[test]
    fn builder_sets_every_field() {
        let at = Utc::now() - chrono::Duration::hours(2);
        let now = Utc::now();
        let load = LoadHistory {
            events_replayed: 7,
            ..LoadHistory::default()
        };
        let types = ["Placed"];
        let id = Uuid::new_v4();
        let ctx = SnapshotContext::new(10, 12)
            .with_aggregate("Order", id)
            .with_last_snapshot(8, at)
            .with_event_types(&types)
            .with_load(&load)
            .at(now);
        assert_eq!(ctx.aggregate_type, "Order");
        assert_eq!(ctx.aggregate_id, id);
        assert_eq!(ctx.last_snapshot_version, Some(8));
        assert_eq!(ctx.last_snapshot_at, Some(at));
        assert_eq!(ctx.event_types, ["Placed"]);
        assert_eq!(ctx.load.events_replayed, 7);
        assert_eq!(ctx.now, now);
        assert_eq!(ctx.events_since_snapshot(), 4);
    }
}
