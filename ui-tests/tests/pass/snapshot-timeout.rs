// `timeout` bounds snapshot reads and writes; without it the default applies.
use std::time::Duration;

use eventsource::Aggregate;
use eventsource::snapshot::DEFAULT_SNAPSHOT_TIMEOUT;
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100, timeout = "250ms")]
struct Order;
handle_order_events!(Order);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Cart", event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100)]
struct Cart;
handle_order_events!(Cart);

fn main() {
    assert_eq!(Order::snapshot_policy().timeout, Duration::from_millis(250));
    assert_eq!(Cart::snapshot_policy().timeout, DEFAULT_SNAPSHOT_TIMEOUT);
}
