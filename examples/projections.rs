//! A read model fed by a subscription: `cargo run --example projections` (SQLite in
//! memory), or `cargo run --example projections -- postgres://...` (PostgreSQL).
//!
//! Orders are saved through a repository; the `order-summary` subscription keeps one row
//! per order in `order_summaries`, in the same database. Each batch's upserts commit in
//! one transaction with the subscription's checkpoint, so the table reflects every event
//! exactly once, even if the process dies mid-batch.

use std::sync::Arc;
use std::time::Duration;

use eventsource::feed::Envelope;
use eventsource::prelude::*;
use eventsource::subscription::{Projection, Subscription};
use eventsource::{BoxError, sqlx};
use eventsource::{
    PostgresEventStore, PostgresSnapshotStore, SqliteEventStore, SqliteSnapshotStore,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderCreated {
    pub customer: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderItemAdded {
    pub product: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderSubmitted;

#[derive(DomainEvent, Clone, Debug)]
pub enum OrderEvent {
    Created(OrderCreated),
    ItemAdded(OrderItemAdded),
    Submitted(OrderSubmitted),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Order", event = OrderEvent)]
#[snapshot(schema_version = 1, threshold = 100)]
pub struct Order {
    pub lines: u32,
    pub submitted: bool,
}

impl Apply<OrderCreated> for Order {
    fn apply(&mut self, _: &OrderCreated) {}
}

impl Apply<OrderItemAdded> for Order {
    fn apply(&mut self, _: &OrderItemAdded) {
        self.lines += 1;
    }
}

impl Apply<OrderSubmitted> for Order {
    fn apply(&mut self, _: &OrderSubmitted) {
        self.submitted = true;
    }
}

/// The read model: one row per order. Its state lives in the database, written through
/// the batch's transaction.
struct OrderSummaries;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS order_summaries (
    order_id TEXT PRIMARY KEY, customer TEXT NOT NULL, lines BIGINT NOT NULL,
    total_cents BIGINT NOT NULL, submitted BOOLEAN NOT NULL)";

// The same SQL serves both databases (`$n` parameters work on SQLite too).
macro_rules! order_summaries {
    ($conn:ty) => {
        #[eventsource::async_trait]
        impl Projection<$conn> for OrderSummaries {
            type Event = OrderEvent;

            async fn apply(
                &mut self,
                conn: &mut $conn,
                e: Envelope<OrderEvent>,
            ) -> Result<(), BoxError> {
                let id = e.aggregate_id.to_string();
                // An exhaustive match: a new event is a compile error here until handled.
                match e.event {
                    OrderEvent::Created(c) => {
                        sqlx::query(
                            "INSERT INTO order_summaries VALUES ($1, $2, 0, 0, FALSE) \
                             ON CONFLICT (order_id) DO NOTHING",
                        )
                        .bind(&id)
                        .bind(&c.customer)
                        .execute(&mut *conn)
                        .await?;
                    }
                    OrderEvent::ItemAdded(i) => {
                        sqlx::query(
                            "UPDATE order_summaries SET lines = lines + 1, \
                             total_cents = total_cents + $2 WHERE order_id = $1",
                        )
                        .bind(&id)
                        .bind(i64::from(i.quantity) * i.unit_price_cents)
                        .execute(&mut *conn)
                        .await?;
                    }
                    OrderEvent::Submitted(_) => {
                        sqlx::query(
                            "UPDATE order_summaries SET submitted = TRUE WHERE order_id = $1",
                        )
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                Ok(())
            }
        }
    };
}
order_summaries!(sqlx::SqliteConnection);
order_summaries!(sqlx::PgConnection);

async fn place_orders(
    repo: &AggregateRepository<Order>,
    n: usize,
) -> eventsource::Result<Vec<Uuid>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4();
        let mut order = repo.create_new(id);
        order.record(OrderCreated {
            customer: format!("customer-{i}@example.com"),
        });
        for _ in 0..3 {
            order.record(OrderItemAdded {
                product: "Widget".into(),
                quantity: 2,
                unit_price_cents: 2_999,
            });
        }
        order.record(OrderSubmitted);
        repo.save(&mut order).await?;
        ids.push(id);
    }
    Ok(ids)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    match url.as_deref() {
        Some(url) if url.starts_with("postgres") => {
            let events = PostgresEventStore::connect(url).await?;
            sqlx::raw_sql(CREATE_TABLE).execute(events.pool()).await?;
            let snapshots = PostgresSnapshotStore::new(events.pool().clone());
            demo(
                events.clone(),
                Order::repository(Arc::new(events), Arc::new(snapshots)),
            )
            .await
        }
        _ => {
            let events = SqliteEventStore::open(":memory:").await?;
            sqlx::raw_sql(CREATE_TABLE).execute(events.pool()).await?;
            let snapshots = SqliteSnapshotStore::new(events.pool().clone());
            demo(
                events.clone(),
                Order::repository(Arc::new(events), Arc::new(snapshots)),
            )
            .await
        }
    }
}

async fn demo<S>(
    store: S,
    repo: AggregateRepository<Order>,
) -> Result<(), Box<dyn std::error::Error>>
where
    S: eventsource::subscription::SubscriptionStore + Send + Sync,
    OrderSummaries: Projection<S::Connection>,
{
    // Orders placed before the subscription starts: it catches up on them.
    let before = place_orders(&repo, 20).await?;

    let mut running = Subscription::new("order-summary", store.clone())
        .aggregate_types(["Order"])
        .spawn(OrderSummaries);

    // Orders placed while it runs: it follows them live.
    let after = place_orders(&repo, 20).await?;
    let total = 5 * (before.len() + after.len()) as u64;
    running
        .wait_until(|s| s.handled >= total, Duration::from_secs(10))
        .await;
    let status = running.status();
    running.stop().await?;

    println!(
        "order-summary handled {} events for {} orders; checkpoint {}",
        status.handled,
        before.len() + after.len(),
        status.checkpoint
    );
    Ok(())
}
