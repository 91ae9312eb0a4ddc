//! PostgreSQL backends killed in the middle of saves: whatever the client saw (an
//! error, a lost acknowledgement), the log holds whole batches only, without gaps or
//! duplicates, and every acknowledged batch exactly once.
//!
//! Eight writers save batches of 100 events to three streams, each at the version it
//! last read (`ExpectedVersion::Exact`), for about three seconds. A killer terminates
//! every backend of the writers' pool (recognised by its `application_name`) every
//! 50 ms. A writer whose append fails retries the same batch (same event ids) until it
//! gets `Ok` or `Conflict`; after a conflict it re-reads the head and moves on with a
//! new batch. A batch retried after a commit whose acknowledgement was lost must come
//! back `Ok`, so a batch answered `Conflict` must not be stored at all.
//!
//! Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource::{
    Error, EventStore, EventStoreExt, ExpectedVersion, NewEvent, PostgresEventStore, migrations,
};
use eventsource_tests::fixtures::database_url;
use eventsource_tests::{events, unique_type};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

const WRITERS: usize = 8;
const STREAMS: usize = 3;
const BATCH: usize = 100;
/// How long the writers keep starting new batches.
const RUN_FOR: Duration = Duration::from_secs(3);
/// Bounds of each writer's loops, whatever the timing.
const MAX_BATCHES: usize = 200;
const MAX_ATTEMPTS: usize = 500;
/// The whole test, from connecting to the last check.
const LIMIT: Duration = Duration::from_secs(120);

/// How a writer's batch ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// `Ok(version)`: the batch is stored, its last event at this version.
    Acked(u64),
    /// `Conflict`: another writer took the version; the batch must not be stored.
    Conflicted,
    /// Every attempt failed otherwise: stored in full or not at all.
    Unresolved,
}

struct Batch {
    stream: usize,
    ids: Vec<Uuid>,
    outcome: Outcome,
}

#[derive(Default)]
struct Counts {
    backend_errors: AtomicU64,
    retries_acked: AtomicU64,
}

