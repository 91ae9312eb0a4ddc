// The example of the README's "Choosing a snapshot policy", and the report it promises.
use eventsource::Aggregate;
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(
    schema_version = 2,
    mode = "background",
    every = 100,
    any(after = "1h", on(OrderSubmitted, OrderCancelled))
)]
pub struct Order;
handle_order_events!(Order);

fn main() {
    assert_eq!(
        Order::snapshot_policy().to_string(),
        "background: every 100 events or 1h since last snapshot or on OrderSubmitted or \
         OrderCancelled"
    );
}
