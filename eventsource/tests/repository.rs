//! Repository behaviour without snapshots: create, load, save, conflicts, metadata.

mod common;

use std::sync::Arc;

use common::*;
use eventsource::prelude::*;
use eventsource::{Error, EventStoreExt};
use uuid::Uuid;

fn repo() -> (AggregateRepository<Order>, Arc<InMemoryEventStore>) {
    let events = Arc::new(InMemoryEventStore::new());
    (AggregateRepository::new(events.clone()), events)
}

#[tokio::test]
async fn saved_aggregate_loads_with_same_state_and_version() {
    let (repo, _) = repo();
    let mut order = order_with_events(&repo, 4);
    order.execute(|o| o.submit()).unwrap();
    repo.save(&mut order).await.unwrap();
    assert!(!order.has_changes());
    assert_eq!(order.committed_version(), 5);

    let loaded = repo.load(order.id()).await.unwrap();
    assert_eq!(loaded.version(), 5);
    assert_eq!(loaded.state(), order.state());
    assert_eq!(loaded.state().status, "submitted");
    assert_eq!(loaded.state().total, 7.5);
    assert!(!loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().events_replayed, 5);
}

#[tokio::test]
async fn events_are_stored_with_their_declared_names_and_versions() {
    let (repo, events) = repo();
    let mut order = order_with_events(&repo, 2);
    order.execute(|o| o.submit()).unwrap();
    repo.save(&mut order).await.unwrap();

    let stored = events.load_stream("Order", order.id(), 1).await.unwrap();
    let names: Vec<(&str, u32, u64)> = stored
        .iter()
        .map(|e| (e.event_type.as_str(), e.event_version, e.version))
        .collect();
    assert_eq!(
        names,
        [
            ("OrderCreated", 1, 1),
            ("OrderItemAdded", 1, 2),
            ("OrderSubmitted", 2, 3)
        ]
    );
    let payload: serde_json::Value = serde_json::from_str(&stored[2].payload).unwrap();
    assert_eq!(payload, serde_json::json!({ "total": 2.5 }));
}

