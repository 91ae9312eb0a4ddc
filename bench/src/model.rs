//! The benchmark's domain: an order whose history is one `OrderCreated` followed by
//! `OrderItemAdded` events, shaped like the seeds' order example.
//!
//! The state keeps running totals rather than the list of items, so a snapshot has the
//! same size whatever the history length: the benchmark measures the cost of reading
//! events, not of a state that grows with them.

use eventsource::{Aggregate, Apply, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The stored aggregate type of every benchmark stream.
pub const AGGREGATE_TYPE: &str = "Order";

/// The order was opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// Who ordered.
    pub customer_id: Uuid,
    /// Where to write to them.
    pub customer_email: String,
}

/// An item was added: the seeds' `OrderItemAdded` (product id and name, quantity, unit price).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderItemAdded {
    /// The product.
    pub product_id: Uuid,
    /// Its name.
    pub product_name: String,
    /// How many.
    pub quantity: u32,
    /// Price of one.
    pub unit_price: f64,
}

/// The events of an order, for eventsource.
#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    /// See [`OrderCreated`].
    OrderCreated(OrderCreated),
    /// See [`OrderItemAdded`].
    OrderItemAdded(OrderItemAdded),
}

/// The order's state: running totals, so that snapshots keep a constant size.
#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, threshold = 100, mode = "sync")]
pub struct Order {
    /// Who ordered.
    pub customer_id: Option<Uuid>,
    /// Lines added.
    pub item_count: u64,
    /// Units added.
    pub quantity: u64,
    /// Sum of quantity × unit price.
    pub total: f64,
    /// The last product added.
    pub last_product: Option<Uuid>,
}

impl Apply<OrderCreated> for Order {
    fn apply(&mut self, e: &OrderCreated) {
        self.customer_id = Some(e.customer_id);
    }
}

impl Apply<OrderItemAdded> for Order {
    fn apply(&mut self, e: &OrderItemAdded) {
        self.item_count += 1;
        self.quantity += u64::from(e.quantity);
        self.total += f64::from(e.quantity) * e.unit_price;
        self.last_product = Some(e.product_id);
    }
}

/// The event at `version` (1-based) of the benchmark stream with this seed: version 1
/// opens the order, every later version adds an item. Deterministic, so that any reader
/// can check the state it folded.
pub fn event_at(version: u64) -> OrderEvent {
    if version == 1 {
        OrderEvent::OrderCreated(OrderCreated {
            customer_id: Uuid::from_u128(0x0c05_7000_0000_4000_8000_0000_0000_0001),
            customer_email: "customer@example.com".to_owned(),
        })
    } else {
        let quantity = u32::try_from(version % 5 + 1).unwrap_or(1);
        OrderEvent::OrderItemAdded(OrderItemAdded {
            product_id: Uuid::from_u128(
                0x9e0d_0000_0000_4000_8000_0000_0000_0000 | u128::from(version % 1000),
            ),
            product_name: format!("Product {:05}", version % 100_000),
            quantity,
            unit_price: 9.99 + (version % 50) as f64,
        })
    }
}

/// The state after folding versions `1..=version`.
pub fn state_at(version: u64) -> Order {
    let mut state = Order::default();
    for v in 1..=version {
        fold(&mut state, &event_at(v));
    }
    state
}

/// Applies one event to the state, as the aggregate does.
pub fn fold(state: &mut Order, event: &OrderEvent) {
    match event {
        OrderEvent::OrderCreated(e) => state.apply(e),
        OrderEvent::OrderItemAdded(e) => state.apply(e),
    }
}

/// The event's stored name and payload JSON (the inner value, as eventsource stores it).
pub fn stored(event: &OrderEvent) -> (&'static str, String) {
    match event {
        OrderEvent::OrderCreated(e) => ("OrderCreated", to_json(e)),
        OrderEvent::OrderItemAdded(e) => ("OrderItemAdded", to_json(e)),
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("benchmark events serialize")
}

/// Decodes a stored payload by name straight into the event type (the floor's decoder).
pub fn decode(event_type: &str, payload: &str) -> anyhow::Result<OrderEvent> {
    Ok(match event_type {
        "OrderItemAdded" => OrderEvent::OrderItemAdded(serde_json::from_str(payload)?),
        "OrderCreated" => OrderEvent::OrderCreated(serde_json::from_str(payload)?),
        other => anyhow::bail!("unknown event type {other}"),
    })
}

/// What a load produced, checked after every timed run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loaded {
    /// The version reached.
    pub version: u64,
    /// Events decoded and applied (not counting a snapshot).
    pub replayed: u64,
    /// Lines in the folded state, to check the fold.
    pub item_count: u64,
}

impl Loaded {
    /// Checks a load of a stream of `n` events: it reached version `n` with the right
    /// state and, if it used a snapshot, replayed at most `max_replayed` events.
    pub fn check(&self, n: u64, max_replayed: u64) -> anyhow::Result<()> {
        anyhow::ensure!(self.version == n, "loaded version {} of {n}", self.version);
        anyhow::ensure!(
            self.item_count == n - 1,
            "state has {} items, expected {}",
            self.item_count,
            n - 1
        );
        anyhow::ensure!(
            self.replayed <= max_replayed,
            "replayed {} events (at most {max_replayed} expected): the snapshot was not used",
            self.replayed
        );
        Ok(())
    }
}
