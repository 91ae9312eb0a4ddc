//! An application's admin binary: the eventsource command line, embedded with the
//! application's two aggregate types so that it can replay them.
//!
//! ```text
//! cargo run -p eventsource-examples --example admin -- --help
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/app cargo run -p eventsource-examples \
//!     --example admin -- status
//! cargo run -p eventsource-examples --example admin -- \
//!     --database-url sqlite://app.db snapshots backfill Order --min-events 100
//! ```

use std::process::ExitCode;

use eventsource::cli::AdminCli;
use eventsource::{Aggregate, Apply, DomainEvent};
use serde::{Deserialize, Serialize};

/// An item was added to an order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemAdded {
    /// Its price, in cents.
    pub cents: u64,
}

/// The order was placed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderPlaced;

/// The events of an order.
#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    /// See [`ItemAdded`].
    ItemAdded(ItemAdded),
    /// See [`OrderPlaced`].
    Placed(OrderPlaced),
}

/// An order: its items and whether it was placed.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, mode = "manual")]
pub struct Order {
    /// Items added.
    pub items: u64,
    /// Their total, in cents.
    pub total_cents: u64,
    /// Whether it was placed.
    pub placed: bool,
}

impl Apply<ItemAdded> for Order {
    fn apply(&mut self, e: &ItemAdded) {
        self.items += 1;
        self.total_cents += e.cents;
    }
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, _: &OrderPlaced) {
        self.placed = true;
    }
}

/// Money came in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposited {
    /// The amount, in cents.
    pub cents: u64,
}

/// The events of an account.
#[derive(DomainEvent, Clone, Debug)]
pub enum AccountEvent {
    /// See [`Deposited`].
    Deposited(Deposited),
}

/// An account's balance.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Account", event = AccountEvent)]
#[snapshot(schema_version = 2, every = 500)]
pub struct Account {
    /// The balance, in cents.
    pub balance_cents: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance_cents += e.cents;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    AdminCli::new()
        .aggregate::<Order>()
        .aggregate::<Account>()
        .run_from_env()
        .await
}
