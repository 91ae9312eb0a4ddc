//! The feed and subscriptions: catch-up throughput against a plain sqlx stream, what the
//! feed's guarantee costs writers, live latency from commit to handler, a projection
//! that upserts a row per event against a hand-written loop, and "save → read model
//! updated" against cqrs-es's `GenericQuery`.
//!
//! Every case here runs in databases of its own, so that the main suite's tables and
//! the streams it appends do not weigh on these: `<db>_feed` (the feed, read models,
//! cqrs-es's tables for the end-to-end case), `<db>_guard` (the schema as is) and
//! `<db>_noguard` (the same schema with the feed's column and index dropped), next to
//! the database given with `--pg-url`, and a SQLite file of its own.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use eventsource::feed::{Checkpoint, Envelope, FeedQuery};
use eventsource::migrations::{Backend, Table, schema};
use eventsource::subscription::{Projection, Subscription, SubscriptionStore};
use eventsource::{
    AggregateRepository, BoxError, DomainEvent, EventStore, PostgresEventStore, SqliteEventStore,
};
use futures_util::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, PgPool, Row, SqlitePool};
use uuid::Uuid;

use crate::db::{self, Stream};
use crate::measure::{self, Case, Key, RunFuture, Samples};
use crate::model::{Order, OrderEvent, decode, event_at};
use crate::peers::{self, CqrsOrder};
use crate::suite::{POSTGRES, SQLITE};

/// Catch-up: a subscription with a no-op projection.
pub const SUBSCRIPTION: &str = "eventsource, subscription catch-up";
/// Catch-up: the subscription with batches ten times the size.
pub const SUBSCRIPTION_BIG: &str = "eventsource, subscription catch-up, batches 10× the size";
/// Catch-up: the subscription over sessions with `synchronous_commit = off`.
pub const SUBSCRIPTION_ASYNC: &str = "eventsource, subscription catch-up, synchronous_commit off";
/// Catch-up: `read_feed` pages, decoded, no transaction or checkpoint.
pub const READ_FEED: &str = "eventsource, read_feed pages alone";
/// Catch-up: the same without the event-type filter a subscription sends.
pub const READ_FEED_ALL: &str = "eventsource, read_feed pages alone, no event-type filter";
/// Catch-up floor: one streamed query of the envelope's columns.
pub const STREAM: &str = "floor: one sqlx stream, the envelope's columns";
/// Catch-up floor: keyset pages of the batch size, the envelope's columns.
pub const PAGES: &str = "floor: plain keyset pages of the same size, the envelope's columns";
/// Catch-up floor: one streamed query of event type and payload only.
pub const STREAM_NARROW: &str = "floor: one sqlx stream, event type and payload only";
/// Upserts: the subscription.
pub const UPSERT_OURS: &str = "eventsource, subscription";
/// Upserts: a hand-written loop, one statement per event.
pub const UPSERT_HAND: &str = "hand-written sqlx loop, one upsert per event";
/// Upserts: a hand-written loop, one multi-row upsert per batch.
pub const UPSERT_HAND_MULTI: &str = "hand-written sqlx loop, one multi-row upsert per batch";
/// Writer cost: the schema as is.
pub const GUARDED: &str = "schema as is";
/// Writer cost: the feed's column and index dropped.
pub const UNGUARDED: &str = "feed column and index dropped";
/// Live: the subscription on another store instance (woken by NOTIFY only).
pub const LIVE_NOTIFY: &str = "writer on another store instance: LISTEN/NOTIFY only";
/// Live: as [`LIVE_NOTIFY`], every session with `synchronous_commit = off`.
pub const LIVE_ASYNC: &str =
    "writer on another store instance, synchronous_commit off everywhere: LISTEN/NOTIFY only";
/// Live: the subscription on the writer's store instance.
pub const LIVE_SIGNAL: &str = "writer on the same store instance: in-process signal and NOTIFY";
/// End to end: ours.
pub const E2E_OURS: &str = "eventsource: save, spawned subscription upserts, row read back";
/// End to end: ours, the save alone.
pub const E2E_OURS_SAVE: &str = "eventsource: the save alone (part of the row above)";
/// End to end: ours, the subscription's sessions with `synchronous_commit = off`.
pub const E2E_OURS_ASYNC: &str =
    "eventsource, the subscription's sessions with synchronous_commit off (saves durable)";
/// End to end: cqrs-es.
pub const E2E_CQRS: &str = "cqrs-es: execute (commit + GenericQuery), row read back";

/// Sizes and repetitions.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Events in the feed that catch-up reads.
    pub events: u64,
    /// Events per aggregate in that feed (one transaction each).
    pub per_aggregate: u64,
    /// Timed rounds of the catch-up cases.
    pub catch_up_rounds: usize,
    /// Batch (page) size of subscriptions, `read_feed` and the hand-written loops.
    pub batch: usize,
    /// Events the upserting projection handles (the end of the same feed).
    pub upsert_events: u64,
    /// Timed rounds of the upsert cases.
    pub upsert_rounds: usize,
    /// Small aggregates seeded into both writer-cost databases: count × events.
    pub guard_filler: (u64, u64),
    /// One-event saves per writer-cost variant.
    pub guard_saves: usize,
    /// Concurrent writers.
    pub guard_writers: usize,
    /// Saves per writer per run.
    pub guard_cycles: u64,
    /// Runs of the concurrent writers per variant.
    pub guard_rounds: usize,
    /// Rounds of the live case per variant, and the length of each.
    pub live_rounds: usize,
    /// The length of one live round.
    pub live_round: Duration,
    /// Saves per end-to-end variant.
    pub e2e_samples: usize,
}

