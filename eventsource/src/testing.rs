//! A test kit for aggregates and projections, with no store at all.
//!
//! Given events, when a command, then these events, this error or this state:
//!
//! ```
//! use eventsource::prelude::*;
//! use eventsource::testing::AggregateTest;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Deposited { pub cents: u64 }
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Withdrawn { pub cents: u64 }
//!
//! #[derive(DomainEvent, Clone, Debug)]
//! pub enum AccountEvent { Deposited(Deposited), Withdrawn(Withdrawn) }
//!
//! #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
//! #[aggregate(name = "Account", event = AccountEvent)]
//! pub struct Account { pub cents: u64 }
//!
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, e: &Deposited) { self.cents += e.cents; }
//! }
//! impl Apply<Withdrawn> for Account {
//!     fn apply(&mut self, e: &Withdrawn) { self.cents -= e.cents; }
//! }
//!
//! impl Account {
//!     fn withdraw(&self, cents: u64) -> Result<Withdrawn, String> {
//!         if cents > self.cents {
//!             return Err(format!("balance {} is below {cents}", self.cents));
//!         }
//!         Ok(Withdrawn { cents })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! AggregateTest::<Account>::given([Deposited { cents: 100 }])
//!     .when(|a: &Account| a.withdraw(30))
//!     .await
//!     .then_expect_events([Withdrawn { cents: 30 }])
//!     .then_expect_state(|a| assert_eq!(a.cents, 70));
//!
//! AggregateTest::<Account>::given([Deposited { cents: 10 }])
//!     .when(|a: &Account| a.withdraw(30))
//!     .await
//!     .then_expect_error(|e| assert_eq!(e, "balance 10 is below 30"));
//! # }
//! ```
//!
//! Events are compared through their stored form (event type, schema version and JSON
//! payload), so event types need not implement `PartialEq`; a mismatch panics with both
//! lists side by side, one event per line.
//!
//! [`ProjectionTest`] does the same for a [`Projection`] that keeps its state in memory:
//! given events, the projection's state after handling them.

use std::fmt::{self, Write as _};

use chrono::Utc;
use uuid::Uuid;

use crate::aggregate::{Aggregate, IntoEvents};
use crate::command::Command;
use crate::event::{DomainEvent, EventMetadata};
use crate::feed::{Checkpoint, Envelope};
use crate::subscription::Projection;

/// An aggregate built from given events, ready for a command.
#[must_use = "call `when` to run a command"]
pub struct AggregateTest<A: Aggregate> {
    state: A,
    version: u64,
}

impl<A: Aggregate> AggregateTest<A> {
    /// The aggregate after these events (payloads or enum values), applied in order.
    pub fn given<T: IntoEvents<A::Event>>(events: impl IntoIterator<Item = T>) -> Self {
        let mut state = A::default();
        let mut version = 0;
        let mut all = Vec::new();
        for e in events {
            e.into_events(&mut all);
        }
        for event in &all {
            state.apply_event(event);
            version += 1;
        }
        AggregateTest { state, version }
    }

    /// A new aggregate: no events.
    pub fn given_no_events() -> Self {
        AggregateTest {
            state: A::default(),
            version: 0,
        }
    }

    /// Runs the command on the state.
    pub async fn when<C: Command<A>>(self, command: C) -> Outcome<A, C::Error> {
        let result = command.handle(&self.state).await.map(|events| {
            let mut out = Vec::new();
            events.into_events(&mut out);
            out
        });
        let mut state = self.state;
        if let Ok(events) = &result {
            for event in events {
                state.apply_event(event);
            }
        }
        Outcome {
            state,
            given_version: self.version,
            result,
        }
    }
}

/// What a command did in an [`AggregateTest`].
#[must_use = "check the outcome with a `then_expect_*` method"]
pub struct Outcome<A: Aggregate, E> {
    state: A,
    given_version: u64,
    result: Result<Vec<A::Event>, E>,
}

impl<A: Aggregate, E: fmt::Debug> Outcome<A, E> {
    /// Panics unless the command returned exactly these events (compared by stored type,
    /// schema version and JSON payload), in this order.
    #[track_caller]
    pub fn then_expect_events<T: IntoEvents<A::Event>>(
        self,
        expected: impl IntoIterator<Item = T>,
    ) -> Self {
        let mut want = Vec::new();
        for e in expected {
            e.into_events(&mut want);
        }
        let actual = match &self.result {
            Ok(events) => events,
            Err(e) => panic!(
                "expected {} event(s), but the command refused: {e:?}",
                want.len()
            ),
        };
        let (want, got) = (stored(&want), stored(actual));
        if want != got {
            panic!("{}", diff(&want, &got));
        }
        self
    }

    /// Panics unless the command returned no events.
    #[track_caller]
    pub fn then_expect_no_events(self) -> Self {
        self.then_expect_events(Vec::<A::Event>::new())
    }

