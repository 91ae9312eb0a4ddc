// `keep` is not a trigger.
use eventsource::Aggregate;
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn s1_to_s2(v: Value) -> Result<Value, String> {
    Ok(v)
}
fn s2_to_s3(v: Value) -> Result<Value, String> {
    Ok(v)
}

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, any(every = 10, keep = 3))]
struct Order;

handle_order_events!(Order);

fn main() {
    let _ = (s1_to_s2, s2_to_s3);
}
