// An alias may not be another variant's name.
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
pub struct ItemRemoved;

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    #[event(name = "ItemAdded")]
    ItemAdded(ItemAdded),
    #[event(aliases("ItemAdded"))]
    Removed(ItemRemoved),
}

fn main() {
    let _ = (v1_to_v2, v2_to_v3);
}
