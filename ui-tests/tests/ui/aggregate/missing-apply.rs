use eventsource::{Aggregate, Apply};
use eventsource_ui_tests::{OrderEvent, OrderPlaced, OrderSubmitted};

#[derive(Aggregate, Clone, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(event = OrderEvent)]
struct Order;

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, _: &OrderPlaced) {}
}
impl Apply<OrderSubmitted> for Order {
    fn apply(&mut self, _: &OrderSubmitted) {}
}

fn main() {}
