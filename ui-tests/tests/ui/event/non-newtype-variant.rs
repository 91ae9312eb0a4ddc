use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Placed;

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    Placed(Placed),
    Submitted { at: u64 },
}

fn main() {}
