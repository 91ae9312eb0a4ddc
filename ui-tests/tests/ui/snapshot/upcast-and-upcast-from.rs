// One chain form for the state.
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
#[snapshot(schema_version = 2, every = 10, upcast(1 => s1_to_s2), upcast_from(1 => Order))]
struct Order;

handle_order_events!(Order);

fn main() {
    let _ = (s1_to_s2, s2_to_s3);
}
