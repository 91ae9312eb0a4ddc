//! PostgreSQL snapshot faults that only a real server can produce: a lock held on the
//! snapshots table, the table missing, no permission on it, and a server that is down.
//! Whatever the fault, loads return the right state and saves succeed, within a bound
//! far above the snapshot timeout, and the pool is never starved.
//!
//! A lock on the snapshots table would block every other test sharing the database, so
//! each test here runs in a database of its own, `eventsource_fault_<uuid>`, created on
//! the server of `DATABASE_URL` and dropped at the end of the test (a failing test leaves
//! it behind, under that recognisable name).
//!
//! Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use eventsource::prelude::*;
use eventsource::{Error, PostgresEventStore, PostgresSnapshotStore, migrations};
use eventsource_tests::conformance::faults::{bounded, record};
use eventsource_tests::conformance::repository::Tally;
use eventsource_tests::events as new_events;
use eventsource_tests::fixtures::database_url;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The snapshot timeout of every repository here.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(300);

/// The most one load, save or append may take: far above the snapshot timeout.
const CALL_BOUND: Duration = Duration::from_secs(10);

/// A database of its own for one test, on the server of `DATABASE_URL`.
///
/// Drop it with [`TestDb::drop_database`] at the end of the test; dropped otherwise (a
/// test that panicked), it only says which database is left behind.
struct TestDb {
    name: String,
    /// A pool on the database of `DATABASE_URL`, to create and drop this one.
    admin: PgPool,
    /// Options connecting to this database as the `DATABASE_URL` user.
    options: PgConnectOptions,
    /// The URL of this database.
    url: String,
    dropped: bool,
}

