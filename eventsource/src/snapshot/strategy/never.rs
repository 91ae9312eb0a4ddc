//! [`Never`]: no automatic snapshots.

use std::fmt;

use super::{SnapshotContext, SnapshotStrategy};

/// Never snapshot automatically; snapshots are taken by
/// [`create_snapshot`](crate::AggregateRepository::create_snapshot) only.
///
/// Attribute: `#[snapshot(never)]`, or `#[snapshot(...)]` without any trigger.
///
/// ```
/// use eventsource::snapshot::{Never, SnapshotContext, SnapshotStrategy};
///
/// assert!(!Never.should_snapshot(&SnapshotContext::new(0, 1_000_000)));
/// assert_eq!(Never.to_string(), "never");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Never;

impl SnapshotStrategy for Never {
    fn should_snapshot(&self, _ctx: &SnapshotContext<'_>) -> bool {
        false
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("never")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_snapshots() {
        assert!(!Never.should_snapshot(&SnapshotContext::new(0, 1)));
        assert!(!Never.should_snapshot(&SnapshotContext::new(99, 100)));
        assert_eq!(Never.threshold(), None);
    }
}
