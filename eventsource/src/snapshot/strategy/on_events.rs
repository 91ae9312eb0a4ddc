//! [`OnEvents`]: a snapshot after a save that stored one of some event types.

use std::borrow::Cow;
use std::fmt;

use super::{SnapshotContext, SnapshotStrategy};

/// Snapshot when the saved batch contains one of these event types (their stored names,
/// [`DomainEvent::event_type`](crate::DomainEvent::event_type)).
///
/// Suits aggregates with milestones after which they are read often, e.g. an order once
/// submitted, or a workflow that changes state.
///
/// Attribute: `#[snapshot(on(OrderSubmitted, OrderCancelled))]`; the derive checks at
/// compile time that the aggregate's event enum has those events.
///
/// ```
/// use eventsource::snapshot::{OnEvents, SnapshotContext, SnapshotStrategy};
///
/// let milestones = OnEvents::new(["OrderSubmitted", "OrderCancelled"]);
/// let ctx = SnapshotContext::new(3, 5).with_event_types(&["ItemAdded", "OrderSubmitted"]);
/// assert!(milestones.should_snapshot(&ctx));
/// let ctx = SnapshotContext::new(5, 6).with_event_types(&["ItemAdded"]);
/// assert!(!milestones.should_snapshot(&ctx));
/// assert_eq!(milestones.to_string(), "on OrderSubmitted or OrderCancelled");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnEvents {
    event_types: Vec<Cow<'static, str>>,
}

impl OnEvents {
    /// Due when a save stores any of these event types. With none, never due.
    pub fn new<I, S>(event_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        OnEvents {
            event_types: event_types.into_iter().map(Into::into).collect(),
        }
    }

    /// The event types that trigger a snapshot.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.event_types.iter().map(|t| t.as_ref())
    }
}

impl SnapshotStrategy for OnEvents {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        ctx.event_types
            .iter()
            .any(|stored| self.event_types.iter().any(|t| t == stored))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for OnEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.event_types.is_empty() {
            return f.write_str("on no event");
        }
        f.write_str("on ")?;
        for (i, t) in self.event_types.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            f.write_str(t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(strategy: &OnEvents, types: &[&'static str]) -> bool {
        strategy.should_snapshot(
            &SnapshotContext::new(1, 1 + types.len() as u64).with_event_types(types),
        )
    }

    #[test]
    fn due_when_the_batch_contains_a_listed_type() {
        let s = OnEvents::new(["OrderSubmitted", "OrderCancelled"]);
        assert!(decide(&s, &["OrderSubmitted"]));
        assert!(decide(&s, &["ItemAdded", "ItemAdded", "OrderCancelled"]));
        assert!(!decide(&s, &["ItemAdded"]));
        assert!(!decide(&s, &[]));
    }

    #[test]
    fn names_are_compared_exactly() {
        let s = OnEvents::new([String::from("order.submitted")]);
        assert!(decide(&s, &["order.submitted"]));
        assert!(!decide(&s, &["Order.Submitted"]));
        assert!(!decide(&s, &["order"]));
    }

    #[test]
    fn empty_list_is_never_due() {
        let s = OnEvents::new(Vec::<String>::new());
        assert!(!decide(&s, &["Anything"]));
        assert_eq!(s.to_string(), "on no event");
    }

    #[test]
    fn describes_itself() {
        let s = OnEvents::new(["A", "B", "C"]);
        assert_eq!(s.to_string(), "on A or B or C");
        assert_eq!(s.event_types().collect::<Vec<_>>(), ["A", "B", "C"]);
    }
}