async fn writer(
    store: PostgresEventStore,
    ty: String,
    streams: Vec<Uuid>,
    which: usize,
    deadline: Instant,
    counts: Arc<Counts>,
) -> Vec<Batch> {
    let stream = which % STREAMS;
    let id = streams[stream];
    let mut done = Vec::new();
    let mut head: Option<u64> = None;
    for _ in 0..MAX_BATCHES {
        if Instant::now() >= deadline {
            break;
        }
        // The head, read again after a conflict (or first), through any failure.
        let at = match head {
            Some(v) => v,
            None => {
                let mut read = None;
                for _ in 0..MAX_ATTEMPTS {
                    match store.stream_version(&ty, id).await {
                        Ok(v) => {
                            read = Some(v.unwrap_or(0));
                            break;
                        }
                        Err(_) => {
                            counts.backend_errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
                match read {
                    Some(v) => v,
                    None => panic!(
                        "writer {which}: the head could not be read in {MAX_ATTEMPTS} attempts"
                    ),
                }
            }
        };
        let batch: Vec<NewEvent> = events(BATCH);
        let mut outcome = Outcome::Unresolved;
        for attempt in 0..MAX_ATTEMPTS {
            match store
                .append(&ty, id, ExpectedVersion::Exact(at), &batch)
                .await
            {
                Ok(version) => {
                    if attempt > 0 {
                        counts.retries_acked.fetch_add(1, Ordering::Relaxed);
                    }
                    outcome = Outcome::Acked(version);
                    break;
                }
                Err(Error::Conflict { .. }) => {
                    outcome = Outcome::Conflicted;
                    break;
                }
                Err(Error::Backend { .. }) => {
                    counts.backend_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(other) => panic!("writer {which}: append at {at}: unexpected {other:?}"),
            }
        }
        head = match outcome {
            Outcome::Acked(version) => Some(version),
            _ => None,
        };
        done.push(Batch {
            stream,
            ids: batch.iter().map(|e| e.event_id).collect(),
            outcome,
        });
    }
    done
}

/// Terminates every backend named `application_name` every 50 ms until `stop`; returns
/// how many it terminated.
async fn killer(pool: sqlx::PgPool, application_name: String, stop: Arc<AtomicBool>) -> u64 {
    let mut killed = 0;
    // Bounded: 3 s of writing is about 60 rounds; the writers stop long before this.
    for _ in 0..2_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND application_name = $1",
        )
        .bind(&application_name)
        .fetch_all(&pool)
        .await
        .expect("terminate the writers' backends");
        killed += terminated.iter().filter(|t| **t).count() as u64;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backends_leave_whole_batches_only() {
    let Some(url) = database_url() else { return };
    tokio::time::timeout(LIMIT, run(url))
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {LIMIT:?}"));
}

async fn run(url: String) {
    let application_name = format!("es-killed-{}", Uuid::new_v4().simple());
    let options = PgConnectOptions::from_str(&url)
        .expect("a PostgreSQL URL")
        .application_name(&application_name);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .expect("connect the writers' pool");
    migrations::migrate_postgres(&pool).await.expect("migrate");
    let store = PostgresEventStore::new(pool);
    let killer_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .expect("connect the killer");

    let ty = unique_type("Killed");
    let streams: Vec<Uuid> = (0..STREAMS).map(|_| Uuid::new_v4()).collect();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let kills = tokio::spawn(killer(
        killer_pool.clone(),
        application_name.clone(),
        stop.clone(),
    ));
    let deadline = Instant::now() + RUN_FOR;
    let writers: Vec<_> = (0..WRITERS)
        .map(|which| {
            tokio::spawn(writer(
                store.clone(),
                ty.clone(),
                streams.clone(),
                which,
                deadline,
                counts.clone(),
            ))
        })
        .collect();
    let mut batches = Vec::new();
    for w in writers {
        batches.extend(w.await.expect("a writer panicked"));
    }
    stop.store(true, Ordering::Relaxed);
    let killed = kills.await.expect("the killer panicked");
    store.close().await;
    killer_pool.close().await;

    // Read back through a pool nobody kills.
    let reader = PostgresEventStore::connect(&url).await.expect("connect");
    let mut stored: Vec<Vec<(u64, Uuid)>> = Vec::new();
    for id in &streams {
        let events = reader
            .load_stream(&ty, *id, 1)
            .await
            .expect("read a stream");
        stored.push(events.iter().map(|e| (e.version, e.event_id)).collect());
    }
    reader.close().await;

    let acked = batches
        .iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .count();
    let conflicted = batches
        .iter()
        .filter(|b| b.outcome == Outcome::Conflicted)
        .count();
    let unresolved = batches.len() - acked - conflicted;
    eprintln!(
        "{} batches: {acked} acknowledged ({} after a retry), {conflicted} conflicts, \
         {unresolved} unresolved; {} backend errors; {killed} backends terminated",
        batches.len(),
        counts.retries_acked.load(Ordering::Relaxed),
        counts.backend_errors.load(Ordering::Relaxed),
    );

    // Versions 1..=n, whole batches only, no id twice.
    let mut where_stored: HashMap<Uuid, (usize, u64)> = HashMap::new();
    for (stream, rows) in stored.iter().enumerate() {
        let versions: Vec<u64> = rows.iter().map(|(v, _)| *v).collect();
        let n = versions.len() as u64;
        assert_eq!(
            versions,
            (1..=n).collect::<Vec<_>>(),
            "stream {stream}: versions 1..=n without gaps"
        );
        assert_eq!(
            n % BATCH as u64,
            0,
            "stream {stream}: {n} events, not whole batches"
        );
        for (version, id) in rows {
            if let Some(first) = where_stored.insert(*id, (stream, *version)) {
                panic!(
                    "event {id} stored twice: {first:?} and {:?}",
                    (stream, version)
                );
            }
        }
    }
    // Every event stored belongs to one of the batches, stored whole and in order.
    let mut batch_of: HashMap<Uuid, usize> = HashMap::new();
    for (i, b) in batches.iter().enumerate() {
        for id in &b.ids {
            batch_of.insert(*id, i);
        }
    }
    let mut stored_batches: BTreeMap<usize, u64> = BTreeMap::new();
    for (stream, rows) in stored.iter().enumerate() {
        for chunk in rows.chunks(BATCH) {
            let (first_version, first_id) = chunk[0];
            let i = *batch_of
                .get(&first_id)
                .unwrap_or_else(|| panic!("event {first_id} belongs to no batch"));
            let b = &batches[i];
            assert_eq!(b.stream, stream, "batch {i} stored in its own stream");
            let ids: Vec<Uuid> = chunk.iter().map(|(_, id)| *id).collect();
            assert_eq!(
                ids, b.ids,
                "stream {stream} from version {first_version}: one whole batch, in order"
            );
            stored_batches.insert(i, first_version + BATCH as u64 - 1);
        }
    }
    for (i, b) in batches.iter().enumerate() {
        match b.outcome {
            Outcome::Acked(version) => assert_eq!(
                stored_batches.get(&i),
                Some(&version),
                "batch {i} was acknowledged at version {version}: stored there exactly once"
            ),
            Outcome::Conflicted => assert!(
                !stored_batches.contains_key(&i),
                "batch {i} was answered Conflict, yet it is stored (at {:?}): \
                 a retry of a committed batch must be Ok",
                stored_batches.get(&i)
            ),
            Outcome::Unresolved => {}
        }
    }
    assert!(acked > 0, "some batch was acknowledged");
}
