//! An event row whose columns no store would write is a typed error, never a panic:
//! `Error::CorruptRow { table: "events", .. }` from `read_stream`, `load_stream` and
//! `read_all` (from that row's position on).
//!
//! A repository load reads only the columns an aggregate needs (version, event type,
//! event version, payload: see `postgres/load.rs` and `LOAD_STREAM_SQL` in
//! `sqlite/events.rs`), so a bad `occurred_at` or `event_id` does not fail it: the
//! load succeeds, with the state of every event.
//!
//! Each case appends three events through a repository, breaks the second row with
//! direct SQL, reads, removes the broken stream (other tests share the database and
//! read its feed), then checks what it read.
//!
//! The PostgreSQL half needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`.

use std::sync::Arc;
use std::time::Duration;

use eventsource::prelude::*;
use eventsource::{
    Error, EventStoreExt, PostgresEventStore, PostgresSnapshotStore, RecordedEvent,
    SqliteEventStore, SqliteSnapshotStore,
};
use eventsource_tests::TempDir;
use eventsource_tests::conformance::repository::{Added, Tally};
use eventsource_tests::fixtures::database_url;
use uuid::Uuid;

/// How long one case may take.
const LIMIT: Duration = Duration::from_secs(30);

/// What each read of the broken stream answered.
#[derive(Debug)]
struct Reads {
    load_stream: eventsource::Result<Vec<RecordedEvent>>,
    /// Versions the visitor saw before `read_stream` stopped, and its answer.
    read_stream: (Vec<u64>, eventsource::Result<u64>),
    read_all_at_row: eventsource::Result<Vec<RecordedEvent>>,
    read_all_before_row: eventsource::Result<Vec<RecordedEvent>>,
    read_all_after_row: eventsource::Result<Vec<RecordedEvent>>,
    load_with_snapshots: eventsource::Result<(u64, i64)>,
    load_without_snapshots: eventsource::Result<(u64, i64)>,
}

/// Saves three events of a new tally; returns its id and the positions of its events.
async fn save_three(events: Arc<dyn EventStore>) -> (Uuid, Vec<u64>) {
    let repo = AggregateRepository::<Tally>::new(events.clone());
    let id = Uuid::new_v4();
    let mut tally = repo.create_new(id);
    for n in 1..=3 {
        tally.record(Added { n });
    }
    repo.save(&mut tally).await.expect("save three events");
    let stored = events.load_stream(Tally::TYPE, id, 1).await.expect("read");
    assert_eq!(stored.len(), 3);
    (id, stored.iter().map(|e| e.position).collect())
}

async fn read_everything(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
    id: Uuid,
    positions: &[u64],
) -> Reads {
    let mut seen = Vec::new();
    let read_stream = events
        .read_stream(Tally::TYPE, id, 1, &mut |e| {
            seen.push(e.version);
            Ok(())
        })
        .await;
    let with = Tally::repository(events.clone(), snapshots);
    let without = AggregateRepository::<Tally>::new(events.clone());
    let state = |r: eventsource::Result<AggregateRoot<Tally>>| {
        r.map(|root| (root.version(), root.state().value))
    };
    Reads {
        load_stream: events.load_stream(Tally::TYPE, id, 1).await,
        read_stream: (seen, read_stream),
        read_all_at_row: events.read_all(positions[1], 1).await,
        read_all_before_row: events.read_all(positions[0], 1).await,
        read_all_after_row: events.read_all(positions[2], 1).await,
        load_with_snapshots: state(with.load(id).await),
        load_without_snapshots: state(without.load(id).await),
    }
}

/// Panics unless `result` is a corrupt row of the events table (of this stream, when
/// `stream` is given).
#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(
    result: &eventsource::Result<T>,
    stream: Option<Uuid>,
    what: &str,
) {
    match result {
        Err(Error::CorruptRow {
            table,
            aggregate_type,
            aggregate_id,
            ..
        }) => {
            assert_eq!(*table, "events", "{what}");
            if let Some(id) = stream {
                assert_eq!(
                    (aggregate_type.as_deref(), *aggregate_id),
                    (Some(Tally::TYPE), Some(id)),
                    "{what}: the error names the stream"
                );
            }
        }
        other => panic!("{what}: expected CorruptRow of events, got {other:?}"),
    }
}