impl TestDb {
    /// Creates an empty database named `eventsource_fault_<uuid>`.
    async fn create(admin_url: &str) -> TestDb {
        let name = format!("eventsource_fault_{}", Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let options = PgConnectOptions::from_str(admin_url)
            .expect("DATABASE_URL parses")
            .database(&name);
        TestDb {
            url: with_database(admin_url, &name),
            name,
            admin,
            options,
            dropped: false,
        }
    }

    /// A pool on this database built as the tests ask: at most `max` connections, a
    /// 5 s acquire timeout.
    async fn pool(&self, options: PgConnectOptions, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }

    /// Drops the database, whoever is still connected to it.
    async fn drop_database(mut self) {
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
        self.dropped = true;
        self.admin.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.dropped {
            eprintln!(
                "the test database {} is left behind; drop it with \
                 `DROP DATABASE {} WITH (FORCE)`",
                self.name, self.name
            );
        }
    }
}

/// `url` with its database replaced by `name` (the query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A repository snapshotting after every save, synchronously, with a 300 ms timeout.
fn repo(
    events: &Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) -> AggregateRepository<Tally> {
    AggregateRepository::<Tally>::builder(events.clone())
        .snapshot_store(snapshots)
        .snapshot_timeout(SNAPSHOT_TIMEOUT)
        .threshold(1)
        .build()
        .expect("valid repository settings")
}

/// Loads `id` through `repo` within [`CALL_BOUND`]: the state and version of a full
/// replay, and no snapshot used.
async fn load_replays(
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
    assert!(
        !loaded.load_history().loaded_from_snapshot,
        "{what}: no snapshot can have been read"
    );
    loaded
}

/// A new aggregate of `count` events saved through `repo` (which snapshots it if it
/// can).
async fn saved(repo: &AggregateRepository<Tally>, count: u64) -> AggregateRoot<Tally> {
    let mut tally = repo.create_new(Uuid::new_v4());
    record(&mut tally, 0, count);
    bounded("a save", CALL_BOUND, repo.save(&mut tally))
        .await
        .expect("save");
    tally
}

/// Saves more events to `tally` through `repo`: `Ok` within the bound, and stored.
async fn save_stands(
    what: &str,
    repo: &AggregateRepository<Tally>,
    tally: &mut AggregateRoot<Tally>,
) {
    let from = tally.version();
    record(tally, from, 4);
    bounded(what, CALL_BOUND, repo.save(tally))
        .await
        .unwrap_or_else(|e| panic!("{what}: the save failed: {e}"));
    let stored = repo
        .event_store()
        .stream_version(Tally::TYPE, tally.id())
        .await
        .expect("stream version");
    assert_eq!(stored, Some(from + 4), "{what}: the events are stored");
}

/// A save through `repo` snapshots `tally` again, and the next load uses it.
async fn snapshots_work(repo: &AggregateRepository<Tally>, tally: &mut AggregateRoot<Tally>) {
    save_stands("a save once the fault is gone", repo, tally).await;
    let loaded = bounded(
        "a load once the fault is gone",
        CALL_BOUND,
        repo.load(tally.id()),
    )
    .await
    .expect("a load once the fault is gone");
    assert!(
        loaded.load_history().loaded_from_snapshot,
        "once the fault is gone, loads use snapshots again"
    );
    assert_eq!(
        loaded.load_history().snapshot_version,
        Some(tally.version())
    );
    assert_eq!(loaded.state(), tally.state());
}

/// `true` when `LOCK TABLE snapshots` is held elsewhere: a read of the table on a fresh
/// connection gives up on its lock timeout.
async fn snapshots_locked(db: &TestDb) -> bool {
    let mut conn = PgConnection::connect_with(&db.options)
        .await
        .expect("connect to probe the lock");
    sqlx::query("SET lock_timeout = '100ms'")
        .execute(&mut conn)
        .await
        .expect("set lock_timeout");
    let read = sqlx::query("SELECT 1 FROM snapshots LIMIT 1")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    match read {
        Ok(_) => false,
        Err(e) if e.to_string().contains("lock timeout") => true,
        Err(e) => panic!("probing the lock on snapshots: {e}"),
    }
}

/// Another connection holds `LOCK TABLE snapshots IN ACCESS EXCLUSIVE MODE`. Through
/// stores sharing a pool of 3 connections (the one-statement load path), loads return
/// the right state and sync saves stand, each within the bound; 10 loads that time out
/// on the lock leave the pool able to serve 20 appends while the lock is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_snapshots_never_blocks_loads_saves_or_the_pool() {
    let Some(url) = database_url() else { return };
    let db = TestDb::create(&url).await;
    let pool = db.pool(db.options.clone(), 3).await;
    migrations::migrate_postgres(&pool).await.expect("migrate");
    let events: Arc<dyn EventStore> = Arc::new(PostgresEventStore::new(pool.clone()));
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(PostgresSnapshotStore::new(pool.clone()));
    let repo = repo(&events, snapshots.clone());

    // Aggregates with snapshots, taken before the lock.
    let mut before = Vec::new();
    for _ in 0..10 {
        let tally = saved(&repo, 12).await;
        let loaded = repo.load(tally.id()).await.expect("load before the lock");
        assert!(loaded.load_history().loaded_from_snapshot);
        before.push(tally);
    }

