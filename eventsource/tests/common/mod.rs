//! The order domain of the runtime's integration tests, and test stores.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use eventsource::prelude::*;
use eventsource::{Error, Result, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub customer: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderItemAdded {
    pub product_id: Uuid,
    pub product_name: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderItemRemoved {
    pub product_id: Uuid,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderSubmitted {
    pub total: f64,
}

#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum OrderEvent {
    Created(OrderCreated),
    ItemAdded(OrderItemAdded),
    ItemRemoved(OrderItemRemoved),
    #[event(name = "OrderSubmitted", version = 2)]
    Submitted(OrderSubmitted),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, threshold = 100, mode = "sync")]
pub struct Order {
    pub customer: String,
    pub items: Vec<Item>,
    pub status: String,
    pub total: f64,
}

impl Apply<OrderCreated> for Order {
    fn apply(&mut self, e: &OrderCreated) {
        self.customer = e.customer.clone();
        self.status = "created".into();
    }
}

impl Apply<OrderItemAdded> for Order {
    fn apply(&mut self, e: &OrderItemAdded) {
        self.items.push(Item {
            product_id: e.product_id,
            name: e.product_name.clone(),
            quantity: e.quantity,
            unit_price: e.unit_price,
        });
    }
}

impl Apply<OrderItemRemoved> for Order {
    fn apply(&mut self, e: &OrderItemRemoved) {
        self.items.retain(|i| i.product_id != e.product_id);
    }
}

impl Apply<OrderSubmitted> for Order {
    fn apply(&mut self, e: &OrderSubmitted) {
        self.status = "submitted".into();
        self.total = e.total;
    }
}

#[derive(Debug, PartialEq)]
pub enum OrderError {
    AlreadyCreated,
    NotOpen,
    Empty,
}

impl Order {
    pub fn create(&self, customer: &str) -> Result<OrderEvent, OrderError> {
        if !self.status.is_empty() {
            return Err(OrderError::AlreadyCreated);
        }
        Ok(OrderCreated {
            customer: customer.into(),
        }
        .into())
    }

    pub fn add_item(
        &self,
        name: &str,
        quantity: u32,
        unit_price: f64,
    ) -> Result<OrderEvent, OrderError> {
        if self.status != "created" {
            return Err(OrderError::NotOpen);
        }
        Ok(OrderItemAdded {
            product_id: Uuid::new_v4(),
            product_name: name.into(),
            quantity,
            unit_price,
        }
        .into())
    }

    pub fn submit(&self) -> Result<OrderEvent, OrderError> {
        if self.status != "created" {
            return Err(OrderError::NotOpen);
        }
        if self.items.is_empty() {
            return Err(OrderError::Empty);
        }
        let total = self
            .items
            .iter()
            .map(|i| f64::from(i.quantity) * i.unit_price)
            .sum();
        Ok(OrderSubmitted { total }.into())
    }
}

/// An order root with `created` plus `items - 1` more events (so `items` events in all).
pub fn order_with_events(repo: &AggregateRepository<Order>, events: u64) -> AggregateRoot<Order> {
    let mut order = repo.create_new(Uuid::new_v4());
    order.execute(|o| o.create("ada@example.com")).unwrap();
    add_items(&mut order, events - 1);
    order
}

pub fn add_items(order: &mut AggregateRoot<Order>, n: u64) {
    for i in 0..n {
        order
            .execute(|o| o.add_item(&format!("item {i}"), 1, 2.5))
            .unwrap();
    }
}

pub fn stores() -> (Arc<InMemoryEventStore>, Arc<InMemorySnapshotStore>) {
    (
        Arc::new(InMemoryEventStore::new()),
        Arc::new(InMemorySnapshotStore::new()),
    )
}

/// A snapshot store that can fail, block, and counts what it does.
#[derive(Debug, Default)]
pub struct TestSnapshotStore {
    pub inner: InMemorySnapshotStore,
    pub fail_get: AtomicBool,
    pub fail_save: AtomicBool,
    /// When set, each save waits for a permit.
    pub gate: Option<Arc<Semaphore>>,
    pub saves: std::sync::Mutex<Vec<u64>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl TestSnapshotStore {
    pub fn gated() -> (Arc<Self>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let store = TestSnapshotStore {
            gate: Some(Arc::clone(&gate)),
            ..Default::default()
        };
        (Arc::new(store), gate)
    }

    pub fn saved_versions(&self) -> Vec<u64> {
        self.saves.lock().unwrap().clone()
    }
}

fn injected() -> Error {
    Error::backend(std::io::Error::other("injected failure"))
}

#[async_trait]
impl SnapshotStore for TestSnapshotStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.fail_save.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.saves.lock().unwrap().push(snapshot.version);
        self.inner.save(snapshot).await
    }

    async fn get(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<Option<Snapshot>> {
        if self.fail_get.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.get(aggregate_type, aggregate_id).await
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        self.inner.delete(aggregate_type, aggregate_id).await
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> Result<bool> {
        self.inner.exists(aggregate_type, aggregate_id).await
    }

    async fn delete_by_type(&self, aggregate_type: &str, below: Option<u32>) -> Result<u64> {
        self.inner.delete_by_type(aggregate_type, below).await
    }
}

/// Captures log lines written while `f` runs on this thread.
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn new() -> (Self, tracing::subscriber::DefaultGuard) {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(Arc::clone(&writer)))
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (LogCapture(buf), guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
