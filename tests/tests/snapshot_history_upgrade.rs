//! The snapshot history migration on databases created with the schema before it
//! (PostgreSQL migrations 1 to 7, SQLite 1 to 4) and holding events and snapshots:
//! migrated by several pools (and, on SQLite, processes) at once, the old snapshot is
//! still used, and several snapshots per aggregate can be kept and loaded at a version.

use std::num::NonZeroU32;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use eventsource::migrations::{self, MIGRATIONS_TABLE};
use eventsource::prelude::*;
use eventsource::{
    PostgresEventStore, PostgresSnapshotStore, SqliteEventStore, SqliteSnapshotStore,
};
use eventsource_tests::TempDir;
use eventsource_tests::conformance::repository::{Added, Multiplied, Tally};
use eventsource_tests::conformance::snapshot_store::stored_versions;
use eventsource_tests::fixtures::FreshDatabase;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use uuid::Uuid;

/// The last migration of the schema before the history, per backend.
const POSTGRES_BEFORE: i64 = 20261202000007;
const SQLITE_BEFORE: i64 = 20261202000004;

/// Far above what these tests need: a hang fails the test instead of the run.
const DEADLINE: Duration = Duration::from_secs(120);

/// Writes a 30-event history through a repository without snapshots (the old schema's
/// snapshot writes would not be this build's), and returns the state at version 20 as
/// the snapshot the old code would have stored.
async fn write_history(events: Arc<dyn EventStore>, id: Uuid) -> String {
    let repo = AggregateRepository::<Tally>::new(events);
    let mut root = repo.create_new(id);
    for v in 1..=30i64 {
        if v % 7 == 0 {
            root.record(Multiplied { by: 3 });
        } else {
            root.record(Added { n: v });
        }
        if v == 20 || v == 30 {
            repo.save(&mut root).await.expect("save");
        }
    }
    let at_20 = repo.load_at(id, 20).await.expect("replay to 20");
    at_20.state().to_snapshot().expect("encode")
}

