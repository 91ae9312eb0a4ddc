//! Snapshot history on PostgreSQL: `repo.load_at` a version in the middle of a long
//! history against a normal `load`, and the cost of a snapshot write keeping 1 or 10.
//!
//! ```sh
//! cargo run -p eventsource-bench --release --bin history -- postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! A 100,500-event history with a snapshot every 1,000 events and `keep = 10` (so the
//! snapshots at 91,000 to 100,000 are kept): `load_at(95_500)` starts from the snapshot
//! at 95,000 and replays 500 events, `load` from the one at 100,000 and replays 500. The
//! two are interleaved call by call; every result is checked (version, snapshot used,
//! events replayed) before its time counts. Snapshot writes: `save_keeping` with
//! `keep = 1` and `keep = 10`, and, as the baseline, the upsert the store ran before the
//! history (one row per aggregate) on a table with the old constraint, in the same
//! transaction shape; the three interleaved. Prints Markdown tables of medians.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::prelude::*;
use eventsource::{PostgresEventStore, PostgresSnapshotStore, Snapshot, SnapshotBound};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum AccountEvent {
    Deposited(Deposited),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "BenchHistoryAccount", event = AccountEvent)]
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

const EVENTS: u64 = 100_500;
const EVERY: u64 = 1_000;
const KEEP: u32 = 10;
const AT: u64 = 95_500;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The versions of the aggregate's snapshots, newest first.
async fn kept_versions(store: &PostgresSnapshotStore, id: Uuid) -> Vec<u64> {
    let mut versions = Vec::new();
    let mut bound = u64::MAX;
    while let Some(s) = store
        .get_at(Account::TYPE, id, SnapshotBound::AtOrBelowVersion(bound))
        .await
        .expect("get_at")
    {
        versions.push(s.version);
        bound = s.version - 1;
    }
    versions
}

