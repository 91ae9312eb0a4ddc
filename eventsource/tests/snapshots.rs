//! Snapshot behaviour of the repository: thresholds, modes and every fallback path.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{SubsecRound, Utc};
use common::*;
use eventsource::prelude::*;
use eventsource::{Error, Snapshot};
use uuid::Uuid;

fn repo_with(
    snapshots: Arc<dyn SnapshotStore>,
    threshold: u64,
    mode: SnapshotMode,
) -> (AggregateRepository<Order>, Arc<InMemoryEventStore>) {
    let events = Arc::new(InMemoryEventStore::new());
    let repo = AggregateRepository::builder(events.clone())
        .snapshot_store(snapshots)
        .threshold(threshold)
        .mode(mode)
        .build()
        .unwrap();
    (repo, events)
}

async fn snapshot_version(store: &dyn SnapshotStore, id: Uuid) -> Option<u64> {
    store.get("Order", id).await.unwrap().map(|s| s.version)
}

#[tokio::test]
async fn declared_policy_is_the_default_and_can_be_overridden() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    assert_eq!(repo.snapshot_policy().strategy.threshold(), Some(100));
    assert_eq!(repo.snapshot_policy().mode, SnapshotMode::Sync);
    assert!(repo.snapshot_store().is_some());

    let custom = AggregateRepository::<Order>::builder(events)
        .snapshot_store(snapshots)
        .threshold(5)
        .mode(SnapshotMode::Background)
        .build()
        .unwrap();
    assert_eq!(custom.snapshot_policy().strategy.threshold(), Some(5));
    assert_eq!(custom.snapshot_policy().mode, SnapshotMode::Background);
}

#[tokio::test]
async fn invalid_overrides_are_typed_errors() {
    let (events, _) = stores();
    let err = AggregateRepository::<Order>::builder(events.clone())
        .threshold(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    let err = AggregateRepository::<Order>::builder(events)
        .max_background_snapshots(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

#[tokio::test]
async fn save_crossing_a_multiple_takes_one_snapshot_at_the_version_reached() {
    let store = Arc::new(TestSnapshotStore::default());
    let (repo, _) = repo_with(store.clone(), 100, SnapshotMode::Sync);
    let mut order = order_with_events(&repo, 98);
    repo.save(&mut order).await.unwrap();
    assert_eq!(
        store.saved_versions(),
        Vec::<u64>::new(),
        "98 is below the threshold"
    );

    add_items(&mut order, 4); // 98 -> 102
    repo.save(&mut order).await.unwrap();
    assert_eq!(store.saved_versions(), [102]);

    add_items(&mut order, 97); // 102 -> 199
    repo.save(&mut order).await.unwrap();
    assert_eq!(store.saved_versions(), [102]);

    add_items(&mut order, 1); // lands on 200
    repo.save(&mut order).await.unwrap();
    assert_eq!(store.saved_versions(), [102, 200]);

    add_items(&mut order, 250); // 200 -> 450 crosses 300 and 400: still one snapshot
    repo.save(&mut order).await.unwrap();
    assert_eq!(store.saved_versions(), [102, 200, 450]);
}

#[tokio::test]
async fn load_uses_the_snapshot_and_replays_only_later_events() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let mut order = order_with_events(&repo, 150);
    repo.save(&mut order).await.unwrap(); // snapshot at 150
    add_items(&mut order, 7);
    repo.save(&mut order).await.unwrap();

    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.version(), 157);
    assert_eq!(loaded.state(), order.state());
    let history = loaded.load_history();
    assert!(history.loaded_from_snapshot);
    assert_eq!(history.snapshot_version, Some(150));
    assert_eq!(history.events_replayed, 7);
}

#[tokio::test]
async fn the_snapshot_state_is_really_what_load_starts_from() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let mut order = order_with_events(&repo, 3);
    repo.save(&mut order).await.unwrap();
    // A hand-made snapshot whose state no event produced: if load used it, it shows.
    let mut marked = order.state().clone();
    marked.customer = "from the snapshot".into();
    snapshots
        .save(&Snapshot {
            aggregate_id: order.id(),
            aggregate_type: "Order".into(),
            version: 2,
            schema_version: 1,
            state: serde_json::to_string(&marked).unwrap(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.state().customer, "from the snapshot");
    assert_eq!(loaded.version(), 3);
    assert_eq!(loaded.load_history().events_replayed, 1);
}

#[tokio::test]
async fn snapshot_with_no_later_events_loads_at_its_version() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let mut order = order_with_events(&repo, 100);
    repo.save(&mut order).await.unwrap();
    assert_eq!(snapshot_version(&*snapshots, order.id()).await, Some(100));

    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.version(), 100);
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().events_replayed, 0);
    assert_eq!(loaded.state(), order.state());
}

