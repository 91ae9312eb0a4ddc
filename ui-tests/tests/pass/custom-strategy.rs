// `strategy = ...` takes any expression whose value implements SnapshotStrategy.
use std::fmt;

use eventsource::Aggregate;
use eventsource::snapshot::{SnapshotContext, SnapshotStrategy};
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Debug)]
struct LargeBatch(u64);

impl SnapshotStrategy for LargeBatch {
    fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        ctx.version_after - ctx.version_before >= self.0
    }
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batches of {}+ events", self.0)
    }
}

const LARGE: LargeBatch = LargeBatch(20);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, mode = "background", strategy = LARGE, every = 200)]
struct Order;
handle_order_events!(Order);

fn main() {
    let policy = Order::snapshot_policy();
    assert_eq!(
        policy.to_string(),
        "background: batches of 20+ events or every 200 events"
    );
    assert_eq!(policy.strategy.threshold(), Some(200));
    assert!(
        policy
            .strategy
            .should_snapshot(&SnapshotContext::new(0, 25))
    );
}
