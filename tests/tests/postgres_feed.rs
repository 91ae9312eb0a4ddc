//! The PostgreSQL feed never skips: positions come from a sequence and overlapping
//! transactions commit out of position order, yet a reader following the feed gets every
//! committed event exactly once, in an order that never goes back.
//!
//! - Fast writers append through the store while slow ones hold transactions open on
//!   their own connections (inserting rows, sleeping, then committing or rolling back),
//!   and a reader follows the feed throughout.
//! - A transaction left open holds the feed back, and the page says so.
//! - Events written before the feed's migration (5) come through it, first, in position
//!   order.
//!
//! Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`; without it
//! the tests say so and pass, unless `CI` is set, where they fail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource::feed::{Checkpoint, FeedQuery};
use eventsource::migrations::{self, MIGRATIONS_TABLE};
use eventsource::{Error, EventStore, EventStoreExt, ExpectedVersion, PostgresEventStore};
use eventsource_tests::conformance::feed::Follower;
use eventsource_tests::fixtures::database_url;
use eventsource_tests::{events, unique_type};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The tests of this file run one at a time: each one's open transactions would hold
/// the others' feeds back, and the machine's cores go to one load at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Inserts one event row as a writer outside the store would: the transaction id and
/// the position come from the column defaults.
const INSERT_SQL: &str = "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, \
     event_type, event_version, payload, metadata, occurred_at) \
     VALUES ($1, $2, $3, $4, 'Inserted', 1, $5::text::json, '{}', now())";

async fn insert(
    conn: &mut PgConnection,
    ty: &str,
    aggregate_id: Uuid,
    version: i64,
) -> sqlx::Result<Uuid> {
    let event_id = Uuid::new_v4();
    sqlx::query(INSERT_SQL)
        .bind(event_id)
        .bind(aggregate_id)
        .bind(ty)
        .bind(version)
        .bind(format!(r#"{{"v":{version}}}"#))
        .execute(conn)
        .await?;
    Ok(event_id)
}

/// A small deterministic generator of delays and choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// 50 to 300 ms.
    fn hold(&mut self) -> Duration {
        Duration::from_millis(50 + self.below(251))
    }
}

/// What the writers of one run committed and rolled back.
#[derive(Default)]
struct Written {
    /// Event id -> (aggregate id, version).
    committed: HashMap<Uuid, (Uuid, u64)>,
    rolled_back: HashSet<Uuid>,
}

const RUNS: usize = 3;
/// Events the fast writers append in each run, all of them together.
const FAST_EVENTS: usize = 10_000;
const FAST_WRITERS: usize = 6;
const SLOW_WRITERS: usize = 4;

/// One slow writer: transaction after transaction on its own connection, each holding
/// its transaction id for 50 to 300 ms, until `stop`.
async fn slow_writer(
    pool: PgPool,
    ty: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Written>>,
) {
    let mut rng = Rng(seed);
    let mut conn = pool.acquire().await.expect("a connection");
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let id = Uuid::new_v4();
        let mut tx = conn.begin().await.expect("begin");
        let mut ids = Vec::new();
        let kind = (seed + round) % 4;
        if kind == 1 {
            // The transaction id first, the rows much later: their positions come after
            // those of younger transactions that commit meanwhile.
            sqlx::query("SELECT pg_current_xact_id()")
                .execute(&mut *tx)
                .await
                .expect("take a transaction id");
            tokio::time::sleep(rng.hold()).await;
        }
        let rows = 1 + rng.below(3) as i64;
        for v in 1..=rows {
            ids.push(insert(&mut tx, &ty, id, v).await.expect("insert"));
        }
        tokio::time::sleep(rng.hold()).await;
        if kind == 3 {
            // More rows after the pause, then commit.
            ids.push(insert(&mut tx, &ty, id, rows + 1).await.expect("insert"));
        }
        if kind == 2 {
            tx.rollback().await.expect("roll back");
            written.lock().unwrap().rolled_back.extend(ids);
        } else {
            tx.commit().await.expect("commit");
            let mut w = written.lock().unwrap();
            for (i, event_id) in ids.into_iter().enumerate() {
                w.committed.insert(event_id, (id, i as u64 + 1));
            }
        }
    }
}

