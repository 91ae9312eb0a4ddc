//! The conformance suite on PostgreSQL, plus what only PostgreSQL can show.
//!
//! Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`; without it
//! the tests say so and pass, unless `CI` is set, where they fail.

use eventsource::migrations;
use eventsource::{Error, EventStore, EventStoreExt, ExpectedVersion, PostgresEventStore};
use eventsource::{PostgresSnapshotStore, SnapshotStore};
use eventsource_tests::fixtures::database_url;
use eventsource_tests::{events, unique_type};
use uuid::Uuid;

eventsource_tests::conformance_tests!(eventsource_tests::fixtures::postgres);
eventsource_tests::conformance_tests!(sql_subscriptions eventsource_tests::fixtures::postgres_store);
eventsource_tests::conformance_tests!(admin eventsource_tests::fixtures::postgres_store);

/// A row no store would write is reported as corrupt, naming its aggregate.
#[tokio::test]
async fn undecodable_rows_are_corrupt_rows() {
    let Some(url) = database_url() else { return };
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let ty = unique_type("Broken");
    let id = Uuid::new_v4();
    store
        .append(&ty, id, ExpectedVersion::Exact(0), &events(1))
        .await
        .expect("append");
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) \
         VALUES ($1, $2, $3, 2, 'Happened', -1, '{}', '{}', now())",
    )
    .bind(Uuid::new_v4())
    .bind(id)
    .bind(ty.as_str())
    .execute(store.pool())
    .await
    .expect("insert a corrupt row");

    match store.load_stream(&ty, id, 1).await {
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

/// Migrating again changes nothing, and the history goes to the crate's own table.
#[tokio::test]
async fn migrations_are_idempotent_and_keep_their_own_history() {
    let Some(url) = database_url() else { return };
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    migrations::migrate_postgres(store.pool())
        .await
        .expect("migrate again");
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {} WHERE success",
        migrations::MIGRATIONS_TABLE
    )))
    .fetch_one(store.pool())
    .await
    .expect("count applied migrations");
    assert_eq!(applied, 9);
    store.close().await;
}

/// Records what `read_aggregate` hands over; starts after a snapshot it gets.
#[derive(Default)]
struct Recorder {
    found: Option<eventsource::Result<Option<eventsource::Snapshot>>>,
    versions: Vec<u64>,
}

impl eventsource::LoadVisitor for Recorder {
    fn snapshot(&mut self, found: eventsource::Result<Option<eventsource::Snapshot>>) -> u64 {
        let from = match &found {
            Ok(Some(snapshot)) => snapshot.version + 1,
            _ => 1,
        };
        self.found = Some(found);
        from
    }

    fn event(
        &mut self,
        event: eventsource::StreamEvent<'_>,
    ) -> eventsource::Result<std::ops::ControlFlow<()>> {
        self.versions.push(event.version);
        Ok(std::ops::ControlFlow::Continue(()))
    }
}

/// The one-statement read (snapshot store on the same pool) and the two-read default
/// (snapshot store on another pool) agree, including on a snapshot that does not
/// decode: the visitor gets the error and the whole stream follows.
#[tokio::test]
async fn read_aggregate_on_one_pool_or_two() {
    let Some(url) = database_url() else { return };
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let same_pool = PostgresSnapshotStore::new(store.pool().clone());
    let other_pool =
        PostgresSnapshotStore::new(sqlx::PgPool::connect(&url).await.expect("a second pool"));
    let ty = unique_type("OnePool");
    let id = Uuid::new_v4();
    store
        .append(&ty, id, ExpectedVersion::Exact(0), &events(4))
        .await
        .expect("append");
    same_pool
        .save(&eventsource::Snapshot {
            aggregate_id: id,
            aggregate_type: ty.clone(),
            version: 2,
            schema_version: 1,
            state: "{}".into(),
            created_at: eventsource_tests::now(),
        })
        .await
        .expect("save");

    for snapshots in [&same_pool, &other_pool] {
        let mut r = Recorder::default();
        let n = store
            .read_aggregate(Some(snapshots), &ty, id, &mut r)
            .await
            .expect("read");
        assert!(matches!(&r.found, Some(Ok(Some(s))) if s.version == 2));
        assert_eq!((n, r.versions), (2, vec![3, 4]));
    }

    sqlx::query(
        "UPDATE snapshots SET schema_version = -1 WHERE aggregate_id = $1 AND aggregate_type = $2",
    )
    .bind(id)
    .bind(ty.as_str())
    .execute(store.pool())
    .await
    .expect("corrupt the snapshot");
    for snapshots in [&same_pool, &other_pool] {
        let mut r = Recorder::default();
        let n = store
            .read_aggregate(Some(snapshots), &ty, id, &mut r)
            .await
            .expect("read");
        assert!(
            matches!(
                &r.found,
                Some(Err(Error::CorruptRow {
                    table: "snapshots",
                    ..
                }))
            ),
            "the visitor gets the corrupt snapshot: {:?}",
            r.found
        );
        assert_eq!((n, r.versions), (4, vec![1, 2, 3, 4]), "then every event");
    }
    other_pool.close().await;
    store.close().await;
}

/// A `keep = 1` write that would move the newest row onto a version another writer is
/// inserting at that moment (a unique violation once that writer commits) is done again
/// by the general statement: it succeeds, replaces that version and prunes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_one_write_racing_an_insert_of_its_version_falls_back() {
    use eventsource_tests::conformance::snapshot_store::{snapshot, stored_versions};
    let Some(url) = database_url() else { return };
    let events = PostgresEventStore::connect(&url).await.expect("connect");
    let store = PostgresSnapshotStore::new(events.pool().clone());
    let ty = unique_type("KeepOneRace");
    let id = Uuid::new_v4();
    store
        .save(&snapshot(&ty, id, 20, 1))
        .await
        .expect("the first snapshot");
    // Another writer inserts version 24 and holds its transaction open.
    let mut other = events.pool().begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
         VALUES ($1, $2, 24, 1, '{\"other\": true}', now())",
    )
    .bind(id)
    .bind(ty.as_str())
    .execute(&mut *other)
    .await
    .expect("the other writer's row");
    // The `keep = 1` write sees only version 20 and moves it to 24: it waits for the
    // other writer, then breaks the unique constraint when it commits.
    let write = {
        let store = store.clone();
        let ty = ty.clone();
        tokio::spawn(async move { store.save(&snapshot(&ty, id, 24, 1)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    other.commit().await.expect("the other writer commits");
    write
        .await
        .expect("the writing task")
        .expect("the write falls back to the general statement");
    assert_eq!(stored_versions(&store, &ty, id).await, vec![24]);
    let kept = store.get(&ty, id).await.expect("get").expect("a snapshot");
    assert_eq!(
        kept.state_json().expect("JSON"),
        serde_json::json!({"version": 24, "schema": 1}),
        "the write replaced the other writer's version 24"
    );
    events.close().await;
}
