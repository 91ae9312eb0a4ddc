// Attribute values may come from `macro_rules!` fragments (`$name:literal`, `$n:expr`),
// which reach the derive inside invisible groups.
use eventsource::{Aggregate, Apply, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Placed;

macro_rules! order {
    ($state:ident, $event:ident, $name:literal, $every:expr, $version:literal) => {
        #[derive(DomainEvent, Clone, Debug)]
        pub enum $event {
            #[event(name = $name, version = $version)]
            Placed(Placed),
        }

        #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
        #[aggregate(name = $name, event = $event)]
        #[snapshot(schema_version = $version, every = $every)]
        pub struct $state;

        impl Apply<Placed> for $state {
            fn apply(&mut self, _: &Placed) {}
        }
    };
}

order!(Order, OrderEvent, "MacroOrder", 50, 2);

fn main() {
    assert_eq!(Order::TYPE, "MacroOrder");
    assert_eq!(Order::SCHEMA_VERSION, 2);
    assert_eq!(OrderEvent::EVENT_TYPES, &["MacroOrder"]);
    assert_eq!(Order::snapshot_policy().strategy.threshold(), Some(50));
}