/// The snapshot write before the history: one row per aggregate, an upsert that never
/// goes back in version, in a transaction with a lock timeout (as the store does).
async fn old_upsert(pool: &PgPool, snapshot: &Snapshot) {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind("2000ms")
        .execute(&mut *tx)
        .await
        .expect("set the lock timeout");
    sqlx::query(
        "INSERT INTO bench_history_old_snapshots \
         (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
         VALUES ($1, $2, $3, $4, $5::json, $6) \
         ON CONFLICT (aggregate_id, aggregate_type) DO UPDATE SET \
         version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, \
         state = EXCLUDED.state, created_at = EXCLUDED.created_at \
         WHERE bench_history_old_snapshots.version <= EXCLUDED.version",
    )
    .bind(snapshot.aggregate_id)
    .bind(snapshot.aggregate_type.as_str())
    .bind(snapshot.version as i64)
    .bind(snapshot.schema_version as i32)
    .bind(snapshot.state.as_str())
    .bind(snapshot.created_at)
    .execute(&mut *tx)
    .await
    .expect("the old upsert");
    tx.commit().await.expect("commit");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .expect("a PostgreSQL URL as argument or DATABASE_URL");
    let events = PostgresEventStore::connect(&url).await.expect("connect");
    let snapshots = PostgresSnapshotStore::new(events.pool().clone());
    let repo = AggregateRepository::<Account>::builder(Arc::new(events.clone()))
        .snapshot_store(Arc::new(snapshots.clone()))
        .threshold(EVERY)
        .mode(SnapshotMode::Sync)
        .snapshot_keep(NonZeroU32::new(KEEP).unwrap())
        .build()
        .expect("repository");

    // The history: saves of 1,000 events, each taking a snapshot; then 500 more.
    let id = Uuid::new_v4();
    let seeding = Instant::now();
    let mut root = repo.create_new(id);
    while root.version() < EVENTS {
        let batch = EVERY.min(EVENTS - root.version());
        for _ in 0..batch {
            root.record(Deposited { cents: 1 });
        }
        repo.save(&mut root).await.expect("save");
    }
    let kept = kept_versions(&snapshots, id).await;
    let expected: Vec<u64> = (91..=100).rev().map(|k| k * EVERY).collect();
    assert_eq!(kept, expected, "the 10 newest snapshots are kept");
    eprintln!(
        "seeded {EVENTS} events in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // load_at(95_500) and load, interleaved: 1 untimed round, then 9 rounds of 40.
    let (mut at_rounds, mut load_rounds) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..40 {
            let started = Instant::now();
            if (i + round) % 2 == 0 {
                let then = repo.load_at(id, AT).await.expect("load_at");
                let took = started.elapsed();
                let history = then.load_history();
                assert_eq!(then.version(), AT);
                assert_eq!(then.state().deposits, AT);
                assert_eq!(history.snapshot_version, Some(95_000));
                assert_eq!(history.events_replayed, 500);
                a.push(took);
            } else {
                let now = repo.load(id).await.expect("load");
                let took = started.elapsed();
                let history = now.load_history();
                assert_eq!(now.version(), EVENTS);
                assert_eq!(history.snapshot_version, Some(100_000));
                assert_eq!(history.events_replayed, 500);
                b.push(took);
            }
        }
        if round > 0 {
            at_rounds.push(median(a));
            load_rounds.push(median(b));
        }
    }
    let (at, load) = (median(at_rounds), median(load_rounds));

    // Snapshot writes: keep = 1, keep = 10 (10 already stored) and the old upsert.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_history_old_snapshots ( \
         id BIGSERIAL PRIMARY KEY, aggregate_id UUID NOT NULL, aggregate_type TEXT NOT NULL, \
         version BIGINT NOT NULL, schema_version INTEGER NOT NULL DEFAULT 1, \
         state JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), \
         CONSTRAINT uq_bench_history_old_snapshots UNIQUE (aggregate_id, aggregate_type))",
    )
    .execute(events.pool())
    .await
    .expect("the baseline table");
    let state = root.state().to_snapshot().expect("encode");
    let snapshot = |id: Uuid, version: u64| Snapshot {
        aggregate_id: id,
        aggregate_type: Account::TYPE.to_owned(),
        version,
        schema_version: 1,
        state: state.clone(),
        created_at: chrono::Utc::now(),
    };
    let (one, ten, old) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let keep_one = NonZeroU32::MIN;
    let keep_ten = NonZeroU32::new(KEEP).unwrap();
    for v in 1..=u64::from(KEEP) {
        snapshots
            .save_keeping(&snapshot(ten, v), keep_ten)
            .await
            .expect("prefill");
    }
    let (mut w1, mut w10, mut wold) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..600u64 {
        let version = u64::from(KEEP) + 1 + i;
        let order = [
            (i % 3) as usize,
            ((i + 1) % 3) as usize,
            ((i + 2) % 3) as usize,
        ];
        for which in order {
            let started = Instant::now();
            match which {
                0 => {
                    snapshots
                        .save_keeping(&snapshot(one, version), keep_one)
                        .await
                        .expect("keep 1");
                    w1.push(started.elapsed());
                }
                1 => {
                    snapshots
                        .save_keeping(&snapshot(ten, version), keep_ten)
                        .await
                        .expect("keep 10");
                    w10.push(started.elapsed());
                }
                _ => {
                    old_upsert(events.pool(), &snapshot(old, version)).await;
                    wold.push(started.elapsed());
                }
            }
        }
    }
    let last = u64::from(KEEP) + 600;
    assert_eq!(kept_versions(&snapshots, one).await, vec![last]);
    assert_eq!(
        kept_versions(&snapshots, ten).await,
        (last - 9..=last).rev().collect::<Vec<_>>()
    );
    // Skip the first 100 of each (warm-up).
    let (w1, w10, wold) = (
        median(w1[100..].to_vec()),
        median(w10[100..].to_vec()),
        median(wold[100..].to_vec()),
    );

    println!("| case | median | ratio |");
    println!("|---|---|---|");
    println!(
        "| `load_at(95_500)`: snapshot 95,000 + 500 events, median of 9 round medians (20 each) | {:.3} ms | {:.3} × `load` |",
        ms(at),
        at.as_secs_f64() / load.as_secs_f64()
    );
    println!(
        "| `load`: snapshot 100,000 + 500 events, same rounds | {:.3} ms | 1 |",
        ms(load)
    );
    println!(
        "| snapshot write, `keep = 1` (median of 500) | {:.3} ms | {:.3} × old upsert |",
        ms(w1),
        w1.as_secs_f64() / wold.as_secs_f64()
    );
    println!(
        "| snapshot write, `keep = 10`, 10 stored (median of 500) | {:.3} ms | {:.3} × old upsert |",
        ms(w10),
        w10.as_secs_f64() / wold.as_secs_f64()
    );
    println!(
        "| snapshot write before the history: one-row upsert, same transaction (median of 500) | {:.3} ms | 1 |",
        ms(wold)
    );
    sqlx::query("DROP TABLE bench_history_old_snapshots")
        .execute(events.pool())
        .await
        .expect("drop the baseline table");
    events.close().await;
}
