// No trigger, `never`, and manual mode all leave snapshots to `create_snapshot`.
use eventsource::Aggregate;
use eventsource_ui_tests::{OrderEvent, handle_order_events};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1)]
struct NoTrigger;
handle_order_events!(NoTrigger);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, never)]
struct Never;
handle_order_events!(Never);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 1, mode = "manual")]
struct Manual;
handle_order_events!(Manual);

#[derive(Aggregate, Clone, Default, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
struct NoAttribute;
handle_order_events!(NoAttribute);

fn main() {
    assert_eq!(NoTrigger::snapshot_policy().to_string(), "sync: never");
    assert_eq!(Never::snapshot_policy().to_string(), "sync: never");
    assert_eq!(Manual::snapshot_policy().to_string(), "manual");
    assert_eq!(NoAttribute::snapshot_policy().to_string(), "sync: never");
}
