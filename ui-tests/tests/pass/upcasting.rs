// Every form of upcasting compiles and decodes: JSON steps returning one, none or
// several events, typed `From` chains, aliases, and both forms for snapshots with `keep`.
use eventsource::event::EventDecodeError;
use eventsource::{Aggregate, Apply, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    pub sku: String,
    pub quantity: u32,
}

fn added_v1_to_v2(mut v: Value) -> Result<Value, String> {
    let qty = v.get("qty").cloned().ok_or("no qty")?;
    v["quantity"] = qty;
    Ok(v)
}

// Version 2 could hold a list of items: each becomes its own event.
fn added_v2_to_v3(v: Value) -> Result<Vec<Value>, serde_json::Error> {
    match v.get("items") {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Ok(vec![v]),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Noted {
    pub text: String,
}

// Version 1 notes were test data: dropped.
fn noted_v1_to_v2(v: Value) -> Result<Option<Value>, &'static str> {
    Ok(v.get("text").filter(|t| *t != "test").map(|_| v.clone()))
}

#[derive(Deserialize)]
pub struct PaidV1 {
    pub cents: u64,
}
#[derive(Deserialize)]
pub struct PaidV2 {
    pub amount: u64,
}
impl From<PaidV1> for PaidV2 {
    fn from(v: PaidV1) -> Self {
        PaidV2 { amount: v.cents }
    }
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paid {
    pub amount: u64,
    pub currency: String,
}
impl From<PaidV2> for Paid {
    fn from(v: PaidV2) -> Self {
        Paid { amount: v.amount, currency: "EUR".into() }
    }
}

#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum OrderEvent {
    #[event(version = 3, upcast(1 => added_v1_to_v2, 2 => added_v2_to_v3))]
    ItemAdded(ItemAdded),
    #[event(version = 2, upcast(1 => noted_v1_to_v2), aliases("Commented", "Remarked"))]
    Noted(Noted),
    #[event(version = 3, upcast_from(1 => PaidV1, 2 => PaidV2))]
    Paid(Paid),
}

#[derive(Deserialize)]
pub struct OrderV1 {
    pub n: u64,
}
impl From<OrderV1> for Order {
    fn from(v: OrderV1) -> Self {
        Order { lines: v.n, paid: 0 }
    }
}

#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 2, every = 10, upcast_from(1 => OrderV1), keep = 3)]
pub struct Order {
    pub lines: u64,
    pub paid: u64,
}

impl Apply<ItemAdded> for Order {
    fn apply(&mut self, _: &ItemAdded) {
        self.lines += 1;
    }
}
impl Apply<Noted> for Order {
    fn apply(&mut self, _: &Noted) {}
}
impl Apply<Paid> for Order {
    fn apply(&mut self, e: &Paid) {
        self.paid += e.amount;
    }
}

fn state_v1_to_v2(mut v: Value) -> Result<Value, String> {
    v["count"] = v.get("n").cloned().ok_or("no n")?;
    Ok(v)
}
fn state_v2_to_v3(v: Value) -> Result<Value, String> {
    Ok(v)
}

#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(event = OrderEvent)]
#[snapshot(schema_version = 4, every = 10, upcast(2 => state_v1_to_v2, 3 => state_v2_to_v3))]
pub struct Tally {
    pub count: u64,
}
impl Apply<ItemAdded> for Tally {
    fn apply(&mut self, _: &ItemAdded) {
        self.count += 1;
    }
}
impl Apply<Noted> for Tally {
    fn apply(&mut self, _: &Noted) {}
}
impl Apply<Paid> for Tally {
    fn apply(&mut self, _: &Paid) {}
}

fn main() {
    let one = OrderEvent::decode("ItemAdded", 1, r#"{"sku":"a","qty":2}"#).unwrap();
    assert_eq!(
        one.into_one(),
        Some(OrderEvent::ItemAdded(ItemAdded { sku: "a".into(), quantity: 2 }))
    );
    let two = OrderEvent::decode(
        "ItemAdded",
        2,
        r#"{"items":[{"sku":"a","quantity":1},{"sku":"b","quantity":3}]}"#,
    )
    .unwrap();
    assert_eq!(two.len(), 2);
    assert!(matches!(
        OrderEvent::from_payload("ItemAdded", 2, r#"{"items":[]}"#),
        Err(EventDecodeError::NotOne { count: 0, .. })
    ));
    assert!(OrderEvent::decode("Commented", 1, r#"{"text":"test"}"#).unwrap().is_empty());
    assert_eq!(OrderEvent::decode("Remarked", 2, r#"{"text":"hi"}"#).unwrap().len(), 1);
    let paid = OrderEvent::decode("Paid", 1, r#"{"cents":5}"#).unwrap().into_one();
    assert_eq!(paid, Some(OrderEvent::Paid(Paid { amount: 5, currency: "EUR".into() })));
    assert!(matches!(
        OrderEvent::decode("Paid", 4, "{}"),
        Err(EventDecodeError::NewerVersion { stored: 4, current: 3, .. })
    ));
    assert!(matches!(
        OrderEvent::decode("ItemAdded", 1, r#"{"sku":"a"}"#),
        Err(EventDecodeError::Upcast { from_version: 1, .. })
    ));
    assert_eq!(OrderEvent::EVENT_ALIASES, &["Commented", "Remarked"]);

    let old = Order::upcast_snapshot(1, r#"{"n":4}"#).unwrap().unwrap();
    assert_eq!(old, Order { lines: 4, paid: 0 });
    assert!(Order::upcast_snapshot(2, "{}").is_none());
    assert_eq!(Order::snapshot_policy().keep.get(), 3);
    assert_eq!(Order::snapshot_policy().to_string(), "sync: every 10 events, keeping 3");

    let tally = Tally::upcast_snapshot(2, &json!({"n": 7}).to_string()).unwrap().unwrap();
    assert_eq!(tally.count, 7);
    assert!(Tally::upcast_snapshot(1, "{}").is_none());
    assert!(Tally::upcast_snapshot(2, "{}").unwrap().is_err());
}