/// After the migration: the old snapshot is used by `load`, a history of three is kept,
/// and `load_at` builds on the right one.
async fn check_upgraded(events: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>, id: Uuid) {
    let replay = AggregateRepository::<Tally>::new(events.clone());
    let full = replay.load(id).await.expect("replay");
    let repo = AggregateRepository::<Tally>::builder(events.clone())
        .snapshot_store(snapshots.clone())
        .mode(SnapshotMode::Manual)
        .snapshot_keep(NonZeroU32::new(3).unwrap())
        .build()
        .expect("a repository");
    let mut loaded = repo.load(id).await.expect("load");
    assert_eq!(
        loaded.load_history().snapshot_version,
        Some(20),
        "the old snapshot is used"
    );
    assert_eq!(loaded.load_history().events_replayed, 10);
    assert_eq!(loaded.state(), full.state());
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![20]
    );

    repo.create_snapshot(&mut loaded)
        .await
        .expect("a second snapshot");
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![30, 20]
    );
    let at_25 = repo.load_at(id, 25).await.expect("load_at");
    assert_eq!(at_25.load_history().snapshot_version, Some(20));
    let replayed_25 = replay.load_at(id, 25).await.expect("replay to 25");
    assert_eq!(at_25.state(), replayed_25.state());
    let now = repo.load(id).await.expect("load");
    assert_eq!(now.load_history().snapshot_version, Some(30));
    assert_eq!(now.state(), full.state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_database_with_snapshots_is_upgraded_by_concurrent_migrations() {
    let Some(db) = FreshDatabase::create("eventsource_history_upgrade").await else {
        return;
    };
    let outcome = tokio::spawn(upgrade_postgres(db.url().to_owned())).await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn upgrade_postgres(url: String) {
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).expect("a PostgreSQL URL");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .expect("connect");
    let mut old = sqlx::migrate!("../migrations/postgres");
    old.dangerous_set_table_name(MIGRATIONS_TABLE);
    old.run_to(POSTGRES_BEFORE, &pool)
        .await
        .expect("migrations 1 to 7");
    let events: Arc<dyn EventStore> = Arc::new(PostgresEventStore::new(pool.clone()));
    let id = Uuid::new_v4();
    let state = write_history(events, id).await;
    // The snapshot as the old code stored it: one row, under the old constraint.
    sqlx::query(
        "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
         VALUES ($1, $2, 20, 1, $3::json, now())",
    )
    .bind(id)
    .bind(Tally::TYPE)
    .bind(state.as_str())
    .execute(&pool)
    .await
    .expect("an old snapshot row");
    pool.close().await;

    // Eight pools (eight sessions, as eight processes would be) migrate at once.
    let migrating: Vec<_> = (0..8)
        .map(|_| {
            let options = options.clone();
            tokio::spawn(async move {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .expect("connect");
                let migrated = migrations::migrate_postgres(&pool).await;
                pool.close().await;
                migrated
            })
        })
        .collect();
    for task in migrating {
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("a migration finishes")
            .expect("a migrating task")
            .expect("migrate_postgres");
    }

    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("connect");
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {MIGRATIONS_TABLE} WHERE success"
    )))
    .fetch_one(&pool)
    .await
    .expect("count applied migrations");
    assert_eq!(applied, 9, "every migration is recorded once");
    let constraints: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = 'snapshots'::regclass \
         AND contype = 'u' ORDER BY conname",
    )
    .fetch_all(&pool)
    .await
    .expect("list the constraints");
    assert_eq!(constraints, vec!["uq_snapshots_version".to_owned()]);

    let events = PostgresEventStore::new(pool.clone());
    let snapshots = PostgresSnapshotStore::new(pool.clone());
    check_upgraded(Arc::new(events), Arc::new(snapshots), id).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_with_snapshots_is_upgraded_by_concurrent_opens() {
    let dir = TempDir::new().expect("a temporary directory");
    let path = dir.path().join("old.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("create the file");
    let mut old = sqlx::migrate!("../migrations/sqlite");
    old.dangerous_set_table_name(MIGRATIONS_TABLE);
    old.run_to(SQLITE_BEFORE, &pool)
        .await
        .expect("migrations 1 to 4");
    let events: Arc<dyn EventStore> = Arc::new(SqliteEventStore::new(pool.clone()));
    let id = Uuid::new_v4();
    let state = write_history(events, id).await;
    sqlx::query(
        "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
         VALUES (?1, ?2, 20, 1, ?3, '2026-12-01T12:00:00.000000Z')",
    )
    .bind(id.to_string())
    .bind(Tally::TYPE)
    .bind(state.as_str())
    .execute(&pool)
    .await
    .expect("an old snapshot row");
    pool.close().await;

    // Three processes opening the file four times each, and eight pools here, at once.
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_open-worker"))
                .env("SQLITE_PATH", &path)
                .env("OPEN_COUNT", "4")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start open-worker")
        })
        .collect();
    let opens: Vec<_> = (0..8)
        .map(|_| tokio::spawn(SqliteEventStore::open(path.clone())))
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        let store = tokio::time::timeout(DEADLINE, open)
            .await
            .expect("an open finishes")
            .expect("an opening task")
            .expect("open the old file");
        stores.push(store);
    }
    for child in children {
        let output = child.wait_with_output().expect("open-worker ran");
        assert!(
            output.status.success(),
            "open-worker failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let store = stores.pop().expect("a store");
    for other in stores {
        other.close().await;
    }
    let recorded: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version"
    )))
    .fetch_all(store.pool())
    .await
    .expect("read the history");
    let embedded: Vec<i64> = old.iter().map(|m| m.version).collect();
    assert_eq!(recorded, embedded, "every migration is recorded once");
    let table: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'snapshots'")
            .fetch_one(store.pool())
            .await
            .expect("the table's SQL");
    assert!(
        table.contains("UNIQUE (aggregate_id, aggregate_type, version)"),
        "the rebuilt table: {table}"
    );
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'snapshots' \
         AND name IN ('idx_snapshots_schema_version', 'idx_snapshots_created_at')",
    )
    .fetch_one(store.pool())
    .await
    .expect("count the indexes");
    assert_eq!(indexes, 2, "the indexes are created again");

    let snapshots = SqliteSnapshotStore::new(store.pool().clone());
    check_upgraded(Arc::new(store.clone()), Arc::new(snapshots), id).await;
    store.close().await;
}