/// One fast writer: appends through the store, batches of 1 to 5 events, to streams of
/// its own and now and then to one all writers share.
async fn fast_writer(
    store: PostgresEventStore,
    ty: String,
    w: usize,
    shared: Uuid,
    written: Arc<Mutex<Written>>,
) {
    let own = [
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    ];
    let mut total = 0;
    let mut i = 0;
    while total < FAST_EVENTS / FAST_WRITERS {
        i += 1;
        let n = 1 + (w + i) % 5;
        let id = if i % 8 == 0 {
            shared
        } else {
            own[i % own.len()]
        };
        let batch = events(n);
        let version = loop {
            match store.append(&ty, id, ExpectedVersion::Any, &batch).await {
                Ok(version) => break version,
                Err(Error::Conflict { .. }) => tokio::task::yield_now().await,
                Err(e) => panic!("append: {e}"),
            }
        };
        let mut written = written.lock().unwrap();
        for (k, e) in batch.iter().enumerate() {
            let v = version - n as u64 + 1 + k as u64;
            written.committed.insert(e.event_id, (id, v));
        }
        total += n;
    }
}

/// One run: slow and fast writers at once, a reader following the feed throughout.
/// Returns how often the reader met an event whose position was below one it had
/// already read (commits out of position order), and how many events it read.
async fn run(url: &str, run: usize) -> (usize, usize) {
    let store = PostgresEventStore::connect(url).await.expect("connect");
    let raw = PgPoolOptions::new()
        .max_connections(SLOW_WRITERS as u32)
        .connect(url)
        .await
        .expect("a pool for the slow writers");
    let ty = unique_type("NoSkip");
    let written = Arc::new(Mutex::new(Written::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let expected = Arc::new(AtomicUsize::new(usize::MAX));

    let reader = {
        let (store, ty, expected) = (store.clone(), ty.clone(), expected.clone());
        tokio::spawn(async move {
            let mut signal = store.append_signal().expect("an append signal");
            let mut f = Follower::new(
                FeedQuery::after(Checkpoint::START)
                    .limit(200)
                    .aggregate_types([ty]),
            );
            let (mut inversions, mut highest) = (0, 0);
            let started = Instant::now();
            let mut writers_done: Option<Instant> = None;
            while f.seen.len() < expected.load(Ordering::SeqCst) {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the reader did not see every event within 60 s: {} seen, at {}",
                    f.seen.len(),
                    f.checkpoint
                );
                // Once every writer has ended, nothing holds the feed back for long.
                if expected.load(Ordering::SeqCst) != usize::MAX {
                    let done = *writers_done.get_or_insert_with(Instant::now);
                    assert!(
                        done.elapsed() < Duration::from_secs(15),
                        "15 s after the writers ended the reader has seen {} of the {} \
                         committed events, at {}",
                        f.seen.len(),
                        expected.load(Ordering::SeqCst),
                        f.checkpoint
                    );
                }
                let before = f.seen.len();
                let page = f.read_page(&store).await;
                for fed in &f.seen[before..] {
                    if fed.event.position < highest {
                        inversions += 1;
                    }
                    highest = highest.max(fed.event.position);
                }
                if page.at_end(&f.next_query()) {
                    let _ = tokio::time::timeout(Duration::from_millis(10), signal.changed()).await;
                }
            }
            // Everything has ended: one more read finds nothing more.
            let rest = f.read_page(&store).await;
            assert!(rest.events.is_empty(), "no event beyond the committed ones");
            (f, inversions)
        })
    };

    let slow: Vec<_> = (0..SLOW_WRITERS)
        .map(|s| {
            tokio::spawn(slow_writer(
                raw.clone(),
                ty.clone(),
                0x9E37_79B9 + (run * SLOW_WRITERS + s) as u64,
                stop.clone(),
                written.clone(),
            ))
        })
        .collect();
    let shared = Uuid::new_v4();
    let fast: Vec<_> = (0..FAST_WRITERS)
        .map(|w| {
            tokio::spawn(fast_writer(
                store.clone(),
                ty.clone(),
                w,
                shared,
                written.clone(),
            ))
        })
        .collect();
    for writer in fast {
        writer.await.expect("a fast writer");
    }
    stop.store(true, Ordering::SeqCst);
    for writer in slow {
        writer.await.expect("a slow writer");
    }
    let written = std::mem::take(&mut *written.lock().unwrap());
    expected.store(written.committed.len(), Ordering::SeqCst);
    let (f, inversions) = reader.await.expect("the reader");

    let seen: HashSet<Uuid> = f.ids().into_iter().collect();
    assert_eq!(seen.len(), f.seen.len(), "each event once");
    let never: Vec<_> = seen.intersection(&written.rolled_back).collect();
    assert!(never.is_empty(), "rolled-back events were read: {never:?}");
    let committed: HashSet<Uuid> = written.committed.keys().copied().collect();
    let missing: Vec<_> = committed.difference(&seen).take(10).collect();
    let extra: Vec<_> = seen.difference(&committed).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the reader got exactly the committed events: missing {missing:?}..., extra {extra:?}..."
    );
    // Each aggregate's versions, in feed order, are 1, 2, 3... as committed.
    let mut versions: BTreeMap<Uuid, Vec<u64>> = BTreeMap::new();
    for fed in &f.seen {
        let e = &fed.event;
        assert_eq!(
            written.committed[&e.event_id],
            (e.aggregate_id, e.version),
            "the event is at the version it was written at"
        );
        versions.entry(e.aggregate_id).or_default().push(e.version);
    }
    for (id, versions) in versions {
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "aggregate {id}: versions in order"
        );
    }
    let read = f.seen.len();
    raw.close().await;
    store.close().await;
    (inversions, read)
}

