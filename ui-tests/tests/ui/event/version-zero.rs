use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Placed;

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    #[event(version = 0)]
    Placed(Placed),
}

fn main() {}
