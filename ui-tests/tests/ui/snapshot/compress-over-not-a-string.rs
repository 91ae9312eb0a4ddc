// A bare number: the unit must be written.
use eventsource::Aggregate;
use eventsource_ui_tests::OrderEvent;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100, compress_over = 65536)]
struct Order;

fn main() {}
