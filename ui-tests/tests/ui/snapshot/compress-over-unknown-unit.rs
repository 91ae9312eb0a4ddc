// Units are case-sensitive: `kib` is none of them.
use eventsource::Aggregate;
use eventsource_ui_tests::OrderEvent;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, every = 100, compress_over = "64kib")]
struct Order;

fn main() {}
