//! Snapshot backfill throughput on PostgreSQL: `Admin::backfill` at concurrency 1, 4 and
//! 16 against the hand-written loop it replaces (list the aggregates, then load →
//! `create_snapshot` each, one at a time), on aggregates with 1,000-event histories.
//!
//! ```sh
//! cargo run -p eventsource-bench --release --bin backfill -- postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! Prints a Markdown table: medians over rounds, the variants' order rotated each round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::admin::{Admin, Backfill};
use eventsource::prelude::*;
use eventsource::{PostgresEventStore, PostgresSnapshotStore};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum AccountEvent {
    Deposited(Deposited),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "BenchBackfill", event = AccountEvent)]
#[snapshot(schema_version = 1, mode = "manual")]
pub struct Account {
    pub cents: u64,
    pub deposits: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
        self.deposits += 1;
    }
}

/// Aggregates in the data set, and events in each.
const AGGREGATES: i64 = 200;
const HISTORY: i64 = 1_000;
const ROUNDS: usize = 5;

/// The loop an application writes without `Admin::backfill`: every id of the type, and
/// for each one without a snapshot, a load and a snapshot.
async fn hand_written(repo: &AggregateRepository<Account>) -> u64 {
    let mut done = 0;
    let mut after = None;
    loop {
        let ids = repo
            .event_store()
            .aggregate_ids(Account::TYPE, after, 1_000)
            .await
            .expect("aggregate ids");
        for &id in &ids {
            let mut root = repo.load(id).await.expect("load");
            if root.load_history().snapshot_version.is_none() {
                repo.create_snapshot(&mut root).await.expect("snapshot");
                done += 1;
            }
        }
        if ids.len() < 1_000 {
            return done;
        }
        after = ids.last().copied();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .expect("a PostgreSQL URL as argument or DATABASE_URL");
    // Room for 16 workers.
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect(&url)
        .await
        .expect("connect");
    eventsource::migrations::migrate_postgres(&pool)
        .await
        .expect("migrate");
    let events = PostgresEventStore::new(pool.clone());
    let snapshots = Arc::new(PostgresSnapshotStore::new(pool.clone()));
    for table in ["events", "snapshots"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE aggregate_type = $1"
        )))
        .bind(Account::TYPE)
        .execute(&pool)
        .await
        .expect("clear an earlier run");
    }
    sqlx::query(
        "WITH a AS MATERIALIZED (SELECT gen_random_uuid() AS id FROM generate_series(1, $2)) \
         INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) \
         SELECT gen_random_uuid(), a.id, $1, v, 'Deposited', 1, '{\"cents\":3}', '{}', now() \
         FROM a, generate_series(1, $3) v ORDER BY a.id, v",
    )
    .bind(Account::TYPE)
    .bind(AGGREGATES)
    .bind(HISTORY)
    .execute(&pool)
    .await
    .expect("seed");
    sqlx::query("ANALYZE events")
        .execute(&pool)
        .await
        .expect("analyze");

    let admin = Admin::new(Arc::new(events.clone()), snapshots.clone());
    let repo = Account::repository(Arc::new(events.clone()), snapshots.clone());
    let variants = [
        "backfill, concurrency 1",
        "backfill, concurrency 4",
        "backfill, concurrency 16",
        "hand-written loop",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..=ROUNDS {
        for k in 0..variants.len() {
            let variant = (round + k) % variants.len();
            admin
                .invalidate(Account::TYPE, None)
                .await
                .expect("invalidate");
            let started = Instant::now();
            let snapshotted = match variant {
                3 => hand_written(&repo).await,
                v => {
                    let concurrency = [1, 4, 16][v];
                    let report = admin
                        .backfill::<Account>(&Backfill::new(1).concurrency(concurrency))
                        .await
                        .expect("backfill");
                    assert!(report.failures.is_empty(), "{report:?}");
                    report.snapshotted
                }
            };
            let took = started.elapsed();
            // Checked before the time counts: every aggregate snapshotted at its head.
            assert_eq!(snapshotted, AGGREGATES as u64, "{}", variants[variant]);
            let behind = admin.behind::<Account>(1, None).await.expect("behind");
            assert!(
                behind.is_empty(),
                "nothing left behind after {}",
                variants[variant]
            );
            if round > 0 {
                times[variant].push(took);
            }
        }
    }
    let loop_median = median(times[3].clone());
    println!(
        "| variant ({AGGREGATES} aggregates × {HISTORY} events) | median wall time of {ROUNDS} runs | aggregates/s | ratio to the hand-written loop |"
    );
    println!("|---|---|---|---|");
    for (variant, runs) in variants.iter().zip(&times) {
        let m = median(runs.clone());
        println!(
            "| {variant} | {:.0} ms | {:.0} | {:.3} |",
            m.as_secs_f64() * 1e3,
            AGGREGATES as f64 / m.as_secs_f64(),
            m.as_secs_f64() / loop_median.as_secs_f64()
        );
    }
    for table in ["events", "snapshots"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE aggregate_type = $1"
        )))
        .bind(Account::TYPE)
        .execute(&pool)
        .await
        .expect("clean up");
    }
    pool.close().await;
}
