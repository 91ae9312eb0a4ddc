//! Snapshot states stored zstd-compressed against plain, on PostgreSQL and SQLite: the
//! time of a snapshot write (`create_snapshot`), of a load from the snapshot, and the
//! bytes the database stores, for states of 10 kB, 100 kB and 1 MB of realistic JSON.
//!
//! ```sh
//! cargo run -p eventsource-bench --release --bin compression -- postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! Each state is one aggregate of one event carrying order lines (varied words, SKUs,
//! prices and timestamps), so a load from the snapshot reads no event. The two variants
//! (`compress_over` unset, and set to 1 KiB so that every state here is compressed)
//! are interleaved round by round, the order alternating; every load is checked
//! (state, version, from the snapshot, nothing replayed) before its time counts.
//! Bytes are the database's own count: `pg_column_size` (after PostgreSQL's TOAST
//! compression of large `json` values) and SQLite's `length()`. Prints a Markdown table
//! of medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::prelude::*;
use eventsource::{
    PostgresEventStore, PostgresSnapshotStore, SnapshotStore, SqliteEventStore, SqliteSnapshotStore,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub qty: u32,
    pub price: f64,
    pub status: String,
    pub tags: Vec<String>,
    pub at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinesAdded {
    pub lines: Vec<Line>,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum CatalogEvent {
    LinesAdded(LinesAdded),
}

#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "BenchCompressionCatalog", event = CatalogEvent)]
#[snapshot(schema_version = 1, mode = "manual")]
pub struct Catalog {
    pub lines: Vec<Line>,
}

impl Apply<LinesAdded> for Catalog {
    fn apply(&mut self, e: &LinesAdded) {
        self.lines.extend(e.lines.iter().cloned());
    }
}

const WORDS: [&str; 24] = [
    "invoice",
    "pending",
    "shipped",
    "Zürich",
    "warehouse",
    "refund",
    "priority",
    "customer",
    "O'Brien",
    "discount",
    "backorder",
    "express",
    "Łódź",
    "returned",
    "gift",
    "note",
    "pallet",
    "fragile",
    "customs",
    "Saint-Étienne",
    "bulk",
    "sample",
    "repair",
    "hold",
];

/// Lines whose JSON makes a state of at least `bytes`, from a small PRNG: varied, not a
/// repeated pattern.
fn lines(bytes: usize, seed: u64) -> Vec<Line> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let word = |n: u64| WORDS[(n % WORDS.len() as u64) as usize].to_owned();
    let mut out = Vec::new();
    let mut len = 0;
    while len < bytes {
        let line = Line {
            sku: format!("{}-{:06}", word(next()), next() % 1_000_000),
            qty: (next() % 48) as u32,
            price: (next() % 10_000_000) as f64 / 100.0,
            status: word(next()),
            tags: (0..next() % 4).map(|_| word(next())).collect(),
            at: 1_764_000_000 + next() % 30_000_000,
        };
        len += serde_json::to_string(&line).expect("json").len() + 1;
        out.push(line);
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The bytes the database stores for the snapshot of `id` (the state column in use).
#[derive(Clone, Copy)]
enum Backend<'a> {
    Postgres(&'a sqlx::PgPool),
    Sqlite(&'a sqlx::SqlitePool),
}

impl Backend<'_> {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres(_) => "PostgreSQL",
            Backend::Sqlite(_) => "SQLite",
        }
    }

    async fn stored_bytes(self, id: Uuid) -> i64 {
        match self {
            Backend::Postgres(pool) => sqlx::query_scalar(
                "SELECT COALESCE(pg_column_size(state_zstd), pg_column_size(state))::bigint \
                 FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2",
            )
            .bind(id)
            .bind(Catalog::TYPE)
            .fetch_one(pool)
            .await
            .expect("stored bytes"),
            Backend::Sqlite(pool) => sqlx::query_scalar(
                "SELECT COALESCE(length(state_zstd), length(CAST(state AS BLOB))) \
                 FROM snapshots WHERE aggregate_id = ?1 AND aggregate_type = ?2",
            )
            .bind(id.to_string())
            .bind(Catalog::TYPE)
            .fetch_one(pool)
            .await
            .expect("stored bytes"),
        }
    }

    async fn compressed(self, id: Uuid) -> bool {
        match self {
            Backend::Postgres(pool) => sqlx::query_scalar(
                "SELECT state_zstd IS NOT NULL FROM snapshots \
                 WHERE aggregate_id = $1 AND aggregate_type = $2",
            )
            .bind(id)
            .bind(Catalog::TYPE)
            .fetch_one(pool)
            .await
            .expect("encoding"),
            Backend::Sqlite(pool) => sqlx::query_scalar(
                "SELECT state_zstd IS NOT NULL FROM snapshots \
                 WHERE aggregate_id = ?1 AND aggregate_type = ?2",
            )
            .bind(id.to_string())
            .bind(Catalog::TYPE)
            .fetch_one(pool)
            .await
            .expect("encoding"),
        }
    }
}

const SIZES: [(usize, &str); 3] = [(10_000, "10 kB"), (100_000, "100 kB"), (1_000_000, "1 MB")];
const ROUNDS: usize = 15;
const LOADS_PER_ROUND: usize = 5;

/// One backend: every size, both variants interleaved. Prints its table rows.
async fn run(backend: Backend<'_>, events: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>) {
    for (bytes, label) in SIZES {
        let plain = Catalog::repository(events.clone(), snapshots.clone());
        let zstd = AggregateRepository::<Catalog>::builder(events.clone())
            .snapshot_store(snapshots.clone())
            .snapshot_compress_over(Some(1024))
            .build()
            .expect("repository");
        let variants = [("plain", plain), ("zstd", zstd)];
        let mut roots = Vec::new();
        for (i, (_, repo)) in variants.iter().enumerate() {
            let mut root = repo.create_new(Uuid::new_v4());
            root.record(LinesAdded {
                lines: lines(bytes, 7 + i as u64),
            });
            repo.save(&mut root).await.expect("save");
            repo.create_snapshot(&mut root).await.expect("snapshot");
            roots.push(root);
        }
        let state_len = serde_json::to_string(roots[0].state()).expect("json").len();
        let (mut writes, mut loads) = ([vec![], vec![]], [vec![], vec![]]);
        for round in 0..ROUNDS {
            for k in [round % 2, 1 - round % 2] {
                let (_, repo) = &variants[k];
                let started = Instant::now();
                repo.create_snapshot(&mut roots[k]).await.expect("snapshot");
                writes[k].push(started.elapsed());
                for _ in 0..LOADS_PER_ROUND {
                    let started = Instant::now();
                    let loaded = repo.load(roots[k].id()).await.expect("load");
                    let took = started.elapsed();
                    assert_eq!(loaded.version(), 1);
                    assert!(
                        loaded.load_history().loaded_from_snapshot,
                        "from the snapshot"
                    );
                    assert_eq!(loaded.load_history().events_replayed, 0);
                    assert_eq!(loaded.state(), roots[k].state(), "the right state");
                    loads[k].push(took);
                }
            }
        }
        let plain_bytes = backend.stored_bytes(roots[0].id()).await;
        for (k, (variant, _)) in variants.iter().enumerate() {
            let stored = backend.stored_bytes(roots[k].id()).await;
            assert_eq!(
                backend.compressed(roots[k].id()).await,
                k == 1,
                "the {variant} variant is stored {variant}"
            );
            println!(
                "| {} | {label} ({state_len} B of JSON) | {variant} | {} | {} | {stored} B | {:.2} |",
                backend.name(),
                ms(median(std::mem::take(&mut writes[k]))),
                ms(median(std::mem::take(&mut loads[k]))),
                stored as f64 / plain_bytes as f64,
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .expect("a PostgreSQL URL as argument or DATABASE_URL");
    println!(
        "| backend | state | stored | snapshot write | load from the snapshot | bytes stored | bytes vs plain |"
    );
    println!("|---|---|---|---|---|---|---|");

    let pg = PostgresEventStore::connect(&url).await.expect("connect");
    let toast: String = sqlx::query_scalar("SHOW default_toast_compression")
        .fetch_one(pg.pool())
        .await
        .expect("default_toast_compression");
    let pg_snapshots = PostgresSnapshotStore::new(pg.pool().clone());
    run(
        Backend::Postgres(pg.pool()),
        Arc::new(pg.clone()),
        Arc::new(pg_snapshots),
    )
    .await;

    let dir = std::env::temp_dir().join(format!("es-bench-compression-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let sqlite = SqliteEventStore::open(dir.join("bench.db"))
        .await
        .expect("open");
    let sqlite_snapshots = SqliteSnapshotStore::new(sqlite.pool().clone());
    run(
        Backend::Sqlite(sqlite.pool()),
        Arc::new(sqlite.clone()),
        Arc::new(sqlite_snapshots),
    )
    .await;
    sqlite.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!(
        "PostgreSQL default_toast_compression: {toast}; medians of {ROUNDS} interleaved rounds (loads: {LOADS_PER_ROUND} per round)."
    );
    pg.close().await;
}
