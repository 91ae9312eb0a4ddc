//! Schemas that evolve, through every backend: events stored at older versions or under
//! older names load to the same state as current ones, a failing upcast is a typed
//! error for events and a replay for snapshots, and data written by newer code is
//! refused (events) or ignored (snapshots).

use std::sync::Arc;

use chrono::Utc;
use eventsource::event::EventDecodeError;
use eventsource::feed::{Checkpoint, Envelope, FeedQuery};
use eventsource::prelude::*;
use eventsource::{Error, NewEvent, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

/// A line was added to the cart. Version 1 stored `qty`; version 2 renamed it to
/// `quantity` and could hold several lines at once (`lines`); version 3 added `cents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineAdded {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The unit price.
    pub cents: u64,
}

fn line_v1_to_v2(mut v: Value) -> Result<Value, String> {
    let qty = v
        .as_object_mut()
        .and_then(|o| o.remove("qty"))
        .ok_or("a version 1 line has `qty`")?;
    v["quantity"] = qty;
    Ok(v)
}

fn line_v2_to_v3(v: Value) -> Result<Vec<Value>, String> {
    let lines = match v.get("lines") {
        Some(Value::Array(lines)) => lines.clone(),
        _ => vec![v],
    };
    Ok(lines
        .into_iter()
        .map(|mut line| {
            line["cents"] = json!(0);
            line
        })
        .collect())
}

/// The cart was opened; stored as "BasketOpened" before it was renamed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartOpened {
    /// Who opened it.
    pub by: String,
}

/// A note; version 1 notes with the text "test" were test data, dropped on read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Noted {
    /// The text.
    pub text: String,
}

fn noted_v1_to_v2(v: Value) -> Result<Option<Value>, String> {
    Ok((v.get("text") != Some(&json!("test"))).then_some(v))
}

/// The cart's events.
#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum CartEvent {
    /// See [`LineAdded`].
    #[event(name = "LineAdded", version = 3, upcast(1 => line_v1_to_v2, 2 => line_v2_to_v3))]
    Added(LineAdded),
    /// See [`CartOpened`].
    #[event(name = "CartOpened", aliases("BasketOpened"))]
    Opened(CartOpened),
    /// See [`Noted`].
    #[event(name = "CartNoted", version = 2, upcast(1 => noted_v1_to_v2))]
    Noted(Noted),
}

/// A cart. Schema 1 stored `owner` and `items` as `[sku, quantity]` pairs.
#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "ConformanceCart", event = CartEvent)]
#[snapshot(schema_version = 2, every = 1000, upcast(1 => cart_v1_to_v2))]
pub struct Cart {
    /// Who opened it.
    pub opened_by: String,
    /// `(sku, quantity, cents)`.
    pub lines: Vec<(String, u32, u64)>,
    /// Notes kept.
    pub notes: u32,
}

fn cart_v1_to_v2(v: Value) -> Result<Value, String> {
    let owner = v.get("owner").cloned().ok_or("schema 1 has `owner`")?;
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or("schema 1 has `items`")?;
    let lines: Vec<Value> = items
        .iter()
        .map(|pair| json!([pair[0], pair[1], 0]))
        .collect();
    Ok(json!({ "opened_by": owner, "lines": lines, "notes": v["notes"] }))
}

impl Apply<LineAdded> for Cart {
    fn apply(&mut self, e: &LineAdded) {
        self.lines.push((e.sku.clone(), e.quantity, e.cents));
    }
}

impl Apply<CartOpened> for Cart {
    fn apply(&mut self, e: &CartOpened) {
        self.opened_by = e.by.clone();
    }
}

impl Apply<Noted> for Cart {
    fn apply(&mut self, _: &Noted) {
        self.notes += 1;
    }
}

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

/// The same history written as version 1, 2 and 3 events.
fn histories() -> [Vec<NewEvent>; 3] {
    [
        vec![
            stored("BasketOpened", 1, json!({"by": "ada"})),
            stored("LineAdded", 1, json!({"sku": "lamp", "qty": 2})),
            stored("LineAdded", 1, json!({"sku": "desk", "qty": 1})),
            stored("CartNoted", 1, json!({"text": "test"})),
            stored("CartNoted", 1, json!({"text": "gift"})),
        ],
        vec![
            stored("CartOpened", 1, json!({"by": "ada"})),
            stored(
                "LineAdded",
                2,
                json!({"lines": [{"sku": "lamp", "quantity": 2}, {"sku": "desk", "quantity": 1}]}),
            ),
            stored("CartNoted", 2, json!({"text": "gift"})),
        ],
        vec![
            stored("CartOpened", 1, json!({"by": "ada"})),
            stored(
                "LineAdded",
                3,
                json!({"sku": "lamp", "quantity": 2, "cents": 0}),
            ),
            stored(
                "LineAdded",
                3,
                json!({"sku": "desk", "quantity": 1, "cents": 0}),
            ),
            stored("CartNoted", 2, json!({"text": "gift"})),
        ],
    ]
}

fn expected() -> Cart {
    Cart {
        opened_by: "ada".into(),
        lines: vec![("lamp".into(), 2, 0), ("desk".into(), 1, 0)],
        notes: 1,
    }
}

