//! Upcasting: reading events and snapshots written by older code.
//!
//! Stored data outlives the code that wrote it. Each event variant and each snapshotted
//! state carries a version, and declares, where the type is declared, how to bring an
//! older stored form up to the current one. The derive macros check the chains when the
//! crate compiles, and every reader applies them: repository loads, `load_at`,
//! [`read_feed`](crate::EventStore::read_feed) through [`Envelope`](crate::feed::Envelope),
//! subscriptions and projections.
//!
//! # Events
//!
//! ```
//! use eventsource::prelude::*;
//! use serde::{Deserialize, Serialize};
//! use serde_json::{Value, json};
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! pub struct ItemAdded { pub sku: String, pub quantity: u32, pub unit_cents: u64 }
//!
//! // Version 1 stored `{"sku": .., "qty": ..}`; version 2 renamed `qty`; version 3
//! // added the price.
//! fn item_added_v1_to_v2(mut v: Value) -> Result<Value, String> {
//!     let qty = v.get("qty").cloned().ok_or("version 1 has no `qty`")?;
//!     v["quantity"] = qty;
//!     Ok(v)
//! }
//! fn item_added_v2_to_v3(mut v: Value) -> Result<Value, String> {
//!     v["unit_cents"] = json!(0);
//!     Ok(v)
//! }
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! pub struct OrderCreated { pub customer: String }
//!
//! #[derive(DomainEvent, Clone, Debug, PartialEq)]
//! pub enum OrderEvent {
//!     #[event(version = 3, upcast(1 => item_added_v1_to_v2, 2 => item_added_v2_to_v3))]
//!     ItemAdded(ItemAdded),
//!     // Streams written when this event was called "OrderPlaced" still load.
//!     #[event(name = "OrderCreated", aliases("OrderPlaced"))]
//!     Created(OrderCreated),
//! }
//!
//! let old = OrderEvent::decode("ItemAdded", 1, r#"{"sku":"lamp","qty":2}"#)?;
//! let now = ItemAdded { sku: "lamp".into(), quantity: 2, unit_cents: 0 };
//! assert_eq!(old.into_one(), Some(OrderEvent::ItemAdded(now)));
//!
//! let renamed = OrderEvent::decode("OrderPlaced", 1, r#"{"customer":"ada"}"#)?;
//! assert!(matches!(renamed.into_one(), Some(OrderEvent::Created(_))));
//!
//! // Newer than this code knows: a typed error naming it.
//! assert!(matches!(
//!     OrderEvent::decode("ItemAdded", 4, "{}"),
//!     Err(eventsource::event::EventDecodeError::NewerVersion { stored: 4, current: 3, .. })
//! ));
//! # Ok::<(), eventsource::event::EventDecodeError>(())
//! ```
//!
//! The rules, each a compile error when broken:
//! - `upcast(1 => f, 2 => g, ...)` has one step for every version from 1 up to the
//!   variant's `version` minus one, each once: an event stored at version `n` runs the
//!   steps from `n` on. A step for the current version or a later one has no event to
//!   run on.
//! - A step is a function `fn(serde_json::Value) -> Result<T, E>`, where `T` is
//!   [`serde_json::Value`] (one event), `Option<Value>` (none or one) or `Vec<Value>`
//!   (any number: a stored event may stand for several today), and `E` converts into a
//!   [`BoxError`] (`String`, `&str`, any error type).
//! - `upcast_from(1 => ItemAddedV1, 2 => ItemAddedV2)` is the typed form: version 1 is
//!   read as `ItemAddedV1`, and `From` impls carry it on (`ItemAddedV2: From<ItemAddedV1>`,
//!   `ItemAdded: From<ItemAddedV2>`). It skips the JSON tree and is the fastest chain.
//! - An alias is not the name or an alias of another variant.
//! - Without a chain, older versions are decoded as they are, as before upcasting
//!   existed: enough for a field added with `#[serde(default)]`.
//!
//! An event at the current version goes straight to serde, as it did before: the only
//! cost of a chain is on the events that need it.
//!
//! # Snapshots
//!
//! `#[snapshot(schema_version = 3, upcast(1 => order_v1_to_v2, 2 => order_v2_to_v3))]`
//! (or `upcast_from(1 => OrderV1, 2 => OrderV2)`) brings an older snapshot's state to the
//! current schema instead of discarding it. Snapshots are an optimisation, so a snapshot
//! chain may start at any version (older snapshots are replayed past), but it has no gap
//! and ends just below `schema_version`. A snapshot whose chain fails is not an error:
//! the load replays its events and logs why. A snapshot written by newer code is never
//! used.