fn check(reads: &Reads, id: Uuid, positions: &[u64], what: &str) {
    assert_corrupt(
        &reads.load_stream,
        Some(id),
        &format!("{what}: load_stream"),
    );
    assert_eq!(
        reads.read_stream.0,
        vec![1],
        "{what}: read_stream visits the rows before the broken one"
    );
    assert_corrupt(
        &reads.read_stream.1,
        Some(id),
        &format!("{what}: read_stream"),
    );
    assert_corrupt(
        &reads.read_all_at_row,
        Some(id),
        &format!("{what}: read_all from the row"),
    );
    match &reads.read_all_before_row {
        Ok(got) if got.len() == 1 && got[0].position == positions[0] => {}
        other => panic!("{what}: read_all of the row before: expected it, got {other:?}"),
    }
    match &reads.read_all_after_row {
        Ok(got) if got.len() == 1 && got[0].position == positions[2] => {}
        other => panic!("{what}: read_all of the row after: expected it, got {other:?}"),
    }
    // 1 + 2 + 3: a load does not read the broken column.
    for (how, load) in [
        ("with snapshots", &reads.load_with_snapshots),
        ("without snapshots", &reads.load_without_snapshots),
    ] {
        assert!(
            matches!(load, Ok((3, 6))),
            "{what}: a repository load {how} reads no broken column: expected Ok((3, 6)), got {load:?}"
        );
    }
}

/// `occurred_at` of `infinity`, `-infinity` and year 294276 (all valid `timestamptz`,
/// none a chrono time) on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreadable_timestamps_are_corrupt_rows() {
    let Some(url) = database_url() else { return };
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let snapshots: Arc<dyn SnapshotStore> =
        Arc::new(PostgresSnapshotStore::new(store.pool().clone()));
    for value in ["infinity", "-infinity", "294276-01-01"] {
        let what = format!("occurred_at = '{value}'");
        let run = async {
            let (id, positions) = save_three(events.clone()).await;
            sqlx::query(
                "UPDATE events SET occurred_at = $1::timestamptz \
                 WHERE aggregate_type = $2 AND aggregate_id = $3 AND version = 2",
            )
            .bind(value)
            .bind(Tally::TYPE)
            .bind(id)
            .execute(store.pool())
            .await
            .expect("break the row");
            let reads = read_everything(events.clone(), snapshots.clone(), id, &positions).await;
            sqlx::query("DELETE FROM events WHERE aggregate_type = $1 AND aggregate_id = $2")
                .bind(Tally::TYPE)
                .bind(id)
                .execute(store.pool())
                .await
                .expect("remove the broken stream");
            (reads, id, positions)
        };
        let (reads, id, positions) = tokio::time::timeout(LIMIT, run)
            .await
            .unwrap_or_else(|_| panic!("{what}: did not finish within {LIMIT:?}"));
        check(&reads, id, &positions, &what);
    }
    store.close().await;
}

/// `occurred_at = 'garbage'` and `event_id = 'not-a-uuid'` in a SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unreadable_columns_are_corrupt_rows() {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open");
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let snapshots: Arc<dyn SnapshotStore> =
        Arc::new(SqliteSnapshotStore::new(store.pool().clone()));
    for set in [
        "occurred_at = 'garbage'",
        "event_id = 'not-a-uuid'",
        "occurred_at = ''",
        "occurred_at = 42",
    ] {
        let run = async {
            let (id, positions) = save_three(events.clone()).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE events SET {set} \
                 WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version = 2"
            )))
            .bind(Tally::TYPE)
            .bind(id.to_string())
            .execute(store.pool())
            .await
            .expect("break the row");
            let reads = read_everything(events.clone(), snapshots.clone(), id, &positions).await;
            sqlx::query("DELETE FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2")
                .bind(Tally::TYPE)
                .bind(id.to_string())
                .execute(store.pool())
                .await
                .expect("remove the broken stream");
            (reads, id, positions)
        };
        let (reads, id, positions) = tokio::time::timeout(LIMIT, run)
            .await
            .unwrap_or_else(|_| panic!("{set}: did not finish within {LIMIT:?}"));
        check(&reads, id, &positions, set);
    }
    store.close().await;
}
