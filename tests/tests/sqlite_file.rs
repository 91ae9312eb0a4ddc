//! The conformance suite on a SQLite file, plus what only SQLite can show.

use eventsource::{Error, EventStore, EventStoreExt, ExpectedVersion, SqliteEventStore};
use eventsource::{SnapshotStore, SqliteSnapshotStore, migrations};
use eventsource_tests::{TempDir, events, unique_type};
use uuid::Uuid;

eventsource_tests::conformance_tests!(eventsource_tests::fixtures::sqlite_file);
eventsource_tests::conformance_tests!(sql_subscriptions eventsource_tests::fixtures::sqlite_file_store);
eventsource_tests::conformance_tests!(admin eventsource_tests::fixtures::sqlite_file_store);

/// A row no store would write is reported as corrupt, naming its aggregate.
#[tokio::test]
async fn undecodable_rows_are_corrupt_rows() {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteEventStore::open(dir.path().join("corrupt.db"))
        .await
        .expect("open");
    let ty = unique_type("Broken");
    let id = Uuid::new_v4();
    store
        .append(&ty, id, ExpectedVersion::Exact(0), &events(1))
        .await
        .expect("append");
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) \
         VALUES ('not-a-uuid', ?1, ?2, 2, 'Happened', 1, '{}', '{}', 'yesterday')",
    )
    .bind(id.to_string())
    .bind(ty.as_str())
    .execute(store.pool())
    .await
    .expect("insert a corrupt row");

    let read = store.load_stream(&ty, id, 1).await;
    match read {
        Err(Error::CorruptRow {
            table,
            aggregate_type,
            aggregate_id,
            ..
        }) => {
            assert_eq!(table, "events");
            assert_eq!(
                (aggregate_type.as_deref(), aggregate_id),
                (Some(ty.as_str()), Some(id))
            );
        }
        other => panic!("expected a corrupt row, got {other:?}"),
    }
    let all = store.read_all(0, usize::MAX).await;
    assert!(
        matches!(all, Err(Error::CorruptRow { .. })),
        "read_all reports it too: {all:?}"
    );
    // The rows before the corrupt one reach the visitor.
    let mut first = 0;
    let _ = store
        .read_stream(&ty, id, 1, &mut |e| {
            first = e.version;
            Ok(())
        })
        .await;
    assert_eq!(first, 1, "rows before the corrupt one were visited");
    store.close().await;
}

/// Migrating twice changes nothing, and the history goes to the crate's own table.
#[tokio::test]
async fn migrations_are_idempotent_and_keep_their_own_history() {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteEventStore::open(dir.path().join("migrate.db"))
        .await
        .expect("open");
    migrations::migrate_sqlite(store.pool())
        .await
        .expect("migrate again");
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        migrations::MIGRATIONS_TABLE
    )))
    .fetch_one(store.pool())
    .await
    .expect("count applied migrations");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite"))
        .expect("list the SQLite migrations")
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "sql"))
        })
        .count();
    assert_eq!(applied, files as i64, "each migration applied once");
    let sqlx_table: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_optional(store.pool())
            .await
            .expect("look for _sqlx_migrations");
    assert_eq!(
        sqlx_table, None,
        "the application's own history table is left alone"
    );
    store.close().await;
}

/// Two stores opened on one file see each other's writes, and closing one leaves the
/// other usable.
#[tokio::test]
async fn stores_on_one_file_share_it() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("shared.db");
    let a = SqliteEventStore::open(&path).await.expect("open a");
    let b = SqliteEventStore::open(&path).await.expect("open b");
    let snapshots = SqliteSnapshotStore::open(&path)
        .await
        .expect("open snapshots");
    let ty = unique_type("Shared");
    let id = Uuid::new_v4();
    a.append(&ty, id, ExpectedVersion::Exact(0), &events(2))
        .await
        .expect("append through a");
    assert_eq!(b.stream_version(&ty, id).await.expect("version"), Some(2));
    a.close().await;
    b.append(&ty, id, ExpectedVersion::Exact(2), &events(1))
        .await
        .expect("append through b");
    assert!(!snapshots.exists(&ty, id).await.expect("exists"));
    b.close().await;
    snapshots.close().await;
}