use serde_json::Value;

use crate::error::BoxError;

/// What an event upcast step may return: `Value` (one event), `Option<Value>` (none or
/// one) or `Vec<Value>` (any number).
pub trait UpcastOutput {
    #[doc(hidden)]
    fn into_values(self) -> Values;
}

impl UpcastOutput for Value {
    fn into_values(self) -> Values {
        Values::One(self)
    }
}

impl UpcastOutput for Option<Value> {
    fn into_values(self) -> Values {
        match self {
            Some(v) => Values::One(v),
            None => Values::Many(Vec::new()),
        }
    }
}

impl UpcastOutput for Vec<Value> {
    fn into_values(self) -> Values {
        Values::Many(self)
    }
}

/// The JSON forms of the events one stored event has become so far.
#[doc(hidden)]
#[derive(Debug)]
pub enum Values {
    One(Value),
    Many(Vec<Value>),
}

/// A step of an event upcast chain: `fn(Value) -> Result<T, E>` with `T` an
/// [`UpcastOutput`] and `E` convertible into a [`BoxError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event upcaster",
    label = "expected `fn(serde_json::Value) -> Result<serde_json::Value, E>`",
    note = "an event upcast step takes the stored JSON and returns `Result<T, E>`, where `T` is `serde_json::Value`, `Option<Value>` or `Vec<Value>` and `E` is `String`, `&str` or an error type"
)]
pub trait EventUpcaster {
    #[doc(hidden)]
    fn upcast(&self, value: Value) -> Result<Values, BoxError>;
}

#[diagnostic::do_not_recommend]
impl<F, T, E> EventUpcaster for F
where
    F: Fn(Value) -> Result<T, E>,
    T: UpcastOutput,
    E: Into<BoxError>,
{
    fn upcast(&self, value: Value) -> Result<Values, BoxError> {
        self(value)
            .map(UpcastOutput::into_values)
            .map_err(Into::into)
    }
}

/// A step of a snapshot upcast chain: `fn(Value) -> Result<Value, E>` with `E`
/// convertible into a [`BoxError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a snapshot upcaster",
    label = "expected `fn(serde_json::Value) -> Result<serde_json::Value, E>`",
    note = "a snapshot upcast step takes the stored state's JSON and returns `Result<serde_json::Value, E>`, where `E` is `String`, `&str` or an error type"
)]
pub trait SnapshotUpcaster {
    #[doc(hidden)]
    fn upcast(&self, value: Value) -> Result<Value, BoxError>;
}

#[diagnostic::do_not_recommend]
impl<F, E> SnapshotUpcaster for F
where
    F: Fn(Value) -> Result<Value, E>,
    E: Into<BoxError>,
{
    fn upcast(&self, value: Value) -> Result<Value, BoxError> {
        self(value).map_err(Into::into)
    }
}

/// A step of a typed chain: `Self` is built from the previous version's type `T`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be upcast from `{T}`",
    label = "`upcast_from` needs `impl From<{T}> for {Self}`",
    note = "each type of `upcast_from(...)` converts into the next one, and the last into the current type: add `impl From<{T}> for {Self}`"
)]
pub trait UpcastFrom<T> {
    #[doc(hidden)]
    fn upcast_from(value: T) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T, U: From<T>> UpcastFrom<T> for U {
    fn upcast_from(value: T) -> Self {
        U::from(value)
    }
}