#[tokio::test]
async fn load_of_unknown_aggregate_is_a_typed_not_found() {
    let (repo, _) = repo();
    let id = Uuid::new_v4();
    match repo.load(id).await {
        Err(Error::NotFound {
            aggregate_type,
            aggregate_id,
        }) => {
            assert_eq!(aggregate_type, "Order");
            assert_eq!(aggregate_id, id);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!repo.exists(id).await.unwrap());
    let fresh = repo.load_or_create(id).await.unwrap();
    assert_eq!(fresh.version(), 0);
    assert_eq!(fresh.state(), &Order::default());
}

#[tokio::test]
async fn exists_after_save() {
    let (repo, _) = repo();
    let mut order = order_with_events(&repo, 1);
    assert!(!repo.exists(order.id()).await.unwrap());
    repo.save(&mut order).await.unwrap();
    assert!(repo.exists(order.id()).await.unwrap());
    let same = repo.load_or_create(order.id()).await.unwrap();
    assert_eq!(same.version(), 1);
}

#[tokio::test]
async fn failed_command_records_nothing() {
    let (repo, _) = repo();
    let mut order = repo.create_new(Uuid::new_v4());
    assert_eq!(order.execute(|o| o.submit()), Err(OrderError::NotOpen));
    assert!(!order.has_changes());
    assert_eq!(order.version(), 0);
    order.execute(|o| o.create("x")).unwrap();
    assert_eq!(
        order.execute(|o| o.create("y")),
        Err(OrderError::AlreadyCreated)
    );
    assert_eq!(order.version(), 1);
}

#[tokio::test]
async fn a_command_can_return_several_events_or_none() {
    let (repo, _) = repo();
    let mut order = repo.create_new(Uuid::new_v4());
    order
        .execute(|o| {
            Ok::<_, OrderError>(vec![
                o.create("x")?,
                OrderEvent::ItemAdded(OrderItemAdded {
                    product_id: Uuid::new_v4(),
                    product_name: "a".into(),
                    quantity: 1,
                    unit_price: 1.0,
                }),
            ])
        })
        .unwrap();
    order.execute(|_| Ok::<_, OrderError>(None)).unwrap();
    assert_eq!(order.version(), 2);
    assert_eq!(order.state().items.len(), 1);
}

#[tokio::test]
async fn stale_save_is_a_conflict_and_writes_nothing() {
    let (repo, events) = repo();
    let mut order = order_with_events(&repo, 3);
    repo.save(&mut order).await.unwrap();

    let mut first = repo.load(order.id()).await.unwrap();
    let mut second = repo.load(order.id()).await.unwrap();
    add_items(&mut first, 1);
    add_items(&mut second, 2);
    repo.save(&mut first).await.unwrap();

    match repo.save(&mut second).await {
        Err(Error::Conflict {
            expected,
            actual,
            aggregate_type,
            ..
        }) => {
            assert_eq!(expected, ExpectedVersion::Exact(3));
            assert_eq!(actual, 4);
            assert_eq!(aggregate_type, "Order");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(second.has_changes(), "the losing events stay uncommitted");
    assert_eq!(second.uncommitted().len(), 2);
    assert_eq!(events.len(), 4, "nothing of the losing save was written");
    assert_eq!(repo.load(order.id()).await.unwrap().version(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_to_one_aggregate_exactly_one_wins() {
    let (repo, events) = repo();
    let mut order = order_with_events(&repo, 1);
    repo.save(&mut order).await.unwrap();
    let id = order.id();

    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (repo, barrier) = (repo.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut order = repo.load(id).await.unwrap();
                add_items(&mut order, 1);
                barrier.wait().await;
                repo.save(&mut order).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(e) => assert!(e.is_conflict(), "unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(events.len(), 2);
    assert_eq!(repo.load(id).await.unwrap().version(), 2);
}

#[tokio::test]
async fn metadata_is_stored_with_every_event() {
    let (repo, events) = repo();
    let (correlation, causation) = (Uuid::new_v4(), Uuid::new_v4());
    let mut order = repo.create_new(Uuid::new_v4());
    order.set_correlation_id(Some(correlation));
    order.set_causation_id(Some(causation));
    order.insert_metadata("user", serde_json::json!("ada"));
    order.execute(|o| o.create("x")).unwrap();
    let event_id = order.uncommitted()[0].event_id;
    repo.save(&mut order).await.unwrap();

    let all = events.read_all(1, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    let e = &all[0];
    assert_eq!(e.position, 1);
    assert_eq!(e.event_id, event_id);
    assert_eq!(e.aggregate_id, order.id());
    assert_eq!(e.aggregate_type, "Order");
    assert_eq!(e.metadata.correlation_id, Some(correlation));
    assert_eq!(e.metadata.causation_id, Some(causation));
    assert_eq!(e.metadata.extra["user"], "ada");
}

/// A stream with a version missing (a row deleted by hand) is a typed error.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn replaying_an_event_out_of_order_is_an_error() {
    let store = eventsource::SqliteEventStore::open(":memory:")
        .await
        .unwrap();
    let repo = Order::repository(
        Arc::new(store.clone()),
        Arc::new(InMemorySnapshotStore::new()),
    );
    let mut order = repo.create_new(Uuid::new_v4());
    for _ in 0..3 {
        order.record(OrderCreated {
            customer: "x".into(),
        });
    }
    repo.save(&mut order).await.unwrap();
    eventsource::sqlx::query("DELETE FROM events WHERE version = 2")
        .execute(store.pool())
        .await
        .unwrap();
    match repo.load(order.id()).await {
        Err(Error::VersionMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (2, 3));
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn undecodable_stored_event_is_a_typed_error_naming_the_aggregate() {
    let (repo, events) = repo();
    let id = Uuid::new_v4();
    let bad = eventsource::NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "OrderShipped".into(),
        event_version: 1,
        payload: "{}".into(),
        metadata: Default::default(),
        occurred_at: chrono::Utc::now(),
    };
    events
        .append("Order", id, ExpectedVersion::Exact(0), &[bad])
        .await
        .unwrap();
    match repo.load(id).await {
        Err(Error::EventDecode {
            aggregate_id,
            event_type,
            version,
            ..
        }) => {
            assert_eq!(
                (aggregate_id, event_type.as_str(), version),
                (id, "OrderShipped", 1)
            );
        }
        other => panic!("expected EventDecode, got {other:?}"),
    }
}

#[tokio::test]
async fn saving_without_changes_is_a_no_op() {
    let (repo, events) = repo();
    let mut order = repo.create_new(Uuid::new_v4());
    repo.save(&mut order).await.unwrap();
    assert!(events.is_empty());
}
