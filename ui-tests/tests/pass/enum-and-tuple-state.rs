// #[snapshot] works on any state shape serde can store: enums and tuple structs too.
use eventsource::Aggregate;
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, on(OrderSubmitted))]
enum OrderStatus {
    #[default]
    Draft,
    Submitted,
}
handle_order_events!(OrderStatus);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, every = 50)]
struct Lines(Vec<String>);
handle_order_events!(Lines);

fn main() {
    let _ = (
        OrderStatus::Draft,
        OrderStatus::Submitted,
        Lines(Vec::new()).0,
    );
    assert_eq!(
        OrderStatus::snapshot_policy().to_string(),
        "sync: on OrderSubmitted"
    );
    assert_eq!(
        Lines::snapshot_policy().to_string(),
        "sync: every 50 events"
    );
}
