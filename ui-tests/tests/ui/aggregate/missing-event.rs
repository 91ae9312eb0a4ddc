use eventsource::Aggregate;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(name = "Order")]
#[snapshot(schema_version = 1, every = 100)]
struct Order;

fn main() {}
