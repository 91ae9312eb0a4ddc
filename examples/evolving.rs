//! Evolving events and state: a history and a snapshot written by "version 1" of an
//! application load with today's types, through event upcasters, an alias for a renamed
//! event, and a snapshot upcaster.
//!
//! ```text
//! cargo run --example evolving                                  # SQLite in memory
//! cargo run --example evolving -- postgres://postgres@127.0.0.1/test?sslmode=disable
//! ```

use std::error::Error;
use std::sync::Arc;

use chrono::Utc;
use eventsource::prelude::*;
use eventsource::{
    EventStore, NewEvent, PostgresEventStore, PostgresSnapshotStore, Snapshot, SnapshotStore,
    SqliteEventStore, SqliteSnapshotStore,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Today's types, with what they were.
// ---------------------------------------------------------------------------------------

/// Version 3. Version 1 stored `{"sku", "qty"}`; version 2 renamed `qty`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    pub sku: String,
    pub quantity: u32,
    pub cents: u64,
}

fn item_added_v1_to_v2(mut v: Value) -> Result<Value, String> {
    let qty = v
        .as_object_mut()
        .and_then(|o| o.remove("qty"))
        .ok_or("a version 1 ItemAdded has `qty`")?;
    v["quantity"] = qty;
    Ok(v)
}

fn item_added_v2_to_v3(mut v: Value) -> Result<Value, String> {
    // Prices were not recorded before version 3.
    v["cents"] = json!(0);
    Ok(v)
}

/// Stored as "OrderPlaced" before it was renamed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartOpened {
    pub customer: String,
}

/// Version 2 is typed: version 1 was `PriceSetV1` in cents as a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceSet {
    pub sku: String,
    pub cents: u64,
}

#[derive(Deserialize)]
pub struct PriceSetV1 {
    pub sku: String,
    pub cents: String,
}

impl From<PriceSetV1> for PriceSet {
    fn from(v: PriceSetV1) -> Self {
        PriceSet {
            sku: v.sku,
            cents: v.cents.parse().unwrap_or(0),
        }
    }
}

#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum CartEvent {
    #[event(version = 3, upcast(1 => item_added_v1_to_v2, 2 => item_added_v2_to_v3))]
    ItemAdded(ItemAdded),
    #[event(name = "CartOpened", aliases("OrderPlaced"))]
    Opened(CartOpened),
    #[event(version = 2, upcast_from(1 => PriceSetV1))]
    PriceSet(PriceSet),
}

/// Schema 2. Schema 1 kept `{"customer", "items": [[sku, quantity], ..]}`.
#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "EvolvingCart", event = CartEvent)]
#[snapshot(schema_version = 2, every = 100, upcast(1 => cart_v1_to_v2))]
pub struct Cart {
    pub customer: String,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
    pub cents: u64,
}

fn cart_v1_to_v2(v: Value) -> Result<Value, String> {
    let items = v["items"].as_array().ok_or("schema 1 has `items`")?;
    let lines: Vec<Value> = items
        .iter()
        .map(|i| json!({"sku": i[0], "quantity": i[1], "cents": 0}))
        .collect();
    Ok(json!({ "customer": v["customer"], "lines": lines }))
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: &ItemAdded) {
        self.lines.push(Line {
            sku: e.sku.clone(),
            quantity: e.quantity,
            cents: e.cents,
        });
    }
}

impl Apply<CartOpened> for Cart {
    fn apply(&mut self, e: &CartOpened) {
        self.customer = e.customer.clone();
    }
}

impl Apply<PriceSet> for Cart {
    fn apply(&mut self, e: &PriceSet) {
        for line in self.lines.iter_mut().filter(|l| l.sku == e.sku) {
            line.cents = e.cents;
        }
    }
}

// ---------------------------------------------------------------------------------------
// What "version 1" of the application wrote, as raw rows.
// ---------------------------------------------------------------------------------------

fn stored(event_type: &str, version: u32, payload: Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        event_version: version,
        payload: payload.to_string(),
        metadata: Default::default(),
        occurred_at: Utc::now(),
    }
}

async fn stores(
    arg: Option<&str>,
) -> Result<(Arc<dyn EventStore>, Arc<dyn SnapshotStore>), Box<dyn Error>> {
    Ok(match arg {
        Some(url) if url.starts_with("postgres") => {
            let events = PostgresEventStore::connect(url).await?;
            let snapshots = PostgresSnapshotStore::new(events.pool().clone());
            (Arc::new(events), Arc::new(snapshots))
        }
        _ => {
            let events = SqliteEventStore::open(":memory:").await?;
            let snapshots = SqliteSnapshotStore::new(events.pool().clone());
            (Arc::new(events), Arc::new(snapshots))
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let arg = std::env::args().nth(1);
    let (events, snapshots) = stores(arg.as_deref()).await?;

    // Version 1 code: an order placed, two items, a price as text, and a snapshot after
    // the items in schema 1.
    let id = Uuid::new_v4();
    let history = [
        stored("OrderPlaced", 1, json!({"customer": "ada"})),
        stored("ItemAdded", 1, json!({"sku": "lamp", "qty": 2})),
        stored("ItemAdded", 2, json!({"sku": "desk", "quantity": 1})),
        stored("PriceSet", 1, json!({"sku": "lamp", "cents": "1999"})),
    ];
    events
        .append(Cart::TYPE, id, ExpectedVersion::Exact(0), &history)
        .await?;
    snapshots
        .save(&Snapshot {
            aggregate_id: id,
            aggregate_type: Cart::TYPE.to_owned(),
            version: 3,
            schema_version: 1,
            state: json!({"customer": "ada", "items": [["lamp", 2], ["desk", 1]]}).to_string(),
            created_at: Utc::now(),
        })
        .await?;

    // Today's code.
    let repo = Cart::repository(events.clone(), snapshots);
    let cart = repo.load(id).await?;
    let replayed = AggregateRepository::<Cart>::new(events).load(id).await?;
    println!("loaded at version {}:", cart.version());
    println!("  {:?}", cart.state());
    println!(
        "  from the schema 1 snapshot upcast to schema 2: {}, replaying {} event(s)",
        cart.load_history().loaded_from_snapshot,
        cart.load_history().events_replayed
    );
    assert_eq!(
        cart.state(),
        replayed.state(),
        "the snapshot path equals a replay"
    );
    assert!(cart.load_history().loaded_from_snapshot);
    assert_eq!(cart.state().lines[0].cents, 1999);

    // A command appends today's versions beside the old ones.
    let done = repo
        .execute(id, |_: &Cart| {
            Ok::<_, String>(ItemAdded {
                sku: "chair".into(),
                quantity: 4,
                cents: 4500,
            })
        })
        .await?;
    println!(
        "after a new ItemAdded (stored at version 3): {} lines",
        done.root.state().lines.len()
    );
    Ok(())
}
