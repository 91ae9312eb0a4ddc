// A step takes a serde_json::Value.
use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Serialize, Deserialize)]
pub struct ItemAdded {
    pub sku: String,
}

fn v1_to_v2(v: Value) -> Result<Value, String> {
    Ok(v)
}
fn v2_to_v3(v: Value) -> Result<Value, String> {
    Ok(v)
}

fn takes_a_string(s: String) -> Result<Value, String> {
    Ok(Value::String(s))
}

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    #[event(version = 2, upcast(1 => takes_a_string))]
    ItemAdded(ItemAdded),
}

fn main() {
    let _ = (v1_to_v2, v2_to_v3);
}