#[tokio::test]
async fn snapshot_of_a_newer_schema_replays_everything_and_warns() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let mut order = order_with_events(&repo, 120);
    repo.save(&mut order).await.unwrap();
    let mut snap = snapshots.get("Order", order.id()).await.unwrap().unwrap();
    snap.schema_version = 7;
    snap.state = r#"{"shape":"of another version"}"#.into();
    snapshots.delete("Order", order.id()).await.unwrap();
    snapshots.save(&snap).await.unwrap();

    let (logs, _guard) = LogCapture::new();
    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.state(), order.state());
    assert!(!loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().events_replayed, 120);
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("written by newer code"),
        "{text}"
    );
}

#[tokio::test]
async fn undecodable_snapshot_replays_everything_and_warns() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let mut order = order_with_events(&repo, 100);
    repo.save(&mut order).await.unwrap();
    let mut snap = snapshots.get("Order", order.id()).await.unwrap().unwrap();
    snap.state = r#"{"items": "not a list"}"#.into();
    snapshots.save(&snap).await.unwrap();

    let (logs, _guard) = LogCapture::new();
    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.state(), order.state());
    assert!(!loaded.load_history().loaded_from_snapshot);
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("does not decode"),
        "{text}"
    );
}

#[tokio::test]
async fn snapshot_store_error_on_load_replays_everything_and_warns() {
    let store = Arc::new(TestSnapshotStore::default());
    let (repo, _) = repo_with(store.clone(), 10, SnapshotMode::Sync);
    let mut order = order_with_events(&repo, 25);
    repo.save(&mut order).await.unwrap();
    store.fail_get.store(true, Ordering::SeqCst);

    let (logs, _guard) = LogCapture::new();
    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.state(), order.state());
    assert_eq!(loaded.version(), 25);
    assert!(!loaded.load_history().loaded_from_snapshot);
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("snapshot store failed"),
        "{text}"
    );
}

#[tokio::test]
async fn snapshot_beyond_the_stream_head_replays_everything_and_warns() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let mut order = order_with_events(&repo, 10);
    repo.save(&mut order).await.unwrap();
    let mut ahead = order.state().clone();
    ahead.customer = "a future that never happened".into();
    snapshots
        .save(&Snapshot {
            aggregate_id: order.id(),
            aggregate_type: "Order".into(),
            version: 500,
            schema_version: 1,
            state: serde_json::to_string(&ahead).unwrap(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();

    let (logs, _guard) = LogCapture::new();
    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.version(), 10);
    assert_eq!(loaded.state(), order.state());
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("beyond the stream"),
        "{text}"
    );
    // The wrong snapshot is gone, so it cannot block the next ones.
    assert_eq!(snapshots.get("Order", order.id()).await.unwrap(), None);
    let mut order = loaded;
    let again = repo.create_snapshot(&mut order).await.unwrap();
    assert_eq!(again.version, 10);
    assert!(
        repo.load(order.id())
            .await
            .unwrap()
            .load_history()
            .loaded_from_snapshot
    );
}

