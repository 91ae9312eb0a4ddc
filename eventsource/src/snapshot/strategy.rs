//! Snapshot strategies: deciding after a save whether to take a snapshot.
//!
//! | Strategy | Due when |
//! |---|---|
//! | [`EveryNEvents`] | a save crosses or lands on a multiple of N events |
//! | [`TimeSinceSnapshot`] | some time has passed since the last snapshot |
//! | [`OnEvents`] | a save stores one of some event types |
//! | [`CostlyLoad`] | the last load replayed too many events or took too long |
//! | [`AnyOf`], [`AllOf`] | any / all of several strategies are due |
//! | [`Never`] | never (manual snapshots only) |
//!
//! Combine them with [`SnapshotStrategyExt::or`] and [`SnapshotStrategyExt::and`], or
//! implement [`SnapshotStrategy`] for a type of your own.

use std::fmt;
use std::sync::Arc;

mod composite;
mod context;
mod costly_load;
mod duration;
mod every;
mod never;
mod on_events;
mod since_snapshot;

pub use composite::{AllOf, AnyOf};
pub use context::SnapshotContext;
pub use costly_load::CostlyLoad;
pub use every::EveryNEvents;
pub use never::Never;
pub use on_events::OnEvents;
pub use since_snapshot::TimeSinceSnapshot;

/// Decides whether a save should be followed by a snapshot.
///
/// The repository asks right after a save has stored events (never in
/// [`SnapshotMode::Manual`](crate::SnapshotMode::Manual)). A strategy of your own
/// implements [`should_snapshot`](Self::should_snapshot) and, for a readable
/// [`SnapshotPolicy`](crate::SnapshotPolicy) report, [`describe`](Self::describe):
///
/// ```
/// use std::fmt;
/// use eventsource::snapshot::{EveryNEvents, SnapshotContext, SnapshotStrategy, SnapshotStrategyExt};
///
/// /// Snapshot when a save stores a large batch: the state probably changed a lot.
/// #[derive(Debug)]
/// struct LargeBatch(u64);
///
/// impl SnapshotStrategy for LargeBatch {
///     fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
///         ctx.version_after - ctx.version_before >= self.0
///     }
///
///     fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(f, "batches of {}+ events", self.0)
///     }
/// }
///
/// let strategy = LargeBatch(20).or(EveryNEvents::new(500).unwrap());
/// assert!(strategy.should_snapshot(&SnapshotContext::new(3, 30)));
/// assert!(!strategy.should_snapshot(&SnapshotContext::new(3, 4)));
/// assert_eq!(strategy.to_string(), "batches of 20+ events or every 500 events");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a snapshot strategy",
    label = "expected a value implementing `SnapshotStrategy`",
    note = "`strategy = ...` takes an expression whose value implements `eventsource::snapshot::SnapshotStrategy`; to use a function, call it: `strategy = my_strategy()`"
)]
pub trait SnapshotStrategy: Send + Sync + fmt::Debug {
    /// `true` to take a snapshot at `ctx.version_after`.
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool;

    /// The every-N threshold this strategy applies, if it has one (for reporting).
    fn threshold(&self) -> Option<u64> {
        None
    }

    /// A short description for people, such as `every 100 events`; shown by the
    /// `Display` of `dyn SnapshotStrategy` and of [`SnapshotPolicy`](crate::SnapshotPolicy).
    /// Defaults to the `Debug` form.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl fmt::Display for dyn SnapshotStrategy + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f)
    }
}

impl<S: SnapshotStrategy + ?Sized> SnapshotStrategy for Box<S> {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        (**self).should_snapshot(ctx)
    }

    fn threshold(&self) -> Option<u64> {
        (**self).threshold()
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).describe(f)
    }
}

impl<S: SnapshotStrategy + ?Sized> SnapshotStrategy for Arc<S> {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        (**self).should_snapshot(ctx)
    }

    fn threshold(&self) -> Option<u64> {
        (**self).threshold()
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).describe(f)
    }
}

/// Combinators for every strategy: `a.or(b)` and `a.and(b)`.
///
/// ```
/// use std::time::Duration;
/// use eventsource::snapshot::{EveryNEvents, OnEvents, SnapshotStrategyExt, TimeSinceSnapshot};
///
/// let strategy = EveryNEvents::new(100)
///     .unwrap()
///     .or(TimeSinceSnapshot::new(Duration::from_secs(3600)).and(OnEvents::new(["Submitted"])));
/// assert_eq!(
///     strategy.to_string(),
///     "every 100 events or (1h since last snapshot and on Submitted)"
/// );
/// ```
pub trait SnapshotStrategyExt: SnapshotStrategy + Sized + 'static {
    /// Due when `self` or `other` is. On an [`AnyOf`], adds to the same group.
    fn or(self, other: impl SnapshotStrategy + 'static) -> AnyOf {
        AnyOf::new().with(self).with(other)
    }

    /// Due when both `self` and `other` are. On an [`AllOf`], adds to the same group.
    fn and(self, other: impl SnapshotStrategy + 'static) -> AllOf {
        AllOf::new().with(self).with(other)
    }
}

impl<S: SnapshotStrategy + Sized + 'static> SnapshotStrategyExt for S {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Odd;

    impl SnapshotStrategy for Odd {
        fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
            ctx.version_after % 2 == 1
        }
    }

    #[test]
    fn a_user_strategy_is_described_by_debug_by_default() {
        let s: &dyn SnapshotStrategy = &Odd;
        assert_eq!(s.to_string(), "Odd");
        assert!(Odd.should_snapshot(&SnapshotContext::new(0, 3)));
    }

    #[test]
    fn policies_report_mode_and_strategy() {
        use crate::{SnapshotMode, SnapshotPolicy};
        use std::time::Duration;
        let every = EveryNEvents::new(100).unwrap();
        let hourly = TimeSinceSnapshot::new(Duration::from_secs(3600));
        let policy = SnapshotPolicy::new(every.or(hourly), SnapshotMode::Background);
        assert_eq!(
            policy.to_string(),
            "background: every 100 events or 1h since last snapshot"
        );
        assert_eq!(SnapshotPolicy::default().to_string(), "sync: never");
        assert_eq!(
            SnapshotPolicy::new(Never, SnapshotMode::Manual).to_string(),
            "manual"
        );
        assert_eq!(
            SnapshotPolicy::new(every, SnapshotMode::Manual).to_string(),
            "manual (not applied: every 100 events)"
        );
        let three = std::num::NonZeroU32::new(3).unwrap();
        assert_eq!(
            SnapshotPolicy::new(every, SnapshotMode::Sync)
                .with_keep(three)
                .to_string(),
            "sync: every 100 events, keeping 3"
        );
    }

    #[test]
    fn boxed_and_shared_strategies_delegate() {
        let boxed: Box<dyn SnapshotStrategy> = Box::new(EveryNEvents::new(5).unwrap());
        let shared: Arc<dyn SnapshotStrategy> = Arc::new(Never);
        assert!(boxed.should_snapshot(&SnapshotContext::new(4, 5)));
        assert_eq!(boxed.threshold(), Some(5));
        let both = boxed.or(shared);
        assert_eq!(both.to_string(), "every 5 events or never");
        assert_eq!(both.threshold(), Some(5));
    }
}
