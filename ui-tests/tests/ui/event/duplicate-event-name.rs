use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Placed;
#[derive(Clone, Serialize, Deserialize)]
pub struct Replaced;

#[derive(DomainEvent, Clone)]
enum OrderEvent {
    Placed(Placed),
    #[event(name = "Placed")]
    PlacedAgain(Replaced),
}

fn main() {}
