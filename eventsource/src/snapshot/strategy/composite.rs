//! [`AnyOf`] and [`AllOf`]: strategies combined with "or" and "and".

use std::fmt;

use super::{SnapshotContext, SnapshotStrategy};

/// Snapshot when any of several strategies says so. Empty, it is never due.
///
/// Build it with [`SnapshotStrategyExt::or`](super::SnapshotStrategyExt::or), or with
/// [`new`](Self::new) and [`with`](Self::with). Attribute: `#[snapshot(any(...))]`;
/// the top-level triggers of `#[snapshot(...)]` are combined this way too.
///
/// ```
/// use std::time::Duration;
/// use eventsource::snapshot::{EveryNEvents, SnapshotStrategy, SnapshotStrategyExt, TimeSinceSnapshot};
///
/// let policy = EveryNEvents::new(100)
///     .unwrap()
///     .or(TimeSinceSnapshot::new(Duration::from_secs(3600)));
/// assert_eq!(policy.to_string(), "every 100 events or 1h since last snapshot");
/// assert_eq!(policy.threshold(), Some(100));
/// ```
#[derive(Debug, Default)]
pub struct AnyOf {
    strategies: Vec<Box<dyn SnapshotStrategy>>,
}

/// Snapshot when all of several strategies say so. Empty, it is never due.
///
/// Build it with [`SnapshotStrategyExt::and`](super::SnapshotStrategyExt::and), or
/// with [`new`](Self::new) and [`with`](Self::with). Attribute: `#[snapshot(all(...))]`.
///
/// ```
/// use eventsource::snapshot::{EveryNEvents, OnEvents, SnapshotContext, SnapshotStrategy, SnapshotStrategyExt};
///
/// // Every 10 events, but only on a save that submits the order.
/// let policy = EveryNEvents::new(10).unwrap().and(OnEvents::new(["Submitted"]));
/// let ctx = SnapshotContext::new(9, 10).with_event_types(&["Submitted"]);
/// assert!(policy.should_snapshot(&ctx));
/// let ctx = SnapshotContext::new(9, 10).with_event_types(&["ItemAdded"]);
/// assert!(!policy.should_snapshot(&ctx));
/// ```
#[derive(Debug, Default)]
pub struct AllOf {
    strategies: Vec<Box<dyn SnapshotStrategy>>,
}

macro_rules! composite {
    ($ty:ident, $method:ident, $connective:literal, $other:literal) => {
        impl $ty {
            /// No strategy yet.
            pub fn new() -> Self {
                $ty {
                    strategies: Vec::new(),
                }
            }

            /// Adds a strategy.
            pub fn with(mut self, strategy: impl SnapshotStrategy + 'static) -> Self {
                self.strategies.push(Box::new(strategy));
                self
            }

            #[doc = concat!("Adds a strategy: `a.", stringify!($method), "(b).", stringify!($method), "(c)` is one flat group of three.")]
            pub fn $method(self, strategy: impl SnapshotStrategy + 'static) -> Self {
                self.with(strategy)
            }

            /// The combined strategies, in order.
            pub fn strategies(&self) -> &[Box<dyn SnapshotStrategy>] {
                &self.strategies
            }

            /// How many strategies are combined.
            pub fn len(&self) -> usize {
                self.strategies.len()
            }

            /// `true` with no strategy: never due.
            pub fn is_empty(&self) -> bool {
                self.strategies.is_empty()
            }
        }

        impl From<Vec<Box<dyn SnapshotStrategy>>> for $ty {
            fn from(strategies: Vec<Box<dyn SnapshotStrategy>>) -> Self {
                $ty { strategies }
            }
        }

        impl fmt::Display for $ty {
            /// The parts joined by the connective; a part using the other connective is
            /// put in parentheses, so the text reads unambiguously.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.strategies.is_empty() {
                    return f.write_str("never");
                }
                for (i, s) in self.strategies.iter().enumerate() {
                    if i > 0 {
                        f.write_str($connective)?;
                    }
                    let text = s.to_string();
                    if self.strategies.len() > 1 && text.contains($other) {
                        write!(f, "({text})")?;
                    } else {
                        f.write_str(&text)?;
                    }
                }
                Ok(())
            }
        }
    };
}

composite!(AnyOf, or, " or ", " and ");
composite!(AllOf, and, " and ", " or ");