    let mut locker = PgConnection::connect_with(&db.options)
        .await
        .expect("connect the locker");
    let mut lock = locker.begin().await.expect("BEGIN");
    sqlx::query("LOCK TABLE snapshots IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("LOCK TABLE snapshots");
    assert!(snapshots_locked(&db).await, "the lock is held");

    // One load, one save, one manual snapshot under the lock.
    let mut tally = load_replays("a load under the lock", &repo, &events, before[0].id()).await;
    save_stands("a sync save under the lock", &repo, &mut tally).await;
    load_replays(
        "a load after a save under the lock",
        &repo,
        &events,
        tally.id(),
    )
    .await;
    let created = bounded(
        "create_snapshot under the lock",
        CALL_BOUND,
        repo.create_snapshot(&mut tally),
    )
    .await;
    assert!(
        matches!(created, Err(Error::Timeout { .. })),
        "create_snapshot under the lock: {created:?}"
    );
    let mut fresh = saved(&repo, 7).await;
    load_replays(
        "a load of an aggregate new under the lock",
        &repo,
        &events,
        fresh.id(),
    )
    .await;
    save_stands("a second save under the lock", &repo, &mut fresh).await;

    // 10 loads at once that time out on the lock, each right.
    let loads: Vec<_> = before
        .iter()
        .map(|tally| {
            let (repo, id) = (repo.clone(), tally.id());
            let replay_only = AggregateRepository::<Tally>::new(events.clone());
            tokio::spawn(async move {
                let loaded = repo.load(id).await.expect("a load under the lock");
                let replayed = replay_only.load(id).await.expect("a full replay");
                assert_eq!(loaded.state(), replayed.state());
                assert_eq!(loaded.version(), replayed.version());
                assert!(!loaded.load_history().loaded_from_snapshot);
            })
        })
        .collect();
    bounded(
        "10 loads at once under the lock",
        Duration::from_secs(30),
        async {
            for load in loads {
                load.await.expect("load task");
            }
        },
    )
    .await;

    // The pool is not starved: 20 plain appends on other streams succeed.
    for i in 0..20 {
        let ty = eventsource_tests::unique_type("Plain");
        bounded(
            &format!("append {i} under the lock"),
            CALL_BOUND,
            events.append(
                &ty,
                Uuid::new_v4(),
                ExpectedVersion::Exact(0),
                &new_events(2),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("append {i} under the lock: {e}"));
    }
    assert!(snapshots_locked(&db).await, "the lock was held throughout");
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
    )
    .bind(&db.name)
    .fetch_one(&db.admin)
    .await
    .expect("count the server's waiting backends");
    eprintln!("server backends still waiting on the lock: {waiting}");

    lock.rollback().await.expect("release the lock");
    let _ = locker.close().await;
    // Without the lock, snapshots are written and used again.
    snapshots_work(&repo, &mut tally).await;
    pool.close().await;
    db.drop_database().await;
}

/// Loads and saves through `repo` while its snapshot store cannot work (`what`): a
/// snapshotted aggregate loads by replay, saves stand, a new aggregate saves and loads,
/// and `create_snapshot` reports a backend error. Returns the aggregates.
async fn snapshots_unusable(
    what: &str,
    repo: &AggregateRepository<Tally>,
    events: &Arc<dyn EventStore>,
    snapshotted: Uuid,
) -> (AggregateRoot<Tally>, AggregateRoot<Tally>) {
    let mut old = load_replays(&format!("{what}: a load"), repo, events, snapshotted).await;
    save_stands(&format!("{what}: a save"), repo, &mut old).await;
    let old = load_replays(
        &format!("{what}: a load after a save"),
        repo,
        events,
        old.id(),
    )
    .await;
    let mut new = saved(repo, 9).await;
    load_replays(
        &format!("{what}: a load of a new aggregate"),
        repo,
        events,
        new.id(),
    )
    .await;
    let created = bounded(
        &format!("{what}: create_snapshot"),
        CALL_BOUND,
        repo.create_snapshot(&mut new),
    )
    .await;
    assert!(
        matches!(created, Err(Error::Backend { .. })),
        "{what}: create_snapshot reports the backend's error: {created:?}"
    );
    (old, new)
}

/// The snapshots table renamed away: loads replay (never an error), saves stand, on the
/// one-statement path (stores sharing a pool) and the two-read one (snapshots on a pool
/// of their own). Once the table is back, snapshots are written and used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_snapshots_table_never_fails_loads_or_saves() {
    let Some(url) = database_url() else { return };
    let db = TestDb::create(&url).await;
    let store = bounded("connect", CALL_BOUND, PostgresEventStore::connect(&db.url))
        .await
        .expect("connect and migrate");
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let own_pool = db.pool(db.options.clone(), 3).await;
    let ways: [(&str, Arc<dyn SnapshotStore>); 2] = [
        (
            "one statement",
            Arc::new(PostgresSnapshotStore::new(store.pool().clone())),
        ),
        (
            "two reads",
            Arc::new(PostgresSnapshotStore::new(own_pool.clone())),
        ),
    ];
    let mut snapshotted = Vec::new();
    for (what, snapshots) in &ways {
        let repo = repo(&events, snapshots.clone());
        let tally = saved(&repo, 15).await;
        let loaded = repo.load(tally.id()).await.expect("load");
        assert!(loaded.load_history().loaded_from_snapshot, "{what}");
        snapshotted.push(tally.id());
    }