impl Plan {
    /// The plan of a mode.
    pub fn new(quick: bool) -> Self {
        if quick {
            Plan {
                events: 3_000,
                per_aggregate: 100,
                catch_up_rounds: 3,
                batch: 500,
                upsert_events: 600,
                upsert_rounds: 3,
                guard_filler: (200, 20),
                guard_saves: 50,
                guard_writers: 16,
                guard_cycles: 10,
                guard_rounds: 2,
                live_rounds: 1,
                live_round: Duration::from_millis(1_000),
                e2e_samples: 10,
            }
        } else {
            Plan {
                events: 100_000,
                per_aggregate: 100,
                catch_up_rounds: 7,
                batch: 500,
                upsert_events: 20_000,
                upsert_rounds: 5,
                guard_filler: (10_000, 20),
                guard_saves: 1_000,
                guard_writers: 16,
                guard_cycles: 100,
                guard_rounds: 11,
                live_rounds: 4,
                live_round: Duration::from_millis(2_500),
                e2e_samples: 200,
            }
        }
    }
}

/// Latencies of one variant, every sample kept.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// Who or what.
    pub who: String,
    /// Every sample.
    pub times: Vec<Duration>,
}

impl Latencies {
    fn new(who: &str) -> Self {
        Latencies {
            who: who.to_owned(),
            times: Vec::new(),
        }
    }

    /// The median.
    pub fn median(&self) -> Duration {
        measure::median(&self.times)
    }

    /// The `q` quantile by nearest rank (0.99 for p99).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// The slowest sample.
    pub fn max(&self) -> Duration {
        self.times.iter().copied().max().unwrap_or_default()
    }
}

/// Events per second of one variant, every run kept.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    /// Who or what.
    pub who: String,
    /// Every run's events per second.
    pub runs: Vec<f64>,
}

impl Rates {
    /// The median run.
    pub fn median(&self) -> f64 {
        let mut sorted = self.runs.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }
}

/// What the live case saw for one variant.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// The variant.
    pub who: String,
    /// From just after `save` returned to the handler seeing the event.
    pub from_save: Latencies,
    /// From the event's `occurred_at` (stamped when recorded, just before the save) to
    /// the handler seeing it.
    pub from_occurred: Latencies,
    /// Events written.
    pub written: u64,
    /// Events the handler saw that were written in the round.
    pub seen: u64,
    /// Events the handler saw before `save` had returned to the writer.
    pub early: u64,
    /// Seconds of writing.
    pub seconds: f64,
    /// Writer ticks at which the subscription reported the feed held back.
    pub held_ticks: u64,
    /// Writer ticks.
    pub ticks: u64,
}

/// Everything this group measured.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// The plan it ran.
    pub plan: Option<Plan>,
    /// Catch-up runs (`what` = `catch-up`).
    pub catch_up: Vec<Samples>,
    /// Upsert runs (`what` = `upsert`).
    pub upsert: Vec<Samples>,
    /// One-event saves, per writer-cost variant.
    pub guard_saves: Vec<Latencies>,
    /// Concurrent writers, per writer-cost variant.
    pub guard_writers: Vec<Rates>,
    /// Live latency, per variant.
    pub live: Vec<Live>,
    /// Save → read model, per variant.
    pub e2e: Vec<Latencies>,
    /// What was left out, and why.
    pub notes: Vec<String>,
    /// Wall time of the group.
    pub elapsed: Duration,
}

fn boxed(f: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static) -> RunFuture {
    Box::pin(f)
}

/// A fresh subscription name.
fn next_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The options of the database `<db>_<suffix>` beside the one `url` names.
fn sibling(url: &str, suffix: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url).context("parsing the PostgreSQL URL")?;
    let name = format!(
        "{}_{suffix}",
        options.get_database().unwrap_or("postgres").to_owned()
    );
    Ok(options.database(&name))
}

/// The same for cqrs-es's sqlx 0.8.
fn sibling08(url: &str, suffix: &str) -> anyhow::Result<sqlx08::postgres::PgConnectOptions> {
    let options = sqlx08::postgres::PgConnectOptions::from_str(url)?;
    let name = format!(
        "{}_{suffix}",
        options.get_database().unwrap_or("postgres").to_owned()
    );
    Ok(options.database(&name))
}

