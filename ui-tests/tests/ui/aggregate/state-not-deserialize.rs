use eventsource::Aggregate;
use eventsource_ui_tests::OrderEvent;

#[derive(Aggregate, Clone, Default, serde::Serialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100)]
struct Order;
eventsource_ui_tests::handle_order_events!(Order);

fn main() {}