    sqlx::query("ALTER TABLE snapshots RENAME TO snapshots_gone")
        .execute(store.pool())
        .await
        .expect("rename the snapshots table");
    let mut after = Vec::new();
    for ((what, snapshots), id) in ways.iter().zip(&snapshotted) {
        let repo = repo(&events, snapshots.clone());
        let what = format!("no snapshots table, {what}");
        after.push(snapshots_unusable(&what, &repo, &events, *id).await);
    }

    sqlx::query("ALTER TABLE snapshots_gone RENAME TO snapshots")
        .execute(store.pool())
        .await
        .expect("rename the snapshots table back");
    for ((_, snapshots), (mut old, mut new)) in ways.iter().zip(after) {
        let repo = repo(&events, snapshots.clone());
        snapshots_work(&repo, &mut old).await;
        snapshots_work(&repo, &mut new).await;
    }
    own_pool.close().await;
    store.close().await;
    db.drop_database().await;
}

/// A role with every right on `events` and its sequence but none on `snapshots`: loads
/// replay (never an error), saves stand, on both load paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_permission_on_snapshots_never_fails_loads_or_saves() {
    let Some(url) = database_url() else { return };
    let db = TestDb::create(&url).await;
    let owner = bounded("connect", CALL_BOUND, PostgresEventStore::connect(&db.url))
        .await
        .expect("connect and migrate");
    let role = format!("{}_role", db.name);
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {} TO {role}", db.name),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT ALL ON TABLE events TO {role}"),
        format!("GRANT ALL ON SEQUENCE events_position_seq TO {role}"),
    ] {
        sqlx::query(AssertSqlSafe(sql.clone()))
            .execute(owner.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    // Aggregates with snapshots, saved by the owner.
    let owner_events: Arc<dyn EventStore> = Arc::new(owner.clone());
    let owner_repo = repo(
        &owner_events,
        Arc::new(PostgresSnapshotStore::new(owner.pool().clone())),
    );
    let snapshotted = [
        saved(&owner_repo, 11).await.id(),
        saved(&owner_repo, 11).await.id(),
    ];

    let role_pool = db.pool(db.options.clone().username(&role), 3).await;
    let other_pool = db.pool(db.options.clone().username(&role), 3).await;
    let events: Arc<dyn EventStore> = Arc::new(PostgresEventStore::new(role_pool.clone()));
    let ways: [(&str, Arc<dyn SnapshotStore>); 2] = [
        (
            "one statement",
            Arc::new(PostgresSnapshotStore::new(role_pool.clone())),
        ),
        (
            "two reads",
            Arc::new(PostgresSnapshotStore::new(other_pool.clone())),
        ),
    ];
    let denied = ways[0].1.get(Tally::TYPE, snapshotted[0]).await;
    assert!(
        matches!(&denied, Err(e) if e.to_string().contains("permission denied")),
        "the role cannot read snapshots: {denied:?}"
    );
    for ((what, snapshots), id) in ways.iter().zip(snapshotted) {
        let repo = repo(&events, snapshots.clone());
        let what = format!("no permission on snapshots, {what}");
        snapshots_unusable(&what, &repo, &events, id).await;
    }

    role_pool.close().await;
    other_pool.close().await;
    owner.close().await;
    db.drop_database().await;
    sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(
            &PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .expect("connect to drop the role"),
        )
        .await
        .expect("DROP ROLE");
}

/// A server that is down: `connect` fails within the bound, naming the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_server_that_is_down_fails_fast_and_says_why() {
    // A port that was free a moment ago and that nobody listens on now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address").port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/x?sslmode=disable");
    let connected = bounded(
        "connecting to a server that is down",
        Duration::from_secs(15),
        PostgresEventStore::connect(&url),
    )
    .await;
    match connected {
        Ok(_) => panic!("connected to 127.0.0.1:{port}, where nobody should listen"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.to_lowercase().contains("refused"),
                "the error names the refusal: {message}"
            );
            assert!(
                message.contains(&format!("127.0.0.1:{port}")),
                "the error names the server: {message}"
            );
        }
    }
}

