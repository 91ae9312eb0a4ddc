//! The cost of upcasting on a replay: 100,000 events of one aggregate loaded with no
//! snapshot, where every event is stored at version 1 and goes through a two-step chain
//! (JSON steps, then the typed `From` form), against the same history stored at the
//! current version, and against an event enum that declares no chain at all (the cost
//! before upcasting existed). In memory (decoding alone) and on PostgreSQL.
//!
//! ```sh
//! cargo run -p eventsource-bench --release --bin upcasting -- postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! Prints a Markdown table: medians over interleaved rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eventsource::prelude::*;
use eventsource::{NewEvent, PostgresEventStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

const EVENTS: u64 = 100_000;
const ROUNDS: usize = 11;

/// The current form of the event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemAdded {
    pub sku: String,
    pub quantity: u32,
    pub cents: u64,
}

fn v1_to_v2(mut v: Value) -> Result<Value, String> {
    let qty = v
        .as_object_mut()
        .and_then(|o| o.remove("qty"))
        .ok_or("no qty")?;
    v["quantity"] = qty;
    Ok(v)
}

fn v2_to_v3(mut v: Value) -> Result<Value, String> {
    v["cents"] = json!(0);
    Ok(v)
}

#[derive(Deserialize)]
pub struct ItemAddedV1 {
    pub sku: String,
    pub qty: u32,
}

#[derive(Deserialize)]
pub struct ItemAddedV2 {
    pub sku: String,
    pub quantity: u32,
}

impl From<ItemAddedV1> for ItemAddedV2 {
    fn from(v: ItemAddedV1) -> Self {
        ItemAddedV2 {
            sku: v.sku,
            quantity: v.qty,
        }
    }
}

impl From<ItemAddedV2> for ItemAdded {
    fn from(v: ItemAddedV2) -> Self {
        ItemAdded {
            sku: v.sku,
            quantity: v.quantity,
            cents: 0,
        }
    }
}

/// No chain: what every enum was before upcasting.
#[derive(DomainEvent, Clone, Debug)]
pub enum PlainEvent {
    ItemAdded(ItemAdded),
}

/// JSON steps from version 1.
#[derive(DomainEvent, Clone, Debug)]
pub enum JsonChainEvent {
    #[event(version = 3, upcast(1 => v1_to_v2, 2 => v2_to_v3))]
    ItemAdded(ItemAdded),
}

/// The typed chain from version 1.
#[derive(DomainEvent, Clone, Debug)]
pub enum TypedChainEvent {
    #[event(version = 3, upcast_from(1 => ItemAddedV1, 2 => ItemAddedV2))]
    ItemAdded(ItemAdded),
}

macro_rules! cart {
    ($name:ident, $event:ident, $type_name:literal) => {
        #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
        #[aggregate(name = $type_name, event = $event)]
        pub struct $name {
            pub lines: u64,
            pub quantity: u64,
        }

        impl Apply<ItemAdded> for $name {
            fn apply(&mut self, e: &ItemAdded) {
                self.lines += 1;
                self.quantity += u64::from(e.quantity);
            }
        }
    };
}

cart!(PlainCart, PlainEvent, "BenchUpcastPlain");
cart!(JsonCart, JsonChainEvent, "BenchUpcastJson");
cart!(TypedCart, TypedChainEvent, "BenchUpcastTyped");

/// The history stored at `version`: the version 1 shape when `old`, else the current one.
fn history(version: u32, old: bool) -> Vec<NewEvent> {
    (0..EVENTS)
        .map(|i| {
            let sku = format!("sku-{:05}", i % 5_000);
            let payload = if old {
                json!({"sku": sku, "qty": i % 7 + 1})
            } else {
                json!({"sku": sku, "quantity": i % 7 + 1, "cents": 0})
            };
            NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "ItemAdded".into(),
                event_version: version,
                payload: payload.to_string(),
                metadata: Default::default(),
                occurred_at: Utc::now(),
            }
        })
        .collect()
}

async fn seed(store: &Arc<dyn EventStore>, aggregate_type: &str, version: u32, old: bool) -> Uuid {
    let id = Uuid::new_v4();
    let mut at = 0;
    for chunk in history(version, old).chunks(5_000) {
        at = store
            .append(aggregate_type, id, ExpectedVersion::Exact(at), chunk)
            .await
            .expect("seed");
    }
    id
}

async fn time_load<A: Aggregate>(store: &Arc<dyn EventStore>, id: Uuid) -> Duration {
    let repo = AggregateRepository::<A>::new(store.clone());
    let started = Instant::now();
    let root = repo.load(id).await.expect("load");
    let elapsed = started.elapsed();
    assert_eq!(root.version(), EVENTS);
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn run(label: &str, store: Arc<dyn EventStore>) {
    let plain = seed(&store, PlainCart::TYPE, 1, false).await;
    let current_json = seed(&store, JsonCart::TYPE, 3, false).await;
    let old_json = seed(&store, JsonCart::TYPE, 1, true).await;
    let old_typed = seed(&store, TypedCart::TYPE, 1, true).await;
    // Warm up each path once.
    time_load::<PlainCart>(&store, plain).await;
    time_load::<JsonCart>(&store, current_json).await;
    time_load::<JsonCart>(&store, old_json).await;
    time_load::<TypedCart>(&store, old_typed).await;
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        samples[0].push(time_load::<PlainCart>(&store, plain).await);
        samples[1].push(time_load::<JsonCart>(&store, current_json).await);
        samples[2].push(time_load::<JsonCart>(&store, old_json).await);
        samples[3].push(time_load::<TypedCart>(&store, old_typed).await);
    }
    let [plain, current, json, typed] = samples.map(median);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "| {label} | {:.1} ms | {:.1} ms ({:.2}×) | {:.1} ms ({:.2}×) | {:.1} ms ({:.2}×) |",
        ms(plain),
        ms(current),
        ratio(current, plain),
        ms(json),
        ratio(json, current),
        ms(typed),
        ratio(typed, current),
    );
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1);
    println!("Replay of {EVENTS} events, no snapshot, median of {ROUNDS} interleaved rounds.\n");
    println!(
        "| Store | No chain declared (before upcasting) | Chain declared, current events (vs no chain) | Every event v1 → v3 by JSON steps (vs current) | Every event v1 → v3 by `From` (vs current) |"
    );
    println!("|---|---|---|---|---|");
    run("in memory", Arc::new(InMemoryEventStore::new())).await;
    if let Some(url) = url {
        let store = PostgresEventStore::connect(&url).await.expect("connect");
        run("PostgreSQL", Arc::new(store)).await;
    }
}
