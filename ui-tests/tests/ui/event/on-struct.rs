use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Placed;

#[derive(DomainEvent, Clone)]
struct OrderEvent {
    placed: Placed,
}

fn main() {}