/// Under a lock on `snapshots`, the connections the stores give up on must not keep
/// server connections busy: a role limited to 6 connections, a pool of 3, and 10 loads
/// and 10 saves that time out on the lock one after another, then 20 appends. Each must
/// succeed while the lock is still held.
///
/// A connection dropped by the client while its statement waits for a lock stays on
/// the server, waiting, until the lock is released; if every timed-out snapshot read
/// left one behind, the role's limit (or the server's `max_connections`) would soon
/// refuse the pool a new connection, and loads and appends would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_snapshot_statements_do_not_exhaust_server_connections() {
    let Some(url) = database_url() else { return };
    let db = TestDb::create(&url).await;
    let owner = bounded("connect", CALL_BOUND, PostgresEventStore::connect(&db.url))
        .await
        .expect("connect and migrate");
    let role = format!("{}_limited", db.name);
    for sql in [
        format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 6"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(AssertSqlSafe(sql.clone()))
            .execute(owner.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let pool = db.pool(db.options.clone().username(&role), 3).await;
    let events: Arc<dyn EventStore> = Arc::new(PostgresEventStore::new(pool.clone()));
    let repo = repo(&events, Arc::new(PostgresSnapshotStore::new(pool.clone())));
    let mut tallies = Vec::new();
    for _ in 0..10 {
        tallies.push(saved(&repo, 5).await);
    }

    let mut locker = PgConnection::connect_with(&db.options)
        .await
        .expect("connect the locker");
    let mut lock = locker.begin().await.expect("BEGIN");
    sqlx::query("LOCK TABLE snapshots IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("LOCK TABLE snapshots");

    // A failing call waits for the pool's acquire timeout: stop after a few.
    const ENOUGH: usize = 3;
    let mut failures = Vec::new();
    for (i, tally) in tallies.iter_mut().enumerate() {
        if failures.len() >= ENOUGH {
            break;
        }
        match bounded("a load under the lock", CALL_BOUND, repo.load(tally.id())).await {
            Ok(loaded) => assert_eq!(loaded.state(), tally.state()),
            Err(e) => failures.push(format!("load {i}: {e}")),
        }
        record(tally, 100, 2);
        if let Err(e) = bounded("a save under the lock", CALL_BOUND, repo.save(tally)).await {
            failures.push(format!("save {i}: {e}"));
        }
    }
    for i in 0..20 {
        if failures.len() >= ENOUGH {
            break;
        }
        let ty = eventsource_tests::unique_type("Plain");
        let appended = bounded(
            &format!("append {i} under the lock"),
            CALL_BOUND,
            events.append(
                &ty,
                Uuid::new_v4(),
                ExpectedVersion::Exact(0),
                &new_events(1),
            ),
        )
        .await;
        if let Err(e) = appended {
            failures.push(format!("append {i}: {e}"));
        }
    }
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
    )
    .bind(&db.name)
    .fetch_one(&db.admin)
    .await
    .expect("count the server's waiting backends");

    lock.rollback().await.expect("release the lock");
    let _ = locker.close().await;
    pool.close().await;
    owner.close().await;
    db.drop_database().await;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect to drop the role");
    sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&admin)
        .await
        .expect("DROP ROLE");
    admin.close().await;
    assert!(
        failures.is_empty(),
        "under the lock, with {waiting} server backends left waiting on it by abandoned \
         snapshot statements (the pool has 3 connections, the role may open 6), these \
         calls failed (the test stops after {ENOUGH}):\n{}",
        failures.join("\n")
    );
}
