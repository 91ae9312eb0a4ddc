use eventsource::Aggregate;
use eventsource::snapshot::TimeSinceSnapshot;
use eventsource_ui_tests::OrderEvent;

fn hourly() -> TimeSinceSnapshot {
    TimeSinceSnapshot::new(std::time::Duration::from_secs(3600))
}

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, strategy = hourly)]
struct Order;
eventsource_ui_tests::handle_order_events!(Order);

fn main() {}