#[tokio::test]
async fn snapshot_of_an_aggregate_without_events_is_ignored() {
    let (events, snapshots) = stores();
    let repo = Order::repository(events.clone(), snapshots.clone());
    let id = Uuid::new_v4();
    snapshots
        .save(&Snapshot {
            aggregate_id: id,
            aggregate_type: "Order".into(),
            version: 3,
            schema_version: 1,
            state: serde_json::to_string(&Order::default()).unwrap(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    assert!(matches!(repo.load(id).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn failing_snapshot_write_never_fails_the_save() {
    let store = Arc::new(TestSnapshotStore::default());
    store.fail_save.store(true, Ordering::SeqCst);
    for mode in [SnapshotMode::Sync, SnapshotMode::Background] {
        let (repo, events) = repo_with(store.clone(), 5, mode);
        let mut order = order_with_events(&repo, 12);
        let (logs, _guard) = LogCapture::new();
        repo.save(&mut order).await.unwrap();
        repo.await_pending_snapshots().await;
        assert_eq!(events.len(), 12, "{mode}: the events are stored");
        assert!(!order.has_changes());
        assert!(store.inner.is_empty());
        assert!(logs.text().contains("WARN"), "{mode}: {}", logs.text());
        let loaded = repo.load(order.id()).await.unwrap();
        assert_eq!(loaded.state(), order.state());
    }
}

#[tokio::test]
async fn manual_mode_takes_snapshots_only_when_asked() {
    let (events, snapshots) = stores();
    let repo = AggregateRepository::<Order>::builder(events)
        .snapshot_store(snapshots.clone())
        .threshold(5)
        .mode(SnapshotMode::Manual)
        .build()
        .unwrap();
    let mut order = order_with_events(&repo, 11);
    repo.save(&mut order).await.unwrap();
    assert!(snapshots.is_empty());

    let snap = repo.create_snapshot(&mut order).await.unwrap();
    assert_eq!(snap.version, 11);
    assert_eq!(snap.schema_version, 1);
    assert_eq!(snap.aggregate_type, "Order");
    assert_eq!(snap.state_json().unwrap()["customer"], "ada@example.com");
    assert_eq!(snapshot_version(&*snapshots, order.id()).await, Some(11));

    order.execute(|o| o.submit()).unwrap();
    let err = repo.create_snapshot(&mut order).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { .. }),
        "unsaved events: {err}"
    );
    repo.save(&mut order).await.unwrap();
    assert_eq!(repo.create_snapshot(&mut order).await.unwrap().version, 12);
}

#[tokio::test]
async fn manual_snapshot_without_a_store_is_a_typed_error() {
    let (events, _) = stores();
    let repo = AggregateRepository::<Order>::new(events);
    let mut order = order_with_events(&repo, 2);
    repo.save(&mut order).await.unwrap();
    match repo.create_snapshot(&mut order).await {
        Err(Error::NoSnapshotStore { aggregate_type }) => assert_eq!(aggregate_type, "Order"),
        other => panic!("expected NoSnapshotStore, got {other:?}"),
    }
    let mut empty = repo.create_new(Uuid::new_v4());
    let (_, snapshots) = stores();
    let with_store = Order::repository(repo.event_store().clone(), snapshots);
    assert!(matches!(
        with_store.create_snapshot(&mut empty).await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn background_mode_returns_before_the_snapshot_is_written() {
    let (store, gate) = TestSnapshotStore::gated();
    let (repo, _) = repo_with(store.clone(), 10, SnapshotMode::Background);
    let mut order = order_with_events(&repo, 10);
    repo.save(&mut order).await.unwrap(); // would block forever in sync mode
    assert_eq!(repo.pending_snapshot_count(), 1);
    assert!(store.inner.is_empty());

    gate.add_permits(1);
    assert_eq!(repo.await_pending_snapshots().await, 1);
    assert_eq!(repo.pending_snapshot_count(), 0);
    assert_eq!(store.saved_versions(), [10]);
    let loaded = repo.load(order.id()).await.unwrap();
    assert!(loaded.load_history().loaded_from_snapshot);
}

#[tokio::test]
async fn background_snapshot_captures_the_state_at_save_time() {
    let (store, gate) = TestSnapshotStore::gated();
    let (repo, _) = repo_with(store.clone(), 10, SnapshotMode::Background);
    let mut order = order_with_events(&repo, 10);
    repo.save(&mut order).await.unwrap();
    let at_save = order.state().clone();
    add_items(&mut order, 3); // changes after the save, before the write
    gate.add_permits(1);
    repo.await_pending_snapshots().await;
    let snap = store.inner.get("Order", order.id()).await.unwrap().unwrap();
    assert_eq!(snap.version, 10);
    let restored: Order = serde_json::from_str(&snap.state).unwrap();
    assert_eq!(restored, at_save);
}

#[tokio::test]
async fn a_newer_background_snapshot_replaces_the_queued_one() {
    let (store, gate) = TestSnapshotStore::gated();
    let (repo, _) = repo_with(store.clone(), 10, SnapshotMode::Background);
    let mut order = order_with_events(&repo, 10);
    repo.save(&mut order).await.unwrap(); // v10: being written (blocked)
    tokio::task::yield_now().await;
    add_items(&mut order, 10);
    repo.save(&mut order).await.unwrap(); // v20: queued
    add_items(&mut order, 10);
    repo.save(&mut order).await.unwrap(); // v30: replaces v20
    assert_eq!(repo.pending_snapshot_count(), 2);

    gate.add_permits(10);
    repo.await_pending_snapshots().await;
    assert_eq!(store.saved_versions(), [10, 30]);
    assert_eq!(snapshot_version(&store.inner, order.id()).await, Some(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_writes_are_bounded() {
    let (store, gate) = TestSnapshotStore::gated();
    let events = Arc::new(InMemoryEventStore::new());
    let repo = AggregateRepository::<Order>::builder(events)
        .snapshot_store(store.clone())
        .threshold(5)
        .mode(SnapshotMode::Background)
        .max_background_snapshots(2)
        .build()
        .unwrap();
    for _ in 0..6 {
        let mut order = order_with_events(&repo, 5);
        repo.save(&mut order).await.unwrap();
    }
    assert_eq!(repo.pending_snapshot_count(), 6);
    gate.add_permits(6);
    // The writes may finish before the wait starts: only the outcome is certain.
    repo.await_pending_snapshots().await;
    assert_eq!(repo.pending_snapshot_count(), 0);
    assert_eq!(store.saved_versions().len(), 6);
    let max = store.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&max),
        "at most 2 writes at once, saw {max}"
    );
}

#[tokio::test]
async fn sync_mode_writes_before_save_returns() {
    let store = Arc::new(TestSnapshotStore::default());
    let (repo, _) = repo_with(store.clone(), 3, SnapshotMode::Sync);
    let mut order = order_with_events(&repo, 3);
    repo.save(&mut order).await.unwrap();
    assert_eq!(store.saved_versions(), [3]);
    assert_eq!(repo.pending_snapshot_count(), 0);
    assert_eq!(order.load_history().snapshot_version, Some(3));
}

#[tokio::test]
async fn old_snapshot_never_overwrites_a_newer_one() {
    let (_, snapshots) = stores();
    let id = Uuid::new_v4();
    let snap = |version| Snapshot {
        aggregate_id: id,
        aggregate_type: "Order".into(),
        version,
        schema_version: 1,
        state: "{}".into(),
        created_at: Utc::now(),
    };
    snapshots.save(&snap(20)).await.unwrap();
    snapshots.save(&snap(10)).await.unwrap();
    assert_eq!(snapshot_version(&*snapshots, id).await, Some(20));
}

#[tokio::test]
async fn bulk_invalidation_by_schema_version() {
    let (events, snapshots) = stores();
    let repo = AggregateRepository::<Order>::builder(events)
        .snapshot_store(snapshots.clone())
        .threshold(1)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut order = order_with_events(&repo, 1);
        repo.save(&mut order).await.unwrap();
        ids.push(order.id());
    }
    let mut old = snapshots.get("Order", ids[0]).await.unwrap().unwrap();
    old.schema_version = 0;
    snapshots.delete("Order", ids[0]).await.unwrap();
    snapshots.save(&old).await.unwrap();
    assert_eq!(snapshots.delete_by_type("Order", Some(1)).await.unwrap(), 1);
    assert!(!snapshots.exists("Order", ids[0]).await.unwrap());
    assert_eq!(snapshots.delete_by_type("Order", None).await.unwrap(), 2);
    assert!(snapshots.is_empty());
}

#[tokio::test]
async fn time_based_policy_through_the_repository_with_an_injected_clock() {
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;

    use eventsource::snapshot::TimeSinceSnapshot;

    let start = Utc::now();
    let minutes = Arc::new(AtomicI64::new(0));
    let clock = {
        let minutes = Arc::clone(&minutes);
        move || start + chrono::Duration::minutes(minutes.load(Ordering::SeqCst))
    };
    let store = Arc::new(TestSnapshotStore::default());
    let repo = AggregateRepository::<Order>::builder(Arc::new(InMemoryEventStore::new()))
        .snapshot_store(store.clone())
        .strategy(TimeSinceSnapshot::new(Duration::from_secs(3600)))
        .clock(clock)
        .build()
        .unwrap();

    let mut order = order_with_events(&repo, 1);
    repo.save(&mut order).await.unwrap(); // no snapshot yet: due at once
    assert_eq!(store.saved_versions(), [1]);

    minutes.store(30, Ordering::SeqCst);
    add_items(&mut order, 1);
    repo.save(&mut order).await.unwrap();
    assert_eq!(store.saved_versions(), [1], "30 minutes after the snapshot");

    minutes.store(61, Ordering::SeqCst);
    add_items(&mut order, 1);
    repo.save(&mut order).await.unwrap();
    assert_eq!(
        store.saved_versions(),
        [1, 3],
        "61 minutes after the snapshot"
    );
    let snapshot = store.inner.get("Order", order.id()).await.unwrap().unwrap();
    // Stores keep microseconds.
    assert_eq!(
        snapshot.created_at,
        (start + chrono::Duration::minutes(61)).trunc_subsecs(6)
    );

    // A reloaded root knows its snapshot's time from the store.
    let mut reloaded = repo.load(order.id()).await.unwrap();
    assert_eq!(
        reloaded.load_history().snapshot_at,
        Some(snapshot.created_at)
    );
    minutes.store(90, Ordering::SeqCst);
    add_items(&mut reloaded, 1);
    repo.save(&mut reloaded).await.unwrap();
    assert_eq!(
        store.saved_versions(),
        [1, 3],
        "29 minutes after the last one"
    );
}