    /// Panics unless the command refused; `check` inspects the error.
    #[track_caller]
    pub fn then_expect_error(self, check: impl FnOnce(&E)) -> Self {
        match &self.result {
            Err(e) => check(e),
            Ok(events) => panic!(
                "expected the command to refuse, but it returned:\n{}",
                list(&stored(events))
            ),
        }
        self
    }

    /// Calls `check` with the state after the command's events (the given state if it
    /// refused).
    pub fn then_expect_state(self, check: impl FnOnce(&A)) -> Self {
        check(&self.state);
        self
    }

    /// The events the command returned, or its error.
    pub fn result(&self) -> Result<&[A::Event], &E> {
        self.result.as_deref()
    }

    /// The version the aggregate would reach if the events were saved.
    pub fn version(&self) -> u64 {
        self.given_version + self.result.as_ref().map_or(0, |e| e.len() as u64)
    }
}

/// An event's stored form, one line: `Type v1 {"json":...}`.
fn stored<E: DomainEvent>(events: &[E]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let payload = e
                .to_payload()
                .unwrap_or_else(|err| format!("<payload does not serialize: {err}>"));
            format!("{} v{} {payload}", e.event_type(), e.event_version())
        })
        .collect()
}

fn list(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  (no events)\n".to_owned();
    }
    lines.iter().fold(String::new(), |mut out, l| {
        let _ = writeln!(out, "  {l}");
        out
    })
}

/// Expected and actual side by side, marking each line that differs.
fn diff(want: &[String], got: &[String]) -> String {
    let mut out = String::from("the command's events differ from the expected ones\n");
    for i in 0..want.len().max(got.len()) {
        let (w, g) = (want.get(i), got.get(i));
        let mark = if w == g { " " } else { "≠" };
        let _ = writeln!(
            out,
            "{mark} #{i}\n    expected: {}\n    actual:   {}",
            w.map_or("(none)", String::as_str),
            g.map_or("(none)", String::as_str)
        );
    }
    out
}

/// A projection fed given events, with no store: for projections that keep their
/// state in memory (`Projection<()>`).
///
/// ```
/// # use eventsource::prelude::*;
/// # use eventsource::feed::Envelope;
/// # use eventsource::subscription::Projection;
/// # use eventsource::testing::ProjectionTest;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// #[derive(Default)]
/// struct Total(u64);
///
/// #[eventsource::async_trait]
/// impl<C: Send> Projection<C> for Total {
///     type Event = AccountEvent;
///     async fn apply(&mut self, _: &mut C, e: Envelope<AccountEvent>) -> Result<(), BoxError> {
///         let AccountEvent::Deposited(d) = e.event;
///         self.0 += d.cents;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let total = ProjectionTest::new(Total::default())
///     .given("Account", uuid::Uuid::new_v4(), [Deposited { cents: 5 }, Deposited { cents: 7 }])
///     .await
///     .into_inner();
/// assert_eq!(total.0, 12);
/// # }
/// ```
pub struct ProjectionTest<P> {
    projection: P,
    position: u64,
    versions: std::collections::HashMap<Uuid, u64>,
}

impl<P: Projection<()>> ProjectionTest<P> {
    /// Starts from this projection.
    pub fn new(projection: P) -> Self {
        ProjectionTest {
            projection,
            position: 0,
            versions: Default::default(),
        }
    }

    /// Feeds events of one aggregate, in order, as a subscription would (positions and
    /// versions continue from the events given before).
    ///
    /// # Panics
    ///
    /// When the projection returns an error.
    pub async fn given<T: IntoEvents<P::Event>>(
        mut self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        events: impl IntoIterator<Item = T>,
    ) -> Self {
        let mut all = Vec::new();
        for e in events {
            e.into_events(&mut all);
        }
        for event in all {
            self.position += 1;
            let version = self.versions.entry(aggregate_id).or_default();
            *version += 1;
            let envelope = Envelope {
                checkpoint: Checkpoint::new(0, self.position),
                position: self.position,
                event_id: Uuid::new_v4(),
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id,
                version: *version,
                metadata: EventMetadata::default(),
                occurred_at: Utc::now(),
                event,
            };
            if let Err(e) = self.projection.apply(&mut (), envelope).await {
                panic!("the projection failed on event {}: {e}", self.position);
            }
        }
        self
    }

    /// The projection, to check its state.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, consumed.
    pub fn into_inner(self) -> P {
        self.projection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_each_differing_event() {
        let want = vec!["A v1 {}".to_owned(), "B v1 {\"x\":1}".to_owned()];
        let got = vec![
            "A v1 {}".to_owned(),
            "B v1 {\"x\":2}".to_owned(),
            "C v1 {}".to_owned(),
        ];
        let text = diff(&want, &got);
        assert!(text.contains("  #0"), "{text}");
        assert!(
            text.contains("≠ #1\n    expected: B v1 {\"x\":1}\n    actual:   B v1 {\"x\":2}"),
            "{text}"
        );
        assert!(
            text.contains("≠ #2\n    expected: (none)\n    actual:   C v1 {}"),
            "{text}"
        );
    }
}