/// Slow transactions among fast appends, three runs of over ten thousand events: the
/// reader gets exactly the committed events, once each, never one at or behind its
/// checkpoint, each aggregate's versions in order, rolled-back events never.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_never_skips_under_concurrent_slow_transactions() {
    let Some(url) = database_url() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut inversions = 0;
    for r in 0..RUNS {
        let (inv, read) = run(&url, r).await;
        assert!(read >= FAST_EVENTS, "run {r} read {read} events");
        inversions += inv;
    }
    // The hazard was there: events committed out of position order, which a reader
    // paging by position would have skipped.
    assert!(
        inversions > 0,
        "no event was read after one of a higher position: the test did not exercise \
         commits out of position order"
    );
    eprintln!(
        "{RUNS} runs in {:?}; {inversions} events read after one of a higher position",
        started.elapsed()
    );
}

/// A transaction that holds a transaction id and stays open, without writing to
/// `events`, holds the feed back: an event appended after it is not shown, and the page
/// says it is held back; once that transaction ends (commit or rollback), the event is
/// shown. A reader of other types is not told it is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_the_feed_back() {
    let Some(url) = database_url() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let mut idle = PgConnection::connect(&url).await.expect("a connection");
    let other = unique_type("NotHeld");
    for commit in [true, false] {
        let ty = unique_type("HeldBack");
        let mut tx = idle.begin().await.expect("begin");
        let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut *tx)
            .await
            .expect("take a transaction id");
        let id = Uuid::new_v4();
        let appended = events(1);
        store
            .append(&ty, id, ExpectedVersion::Exact(0), &appended)
            .await
            .expect("append");
        let query = FeedQuery::after(Checkpoint::START).aggregate_types([ty.as_str()]);
        for _ in 0..3 {
            let page = store.read_feed(&query).await.expect("read");
            assert!(
                page.events.is_empty(),
                "an event committed after an open transaction took its id is not shown"
            );
            assert!(page.held_back, "the page says the feed is held back");
            assert!(
                page.next <= Checkpoint::new(xid as u64, 0),
                "the reader's checkpoint ({}) stays before the open transaction ({xid})",
                page.next
            );
            let unrelated = store
                .read_feed(&FeedQuery::after(Checkpoint::START).aggregate_types([other.as_str()]))
                .await
                .expect("read other types");
            assert!(
                !unrelated.held_back,
                "nothing of the other types is held back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if commit {
            tx.commit().await.expect("commit the open transaction");
        } else {
            tx.rollback().await.expect("roll back the open transaction");
        }
        // Shown now (bounded: another client's transaction could hold it a moment more).
        let mut f = Follower::new(query.limit(10));
        f.read_count(&store, 1).await;
        assert_eq!(f.ids(), vec![appended[0].event_id]);
        assert!(f.seen[0].checkpoint.transaction() > xid as u64);
        let page = store.read_feed(&f.next_query()).await.expect("read");
        assert!(page.events.is_empty() && !page.held_back);
    }
    let _ = idle.close().await;
    store.close().await;
}

