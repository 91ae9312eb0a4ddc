// An event chain starts at version 1: every stored event must reach the current version.
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

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    #[event(version = 3, upcast(2 => v2_to_v3))]
    ItemAdded(ItemAdded),
}

fn main() {
    let _ = (v1_to_v2, v2_to_v3);
}
