//! Snapshotting, scenario by scenario: automatic snapshots at a threshold, manual
//! snapshots, background snapshots, schema versioning, a load-time comparison and a look
//! inside a snapshot.
//!
//! ```text
//! cargo run --example snapshotting                          # SQLite file in the temp dir
//! cargo run --example snapshotting -- ./orders.db           # SQLite file of your choice
//! cargo run --example snapshotting -- memory                # in-memory stores
//! cargo run --example snapshotting -- postgres://postgres@127.0.0.1/test?sslmode=disable
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::prelude::*;
use eventsource::{
    EventStore, PostgresEventStore, PostgresSnapshotStore, SnapshotStore, SqliteEventStore,
    SqliteSnapshotStore,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Events: one struct per fact, gathered in an enum the derive turns into stored events.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderCreated {
    pub customer_id: Uuid,
    pub customer_email: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderItemAdded {
    pub product_id: Uuid,
    pub product_name: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderItemRemoved {
    pub product_id: Uuid,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderSubmitted {
    pub total_amount: f64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    Created(OrderCreated),
    ItemAdded(OrderItemAdded),
    ItemRemoved(OrderItemRemoved),
    Submitted(OrderSubmitted),
}

// ---------------------------------------------------------------------------------------
// State: what the events add up to. Snapshots store it as JSON.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: Uuid,
    pub product_name: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, threshold = 5, mode = "sync")]
pub struct Order {
    pub customer_id: Option<Uuid>,
    pub customer_email: String,
    pub items: Vec<OrderItem>,
    pub status: String,
    pub total_amount: f64,
}

impl Apply<OrderCreated> for Order {
    fn apply(&mut self, e: &OrderCreated) {
        self.customer_id = Some(e.customer_id);
        self.customer_email = e.customer_email.clone();
        self.status = "created".into();
    }
}

impl Apply<OrderItemAdded> for Order {
    fn apply(&mut self, e: &OrderItemAdded) {
        self.items.push(OrderItem {
            product_id: e.product_id,
            product_name: e.product_name.clone(),
            quantity: e.quantity,
            unit_price: e.unit_price,
        });
    }
}

impl Apply<OrderItemRemoved> for Order {
    fn apply(&mut self, e: &OrderItemRemoved) {
        self.items.retain(|item| item.product_id != e.product_id);
    }
}

impl Apply<OrderSubmitted> for Order {
    fn apply(&mut self, e: &OrderSubmitted) {
        self.status = "submitted".into();
        self.total_amount = e.total_amount;
    }
}

// ---------------------------------------------------------------------------------------
// Commands: read the state, decide, return events (or refuse).
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct OrderError(&'static str);

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for OrderError {}

impl Order {
    pub fn create(&self, customer_id: Uuid, email: &str) -> Result<OrderEvent, OrderError> {
        if !self.status.is_empty() {
            return Err(OrderError("order already exists"));
        }
        Ok(OrderCreated {
            customer_id,
            customer_email: email.into(),
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
            return Err(OrderError("can only add items to a created order"));
        }
        if quantity == 0 {
            return Err(OrderError("quantity must be positive"));
        }
        Ok(OrderItemAdded {
            product_id: Uuid::new_v4(),
            product_name: name.into(),
            quantity,
            unit_price,
        }
        .into())
    }

    pub fn remove_item(&self, product_id: Uuid) -> Result<OrderEvent, OrderError> {
        if self.status != "created" {
            return Err(OrderError("can only remove items from a created order"));
        }
        if !self.items.iter().any(|i| i.product_id == product_id) {
            return Err(OrderError("item not found in order"));
        }
        Ok(OrderItemRemoved { product_id }.into())
    }

    pub fn submit(&self) -> Result<OrderEvent, OrderError> {
        if self.status != "created" {
            return Err(OrderError("order must be in created status"));
        }
        if self.items.is_empty() {
            return Err(OrderError("cannot submit an empty order"));
        }
        let total_amount = self
            .items
            .iter()
            .map(|i| f64::from(i.quantity) * i.unit_price)
            .sum();
        Ok(OrderSubmitted { total_amount }.into())
    }
}

/// The same order with a newer state schema: its version-1 snapshots no longer apply.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 2, threshold = 5)]
pub struct OrderV2 {
    pub order: Order,
    pub priority: u8,
}

impl<E> Apply<E> for OrderV2
where
    Order: Apply<E>,
{
    fn apply(&mut self, event: &E) {
        self.order.apply(event);
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

type BoxResult<T = ()> = Result<T, Box<dyn Error>>;

/// The stores every scenario uses.
struct Stores {
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
}

fn heading(title: &str) {
    println!("\n{}\n{title}\n{}", "=".repeat(60), "=".repeat(60));
}

async fn basic(stores: &Stores) -> BoxResult {
    heading("AUTOMATIC SNAPSHOTS AT A THRESHOLD (every 5 events, sync)");
    let repo = Order::repository(stores.events.clone(), stores.snapshots.clone());
    let id = Uuid::new_v4();
    let mut order = repo.create_new(id);
    order.execute(|o| o.create(Uuid::new_v4(), "customer@example.com"))?;
    for (name, quantity, price) in [
        ("Widget A", 2, 19.99),
        ("Widget B", 1, 49.99),
        ("Widget C", 3, 9.99),
        ("Widget D", 1, 29.99),
    ] {
        order.execute(|o| o.add_item(name, quantity, price))?;
    }
    repo.save(&mut order).await?;
    println!("order version after save: {}", order.version());
    let snapshot = stores.snapshots.get("Order", id).await?;
    println!("snapshot exists: {}", snapshot.is_some());
    if let Some(snapshot) = snapshot {
        let state = snapshot.state_json()?;
        let keys: Vec<&String> = state
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        println!(
            "snapshot version: {}, state keys: {keys:?}",
            snapshot.version
        );
    }
    let loaded = repo.load(id).await?;
    println!(
        "loaded version {} with {} items, status {:?}; from snapshot: {}, events replayed: {}",
        loaded.version(),
        loaded.state().items.len(),
        loaded.state().status,
        loaded.load_history().loaded_from_snapshot,
        loaded.load_history().events_replayed,
    );
    Ok(())
}

async fn manual(stores: &Stores) -> BoxResult {
    heading("MANUAL SNAPSHOTS");
    let repo = AggregateRepository::<Order>::builder(stores.events.clone())
        .snapshot_store(stores.snapshots.clone())
        .mode(SnapshotMode::Manual)
        .build()?;
    let id = Uuid::new_v4();
    let mut order = repo.create_new(id);
    order.execute(|o| o.create(Uuid::new_v4(), "customer@example.com"))?;
    for i in 0..10 {
        order.execute(|o| o.add_item(&format!("Product {i}"), 1, 10.0 + f64::from(i)))?;
    }
    repo.save(&mut order).await?;
    println!(
        "snapshot after save: {}",
        stores.snapshots.exists("Order", id).await?
    );
    let snapshot = repo.create_snapshot(&mut order).await?;
    println!("manual snapshot taken at version {}", snapshot.version);
    order.execute(|o| o.submit())?;
    repo.save(&mut order).await?;
    let snapshot = repo.create_snapshot(&mut order).await?;
    println!("post-submission snapshot at version {}", snapshot.version);
    Ok(())
}

async fn background(stores: &Stores) -> BoxResult {
    heading("BACKGROUND SNAPSHOTS");
    let repo = AggregateRepository::<Order>::builder(stores.events.clone())
        .snapshot_store(stores.snapshots.clone())
        .mode(SnapshotMode::Background)
        .build()?;
    let id = Uuid::new_v4();
    let mut order = repo.create_new(id);
    order.execute(|o| o.create(Uuid::new_v4(), "customer@example.com"))?;
    for i in 0..4 {
        order.execute(|o| o.add_item(&format!("Product {i}"), 1, 10.0))?;
    }
    repo.save(&mut order).await?;
    println!(
        "save returned; pending snapshots: {}",
        repo.pending_snapshot_count()
    );
    let waited = repo.await_pending_snapshots().await;
    println!("waited for {waited} background snapshot(s)");
    println!(
        "snapshot exists: {}",
        stores.snapshots.exists("Order", id).await?
    );
    Ok(())
}

async fn schema_versioning(stores: &Stores) -> BoxResult {
    heading("SCHEMA VERSIONING");
    let v1 = AggregateRepository::<Order>::builder(stores.events.clone())
        .snapshot_store(stores.snapshots.clone())
        .threshold(3)
        .build()?;
    let id = Uuid::new_v4();
    let mut order = v1.create_new(id);
    order.execute(|o| o.create(Uuid::new_v4(), "customer@example.com"))?;
    order.execute(|o| o.add_item("Product", 1, 10.0))?;
    order.execute(|o| o.add_item("Product 2", 2, 20.0))?;
    v1.save(&mut order).await?;
    let snapshot = stores.snapshots.get("Order", id).await?;
    println!(
        "snapshot written with schema_version {}",
        snapshot.map_or(0, |s| s.schema_version)
    );

    let v2 = OrderV2::repository(stores.events.clone(), stores.snapshots.clone());
    let loaded = v2.load(id).await?;
    println!(
        "loaded with schema_version 2: version {}, {} items, from snapshot: {} (full replay)",
        loaded.version(),
        loaded.state().order.items.len(),
        loaded.load_history().loaded_from_snapshot,
    );
    let removed = stores.snapshots.delete_by_type("Order", Some(2)).await?;
    println!("invalidated {removed} Order snapshot(s) with a schema version below 2");
    Ok(())
}

async fn performance(stores: &Stores) -> BoxResult {
    heading("LOAD TIME: FULL REPLAY VERSUS SNAPSHOT");
    let with_snapshots = AggregateRepository::<Order>::builder(stores.events.clone())
        .snapshot_store(stores.snapshots.clone())
        .threshold(100)
        .build()?;
    let replay_only = AggregateRepository::<Order>::new(stores.events.clone());
    let id = Uuid::new_v4();
    let mut order = with_snapshots.create_new(id);
    order.execute(|o| o.create(Uuid::new_v4(), "customer@example.com"))?;
    // A long-lived order: customers keep adding and removing items, so the history grows
    // while the state stays small — the case snapshots are for.
    for i in 0..5_000 {
        if i % 2 == 0 {
            order.execute(|o| o.add_item(&format!("Product {i}"), 1, 10.0))?;
        } else {
            let last = order.state().items.last().map(|item| item.product_id);
            order.execute(|o| o.remove_item(last.unwrap_or_default()))?;
        }
        if i % 1_000 == 999 {
            with_snapshots.save(&mut order).await?;
        }
    }
    for i in 0..20 {
        order.execute(|o| o.add_item(&format!("Keeper {i}"), 1, 10.0))?;
    }
    with_snapshots.save(&mut order).await?;
    let snapshot = stores.snapshots.get("Order", id).await?;
    println!(
        "order saved at version {}; snapshot at version {}",
        order.version(),
        snapshot.map_or(0, |s| s.version)
    );
    let without = median_load(&replay_only, id).await?;
    let with = median_load(&with_snapshots, id).await?;
    println!(
        "median load without snapshot: {:>9.3} ms",
        without.as_secs_f64() * 1e3
    );
    println!(
        "median load with snapshot:    {:>9.3} ms",
        with.as_secs_f64() * 1e3
    );
    println!(
        "the snapshot load reads the snapshot and replays {} event(s); {:.1}x faster",
        with_snapshots
            .load(id)
            .await?
            .load_history()
            .events_replayed,
        without.as_secs_f64() / with.as_secs_f64()
    );
    Ok(())
}

async fn median_load(repo: &AggregateRepository<Order>, id: Uuid) -> BoxResult<Duration> {
    let mut times = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        repo.load(id).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

async fn inspection(stores: &Stores) -> BoxResult {
    heading("INSIDE A SNAPSHOT");
    let repo = AggregateRepository::<Order>::builder(stores.events.clone())
        .snapshot_store(stores.snapshots.clone())
        .threshold(3)
        .build()?;
    let id = Uuid::new_v4();
    let mut order = repo.create_new(id);
    order.execute(|o| o.create(Uuid::new_v4(), "customer@example.com"))?;
    order.execute(|o| o.add_item("Premium Widget", 2, 99.99))?;
    order.execute(|o| o.add_item("Basic Widget", 5, 19.99))?;
    repo.save(&mut order).await?;
    let Some(snapshot) = stores.snapshots.get("Order", id).await? else {
        return Err("no snapshot was taken".into());
    };
    println!(
        "aggregate: {}/{}",
        snapshot.aggregate_type, snapshot.aggregate_id
    );
    println!(
        "version {}, schema version {}, taken at {}",
        snapshot.version, snapshot.schema_version, snapshot.created_at
    );
    println!("state:");
    if let serde_json::Value::Object(fields) = snapshot.state_json()? {
        for (key, value) in fields {
            match value {
                serde_json::Value::Array(items) => {
                    println!("  {key}: [{} items]", items.len());
                    for item in &items {
                        println!("    {item}");
                    }
                }
                other => println!("  {key}: {other}"),
            }
        }
    }
    Ok(())
}

/// The stores named by the first argument: `memory`, a `postgres://` URL, or a SQLite
/// file path; without one, a fresh SQLite file in the system's temp directory.
async fn open_stores() -> BoxResult<Stores> {
    let target = std::env::args().nth(1);
    match target.as_deref() {
        Some("memory") => {
            println!("stores: in memory");
            Ok(Stores {
                events: Arc::new(InMemoryEventStore::new()),
                snapshots: Arc::new(InMemorySnapshotStore::new()),
            })
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let events = PostgresEventStore::connect(url).await?; // creates the tables
            println!("stores: PostgreSQL at {}", redact(url));
            let snapshots = PostgresSnapshotStore::new(events.pool().clone());
            Ok(Stores {
                events: Arc::new(events),
                snapshots: Arc::new(snapshots),
            })
        }
        path => {
            let path = match path {
                Some(path) => std::path::PathBuf::from(path),
                None => std::env::temp_dir().join(format!(
                    "eventsource-snapshotting-{}.db",
                    std::process::id()
                )),
            };
            let events = SqliteEventStore::open(&path).await?; // creates the tables
            println!("stores: SQLite file {}", path.display());
            let snapshots = SqliteSnapshotStore::new(events.pool().clone());
            Ok(Stores {
                events: Arc::new(events),
                snapshots: Arc::new(snapshots),
            })
        }
    }
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[tokio::main]
async fn main() -> BoxResult {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let stores = open_stores().await?;
    basic(&stores).await?;
    manual(&stores).await?;
    background(&stores).await?;
    schema_versioning(&stores).await?;
    performance(&stores).await?;
    inspection(&stores).await?;
    heading("ALL SCENARIOS COMPLETED");
    Ok(())
}
