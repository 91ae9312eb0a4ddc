//! PostgreSQL subscriptions in processes that die: a subscriber killed with SIGKILL in the
//! middle of a batch, again and again, leaves a read model equal to one built from
//! scratch, with no effect applied twice; three processes share a partitioned
//! subscription, one is killed, and its partitions are taken over within the lease time
//! while every event is handled exactly once and each aggregate in order.
//!
//! Each process is the `subscription-worker` binary of this crate, its read model in the
//! same database, written through the batch's transaction.
//!
//! Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventsource::feed::{Checkpoint, FeedQuery};
use eventsource::subscription::partition_of;
use eventsource::{EventMetadata, EventStore, ExpectedVersion, NewEvent, PostgresEventStore};
use eventsource_tests::conformance::subscriptions::Happened;
use eventsource_tests::fixtures::database_url;
use eventsource_tests::{now, unique_type};
use uuid::Uuid;

/// The longest any single wait lasts.
const LIMIT: Duration = Duration::from_secs(60);

/// A worker process and the lines it prints; killed if still running when dropped.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(url: &str, env: &[(&str, String)]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_subscription-worker"))
            .env("DATABASE_URL", url)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the subscription worker");
        let out = BufReader::new(child.stdout.take().expect("worker stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let worker = Worker { child, lines };
        assert_eq!(
            worker.next_line().as_deref(),
            Some("ready"),
            "the worker starts with `ready`"
        );
        worker
    }

    /// The next line printed, waiting at most [`LIMIT`]; `None` if the worker ended.
    fn next_line(&self) -> Option<String> {
        tokio::task::block_in_place(|| match self.lines.recv_timeout(LIMIT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the worker printed nothing for {LIMIT:?}")
            }
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap it.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the worker");
        let _ = tokio::task::block_in_place(|| self.child.wait());
    }

    /// Closes its stdin (the signal to stop) and waits for it to exit.
    fn finish(mut self) -> ExitStatus {
        drop(self.child.stdin.take());
        self.wait()
    }

    /// Waits for it to exit, at most [`LIMIT`].
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        tokio::task::block_in_place(|| {
            loop {
                if let Some(status) = self.child.try_wait().expect("poll the worker") {
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "the worker did not exit within {LIMIT:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn happened() -> NewEvent {
    let event_id = Uuid::new_v4();
    // An `n` of 1 to 1000 that differs from event to event.
    let n = (event_id.as_u128() % 1000) as i64 + 1;
    NewEvent {
        event_id,
        event_type: "Happened".into(),
        event_version: 1,
        payload: serde_json::to_string(&Happened { id: event_id, n }).expect("a payload"),
        metadata: EventMetadata::default(),
        occurred_at: now(),
    }
}

/// Appends `each` events to every aggregate, round robin; records their ids.
async fn append_round(
    store: &PostgresEventStore,
    ty: &str,
    aggregates: &[Uuid],
    each: usize,
    appended: &mut Vec<Uuid>,
) {
    for _ in 0..each {
        for id in aggregates {
            let e = happened();
            store
                .append(ty, *id, ExpectedVersion::Any, std::slice::from_ref(&e))
                .await
                .expect("append");
            appended.push(e.event_id);
        }
    }
}

/// Waits until the feed shows `n` events of `ty` (an older transaction elsewhere in the
/// cluster may hold new events back for a moment); from then on every catch-up sees them.
async fn wait_visible(store: &PostgresEventStore, ty: &str, n: usize) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let mut seen = 0;
        let mut at = Checkpoint::START;
        loop {
            let query = FeedQuery::after(at).aggregate_types([ty]).limit(1000);
            let page = store.read_feed(&query).await.expect("read the feed");
            seen += page.events.len();
            at = page.next;
            if page.at_end(&query) {
                break;
            }
        }
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {n} events of {ty} became visible within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn execute(store: &PostgresEventStore, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn create_totals_tables(store: &PostgresEventStore, prefix: &str) {
    execute(
        store,
        format!(
            "CREATE TABLE {prefix}_totals (aggregate_id UUID PRIMARY KEY, total BIGINT NOT NULL, \
             events BIGINT NOT NULL, last_version BIGINT NOT NULL); \
             CREATE TABLE {prefix}_ids (event_id UUID NOT NULL, position BIGINT NOT NULL)"
        ),
    )
    .await;
}

/// `(aggregate, total, events, last version)` for every aggregate, in id order.
async fn totals(store: &PostgresEventStore, prefix: &str) -> Vec<(Uuid, i64, i64, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT aggregate_id, total, events, last_version FROM {prefix}_totals \
         ORDER BY aggregate_id"
    )))
    .fetch_all(store.pool())
    .await
    .expect("read the totals")
}

/// How many rows each event id has in `<prefix>_<table>`.
async fn id_counts(store: &PostgresEventStore, prefix: &str, table: &str) -> HashMap<Uuid, i64> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT event_id, count(*) FROM {prefix}_{table} GROUP BY event_id"
    )))
    .fetch_all(store.pool())
    .await
    .expect("count the event ids");
    rows.into_iter().collect()
}

