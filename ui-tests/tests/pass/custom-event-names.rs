// on(...) names stored event types: #[event(name = "...")] names are written as strings.
use eventsource::{Aggregate, Apply, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Placed;
#[derive(Clone, Serialize, Deserialize)]
pub struct Closed;

#[derive(DomainEvent, Clone)]
pub enum TicketEvent {
    #[event(name = "ticket.placed")]
    Placed(Placed),
    #[event(name = "ticket.closed")]
    Closed(Closed),
}

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = TicketEvent)]
#[snapshot(schema_version = 1, all(every = 10, on("ticket.closed")))]
struct Ticket;

impl Apply<Placed> for Ticket {
    fn apply(&mut self, _: &Placed) {}
}
impl Apply<Closed> for Ticket {
    fn apply(&mut self, _: &Closed) {}
}

fn main() {
    let policy = Ticket::snapshot_policy();
    assert_eq!(
        policy.to_string(),
        "sync: every 10 events and on ticket.closed"
    );
    assert_eq!(policy.strategy.threshold(), Some(10));
}
