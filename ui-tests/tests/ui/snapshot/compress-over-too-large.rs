// Above 1 GiB.
use eventsource::Aggregate;
use eventsource_ui_tests::OrderEvent;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100, compress_over = "2048MiB")]
struct Order;

fn main() {}
