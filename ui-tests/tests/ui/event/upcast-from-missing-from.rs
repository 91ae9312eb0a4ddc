// A typed chain needs From between each type and the next.
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

#[derive(Clone, Serialize, Deserialize)]
pub struct ItemAddedV1 {
    pub code: String,
}

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    #[event(version = 2, upcast_from(1 => ItemAddedV1))]
    ItemAdded(ItemAdded),
}

fn main() {
    let _ = (v1_to_v2, v2_to_v3);
}
