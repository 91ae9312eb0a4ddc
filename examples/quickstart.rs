//! The README's quick start, as a program: `cargo run --example quickstart`.

use std::sync::Arc;

use eventsource::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// Events: one struct per fact.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderCreated {
    pub customer: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderItemAdded {
    pub product: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderSubmitted {
    pub total: f64,
}

// The aggregate's event enum: stored as "OrderCreated", "OrderItemAdded", "OrderSubmitted".
#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    Created(OrderCreated),
    ItemAdded(OrderItemAdded),
    #[event(name = "OrderSubmitted", version = 2)]
    Submitted(OrderSubmitted),
}

// The state, snapshotted every 100 events by a background task.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, threshold = 100, mode = "background")]
pub struct Order {
    pub customer: String,
    pub lines: u32,
    pub total: f64,
    pub submitted: bool,
}

// One handler per event; forgetting one is a compile error naming it.
impl Apply<OrderCreated> for Order {
    fn apply(&mut self, e: &OrderCreated) {
        self.customer = e.customer.clone();
    }
}

impl Apply<OrderItemAdded> for Order {
    fn apply(&mut self, e: &OrderItemAdded) {
        self.lines += 1;
        self.total += f64::from(e.quantity) * e.unit_price;
    }
}

impl Apply<OrderSubmitted> for Order {
    fn apply(&mut self, _: &OrderSubmitted) {
        self.submitted = true;
    }
}

// Commands read the state and decide which events happen.
impl Order {
    fn add_item(
        &self,
        product: &str,
        quantity: u32,
        unit_price: f64,
    ) -> Result<OrderEvent, String> {
        if self.submitted {
            return Err("the order is already submitted".into());
        }
        Ok(OrderItemAdded {
            product: product.into(),
            quantity,
            unit_price,
        }
        .into())
    }

    fn submit(&self) -> Result<OrderEvent, String> {
        if self.lines == 0 {
            return Err("cannot submit an empty order".into());
        }
        Ok(OrderSubmitted { total: self.total }.into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Order::repository(
        Arc::new(InMemoryEventStore::new()),
        Arc::new(InMemorySnapshotStore::new()),
    );

    let id = Uuid::new_v4();
    let mut order = repo.create_new(id);
    order.record(OrderCreated {
        customer: "ada@example.com".into(),
    });
    for _ in 0..150 {
        order.execute(|o| o.add_item("Widget", 2, 29.99))?;
    }
    order.execute(|o| o.submit())?;
    repo.save(&mut order).await?; // 152 events; crosses 100, so a snapshot is queued
    repo.await_pending_snapshots().await;

    let order = repo.load(id).await?; // the snapshot plus the events after it
    println!(
        "order {id}: version {}, {} lines, total {:.2}, submitted: {}, from snapshot: {}",
        order.version(),
        order.state().lines,
        order.state().total,
        order.state().submitted,
        order.load_history().loaded_from_snapshot,
    );
    Ok(())
}
