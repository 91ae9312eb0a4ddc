// `compress_over` is about how snapshots are stored, not when: top level only.
use eventsource::Aggregate;
use eventsource_ui_tests::OrderEvent;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, any(every = 100, compress_over = "64KiB"))]
struct Order;

fn main() {}