/// A database created with the schema from before the feed (migrations 1 to 4), holding
/// events written by overlapping transactions, is migrated by `migrate_postgres`: the old
/// events come through, first in the feed, in position order (checkpoints `0/position`),
/// then the events appended after the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_before_the_feed_migration_come_first_in_position_order() {
    let Some(url) = database_url() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let name = format!("eventsource_feed_migration_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a database");
    let options = PgConnectOptions::from_str(&url)
        .expect("a PostgreSQL URL")
        .database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("connect to the new database");
    // Run apart, so that the database is dropped even when a check fails.
    let outcome = tokio::spawn(migrate_old_database(pool.clone())).await;
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the database");
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn migrate_old_database(pool: PgPool) {
    // The schema as the release before the feed left it, recorded as it recorded it.
    let mut old = sqlx::migrate!("../migrations/postgres");
    old.dangerous_set_table_name(MIGRATIONS_TABLE);
    old.run_to(20261202000004, &pool)
        .await
        .expect("migrations 1 to 4");
    let has_column: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_name = 'events' AND column_name = 'transaction_id')",
    )
    .fetch_one(&pool)
    .await
    .expect("look at the columns");
    assert!(!has_column, "the old schema has no transaction ids");

    // Old events, from overlapping transactions that commit out of position order.
    let (ty, a, b) = (unique_type("Legacy"), Uuid::new_v4(), Uuid::new_v4());
    let mut first = pool.begin().await.expect("begin");
    let mut second = pool.begin().await.expect("begin");
    let mut by_position = Vec::new();
    by_position.push(insert(&mut first, &ty, a, 1).await.expect("insert"));
    by_position.push(insert(&mut second, &ty, b, 1).await.expect("insert"));
    by_position.push(insert(&mut second, &ty, b, 2).await.expect("insert"));
    second.commit().await.expect("commit");
    by_position.push(insert(&mut first, &ty, a, 2).await.expect("insert"));
    first.commit().await.expect("commit");
    let mut conn = pool.acquire().await.expect("a connection");
    by_position.push(insert(&mut conn, &ty, a, 3).await.expect("insert"));
    drop(conn);

    migrations::migrate_postgres(&pool)
        .await
        .expect("migrate to the current schema");
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {MIGRATIONS_TABLE} WHERE success"
    )))
    .fetch_one(&pool)
    .await
    .expect("count applied migrations");
    assert_eq!(applied, 9, "every migration is recorded");

    let store = PostgresEventStore::new(pool);
    let old = store.load_stream(&ty, a, 1).await.expect("read a stream");
    assert_eq!(old.len(), 3, "the old events are still there");
    let mut appended = Vec::new();
    let new = events(1);
    store
        .append(&ty, a, ExpectedVersion::Exact(3), &new)
        .await
        .expect("append after the migration");
    appended.extend(new.iter().map(|e| e.event_id));
    let c = Uuid::new_v4();
    let new = events(2);
    store
        .append(&ty, c, ExpectedVersion::Exact(0), &new)
        .await
        .expect("append after the migration");
    appended.extend(new.iter().map(|e| e.event_id));

    let mut f = Follower::new(FeedQuery::after(Checkpoint::START).limit(2));
    f.read_count(&store, by_position.len() + appended.len())
        .await;
    let (before, after) = f.seen.split_at(by_position.len());
    assert_eq!(
        before.iter().map(|e| e.event.event_id).collect::<Vec<_>>(),
        by_position,
        "the old events come first, in position order"
    );
    for fed in before {
        assert_eq!(
            fed.checkpoint,
            Checkpoint::new(0, fed.event.position),
            "an old event's checkpoint is 0/position"
        );
    }
    assert_eq!(
        after.iter().map(|e| e.event.event_id).collect::<Vec<_>>(),
        appended,
        "then the new ones, in the order they were appended"
    );
    assert!(after.iter().all(|e| e.checkpoint.transaction() > 0));

    // A reader that had stopped among the old events reads on from there.
    let mut resumed = Follower::new(FeedQuery::after(before[1].checkpoint).limit(2));
    resumed
        .read_count(&store, by_position.len() - 2 + appended.len())
        .await;
    assert_eq!(
        resumed.ids(),
        f.ids()[2..].to_vec(),
        "a reader resumed among the old events"
    );
}
