//! Fixtures shared by the compile-error tests (`tests/ui.rs`): an order's events, so each
//! test file can stay about ten lines and show one mistake.

use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

/// An order was placed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OrderPlaced;

/// An order was submitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OrderSubmitted;

/// An order was cancelled.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OrderCancelled;

/// The events of an order, stored as "OrderPlaced", "OrderSubmitted", "OrderCancelled".
#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    /// See [`OrderPlaced`].
    Placed(OrderPlaced),
    /// See [`OrderSubmitted`].
    Submitted(OrderSubmitted),
    /// See [`OrderCancelled`].
    Cancelled(OrderCancelled),
}

/// `handle_order_events!(Order);` implements `Apply` for every [`OrderEvent`], doing
/// nothing, so a test file only declares what it tests.
#[macro_export]
macro_rules! handle_order_events {
    ($state:ty) => {
        impl ::eventsource::Apply<$crate::OrderPlaced> for $state {
            fn apply(&mut self, _: &$crate::OrderPlaced) {}
        }
        impl ::eventsource::Apply<$crate::OrderSubmitted> for $state {
            fn apply(&mut self, _: &$crate::OrderSubmitted) {}
        }
        impl ::eventsource::Apply<$crate::OrderCancelled> for $state {
            fn apply(&mut self, _: &$crate::OrderCancelled) {}
        }
    };
}
