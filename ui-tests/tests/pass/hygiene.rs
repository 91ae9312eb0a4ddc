// The generated code names its bindings so that the user's items cannot capture them:
// constants, functions and types named like the bindings an impl would use.
#![allow(non_upper_case_globals, dead_code)]

use eventsource::{Aggregate, Apply, DomainEvent};
use serde::{Deserialize, Serialize};

const event: u8 = 0;
const state: u8 = 1;
const out: u8 = 2;
const json: u8 = 3;
fn payload() {}
struct Result;
struct Option;
struct String;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Placed {
    pub n: u32,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    Placed(Placed),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, every = 10)]
pub struct Order {
    pub n: u32,
}

impl Apply<Placed> for Order {
    fn apply(&mut self, e: &Placed) {
        self.n += e.n;
    }
}

fn main() {
    let mut order = Order::default();
    order.apply_event(&OrderEvent::Placed(Placed { n: 2 }));
    assert_eq!(order.n, 2);
    let decoded = OrderEvent::decode("Placed", 1, r#"{"n":1}"#).unwrap();
    assert_eq!(decoded.len(), 1);
}
