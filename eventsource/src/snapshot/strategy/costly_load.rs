//! [`CostlyLoad`]: a snapshot after a load that replayed too much or took too long.

use std::fmt;
use std::time::Duration;

use super::duration::Compact;
use super::{SnapshotContext, SnapshotStrategy};

/// Snapshot when the last load of the aggregate replayed more than N events, or took
/// longer than a duration ([`SnapshotContext::load`]). An old aggregate that never had a
/// snapshot gets one on its next save, and only aggregates that are actually loaded pay
/// for snapshots.
///
/// The cost is measured once per load, so after a snapshot the same root is not due
/// again until as many events as that load replayed have been stored since the
/// snapshot. An aggregate created in this process has no load cost and is never due.
///
/// Attributes: `#[snapshot(replayed_over = 500)]`, `#[snapshot(load_slower_than = "200ms")]`.
///
/// ```
/// use eventsource::LoadHistory;
/// use eventsource::snapshot::{CostlyLoad, SnapshotContext, SnapshotStrategy};
///
/// let costly = CostlyLoad::replayed_over(500);
/// let load = LoadHistory { events_replayed: 1200, ..LoadHistory::default() };
/// assert!(costly.should_snapshot(&SnapshotContext::new(1200, 1201).with_load(&load)));
/// assert_eq!(costly.to_string(), "load replayed over 500 events");
/// ```
///
/// Through a repository: an aggregate saved for years without snapshots gets one on the
/// first save after a costly load.
///
/// ```
/// # use std::sync::Arc;
/// # use eventsource::prelude::*;
/// # use eventsource::snapshot::CostlyLoad;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Serialize, Deserialize)]
/// # pub struct Ticked;
/// # #[derive(DomainEvent, Clone)]
/// # pub enum ClockEvent { Ticked(Ticked) }
/// # #[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Clock", event = ClockEvent)]
/// # pub struct Clock { ticks: u64 }
/// # impl Apply<Ticked> for Clock { fn apply(&mut self, _: &Ticked) { self.ticks += 1; } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventsource::Result<()> {
/// let events = Arc::new(InMemoryEventStore::new());
/// let snapshots = Arc::new(InMemorySnapshotStore::new());
/// let id = uuid::Uuid::new_v4();
///
/// // 600 events stored without any snapshot.
/// let old = AggregateRepository::<Clock>::new(events.clone());
/// let mut clock = old.create_new(id);
/// (0..600).for_each(|_| clock.record(Ticked));
/// old.save(&mut clock).await?;
///
/// let repo = AggregateRepository::<Clock>::builder(events)
///     .snapshot_store(snapshots.clone())
///     .strategy(CostlyLoad::replayed_over(500))
///     .build()?;
/// let mut clock = repo.load(id).await?; // replays 600 events
/// clock.record(Ticked);
/// repo.save(&mut clock).await?; // costly: a snapshot at 601
/// let snapshot = snapshots.get("Clock", id).await?.expect("a snapshot");
/// assert_eq!(snapshot.version, 601);
///
/// clock.record(Ticked);
/// repo.save(&mut clock).await?; // the same root is not due again
/// assert_eq!(snapshots.get("Clock", id).await?.unwrap().version, 601);
/// assert_eq!(repo.load(id).await?.load_history().events_replayed, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostlyLoad {
    replayed_over: Option<u64>,
    slower_than: Option<Duration>,
}

impl CostlyLoad {
    /// Due after a load that replayed more than `events` events.
    pub const fn replayed_over(events: u64) -> Self {
        CostlyLoad {
            replayed_over: Some(events),
            slower_than: None,
        }
    }

    /// Due after a load that took longer than `load_time`.
    pub const fn slower_than(load_time: Duration) -> Self {
        CostlyLoad {
            replayed_over: None,
            slower_than: Some(load_time),
        }
    }

    /// Also due after a load that replayed more than `events` events.
    pub const fn or_replayed_over(mut self, events: u64) -> Self {
        self.replayed_over = Some(events);
        self
    }

    /// Also due after a load that took longer than `load_time`.
    pub const fn or_slower_than(mut self, load_time: Duration) -> Self {
        self.slower_than = Some(load_time);
        self
    }

    /// The replay limit, if any.
    pub const fn max_replayed(&self) -> Option<u64> {
        self.replayed_over
    }

    /// The load-time limit, if any.
    pub const fn max_load_time(&self) -> Option<Duration> {
        self.slower_than
    }
}

