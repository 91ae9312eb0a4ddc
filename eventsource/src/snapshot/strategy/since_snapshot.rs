//! [`TimeSinceSnapshot`]: a snapshot once enough time has passed since the last one.

use std::fmt;
use std::time::Duration;

use super::duration::Compact;
use super::{SnapshotContext, SnapshotStrategy};

/// Snapshot when at least `interval` has passed since the newest known snapshot, by the
/// clock of [`SnapshotContext::now`]. An aggregate with events and no known snapshot is
/// due at once.
///
/// Suits aggregates whose loads should stay fresh by the clock rather than by count,
/// e.g. long-lived accounts that receive a few events a day.
///
/// Attribute: `#[snapshot(after = "1h")]`.
///
/// ```
/// use chrono::{Duration as Delta, Utc};
/// use eventsource::snapshot::{SnapshotContext, SnapshotStrategy, TimeSinceSnapshot};
/// use std::time::Duration;
///
/// let hourly = TimeSinceSnapshot::new(Duration::from_secs(3600));
/// let now = Utc::now();
/// let recent = SnapshotContext::new(5, 6).with_last_snapshot(5, now - Delta::minutes(10)).at(now);
/// let stale = SnapshotContext::new(5, 6).with_last_snapshot(5, now - Delta::hours(2)).at(now);
/// assert!(!hourly.should_snapshot(&recent));
/// assert!(hourly.should_snapshot(&stale));
/// assert_eq!(hourly.to_string(), "1h since last snapshot");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSinceSnapshot {
    interval: Duration,
}

impl TimeSinceSnapshot {
    /// Due once `interval` has passed since the last snapshot. A zero interval makes
    /// every save due.
    pub const fn new(interval: Duration) -> Self {
        TimeSinceSnapshot { interval }
    }

    /// The interval.
    pub const fn interval(&self) -> Duration {
        self.interval
    }
}

impl SnapshotStrategy for TimeSinceSnapshot {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        match ctx.last_snapshot_at {
            None => ctx.version_after > 0,
            // A snapshot "from the future" (clock skew) is not due yet.
            Some(at) => (ctx.now - at)
                .to_std()
                .is_ok_and(|age| age >= self.interval),
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TimeSinceSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} since last snapshot", Compact(self.interval))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration as Delta, TimeZone, Utc};

    use super::*;

    fn hourly() -> TimeSinceSnapshot {
        TimeSinceSnapshot::new(Duration::from_secs(3600))
    }

    #[test]
    fn no_snapshot_yet_is_due() {
        assert!(hourly().should_snapshot(&SnapshotContext::new(0, 1)));
        assert!(hourly().should_snapshot(&SnapshotContext::new(40, 45)));
    }

    #[test]
    fn an_empty_stream_is_never_due() {
        assert!(!hourly().should_snapshot(&SnapshotContext::new(0, 0)));
    }

    #[test]
    fn due_from_the_interval_on() {
        let taken = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
        let ctx = |after: Delta| {
            SnapshotContext::new(10, 11)
                .with_last_snapshot(10, taken)
                .at(taken + after)
        };
        assert!(!hourly().should_snapshot(&ctx(Delta::minutes(59))));
        assert!(hourly().should_snapshot(&ctx(Delta::minutes(60))));
        assert!(hourly().should_snapshot(&ctx(Delta::days(3))));
    }

    #[test]
    fn a_snapshot_from_the_future_is_not_due() {
        let now = Utc::now();
        let ctx = SnapshotContext::new(10, 11)
            .with_last_snapshot(10, now + Delta::minutes(5))
            .at(now);
        assert!(!hourly().should_snapshot(&ctx));
    }

    #[test]
    fn describes_itself() {
        assert_eq!(hourly().to_string(), "1h since last snapshot");
        let ninety = TimeSinceSnapshot::new(Duration::from_secs(90 * 60));
        assert_eq!(ninety.to_string(), "1h30m since last snapshot");
        assert_eq!(ninety.interval(), Duration::from_secs(5400));
        assert_eq!(hourly().threshold(), None);
    }
}