/// Drops every table a case of this group writes, and creates eventsource's again.
async fn pg_reset(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS events, snapshots, _eventsource_migrations, \
         subscription_checkpoints, subscription_parked, subscription_leases, \
         subscription_members, cqrs_events, cqrs_snapshots, bench_counters, bench_e2e, \
         bench_hand_checkpoint, cqrs_e2e_view CASCADE",
    )
    .execute(pool)
    .await?;
    for table in Table::ALL {
        sqlx::raw_sql(AssertSqlSafe(schema(table, Backend::Postgres)))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Streams of `per` events each, `total` events in all.
fn streams(total: u64, per: u64) -> Vec<Stream> {
    (0..total.div_ceil(per))
        .map(|i| Stream {
            id: Uuid::new_v4(),
            n: per.min(total - i * per),
        })
        .collect()
}

/// Writes each stream with one statement: one transaction per aggregate, as saves of
/// `per` events would.
async fn pg_seed(pool: &PgPool, streams: &[Stream]) -> anyhow::Result<()> {
    for s in streams {
        db::pg_seed_events(pool, std::slice::from_ref(s)).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Projections
// ---------------------------------------------------------------------------------------

/// Counts the events it sees and does nothing else.
#[derive(Default)]
struct Count {
    events: u64,
    items: u64,
}

#[eventsource::async_trait]
impl<C: Send> Projection<C> for Count {
    type Event = OrderEvent;

    async fn apply(&mut self, _: &mut C, e: Envelope<OrderEvent>) -> Result<(), BoxError> {
        self.events += 1;
        if let OrderEvent::OrderItemAdded(_) = e.event {
            self.items += 1;
        }
        Ok(())
    }
}

/// The read model of the upsert cases: one row per aggregate.
const COUNTERS: &str = "CREATE TABLE IF NOT EXISTS bench_counters (aggregate_id uuid PRIMARY KEY, \
     events bigint NOT NULL, quantity bigint NOT NULL, last_version bigint NOT NULL)";
/// The same for the end-to-end case.
const E2E_COUNTERS: &str = "CREATE TABLE IF NOT EXISTS bench_e2e (aggregate_id uuid PRIMARY KEY, \
     events bigint NOT NULL, quantity bigint NOT NULL, last_version bigint NOT NULL)";
/// The per-event upsert, for `bench_counters`.
const UPSERT_SQL: &str = "INSERT INTO bench_counters (aggregate_id, events, quantity, last_version) \
     VALUES ($1, 1, $2, $3) ON CONFLICT (aggregate_id) DO UPDATE SET \
     events = bench_counters.events + 1, quantity = bench_counters.quantity + EXCLUDED.quantity, \
     last_version = EXCLUDED.last_version";
/// The per-event upsert, for `bench_e2e`.
const E2E_UPSERT_SQL: &str = "INSERT INTO bench_e2e (aggregate_id, events, quantity, last_version) \
     VALUES ($1, 1, $2, $3) ON CONFLICT (aggregate_id) DO UPDATE SET \
     events = bench_e2e.events + 1, quantity = bench_e2e.quantity + EXCLUDED.quantity, \
     last_version = EXCLUDED.last_version";

fn quantity(e: &OrderEvent) -> i64 {
    match e {
        OrderEvent::OrderItemAdded(i) => i64::from(i.quantity),
        OrderEvent::OrderCreated(_) => 0,
    }
}

/// Upserts a counter row per event, through the batch's transaction.
struct Upsert {
    sql: &'static str,
}

#[eventsource::async_trait]
impl Projection<sqlx::PgConnection> for Upsert {
    type Event = OrderEvent;

    async fn apply(
        &mut self,
        conn: &mut sqlx::PgConnection,
        e: Envelope<OrderEvent>,
    ) -> Result<(), BoxError> {
        sqlx::query(self.sql)
            .bind(e.aggregate_id)
            .bind(quantity(&e.event))
            .bind(i64::try_from(e.version)?)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Notes when it saw each event (by aggregate: every live save is a new aggregate).
struct Probe {
    seen: Arc<Mutex<Vec<(Uuid, Instant, Duration)>>>,
}

#[eventsource::async_trait]
impl<C: Send> Projection<C> for Probe {
    type Event = OrderEvent;

    async fn apply(&mut self, _: &mut C, e: Envelope<OrderEvent>) -> Result<(), BoxError> {
        let at = Instant::now();
        let since = (Utc::now() - e.occurred_at).to_std().unwrap_or_default();
        self.seen
            .lock()
            .expect("probe lock")
            .push((e.aggregate_id, at, since));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The group
// ---------------------------------------------------------------------------------------

/// Runs the whole group. Without a PostgreSQL URL only SQLite's catch-up runs.
pub async fn run(pg_url: Option<&str>, data_dir: &Path, plan: &Plan) -> anyhow::Result<Results> {
    let started = Instant::now();
    let mut results = Results {
        plan: Some(plan.clone()),
        ..Results::default()
    };
    let feed = streams(plan.events, plan.per_aggregate);

    // SQLite: a file of its own.
    eprintln!("feed: seeding SQLite");
    let path = data_dir.join("feed.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    let lite = db::sqlite_open(&path).await?;
    db::sqlite_seed_events(&lite, &feed).await?;
    db::sqlite_analyze(&lite).await?;
    // A settled file: the seeding's write-ahead log folded back into the database.
    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&lite)
        .await?;
    let lite_store = SqliteEventStore::new(lite.clone());

    let Some(url) = pg_url else {
        eprintln!("feed: catch-up (SQLite only)");
        let cases = catch_up_sqlite(&lite_store, &lite, plan);
        results.catch_up = measure::interleaved(cases, 1, plan.catch_up_rounds).await?;
        results.notes.push(
            "PostgreSQL: no server at the given URL, so only SQLite's catch-up ran.".to_owned(),
        );
        results.elapsed = started.elapsed();
        return Ok(results);
    };

    // PostgreSQL: the feed database.
    eprintln!("feed: seeding PostgreSQL");
    let feed_options = sibling(url, "feed")?;
    let pool = db::pg_connect_options(feed_options.clone(), 8, false).await?;
    pg_reset(&pool).await?;
    let seed_pool = db::pg_connect_options(
        feed_options
            .clone()
            .options([("synchronous_commit", "off")]),
        4,
        false,
    )
    .await?;
    pg_seed(&seed_pool, &feed).await?;
    seed_pool.close().await;
    for sql in [COUNTERS, E2E_COUNTERS] {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE bench_hand_checkpoint (name text PRIMARY KEY, transaction_id bigint NOT NULL, \
         position bigint NOT NULL); INSERT INTO bench_hand_checkpoint VALUES ('hand', 0, 0)",
    )
    .execute(&pool)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(peers::CQRS_SCHEMA))
        .execute(&pool)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE cqrs_e2e_view (view_id text NOT NULL, version bigint CHECK (version >= 0) \
         NOT NULL, payload json NOT NULL, PRIMARY KEY (view_id))",
    )
    .execute(&pool)
    .await?;
    db::pg_analyze(&pool).await?;
    let store = PostgresEventStore::new(pool.clone());
    let async_options = feed_options
        .clone()
        .options([("synchronous_commit", "off")]);
    let async_pool = db::pg_connect_options(async_options.clone(), 8, false).await?;
    let unflushed = PostgresEventStore::new(async_pool.clone());

    eprintln!("feed: catch-up");
    let mut cases = catch_up_sqlite(&lite_store, &lite, plan);
    cases.extend(catch_up_pg(&store, &unflushed, &pool, plan));
    results.catch_up = measure::interleaved(cases, 1, plan.catch_up_rounds).await?;

    eprintln!("feed: upserting projection");
    results.upsert = measure::interleaved(
        upsert_cases(&store, &pool, plan).await?,
        1,
        plan.upsert_rounds,
    )
    .await?;

    eprintln!("feed: cost to writers");
    let (saves, writers) = guard(url, plan).await?;
    results.guard_saves = saves;
    results.guard_writers = writers;

    eprintln!("feed: live latency");
    let writer_pool = db::pg_connect_options(feed_options.clone(), 16, false).await?;
    let other = PostgresEventStore::new(writer_pool.clone());
    let async_writer_pool = db::pg_connect_options(async_options, 16, false).await?;
    let other_unflushed = PostgresEventStore::new(async_writer_pool.clone());
    let mut live: Vec<Live> = [LIVE_NOTIFY, LIVE_SIGNAL, LIVE_ASYNC]
        .into_iter()
        .map(|who| Live {
            who: who.to_owned(),
            ..Live::default()
        })
        .collect();
    let mut seed = 0x5851_f42d_4c95_7f2d_u64;
    for _ in 0..plan.live_rounds {
        for k in shuffled(live.len(), &mut seed) {
            let (writer, subscriber) = match k {
                0 => (&other, &store),
                1 => (&store, &store),
                _ => (&other_unflushed, &unflushed),
            };
            live_round(writer, subscriber, plan.live_round, &mut live[k]).await?;
        }
    }
    writer_pool.close().await;
    async_writer_pool.close().await;
    results.live = live;

    eprintln!("feed: save → read model");
    let pool08 = sqlx08::postgres::PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect_with(sibling08(url, "feed")?)
        .await?;
    results.e2e = e2e(&store, &unflushed, &pool, &pool08, plan).await?;
    pool08.close().await;
    async_pool.close().await;
    pool.close().await;
    results.elapsed = started.elapsed();
    Ok(results)
}

// ---------------------------------------------------------------------------------------
// 1. Catch-up
// ---------------------------------------------------------------------------------------

async fn subscription_catch_up<S>(store: S, batch: usize, n: u64) -> anyhow::Result<()>
where
    S: SubscriptionStore + Send + Sync,
    Count: Projection<S::Connection>,
{
    let seen = Subscription::new(next_name("catch-up"), store)
        .batch_size(batch)
        .catch_up(Count::default())
        .await?;
    anyhow::ensure!(
        seen.events == n,
        "subscription saw {} events of {n}",
        seen.events
    );
    Ok(())
}

async fn read_pages(
    store: &dyn EventStore,
    batch: usize,
    n: u64,
    filtered: bool,
) -> anyhow::Result<()> {
    let mut at = Checkpoint::START;
    let mut seen = 0;
    loop {
        let mut query = FeedQuery::after(at).limit(batch);
        if filtered {
            query = query.event_types(OrderEvent::EVENT_TYPES.iter().copied());
        }
        let page = store.read_feed(&query).await?;
        for e in &page.events {
            std::hint::black_box(Envelope::<OrderEvent>::decode(e)?);
            seen += 1;
        }
        at = page.next;
        if page.at_end(&query) {
            break;
        }
    }
    anyhow::ensure!(n == 0 || seen == n, "read_feed gave {seen} events of {n}");
    Ok(())
}

/// The floor on PostgreSQL: one streamed query in the feed's order.
async fn pg_stream(pool: &PgPool, wide: bool, n: u64) -> anyhow::Result<()> {
    let sql = if wide {
        // The alias keeps `ORDER BY` on the xid8 column, so that the feed's index serves it
        // (named `transaction_id`, the cast would be sorted instead).
        "SELECT transaction_id::text::bigint AS tx, position, event_id, aggregate_type, \
         aggregate_id, version, event_type, event_version, payload::text, metadata::text, \
         occurred_at FROM events ORDER BY transaction_id, position"
    } else {
        "SELECT event_type, payload::text FROM events ORDER BY transaction_id, position"
    };
    let mut rows = sqlx::query(sql).fetch(pool);
    let mut seen = 0;
    while let Some(row) = rows.try_next().await? {
        let event = if wide {
            let _: i64 = row.try_get(0)?;
            let _: i64 = row.try_get(1)?;
            let _: Uuid = row.try_get(2)?;
            let _: &str = row.try_get(3)?;
            let _: Uuid = row.try_get(4)?;
            let _: i64 = row.try_get(5)?;
            let _: i32 = row.try_get(7)?;
            let _: &str = row.try_get(9)?;
            let _: DateTime<Utc> = row.try_get(10)?;
            decode(row.try_get(6)?, row.try_get(8)?)?
        } else {
            decode(row.try_get(0)?, row.try_get(1)?)?
        };
        std::hint::black_box(event);
        seen += 1;
    }
    anyhow::ensure!(n == 0 || seen == n, "stream gave {seen} events of {n}");
    Ok(())
}

/// The paged floor on PostgreSQL: `WHERE (transaction_id, position) > (..) ORDER BY
/// transaction_id, position LIMIT batch`, each page fetched whole, no horizon.
async fn pg_pages(pool: &PgPool, batch: usize, n: u64) -> anyhow::Result<()> {
    let (mut after, mut seen) = ((0_i64, 0_i64), 0);
    loop {
        let rows = sqlx::query(
            "SELECT transaction_id::text::bigint AS tx, position, event_id, aggregate_type, \
             aggregate_id, version, event_type, event_version, payload::text, metadata::text, \
             occurred_at FROM events WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
             ORDER BY transaction_id, position LIMIT $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(i64::try_from(batch)?)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            after = (row.try_get(0)?, row.try_get(1)?);
            let _: Uuid = row.try_get(2)?;
            let _: &str = row.try_get(3)?;
            let _: Uuid = row.try_get(4)?;
            let _: i64 = row.try_get(5)?;
            let _: i32 = row.try_get(7)?;
            let _: &str = row.try_get(9)?;
            let _: DateTime<Utc> = row.try_get(10)?;
            std::hint::black_box(decode(row.try_get(6)?, row.try_get(8)?)?);
            seen += 1;
        }
        if rows.len() < batch {
            break;
        }
    }
    anyhow::ensure!(n == 0 || seen == n, "pages gave {seen} events of {n}");
    Ok(())
}

/// The paged floor on SQLite: `WHERE position > ? ORDER BY position LIMIT batch`.
async fn sqlite_pages(pool: &SqlitePool, batch: usize, n: u64) -> anyhow::Result<()> {
    let (mut after, mut seen) = (0_i64, 0);
    loop {
        let rows = sqlx::query(
            "SELECT position, event_id, aggregate_type, aggregate_id, version, event_type, \
             event_version, payload, metadata, occurred_at FROM events WHERE position > ?1 \
             ORDER BY position LIMIT ?2",
        )
        .bind(after)
        .bind(i64::try_from(batch)?)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            after = row.try_get(0)?;
            let _ = Uuid::parse_str(row.try_get(1)?)?;
            let _: &str = row.try_get(2)?;
            let _ = Uuid::parse_str(row.try_get(3)?)?;
            let _: i64 = row.try_get(4)?;
            let _: i64 = row.try_get(6)?;
            let _: &str = row.try_get(8)?;
            let _ = DateTime::parse_from_rfc3339(row.try_get(9)?)?;
            std::hint::black_box(decode(row.try_get(5)?, row.try_get(7)?)?);
            seen += 1;
        }
        if rows.len() < batch {
            break;
        }
    }
    anyhow::ensure!(seen == n, "pages gave {seen} events of {n}");
    Ok(())
}

/// Profiling aid: reads the whole feed of `<db>_feed` (seeded by an earlier run of this
/// group) `passes` times as `who` does (`subscription`, `read_feed`, `stream` or `pages`), and
/// prints the wall and CPU time of each pass, for `perf` or `valgrind` to look at.
pub async fn feed_loop(pg_url: &str, who: &str, passes: u64) -> anyhow::Result<()> {
    let pool = db::pg_connect_options(sibling(pg_url, "feed")?, 4, false).await?;
    let store = PostgresEventStore::new(pool.clone());
    for _ in 0..passes {
        let (wall, cpu) = (Instant::now(), cpu_time());
        match who {
            "subscription" => {
                Subscription::new(format!("profile-{}", Uuid::new_v4()), store.clone())
                    .catch_up(Count::default())
                    .await?;
            }
            "read_feed" => read_pages(&store, 500, 0, true).await?,
            "stream" => pg_stream(&pool, true, 0).await?,
            "pages" => pg_pages(&pool, 500, 0).await?,
            other => anyhow::bail!("unknown feed loop {other}"),
        }
        println!(
            "{who}: {:.1} ms wall, {:.0} ms CPU in this process",
            wall.elapsed().as_secs_f64() * 1e3,
            (cpu_time() - cpu).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// User and system CPU time of this process so far (`/proc/self/stat`, in clock ticks of
/// 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// The floor on SQLite: one streamed query in position order; ids and timestamps parsed
/// from their text as the store does.
async fn sqlite_stream(pool: &SqlitePool, wide: bool, n: u64) -> anyhow::Result<()> {
    let sql = if wide {
        "SELECT position, event_id, aggregate_type, aggregate_id, version, event_type, \
         event_version, payload, metadata, occurred_at FROM events ORDER BY position"
    } else {
        "SELECT event_type, payload FROM events ORDER BY position"
    };
    let mut rows = sqlx::query(sql).fetch(pool);
    let mut seen = 0;
    while let Some(row) = rows.try_next().await? {
        let event = if wide {
            let _: i64 = row.try_get(0)?;
            let _ = Uuid::parse_str(row.try_get(1)?)?;
            let _: &str = row.try_get(2)?;
            let _ = Uuid::parse_str(row.try_get(3)?)?;
            let _: i64 = row.try_get(4)?;
            let _: i64 = row.try_get(6)?;
            let _: &str = row.try_get(8)?;
            let _ = DateTime::parse_from_rfc3339(row.try_get(9)?)?;
            decode(row.try_get(5)?, row.try_get(7)?)?
        } else {
            decode(row.try_get(0)?, row.try_get(1)?)?
        };
        std::hint::black_box(event);
        seen += 1;
    }
    anyhow::ensure!(seen == n, "stream gave {seen} events of {n}");
    Ok(())
}

fn catch_up_sqlite(store: &SqliteEventStore, pool: &SqlitePool, plan: &Plan) -> Vec<Case> {
    let (n, batch) = (plan.events, plan.batch);
    let mut cases = Vec::new();
    let s = store.clone();
    cases.push(Case::new(
        Key::new("catch-up", SQLITE, SUBSCRIPTION, n),
        move || boxed(subscription_catch_up(s.clone(), batch, n)),
    ));
    let s = store.clone();
    cases.push(Case::new(
        Key::new("catch-up", SQLITE, SUBSCRIPTION_BIG, n),
        move || boxed(subscription_catch_up(s.clone(), batch * 10, n)),
    ));
    for (who, filtered) in [(READ_FEED, true), (READ_FEED_ALL, false)] {
        let s = store.clone();
        cases.push(Case::new(Key::new("catch-up", SQLITE, who, n), move || {
            let s = s.clone();
            boxed(async move { read_pages(&s, batch, n, filtered).await })
        }));
    }
    for (who, wide) in [(STREAM, true), (STREAM_NARROW, false)] {
        let p = pool.clone();
        cases.push(Case::new(Key::new("catch-up", SQLITE, who, n), move || {
            let p = p.clone();
            boxed(async move { sqlite_stream(&p, wide, n).await })
        }));
    }
    let p = pool.clone();
    cases.push(Case::new(
        Key::new("catch-up", SQLITE, PAGES, n),
        move || {
            let p = p.clone();
            boxed(async move { sqlite_pages(&p, batch, n).await })
        },
    ));
    cases
}

fn catch_up_pg(
    store: &PostgresEventStore,
    unflushed: &PostgresEventStore,
    pool: &PgPool,
    plan: &Plan,
) -> Vec<Case> {
    let (n, batch) = (plan.events, plan.batch);
    let mut cases = Vec::new();
    let s = store.clone();
    cases.push(Case::new(
        Key::new("catch-up", POSTGRES, SUBSCRIPTION, n),
        move || boxed(subscription_catch_up(s.clone(), batch, n)),
    ));
    let s = store.clone();
    cases.push(Case::new(
        Key::new("catch-up", POSTGRES, SUBSCRIPTION_BIG, n),
        move || boxed(subscription_catch_up(s.clone(), batch * 10, n)),
    ));
    let s = unflushed.clone();
    cases.push(Case::new(
        Key::new("catch-up", POSTGRES, SUBSCRIPTION_ASYNC, n),
        move || boxed(subscription_catch_up(s.clone(), batch, n)),
    ));
    for (who, filtered) in [(READ_FEED, true), (READ_FEED_ALL, false)] {
        let s = store.clone();
        cases.push(Case::new(
            Key::new("catch-up", POSTGRES, who, n),
            move || {
                let s = s.clone();
                boxed(async move { read_pages(&s, batch, n, filtered).await })
            },
        ));
    }
    for (who, wide) in [(STREAM, true), (STREAM_NARROW, false)] {
        let p = pool.clone();
        cases.push(Case::new(
            Key::new("catch-up", POSTGRES, who, n),
            move || {
                let p = p.clone();
                boxed(async move { pg_stream(&p, wide, n).await })
            },
        ));
    }
    let p = pool.clone();
    cases.push(Case::new(
        Key::new("catch-up", POSTGRES, PAGES, n),
        move || {
            let p = p.clone();
            boxed(async move { pg_pages(&p, batch, n).await })
        },
    ));
    cases
}

// ---------------------------------------------------------------------------------------
// 4a. A projection that upserts a row per event
// ---------------------------------------------------------------------------------------

/// The hand-written loop: pages of the same size in the feed's order (without the
/// feed's horizon), each handled in one transaction that also moves a checkpoint row.
async fn hand_upserts(
    pool: &PgPool,
    from: Checkpoint,
    batch: usize,
    multi_row: bool,
) -> anyhow::Result<u64> {
    let mut after = (
        i64::try_from(from.transaction())?,
        i64::try_from(from.position())?,
    );
    let mut seen = 0;
    loop {
        let rows = sqlx::query(
            "SELECT transaction_id::text::bigint, position, aggregate_id, version, event_type, \
             payload::text FROM events WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
             ORDER BY transaction_id, position LIMIT $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(i64::try_from(batch)?)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else {
            break;
        };
        let last = (last.try_get::<i64, _>(0)?, last.try_get::<i64, _>(1)?);
        let mut tx = pool.begin().await?;
        if multi_row {
            // One row per aggregate of the page, in order of first appearance.
            let mut index: HashMap<Uuid, usize> = HashMap::new();
            let (mut ids, mut counts, mut quantities, mut versions) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for row in &rows {
                let id: Uuid = row.try_get(2)?;
                let version: i64 = row.try_get(3)?;
                let q = quantity(&decode(row.try_get(4)?, row.try_get(5)?)?);
                let i = *index.entry(id).or_insert_with(|| {
                    ids.push(id);
                    counts.push(0_i64);
                    quantities.push(0_i64);
                    versions.push(0_i64);
                    ids.len() - 1
                });
                counts[i] += 1;
                quantities[i] += q;
                versions[i] = version;
            }
            sqlx::query(
                "INSERT INTO bench_counters (aggregate_id, events, quantity, last_version) \
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET \
                 events = bench_counters.events + EXCLUDED.events, \
                 quantity = bench_counters.quantity + EXCLUDED.quantity, \
                 last_version = EXCLUDED.last_version",
            )
            .bind(&ids)
            .bind(&counts)
            .bind(&quantities)
            .bind(&versions)
            .execute(&mut *tx)
            .await?;
        } else {
            for row in &rows {
                let id: Uuid = row.try_get(2)?;
                let version: i64 = row.try_get(3)?;
                let event = decode(row.try_get(4)?, row.try_get(5)?)?;
                sqlx::query(UPSERT_SQL)
                    .bind(id)
                    .bind(quantity(&event))
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE bench_hand_checkpoint SET transaction_id = $1, position = $2 WHERE name = 'hand'",
        )
        .bind(last.0)
        .bind(last.1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        seen += rows.len() as u64;
        after = last;
        if rows.len() < batch {
            break;
        }
    }
    Ok(seen)
}

async fn upsert_cases(
    store: &PostgresEventStore,
    pool: &PgPool,
    plan: &Plan,
) -> anyhow::Result<Vec<Case>> {
    let (m, batch) = (plan.upsert_events, plan.batch);
    anyhow::ensure!(
        m < plan.events,
        "the upsert range must leave events before it"
    );
    // The checkpoint just before the last `m` events of the feed.
    let (t, p): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, position FROM events \
         ORDER BY transaction_id, position OFFSET $1 LIMIT 1",
    )
    .bind(i64::try_from(plan.events - m - 1)?)
    .fetch_one(pool)
    .await?;
    let from = Checkpoint::new(u64::try_from(t)?, u64::try_from(p)?);
    let settle = {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            boxed(async move {
                let (events,): (i64,) =
                    sqlx::query_as("SELECT COALESCE(SUM(events), 0)::bigint FROM bench_counters")
                        .fetch_one(&pool)
                        .await?;
                anyhow::ensure!(
                    events == i64::try_from(m)?,
                    "read model counted {events} events of {m}"
                );
                sqlx::raw_sql("TRUNCATE bench_counters")
                    .execute(&pool)
                    .await?;
                Ok(())
            })
        }
    };
    let mut cases = Vec::new();
    let s = store.clone();
    cases.push(
        Case::new(Key::new("upsert", POSTGRES, UPSERT_OURS, m), move || {
            let s = s.clone();
            boxed(async move {
                let name = next_name("upsert");
                s.set_checkpoint(&name, 0, from).await?;
                Subscription::new(name, s)
                    .batch_size(batch)
                    .catch_up(Upsert { sql: UPSERT_SQL })
                    .await?;
                Ok(())
            })
        })
        .settle(settle.clone()),
    );
    for (who, multi) in [(UPSERT_HAND, false), (UPSERT_HAND_MULTI, true)] {
        let p = pool.clone();
        cases.push(
            Case::new(Key::new("upsert", POSTGRES, who, m), move || {
                let p = p.clone();
                boxed(async move {
                    let seen = hand_upserts(&p, from, batch, multi).await?;
                    anyhow::ensure!(seen == m, "hand loop read {seen} events of {m}");
                    Ok(())
                })
            })
            .settle(settle.clone()),
        );
    }
    Ok(cases)
}

// ---------------------------------------------------------------------------------------
// 2. What the feed's guarantee costs writers
// ---------------------------------------------------------------------------------------

/// A small deterministic shuffle, so that no variant always runs first.
fn shuffled(n: usize, seed: &mut u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        order.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
    order
}

async fn guard(url: &str, plan: &Plan) -> anyhow::Result<(Vec<Latencies>, Vec<Rates>)> {
    let filler: Vec<Stream> = (0..plan.guard_filler.0)
        .map(|_| Stream {
            id: Uuid::new_v4(),
            n: plan.guard_filler.1,
        })
        .collect();
    // (who, the database's options, durable commits), in report order.
    let mut variants: Vec<(String, PgConnectOptions)> = Vec::new();
    for (suffix, guarded) in [("guard", true), ("noguard", false)] {
        let options = sibling(url, suffix)?;
        let pool = db::pg_connect_options(options.clone(), 2, false).await?;
        pg_reset(&pool).await?;
        if !guarded {
            sqlx::raw_sql("DROP INDEX events_feed; ALTER TABLE events DROP COLUMN transaction_id")
                .execute(&pool)
                .await?;
        }
        let has: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'events' \
             AND column_name = 'transaction_id'",
        )
        .fetch_optional(&pool)
        .await?;
        anyhow::ensure!(
            has.is_some() == guarded,
            "{suffix}: transaction_id present: {}",
            has.is_some()
        );
        db::pg_seed_events(&pool, &filler).await?;
        db::pg_analyze(&pool).await?;
        pool.close().await;
        let label = if guarded { GUARDED } else { UNGUARDED };
        variants.push((format!("{label}, durable commits"), options.clone()));
        variants.push((
            format!("{label}, synchronous_commit off"),
            options.options([("synchronous_commit", "off")]),
        ));
    }
    let repo_over = |pool: &PgPool| {
        AggregateRepository::<Order>::new(Arc::new(PostgresEventStore::new(pool.clone())))
    };
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;

    // One-event saves: the four variants interleaved save by save, over small pools.
    let mut pools = Vec::new();
    for (_, options) in &variants {
        pools.push(db::pg_connect_options(options.clone(), 2, false).await?);
    }
    let repos: Vec<_> = pools.iter().map(repo_over).collect();
    for repo in &repos {
        for _ in 0..20 {
            save_new(repo).await?;
        }
    }
    let mut saves: Vec<Latencies> = variants.iter().map(|(w, _)| Latencies::new(w)).collect();
    for _ in 0..plan.guard_saves {
        for i in shuffled(repos.len(), &mut seed) {
            let started = Instant::now();
            save_new(&repos[i]).await?;
            saves[i].times.push(started.elapsed());
        }
    }
    for p in pools {
        p.close().await;
    }

    // Concurrent writers: the two databases interleaved run by run, durable commits first,
    // then sessions with synchronous_commit off; one pool per database at a time, so that
    // the server's connection limit is not reached.
    let mut rates: Vec<Rates> = variants
        .iter()
        .map(|(w, _)| Rates {
            who: w.clone(),
            runs: Vec::new(),
        })
        .collect();
    let connections = u32::try_from(plan.guard_writers)? + 1;
    for pair in [[0, 2], [1, 3]] {
        let mut pools = Vec::new();
        for &v in &pair {
            pools.push(db::pg_connect_options(variants[v].1.clone(), connections, false).await?);
        }
        let repos: Vec<_> = pools.iter().map(repo_over).collect();
        // Untimed: opens the pools' connections.
        for repo in &repos {
            writers_saving(repo, plan.guard_writers, plan.guard_cycles.min(10)).await?;
        }
        for _ in 0..plan.guard_rounds {
            for k in shuffled(2, &mut seed) {
                let value =
                    writers_saving(&repos[k], plan.guard_writers, plan.guard_cycles).await?;
                rates[pair[k]].runs.push(value);
            }
        }
        for p in pools {
            p.close().await;
        }
    }
    Ok((saves, rates))
}

async fn save_new(repo: &AggregateRepository<Order>) -> anyhow::Result<()> {
    let mut root = repo.create_new(Uuid::new_v4());
    root.record(event_at(1));
    repo.save(&mut root).await?;
    Ok(())
}

/// `writers` tasks, each saving `cycles` one-event saves to an aggregate of its own
/// (no loads); events per second over the wall time.
async fn writers_saving(
    repo: &AggregateRepository<Order>,
    writers: usize,
    cycles: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let mut root = repo.create_new(Uuid::new_v4());
            for v in 1..=cycles {
                root.record(event_at(v));
                repo.save(&mut root).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(writers as f64 * cycles as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

// ---------------------------------------------------------------------------------------
// 3. Live latency
// ---------------------------------------------------------------------------------------

/// One round: a subscription on `subscriber` follows live while a writer on `writer`
/// saves one event (a new aggregate) at every millisecond tick, each save on a task of
/// its own so that a slow commit does not lower the rate.
async fn live_round(
    writer: &PostgresEventStore,
    subscriber: &PostgresEventStore,
    length: Duration,
    into: &mut Live,
) -> anyhow::Result<()> {
    let name = next_name("live");
    // Start at the end of the feed.
    Subscription::new(name.clone(), subscriber.clone())
        .catch_up(Count::default())
        .await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut handle = Subscription::new(name, subscriber.clone()).spawn(Probe {
        seen: Arc::clone(&seen),
    });
    anyhow::ensure!(
        handle
            .wait_until(|s| s.caught_up, Duration::from_secs(30))
            .await,
        "live subscription did not start"
    );
    let repo = AggregateRepository::<Order>::new(Arc::new(writer.clone()));
    let saved: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut tasks = Vec::new();
    let started = Instant::now();
    let (mut ticks, mut held) = (0, 0);
    while started.elapsed() < length {
        tick.tick().await;
        ticks += 1;
        if handle.status().held_back_for.is_some() {
            held += 1;
        }
        let repo = repo.clone();
        let saved = Arc::clone(&saved);
        tasks.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            let mut root = repo.create_new(id);
            root.record(event_at(1));
            repo.save(&mut root).await?;
            saved.lock().expect("saved lock").insert(id, Instant::now());
            anyhow::Ok(())
        }));
    }
    let seconds = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await??;
    }
    let written = saved.lock().expect("saved lock").len() as u64;
    let all_seen = handle
        .wait_until(|s| s.handled >= written, Duration::from_secs(30))
        .await;
    handle.stop().await?;
    anyhow::ensure!(all_seen, "live subscription did not see every event");
    let saved = saved.lock().expect("saved lock");
    let seen = seen.lock().expect("probe lock");
    for (id, at, since_occurred) in seen.iter() {
        let Some(done) = saved.get(id) else {
            continue;
        };
        into.seen += 1;
        if at < done {
            into.early += 1;
        }
        into.from_save
            .times
            .push(at.saturating_duration_since(*done));
        into.from_occurred.times.push(*since_occurred);
    }
    into.from_save.who = format!("{}, from save returned", into.who);
    into.from_occurred.who = format!("{}, from occurred_at", into.who);
    into.written += written;
    into.seconds += seconds;
    into.ticks += ticks;
    into.held_ticks += held;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4b. Save → read model updated, against cqrs-es's GenericQuery
// ---------------------------------------------------------------------------------------

/// cqrs-es's view of an order: the same counters as `bench_e2e`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CounterView {
    events: u64,
    quantity: u64,
    last_version: u64,
}

impl cqrs_es::View<CqrsOrder> for CounterView {
    fn update(&mut self, event: &cqrs_es::EventEnvelope<CqrsOrder>) {
        self.events += 1;
        if let peers::PeerEvent::OrderItemAdded(i) = &event.payload {
            self.quantity += u64::from(i.quantity);
        }
        self.last_version = event.sequence as u64;
    }
}

async fn e2e(
    store: &PostgresEventStore,
    unflushed: &PostgresEventStore,
    pool: &PgPool,
    pool08: &sqlx08::PgPool,
    plan: &Plan,
) -> anyhow::Result<Vec<Latencies>> {
    let repo = AggregateRepository::<Order>::new(Arc::new(store.clone()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut query = cqrs_es::persist::GenericQuery::<
        postgres_es::PostgresViewRepository<CounterView, CqrsOrder>,
        CounterView,
        CqrsOrder,
    >::new(Arc::new(postgres_es::PostgresViewRepository::new(
        "cqrs_e2e_view",
        pool08.clone(),
    )));
    let counted = Arc::clone(&errors);
    query.use_error_handler(Box::new(move |e| {
        eprintln!("cqrs-es query error: {e}");
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    let framework =
        cqrs_es::CqrsFramework::new(peers::cqrs_event_store(pool08), vec![Box::new(query)], ());

    let mut ours = Latencies::new(E2E_OURS);
    let mut ours_save = Latencies::new(E2E_OURS_SAVE);
    let mut ours_async = Latencies::new(E2E_OURS_ASYNC);
    let mut theirs = Latencies::new(E2E_CQRS);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    // Phase 1: the subscription on the writer's store; phase 2: on a store whose sessions
    // commit with `synchronous_commit = off` (the saves stay durable). cqrs-es alternates
    // with ours in both.
    for (subscriber, phase) in [(store, 0), (unflushed, 1)] {
        let name = next_name("e2e");
        Subscription::new(name.clone(), subscriber.clone())
            .catch_up(Count::default())
            .await?;
        let mut handle = Subscription::new(name, subscriber.clone()).spawn(Upsert {
            sql: E2E_UPSERT_SQL,
        });
        anyhow::ensure!(
            handle
                .wait_until(|s| s.caught_up, Duration::from_secs(30))
                .await,
            "end-to-end subscription did not start"
        );
        let mut handled = 0;
        let warmup = 10;
        for i in 0..warmup + plan.e2e_samples {
            for k in shuffled(2, &mut seed) {
                let id = Uuid::new_v4();
                let started = Instant::now();
                if k == 0 {
                    let mut root = repo.load_or_create(id).await?;
                    root.record(event_at(1));
                    repo.save(&mut root).await?;
                    let saved = started.elapsed();
                    handled += 1;
                    anyhow::ensure!(
                        handle
                            .wait_until(|s| s.handled >= handled, Duration::from_secs(10))
                            .await,
                        "read model not updated within 10 s"
                    );
                    let row: Option<i64> =
                        sqlx::query_scalar("SELECT events FROM bench_e2e WHERE aggregate_id = $1")
                            .bind(id)
                            .fetch_optional(pool)
                            .await?;
                    anyhow::ensure!(row == Some(1), "read model row: {row:?}");
                    if i >= warmup {
                        if phase == 0 {
                            ours.times.push(started.elapsed());
                            ours_save.times.push(saved);
                        } else {
                            ours_async.times.push(started.elapsed());
                        }
                    }
                } else {
                    framework
                        .execute(
                            &id.to_string(),
                            peers::AddEvents(vec![peers::peer_event_at(1)]),
                        )
                        .await
                        .map_err(|e| anyhow!("cqrs-es execute: {e}"))?;
                    let row: Option<String> = sqlx::query_scalar(
                        "SELECT payload::text FROM cqrs_e2e_view WHERE view_id = $1",
                    )
                    .bind(id.to_string())
                    .fetch_optional(pool)
                    .await?;
                    anyhow::ensure!(row.is_some(), "cqrs-es view row missing");
                    if i >= warmup {
                        theirs.times.push(started.elapsed());
                    }
                }
            }
        }
        handle.stop().await?;
    }
    anyhow::ensure!(
        errors.load(Ordering::Relaxed) == 0,
        "cqrs-es's query reported errors"
    );
    Ok(vec![ours, ours_save, ours_async, theirs])
}