impl SnapshotStrategy for CostlyLoad {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        let replayed = ctx.load.events_replayed;
        let costly = self.replayed_over.is_some_and(|n| replayed > n)
            || self.slower_than.is_some_and(|d| ctx.load.load_time > d);
        // A load replays the events after the newest snapshot: if a snapshot was taken
        // since this root was loaded, fewer would be replayed now than were then.
        let still_costly = replayed > 0
            && ctx
                .version_before
                .saturating_sub(ctx.last_snapshot_version.unwrap_or(0))
                >= replayed;
        costly && still_costly
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CostlyLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.replayed_over, self.slower_than) {
            (Some(n), Some(d)) => write!(
                f,
                "load replayed over {n} events or took over {}",
                Compact(d)
            ),
            (Some(n), None) => write!(f, "load replayed over {n} events"),
            (None, Some(d)) => write!(f, "load took over {}", Compact(d)),
            (None, None) => f.write_str("never"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::LoadHistory;

    fn load(events_replayed: u64, millis: u64) -> LoadHistory {
        LoadHistory {
            events_replayed,
            load_time: Duration::from_millis(millis),
            ..LoadHistory::default()
        }
    }

    #[test]
    fn a_long_replay_is_due_on_the_next_save() {
        let history = load(1200, 5);
        let ctx = SnapshotContext::new(1200, 1201).with_load(&history);
        assert!(CostlyLoad::replayed_over(500).should_snapshot(&ctx));
        assert!(!CostlyLoad::replayed_over(1200).should_snapshot(&ctx));
    }

    #[test]
    fn a_slow_load_is_due_on_the_next_save() {
        let history = load(80, 350);
        let ctx = SnapshotContext::new(80, 81).with_load(&history);
        assert!(CostlyLoad::slower_than(Duration::from_millis(200)).should_snapshot(&ctx));
        assert!(!CostlyLoad::slower_than(Duration::from_millis(350)).should_snapshot(&ctx));
    }

    #[test]
    fn either_limit_suffices() {
        let both = CostlyLoad::replayed_over(500).or_slower_than(Duration::from_millis(200));
        let slow = load(10, 900);
        let long = load(900, 1);
        let cheap = load(10, 1);
        assert!(both.should_snapshot(&SnapshotContext::new(10, 11).with_load(&slow)));
        assert!(both.should_snapshot(&SnapshotContext::new(900, 901).with_load(&long)));
        assert!(!both.should_snapshot(&SnapshotContext::new(10, 11).with_load(&cheap)));
        let same = CostlyLoad::slower_than(Duration::from_millis(200)).or_replayed_over(500);
        assert_eq!(both, same);
        assert_eq!(both.max_replayed(), Some(500));
        assert_eq!(both.max_load_time(), Some(Duration::from_millis(200)));
    }

    #[test]
    fn a_new_aggregate_is_never_due() {
        let ctx = SnapshotContext::new(0, 3);
        assert!(!CostlyLoad::replayed_over(0).should_snapshot(&ctx));
        assert!(!CostlyLoad::slower_than(Duration::ZERO).should_snapshot(&ctx));
    }

    #[test]
    fn a_load_from_a_snapshot_counts_the_replayed_tail_only() {
        // Loaded from the snapshot at 1000, replaying 600 events up to 1600.
        let history = LoadHistory {
            snapshot_version: Some(1000),
            loaded_from_snapshot: true,
            ..load(600, 1)
        };
        let ctx = SnapshotContext::new(1600, 1601)
            .with_last_snapshot(1000, Utc::now())
            .with_load(&history);
        assert!(CostlyLoad::replayed_over(500).should_snapshot(&ctx));
    }

    #[test]
    fn not_due_again_after_the_snapshot_it_asked_for() {
        let history = load(1200, 1);
        let strategy = CostlyLoad::replayed_over(500);
        // The previous save of this root snapshotted at 1201.
        let next = SnapshotContext::new(1201, 1202)
            .with_last_snapshot(1201, Utc::now())
            .with_load(&history);
        assert!(!strategy.should_snapshot(&next));
        // Once as many events as that load replayed have piled up again, it is due.
        let much_later = SnapshotContext::new(2401, 2402)
            .with_last_snapshot(1201, Utc::now())
            .with_load(&history);
        assert!(strategy.should_snapshot(&much_later));
    }

    #[test]
    fn describes_itself() {
        assert_eq!(
            CostlyLoad::slower_than(Duration::from_millis(200)).to_string(),
            "load took over 200ms"
        );
        assert_eq!(
            CostlyLoad::replayed_over(500)
                .or_slower_than(Duration::from_secs(1))
                .to_string(),
            "load replayed over 500 events or took over 1s"
        );
    }
}
