// `compress_over` sets the policy's threshold in bytes: kB is 1000, KiB 1024; without
// it, states are never compressed.
use eventsource::Aggregate;
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100, compress_over = "64KiB")]
struct Order;
handle_order_events!(Order);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Cart", event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100, compress_over = "100kB", keep = 2)]
struct Cart;
handle_order_events!(Cart);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(name = "Basket", event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100)]
struct Basket;
handle_order_events!(Basket);

fn main() {
    assert_eq!(Order::snapshot_policy().compress_over, Some(65_536));
    assert_eq!(Cart::snapshot_policy().compress_over, Some(100_000));
    assert_eq!(Cart::snapshot_policy().keep.get(), 2);
    assert_eq!(Basket::snapshot_policy().compress_over, None);
    assert_eq!(
        Order::snapshot_policy().to_string(),
        "sync: every 100 events, compressing states over 65536 bytes"
    );
}