fn assert_each_once(counts: &HashMap<Uuid, i64>, appended: &[Uuid], what: &str) {
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "{what}: effects applied twice: {twice:?}");
    assert_eq!(
        counts.keys().copied().collect::<HashSet<_>>(),
        appended.iter().copied().collect::<HashSet<_>>(),
        "{what}: a row for every event appended"
    );
}

async fn drop_tables(store: &PostgresEventStore, tables: &[String]) {
    for t in tables {
        execute(store, format!("DROP TABLE IF EXISTS {t}")).await;
    }
}

/// A subscriber killed with SIGKILL mid-batch four times, with events appended while it
/// runs and while it is down, then restarted to catch up: its read model (an
/// order-sensitive running total per aggregate) equals one built from scratch by another
/// subscription, and its event-id log holds each event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriber_applies_each_effect_once() {
    let Some(url) = database_url() else { return };
    let started = Instant::now();
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let ty = unique_type("KilledSubscriber");
    let prefix = format!("killed_{}", Uuid::new_v4().simple());
    let reference = format!("{prefix}_ref");
    create_totals_tables(&store, &prefix).await;
    create_totals_tables(&store, &reference).await;
    let aggregates: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let mut appended = Vec::new();
    append_round(&store, &ty, &aggregates, 15, &mut appended).await;

    let name = unique_type("killed");
    let env = |mode: &str, name: &str, table: &str, sleep_ms: u64| {
        vec![
            ("SUB_MODE", mode.to_owned()),
            ("SUB_NAME", name.to_owned()),
            ("SUB_TYPE", ty.clone()),
            ("SUB_TABLE", table.to_owned()),
            ("SUB_BATCH", "10".to_owned()),
            ("SUB_SLEEP_MS", sleep_ms.to_string()),
        ]
    };
    for round in 0..4 {
        let worker = Worker::spawn(&url, &env("follow", &name, &prefix, 5));
        // Events appended while it runs.
        append_round(&store, &ty, &aggregates, 2, &mut appended).await;
        // After a commit, let a few events of the next batch (of 10) apply: then its
        // transaction is open, with effects the kill must roll back.
        let into_batch = 2 + 2 * round;
        let mut since_commit: Option<usize> = None;
        loop {
            let line = worker
                .next_line()
                .unwrap_or_else(|| panic!("round {round}: the worker ended early"));
            if line.starts_with("committed ") {
                since_commit = Some(0);
            } else if line.starts_with("applied ") {
                if let Some(n) = since_commit.as_mut() {
                    *n += 1;
                    if *n >= into_batch {
                        break;
                    }
                }
            } else {
                panic!("round {round}: unexpected line {line:?}");
            }
        }
        worker.kill();
        eprintln!("round {round}: killed {into_batch} events into a batch");
        // Events appended while it is down.
        append_round(&store, &ty, &aggregates, 1, &mut appended).await;
    }
    let total = appended.len();
    wait_visible(&store, &ty, total).await;

    // Restarted, it catches up; a subscription of another name builds the reference.
    for (name, table) in [
        (name.clone(), prefix.clone()),
        (unique_type("reference"), reference.clone()),
    ] {
        let mut worker = Worker::spawn(&url, &env("catch-up", &name, &table, 0));
        while let Some(line) = worker.next_line() {
            if line == "done" {
                break;
            }
        }
        let status = worker.wait();
        assert!(
            status.success(),
            "the catch-up into {table} failed: {status}"
        );
    }

    let (mine, fresh) = (
        totals(&store, &prefix).await,
        totals(&store, &reference).await,
    );
    assert_eq!(
        fresh.len(),
        aggregates.len(),
        "the reference has every aggregate"
    );
    for (aggregate, _, events, last_version) in &fresh {
        assert_eq!(
            (*events, *last_version),
            (total as i64 / 8, total as i64 / 8),
            "aggregate {aggregate}: every event applied once, in order"
        );
    }
    assert_eq!(
        mine, fresh,
        "the read model of the killed subscriber equals one built from scratch"
    );
    assert_each_once(
        &id_counts(&store, &prefix, "ids").await,
        &appended,
        "killed",
    );
    assert_each_once(
        &id_counts(&store, &reference, "ids").await,
        &appended,
        "reference",
    );
    drop_tables(
        &store,
        &[
            format!("{prefix}_totals"),
            format!("{prefix}_ids"),
            format!("{reference}_totals"),
            format!("{reference}_ids"),
        ],
    )
    .await;
    store.close().await;
    eprintln!("{total} events, 4 kills, in {:?}", started.elapsed());
}

