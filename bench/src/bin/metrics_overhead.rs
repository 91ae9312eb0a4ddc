//! What the metrics cost: a one-event save and a load from a snapshot, with the
//! Prometheus recorder installed and recording, against the same calls with it switched
//! off (the facade's no-op), interleaved call by call in one process.
//!
//! ```sh
//! cargo run -p eventsource-bench --release --bin metrics_overhead -- postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! Prints a Markdown table: medians, and the ratio on / off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventsource::prelude::*;
use eventsource::{
    PostgresEventStore, PostgresSnapshotStore, SqliteEventStore, SqliteSnapshotStore,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const SAMPLES: usize = 600;

/// The Prometheus recorder, or the no-op while `ON` is false.
struct Switch {
    inner: PrometheusRecorder,
}

static ON: AtomicBool = AtomicBool::new(false);

impl Recorder for Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if ON.load(Ordering::Relaxed) {
            self.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if ON.load(Ordering::Relaxed) {
            self.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if ON.load(Ordering::Relaxed) {
            self.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum WalletEvent {
    Deposited(Deposited),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "BenchMetricsWallet", event = WalletEvent)]
#[snapshot(schema_version = 1, mode = "manual")]
pub struct Wallet {
    pub cents: u64,
    pub deposits: Vec<u64>,
}

impl Apply<Deposited> for Wallet {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
        self.deposits.push(e.cents);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn run(label: &str, repo: AggregateRepository<Wallet>) {
    // An aggregate of 100 events with a snapshot at its last one.
    let loaded = Uuid::new_v4();
    let mut root = repo.create_new(loaded);
    for cents in 0..100 {
        root.record(Deposited { cents });
    }
    repo.save(&mut root).await.expect("save");
    repo.create_snapshot(&mut root).await.expect("snapshot");
    let saved = Uuid::new_v4();
    let mut target = repo.create_new(saved);
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for i in 0..(SAMPLES + 20) {
        for on in [i % 2 == 0, i % 2 == 1] {
            ON.store(on, Ordering::Relaxed);
            let started = Instant::now();
            let root = repo.load(loaded).await.expect("load");
            let load = started.elapsed();
            assert!(root.load_history().loaded_from_snapshot);
            target.record(Deposited { cents: 1 });
            let started = Instant::now();
            repo.save(&mut target).await.expect("save");
            let save = started.elapsed();
            if i >= 20 {
                let k = usize::from(on);
                samples[k].push(load);
                samples[2 + k].push(save);
            }
        }
    }
    let [load_off, load_on, save_off, save_on] = samples.map(median);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "| {label} | {:.0} µs | {:.0} µs | {:.3} | {:.0} µs | {:.0} µs | {:.3} |",
        us(load_off),
        us(load_on),
        ratio(load_on, load_off),
        us(save_off),
        us(save_on),
        ratio(save_on, save_off),
    );
}

#[tokio::main]
async fn main() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(Switch { inner: recorder }).expect("install the recorder");
    let url = std::env::args().nth(1);
    println!(
        "{SAMPLES} samples per cell, recorder on and off alternating call by call; medians.\n"
    );
    println!(
        "| Store | snapshot load, off | on | on / off | one-event save, off | on | on / off |"
    );
    println!("|---|---|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("eventsource-metrics-bench-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = SqliteEventStore::open(dir.join("bench.db"))
        .await
        .expect("open");
    let snapshots = SqliteSnapshotStore::new(sqlite.pool().clone());
    run(
        "SQLite file",
        Wallet::repository(Arc::new(sqlite.clone()), Arc::new(snapshots)),
    )
    .await;
    sqlite.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = url {
        let pg = PostgresEventStore::connect(&url).await.expect("connect");
        let snapshots = PostgresSnapshotStore::new(pg.pool().clone());
        run(
            "PostgreSQL",
            Wallet::repository(Arc::new(pg), Arc::new(snapshots)),
        )
        .await;
    }
    // The recorder recorded: the families are there.
    assert!(handle.render().contains("eventsource_loads_total"));
}
