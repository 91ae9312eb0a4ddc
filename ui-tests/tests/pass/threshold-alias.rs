// `threshold = N` is the alias of `every = N`; the derive reports it as the threshold.
use eventsource::{Aggregate, SnapshotMode};
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, threshold = 100, mode = "sync")]
struct Order;
handle_order_events!(Order);

fn main() {
    let policy = Order::snapshot_policy();
    assert_eq!(policy.to_string(), "sync: every 100 events");
    assert_eq!(policy.strategy.threshold(), Some(100));
    assert_eq!(policy.mode, SnapshotMode::Sync);
}
