use eventsource::Aggregate;

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = "OrderEvent")]
struct Order;

fn main() {}
