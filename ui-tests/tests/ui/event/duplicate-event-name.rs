use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Placed;

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    Placed(Placed),
    #[event(name = "Placed")]
    PlacedAgain(Placed),
}

fn main() {}
