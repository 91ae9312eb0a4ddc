use eventsource::Aggregate;
use eventsource_ui_tests::OrderEvent;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(name = "", event = OrderEvent)]
struct Order;

fn main() {}
