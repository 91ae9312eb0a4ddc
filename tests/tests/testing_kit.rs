//! The test kit's failures say what differs.

use eventsource::prelude::*;
use eventsource::testing::AggregateTest;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Added {
    pub n: i64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum CounterEvent {
    Added(Added),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Counter", event = CounterEvent)]
pub struct Counter {
    pub n: i64,
}

impl Apply<Added> for Counter {
    fn apply(&mut self, e: &Added) {
        self.n += e.n;
    }
}

fn add(n: i64) -> impl Fn(&Counter) -> Result<Added, String> + Send + Sync {
    move |c| {
        if c.n + n > 10 {
            return Err(format!("{} + {n} is over 10", c.n));
        }
        Ok(Added { n })
    }
}

#[tokio::test]
async fn matching_events_and_state_pass() {
    let outcome = AggregateTest::<Counter>::given([Added { n: 2 }, Added { n: 3 }])
        .when(add(4))
        .await
        .then_expect_events([Added { n: 4 }])
        .then_expect_state(|c| assert_eq!(c.n, 9));
    assert_eq!(outcome.version(), 3);
}

#[tokio::test]
#[should_panic(
    expected = "≠ #0\n    expected: Added v1 {\"n\":5}\n    actual:   Added v1 {\"n\":4}"
)]
async fn different_events_panic_with_both_sides() {
    let _ = AggregateTest::<Counter>::given_no_events()
        .when(add(4))
        .await
        .then_expect_events([Added { n: 5 }]);
}

#[tokio::test]
#[should_panic(expected = "expected 1 event(s), but the command refused: \"9 + 4 is over 10\"")]
async fn a_refusal_where_events_were_expected_panics_with_the_error() {
    let _ = AggregateTest::<Counter>::given([Added { n: 9 }])
        .when(add(4))
        .await
        .then_expect_events([Added { n: 4 }]);
}

#[tokio::test]
#[should_panic(expected = "expected the command to refuse, but it returned:\n  Added v1 {\"n\":1}")]
async fn events_where_a_refusal_was_expected_panic_with_the_events() {
    let _ = AggregateTest::<Counter>::given_no_events()
        .when(add(1))
        .await
        .then_expect_error(|_| {});
}

#[tokio::test]
async fn refusals_are_checked() {
    let _ = AggregateTest::<Counter>::given([Added { n: 9 }])
        .when(add(4))
        .await
        .then_expect_error(|e| assert_eq!(e, "9 + 4 is over 10"))
        .then_expect_state(|c| assert_eq!(c.n, 9));
}