/// Streams written with version 1, 2 and 3 events (and the type's old name) load to
/// the same state, with and without snapshots, and read back through the feed.
pub async fn upcast_events_of_every_version_load_alike(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Cart::repository(events.clone(), snapshots);
    let mut ids = Vec::new();
    for history in histories() {
        let id = Uuid::new_v4();
        events
            .append(Cart::TYPE, id, ExpectedVersion::Exact(0), &history)
            .await
            .expect("append a stored history");
        let cart = repo.load(id).await.expect("an old history loads");
        assert_eq!(
            cart.state(),
            &expected(),
            "history of {} events",
            history.len()
        );
        assert_eq!(
            cart.version(),
            history.len() as u64,
            "the version counts stored events"
        );
        ids.push(id);
    }

    // The feed decodes them alike, with the stored event's envelope.
    let mut decoded = std::collections::HashMap::<Uuid, Vec<CartEvent>>::new();
    let mut after = Checkpoint::START;
    loop {
        let page = events
            .read_feed(
                &FeedQuery::after(after)
                    .limit(100)
                    .aggregate_types([Cart::TYPE]),
            )
            .await
            .expect("read the feed");
        for fed in &page.events {
            if !ids.contains(&fed.event.aggregate_id) {
                continue;
            }
            for envelope in Envelope::<CartEvent>::decode_all(fed).expect("decode a feed event") {
                assert_eq!(envelope.event_id, fed.event.event_id);
                decoded
                    .entry(envelope.aggregate_id)
                    .or_default()
                    .push(envelope.event);
            }
        }
        after = page.next;
        if page.events.len() < 100 {
            break;
        }
    }
    let first = &decoded[&ids[0]];
    assert_eq!(first.len(), 4, "one note was dropped on read");
    for id in &ids[1..] {
        assert_eq!(
            &decoded[id], first,
            "every version reads as the same events"
        );
    }
}

/// A stored event whose upcast fails, or that newer code wrote, is a typed error
/// naming it: never a wrong state.
pub async fn failing_event_upcasts_are_typed_errors(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Cart::repository(events.clone(), snapshots);
    let id = Uuid::new_v4();
    let history = [
        stored("CartOpened", 1, json!({"by": "ada"})),
        stored("LineAdded", 1, json!({"sku": "lamp"})),
    ];
    events
        .append(Cart::TYPE, id, ExpectedVersion::Exact(0), &history)
        .await
        .expect("append");
    match repo.load(id).await {
        Err(Error::EventDecode {
            version: 2,
            source:
                EventDecodeError::Upcast {
                    from_version: 1,
                    ref event_type,
                    ..
                },
            ..
        }) if &**event_type == "LineAdded" => {}
        other => panic!("a failing upcast step is Error::EventDecode(Upcast), got {other:?}"),
    }

    let newer = Uuid::new_v4();
    let history = [stored("LineAdded", 4, json!({"sku": "lamp"}))];
    events
        .append(Cart::TYPE, newer, ExpectedVersion::Exact(0), &history)
        .await
        .expect("append");
    match repo.load(newer).await {
        Err(Error::EventDecode {
            source:
                EventDecodeError::NewerVersion {
                    stored: 4,
                    current: 3,
                    ..
                },
            ..
        }) => {}
        other => panic!("an event newer than the code is NewerVersion, got {other:?}"),
    }
}

fn snapshot_of(id: Uuid, version: u64, schema_version: u32, state: Value) -> Snapshot {
    Snapshot {
        aggregate_id: id,
        aggregate_type: Cart::TYPE.to_owned(),
        version,
        schema_version,
        state: state.to_string(),
        created_at: Utc::now().trunc_subsecs(6),
    }
}

use chrono::SubsecRound;

/// An older snapshot is upcast and used; one whose chain fails, or that newer code
/// wrote, means a replay to the right state.
pub async fn old_snapshots_are_upcast_or_replayed(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Cart::repository(events.clone(), snapshots.clone());
    // A snapshot after the first three events, in each form.
    let old = json!({"owner": "ada", "items": [["lamp", 2], ["desk", 1]], "notes": 0});
    let cases = [
        (1, old, true, "schema 1 upcast"),
        (
            1,
            json!({"items": "nope"}),
            false,
            "schema 1 whose upcast fails",
        ),
        (
            3,
            json!({"opened_by": "eve", "lines": [], "notes": 9}),
            false,
            "schema 3, newer than the code",
        ),
        (
            2,
            json!({"opened_by": "ada", "lines": [["lamp", 2, 0], ["desk", 1, 0]], "notes": 0}),
            true,
            "the current schema",
        ),
    ];
    for (schema, state, used, case) in cases {
        let [_, _, history] = histories();
        let id = Uuid::new_v4();
        events
            .append(Cart::TYPE, id, ExpectedVersion::Exact(0), &history)
            .await
            .expect("append");
        snapshots
            .save(&snapshot_of(id, 3, schema, state))
            .await
            .expect("save a snapshot");
        let cart = repo.load(id).await.expect("a snapshot never fails a load");
        assert_eq!(cart.state(), &expected(), "{case}: the state is right");
        assert_eq!(
            cart.load_history().loaded_from_snapshot,
            used,
            "{case}: whether the snapshot was used"
        );
        let replayed = if used { 1 } else { 4 };
        assert_eq!(cart.load_history().events_replayed, replayed, "{case}");
    }
}