const PARTITIONS: u32 = 6;
const LEASE: Duration = Duration::from_millis(1500);

/// Aggregate ids, two in each partition.
fn aggregates_in_every_partition() -> Vec<Uuid> {
    let mut per: BTreeMap<u32, Vec<Uuid>> = BTreeMap::new();
    while per.len() < PARTITIONS as usize || per.values().any(|v| v.len() < 2) {
        let id = Uuid::new_v4();
        let list = per.entry(partition_of(id, PARTITIONS)).or_default();
        if list.len() < 2 {
            list.push(id);
        }
    }
    per.into_values().flatten().collect()
}

/// The live leases of the subscription: partition to owner.
async fn leases(store: &PostgresEventStore, name: &str) -> BTreeMap<u32, String> {
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT partition, owner FROM subscription_leases \
         WHERE subscription = $1 AND expires_at > now()",
    )
    .bind(name)
    .fetch_all(store.pool())
    .await
    .expect("read the leases");
    rows.into_iter().map(|(p, o)| (p as u32, o)).collect()
}

/// Three processes share a subscription of six partitions (leases of 1.5 s) while events
/// are appended throughout; one is killed with SIGKILL. Its partitions are handled again
/// by the others within the lease time and a renewal (plus slack), every event is handled
/// exactly once by the partition of its aggregate, and each aggregate in version order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_processes_take_over_a_killed_one() {
    let Some(url) = database_url() else { return };
    let started = Instant::now();
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let ty = unique_type("PartitionedProcesses");
    let name = unique_type("partitioned");
    let prefix = format!("partitioned_{}", Uuid::new_v4().simple());
    let table = format!("{prefix}_handled");
    execute(
        &store,
        format!(
            "CREATE TABLE {table} (seq BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL, \
             aggregate_id UUID NOT NULL, version BIGINT NOT NULL, partition INTEGER NOT NULL, \
             owner TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
        ),
    )
    .await;
    let aggregates = aggregates_in_every_partition();
    let mut initial = Vec::new();
    append_round(&store, &ty, &aggregates, 3, &mut initial).await;

    // Events appended throughout, one every 15 ms, round robin.
    let appending = Arc::new(AtomicBool::new(true));
    let appender = {
        let (store, ty, aggregates, appending) = (
            store.clone(),
            ty.clone(),
            aggregates.clone(),
            appending.clone(),
        );
        tokio::spawn(async move {
            let mut appended = Vec::new();
            while appending.load(Ordering::Relaxed) {
                for id in &aggregates {
                    let e = happened();
                    store
                        .append(&ty, *id, ExpectedVersion::Any, std::slice::from_ref(&e))
                        .await
                        .expect("append");
                    appended.push(e.event_id);
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    if !appending.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            appended
        })
    };

    let owners = ["w0", "w1", "w2"];
    let mut workers: Vec<Option<Worker>> = Vec::new();
    for owner in owners {
        workers.push(Some(Worker::spawn(
            &url,
            &[
                ("SUB_MODE", "partitioned".to_owned()),
                ("SUB_NAME", name.clone()),
                ("SUB_TYPE", ty.clone()),
                ("SUB_TABLE", prefix.clone()),
                ("SUB_BATCH", "5".to_owned()),
                ("SUB_SLEEP_MS", "2".to_owned()),
                ("SUB_OWNER", owner.to_owned()),
                ("SUB_PARTITIONS", PARTITIONS.to_string()),
                ("SUB_LEASE_MS", LEASE.as_millis().to_string()),
            ],
        )));
    }

    // The three share the partitions fairly: two each.
    let deadline = Instant::now() + LIMIT;
    let held = loop {
        let held = leases(&store, &name).await;
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for o in held.values() {
            *per.entry(o.as_str()).or_default() += 1;
        }
        if held.len() == PARTITIONS as usize && per.len() == 3 && per.values().all(|n| *n == 2) {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the processes did not share the partitions within {LIMIT:?}: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("shared after {:?}: {held:?}", started.elapsed());
    // Let them all work a little.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let victim = "w1";
    let theirs: Vec<i32> = held
        .iter()
        .filter(|(_, o)| o.as_str() == victim)
        .map(|(p, _)| *p as i32)
        .collect();
    let (killed_at,): (DateTime<Utc>,) = sqlx::query_as("SELECT clock_timestamp()")
        .fetch_one(store.pool())
        .await
        .expect("the server's clock");
    let worker = workers[1].take().expect("the victim");
    eprintln!(
        "killing {victim} (pid {}), partitions {theirs:?}",
        worker.pid()
    );
    worker.kill();

    // Its partitions are handled again, by the others.
    let deadline = Instant::now() + LIMIT;
    let takeover = loop {
        let firsts: Vec<(i32, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT partition, extract(epoch FROM min(at) - $1::timestamptz)::float8 FROM {table} \
             WHERE at > $1::timestamptz AND partition = ANY($2) GROUP BY partition"
        )))
        .bind(killed_at)
        .bind(&theirs)
        .fetch_all(store.pool())
        .await
        .expect("read the takeover");
        if firsts.len() == theirs.len() {
            break Duration::from_secs_f64(firsts.iter().map(|(_, s)| *s).fold(0.0, f64::max));
        }
        assert!(
            Instant::now() < deadline,
            "the killed process's partitions were not taken over within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bound = LEASE * 4 / 3 + Duration::from_secs(3);
    eprintln!("partitions {theirs:?} handled again {takeover:?} after the kill (bound {bound:?})");
    assert!(
        takeover <= bound,
        "the killed process's partitions were handled again only {takeover:?} after the \
         kill; the documented bound is about the lease time and a renewal ({:?})",
        LEASE * 4 / 3
    );

    // More events, then the end of them; everything is handled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    appending.store(false, Ordering::Relaxed);
    let mut appended = initial;
    appended.extend(appender.await.expect("the appender"));
    let total = appended.len();
    wait_visible(&store, &ty, total).await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let counts = id_counts(&store, &prefix, "handled").await;
        if counts.len() >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} events were handled within {LIMIT:?}",
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, worker) in workers.iter_mut().enumerate() {
        if let Some(worker) = worker.take() {
            let status = worker.finish();
            assert!(status.success(), "worker {} failed: {status}", owners[i]);
        }
    }

    assert_each_once(
        &id_counts(&store, &prefix, "handled").await,
        &appended,
        "partitioned",
    );
    let rows: Vec<(Uuid, i64, i32, String, DateTime<Utc>)> = sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT aggregate_id, version, partition, owner, at FROM {table} ORDER BY seq"),
    ))
    .fetch_all(store.pool())
    .await
    .expect("read the handled rows");
    let mut last: HashMap<Uuid, i64> = HashMap::new();
    let mut by_owner: BTreeMap<String, usize> = BTreeMap::new();
    for (aggregate, version, partition, owner, at) in &rows {
        let previous = last.insert(*aggregate, *version).unwrap_or(0);
        assert_eq!(
            *version,
            previous + 1,
            "aggregate {aggregate}: version {version} handled after {previous}"
        );
        assert_eq!(
            *partition as u32,
            partition_of(*aggregate, PARTITIONS),
            "aggregate {aggregate} handled by its partition"
        );
        assert!(
            owner != victim || *at <= killed_at,
            "nothing of the killed process committed after the kill"
        );
        *by_owner.entry(owner.clone()).or_default() += 1;
    }
    assert_eq!(
        by_owner.len(),
        3,
        "every process handled events: {by_owner:?}"
    );
    drop_tables(&store, &[table]).await;
    store.close().await;
    eprintln!(
        "{total} events handled by {by_owner:?} in {:?}",
        started.elapsed()
    );
}
