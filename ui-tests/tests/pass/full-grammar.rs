// Every trigger of #[snapshot(...)] at once, and the policy it reports.
use eventsource::Aggregate;
use eventsource::snapshot::{AllOf, EveryNEvents, SnapshotContext, SnapshotStrategy};
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

fn large_batches() -> AllOf {
    AllOf::new().with(EveryNEvents::new(10).unwrap())
}

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(
    schema_version = 2,
    mode = "background",
    every = 100,
    after = "1h30m",
    on(OrderSubmitted, "OrderCancelled"),
    replayed_over = 500,
    load_slower_than = "200ms",
    all(after = "1d", on(OrderPlaced)),
    any(every = 1000, strategy = large_batches()),
)]
struct Order;
handle_order_events!(Order);

fn main() {
    let policy = Order::snapshot_policy();
    assert_eq!(
        policy.to_string(),
        "background: every 100 events or 1h30m since last snapshot or on OrderSubmitted or \
         OrderCancelled or load replayed over 500 events or load took over 200ms or \
         (1d since last snapshot and on OrderPlaced) or every 1000 events or every 10 events"
    );
    assert_eq!(Order::SCHEMA_VERSION, 2);
    // The top level has one every-N part; the nested ones are reported by their group.
    assert_eq!(policy.strategy.threshold(), Some(100));
    let submitted = SnapshotContext::new(3, 4).with_event_types(&["OrderSubmitted"]);
    assert!(policy.strategy.should_snapshot(&submitted));
}