/// The threshold of the one part that has one, if exactly one does.
fn single_threshold(strategies: &[Box<dyn SnapshotStrategy>]) -> Option<u64> {
    let mut found = strategies.iter().filter_map(|s| s.threshold());
    match (found.next(), found.next()) {
        (Some(n), None) => Some(n),
        _ => None,
    }
}

impl SnapshotStrategy for AnyOf {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        self.strategies.iter().any(|s| s.should_snapshot(ctx))
    }

    /// The every-N threshold of the one part that has one, if exactly one does.
    fn threshold(&self) -> Option<u64> {
        single_threshold(&self.strategies)
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl SnapshotStrategy for AllOf {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        !self.strategies.is_empty() && self.strategies.iter().all(|s| s.should_snapshot(ctx))
    }

    /// The every-N threshold of the one part that has one, if exactly one does.
    fn threshold(&self) -> Option<u64> {
        single_threshold(&self.strategies)
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::snapshot::{
        CostlyLoad, EveryNEvents, Never, OnEvents, SnapshotStrategyExt, TimeSinceSnapshot,
    };

    fn every(n: u64) -> EveryNEvents {
        EveryNEvents::new(n).unwrap()
    }

    fn hourly() -> TimeSinceSnapshot {
        TimeSinceSnapshot::new(Duration::from_secs(3600))
    }

    #[test]
    fn any_is_due_when_one_part_is() {
        let s = every(100).or(OnEvents::new(["Submitted"]));
        assert!(s.should_snapshot(&SnapshotContext::new(98, 102)));
        assert!(s.should_snapshot(&SnapshotContext::new(3, 4).with_event_types(&["Submitted"])));
        assert!(!s.should_snapshot(&SnapshotContext::new(3, 4).with_event_types(&["Added"])));
    }

    #[test]
    fn all_is_due_when_every_part_is() {
        let recent = Utc::now();
        let s = every(100).and(hourly());
        let crossing_recent = SnapshotContext::new(98, 102).with_last_snapshot(50, recent);
        let crossing_stale = SnapshotContext::new(98, 102)
            .with_last_snapshot(50, recent - chrono::Duration::hours(2))
            .at(recent);
        assert!(!s.should_snapshot(&crossing_recent));
        assert!(s.should_snapshot(&crossing_stale));
        assert!(!s.should_snapshot(&SnapshotContext::new(102, 103)));
    }

    #[test]
    fn empty_groups_are_never_due() {
        assert!(!AnyOf::new().should_snapshot(&SnapshotContext::new(0, 100)));
        assert!(!AllOf::new().should_snapshot(&SnapshotContext::new(0, 100)));
        assert_eq!(AnyOf::new().to_string(), "never");
        assert!(AllOf::new().is_empty());
    }

    #[test]
    fn chains_stay_flat() {
        let s = every(100).or(hourly()).or(Never);
        assert_eq!(s.len(), 3);
        let s = every(100).and(hourly()).and(Never);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn threshold_is_the_single_every_n_part() {
        assert_eq!(every(100).or(hourly()).threshold(), Some(100));
        assert_eq!(hourly().and(every(7)).threshold(), Some(7));
        assert_eq!(every(100).or(every(50)).threshold(), None);
        assert_eq!(hourly().or(Never).threshold(), None);
        // Nested: the inner group reports its own single threshold.
        assert_eq!(
            hourly().or(every(10).and(OnEvents::new(["A"]))).threshold(),
            Some(10)
        );
    }

    #[test]
    fn descriptions_are_parenthesised_where_needed() {
        assert_eq!(
            every(100).or(hourly()).to_string(),
            "every 100 events or 1h since last snapshot"
        );
        assert_eq!(
            every(100)
                .or(hourly().and(OnEvents::new(["Submitted"])))
                .to_string(),
            "every 100 events or (1h since last snapshot and on Submitted)"
        );
        assert_eq!(
            every(100)
                .and(OnEvents::new(["A", "B"]))
                .and(CostlyLoad::replayed_over(5))
                .to_string(),
            "every 100 events and (on A or B) and load replayed over 5 events"
        );
        assert_eq!(
            AnyOf::new().with(OnEvents::new(["A", "B"])).to_string(),
            "on A or B"
        );
    }

    #[test]
    fn from_boxed_parts() {
        let parts: Vec<Box<dyn SnapshotStrategy>> = vec![Box::new(every(3)), Box::new(Never)];
        let any = AnyOf::from(parts);
        assert_eq!(any.strategies().len(), 2);
        assert!(any.should_snapshot(&SnapshotContext::new(2, 3)));
    }
}
