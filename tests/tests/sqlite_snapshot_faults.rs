//! A SQLite snapshot database locked by another connection (`BEGIN IMMEDIATE` and a
//! write to `snapshots`, holding the write lock): loads return the right state and
//! saves stand within a bound far above the snapshot timeout. In WAL mode a writer
//! blocks no reader, so the events (and the committed snapshots) stay readable; a
//! snapshot write waits on the lock, for up to the store's 30 s busy timeout, and the
//! snapshot timeout must cut it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eventsource::prelude::*;
use eventsource::{Error, SqliteEventStore, SqliteSnapshotStore};
use eventsource_tests::TempDir;
use eventsource_tests::conformance::faults::{bounded, record};
use eventsource_tests::conformance::repository::Tally;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;

/// The snapshot timeout of every repository here.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(300);

/// The most one call may take: far above the snapshot timeout, far below the 30 s busy
/// timeout a call waiting on the lock would take.
const CALL_BOUND: Duration = Duration::from_secs(10);

fn repo(
    events: &Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
    mode: SnapshotMode,
) -> AggregateRepository<Tally> {
    AggregateRepository::<Tally>::builder(events.clone())
        .snapshot_store(snapshots)
        .snapshot_timeout(SNAPSHOT_TIMEOUT)
        .threshold(1)
        .mode(mode)
        .build()
        .expect("valid repository settings")
}

/// A connection to `path` holding the write lock: `BEGIN IMMEDIATE` and a write to
/// `snapshots`, uncommitted.
async fn hold_write_lock(path: &Path) -> SqliteConnection {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("connect the locker");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("BEGIN IMMEDIATE");
    sqlx::query("DELETE FROM snapshots WHERE aggregate_type = 'no such type'")
        .execute(&mut conn)
        .await
        .expect("a write to snapshots");
    conn
}

async fn release(mut conn: SqliteConnection) {
    sqlx::query("ROLLBACK")
        .execute(&mut conn)
        .await
        .expect("ROLLBACK");
    let _ = conn.close().await;
}

/// Loads `id` within the bound: the state and version of a full replay.
async fn load_right(
    what: &str,
    repo: &AggregateRepository<Tally>,
    events: &Arc<dyn EventStore>,
    id: Uuid,
) -> AggregateRoot<Tally> {
    let expected = bounded(
        "a load without snapshots",
        CALL_BOUND,
        AggregateRepository::<Tally>::new(events.clone()).load(id),
    )
    .await
    .expect("a load without snapshots");
    let loaded = bounded(what, CALL_BOUND, repo.load(id))
        .await
        .unwrap_or_else(|e| panic!("{what}: the load failed: {e}"));
    assert_eq!(loaded.state(), expected.state(), "{what}: the state");
    assert_eq!(loaded.version(), expected.version(), "{what}: the version");
    loaded
}

/// Snapshots in a file of their own, locked: loads are right, sync and background saves
/// stand, `create_snapshot` times out, all within the bound; once the lock is released,
/// snapshots are written and used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_snapshot_database_never_blocks_loads_or_saves() {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open the events");
    let snapshots_path = dir.path().join("snapshots.db");
    let snapshot_store = SqliteSnapshotStore::open(&snapshots_path)
        .await
        .expect("open the snapshots");
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(snapshot_store.clone());
    let sync = repo(&events, snapshots.clone(), SnapshotMode::Sync);
    let background = repo(&events, snapshots.clone(), SnapshotMode::Background);
    let mut tallies = Vec::new();
    for _ in 0..6 {
        let mut tally = sync.create_new(Uuid::new_v4());
        record(&mut tally, 0, 10);
        sync.save(&mut tally).await.expect("save before the lock");
        tallies.push(tally);
    }

    let locker = hold_write_lock(&snapshots_path).await;
    for round in 0..3 {
        for (i, tally) in tallies.iter_mut().enumerate() {
            let what = format!("round {round}, aggregate {i}");
            *tally = load_right(&format!("{what}: a load"), &sync, &events, tally.id()).await;
            let from = tally.version();
            record(tally, from, 3);
            let repo = if i % 2 == 0 { &sync } else { &background };
            bounded(&format!("{what}: a save"), CALL_BOUND, repo.save(tally))
                .await
                .unwrap_or_else(|e| panic!("{what}: the save failed: {e}"));
            assert_eq!(
                events
                    .stream_version(Tally::TYPE, tally.id())
                    .await
                    .expect("version"),
                Some(from + 3),
                "{what}: the events are stored"
            );
        }
    }
    let created = bounded(
        "create_snapshot under the lock",
        CALL_BOUND,
        sync.create_snapshot(&mut tallies[0]),
    )
    .await;
    assert!(
        matches!(created, Err(Error::Timeout { .. })),
        "create_snapshot under the lock: {created:?}"
    );
    bounded(
        "background snapshots under the lock",
        Duration::from_secs(20),
        background.await_pending_snapshots(),
    )
    .await;
    for tally in &tallies {
        load_right("a load after the saves", &sync, &events, tally.id()).await;
    }
    release(locker).await;

    // Unlocked: snapshots are written and used again.
    for tally in &mut tallies {
        let from = tally.version();
        record(tally, from, 2);
        bounded("a save after the lock", CALL_BOUND, sync.save(tally))
            .await
            .expect("a save after the lock");
        let loaded = load_right("a load after the lock", &sync, &events, tally.id()).await;
        assert!(
            loaded.load_history().loaded_from_snapshot,
            "snapshots used again"
        );
        assert_eq!(
            loaded.load_history().snapshot_version,
            Some(tally.version())
        );
    }
    snapshot_store.close().await;
    store.close().await;
}

/// Events and snapshots in one file (one pool), the file's write lock held: manual
/// snapshots time out, and loads (reads, which WAL lets through) still return the right
/// state within the bound, however many snapshot writes were cut before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_on_a_shared_file_never_blocks_loads() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("shared.db");
    let store = SqliteEventStore::open(&path).await.expect("open");
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let snapshots: Arc<dyn SnapshotStore> =
        Arc::new(SqliteSnapshotStore::new(store.pool().clone()));
    let repo = repo(&events, snapshots, SnapshotMode::Sync);
    let mut tallies = Vec::new();
    for _ in 0..12 {
        let mut tally = repo.create_new(Uuid::new_v4());
        record(&mut tally, 0, 8);
        repo.save(&mut tally).await.expect("save before the lock");
        tallies.push(tally);
    }

    let locker = hold_write_lock(&path).await;
    // More timed-out snapshot writes than the pool has connections.
    for (i, tally) in tallies.iter_mut().enumerate() {
        let created = bounded(
            &format!("create_snapshot {i} under the lock"),
            CALL_BOUND,
            repo.create_snapshot(tally),
        )
        .await;
        assert!(
            matches!(created, Err(Error::Timeout { .. })),
            "create_snapshot {i} under the lock: {created:?}"
        );
    }
    for (i, tally) in tallies.iter().enumerate() {
        let loaded = load_right(
            &format!("load {i} under the lock"),
            &repo,
            &events,
            tally.id(),
        )
        .await;
        assert_eq!(loaded.state(), tally.state());
    }
    release(locker).await;
    store.close().await;
}
