//! [`EveryNEvents`]: a snapshot each time the stream crosses a multiple of N.

use std::fmt;

use super::{SnapshotContext, SnapshotStrategy};

/// Snapshot whenever a save crosses or lands on a multiple of `N` events
/// (98 → 102 with `N = 100` takes one snapshot, at version 102).
///
/// Attribute: `#[snapshot(every = 100)]` (or `threshold = 100`).
///
/// ```
/// use eventsource::snapshot::{EveryNEvents, SnapshotContext, SnapshotStrategy};
///
/// let every = EveryNEvents::new(100).unwrap();
/// assert!(every.should_snapshot(&SnapshotContext::new(98, 102)));
/// assert!(!every.should_snapshot(&SnapshotContext::new(102, 150)));
/// assert_eq!(every.to_string(), "every 100 events");
/// ```
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

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for EveryNEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("every event"),
            n => write!(f, "every {n} events"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(n: u64, before: u64, after: u64) -> bool {
        EveryNEvents::new(n)
            .unwrap()
            .should_snapshot(&SnapshotContext::new(before, after))
    }

    #[test]
    fn zero_is_refused() {
        assert_eq!(EveryNEvents::new(0), None);
        assert_eq!(EveryNEvents::__from_attribute(0).get(), 1);
    }

    #[test]
    fn crossing_a_multiple_snapshots_once() {
        assert!(decide(100, 98, 102));
        assert!(!decide(100, 102, 150));
        assert!(!decide(100, 0, 99));
    }

    #[test]
    fn landing_on_a_multiple_snapshots() {
        assert!(decide(100, 99, 100));
        assert!(!decide(100, 100, 101));
    }

    #[test]
    fn a_save_spanning_several_multiples_snapshots_once() {
        assert!(decide(10, 5, 47));
    }

    #[test]
    fn reports_threshold_and_description() {
        let every = EveryNEvents::new(50).unwrap();
        assert_eq!(every.threshold(), Some(50));
        assert_eq!(every.to_string(), "every 50 events");
        assert_eq!(EveryNEvents::new(1).unwrap().to_string(), "every event");
    }
}
