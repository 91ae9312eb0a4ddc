//! Property: whatever the history, threshold, mode and snapshot points, a load from
//! snapshots yields exactly the state and version of a full replay.

mod common;

use common::*;
use eventsource::prelude::*;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Step {
    Add(u8),
    RemoveFirst,
    Save,
    ManualSnapshot,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1u8..20).prop_map(Step::Add),
        1 => Just(Step::RemoveFirst),
        2 => Just(Step::Save),
        1 => Just(Step::ManualSnapshot),
    ]
}

async fn run(steps: Vec<Step>, threshold: u64, background: bool) {
    let (events, snapshots) = stores();
    let mode = if background {
        SnapshotMode::Background
    } else {
        SnapshotMode::Sync
    };
    let repo = AggregateRepository::<Order>::builder(events.clone())
        .snapshot_store(snapshots.clone())
        .threshold(threshold)
        .mode(mode)
        .build()
        .unwrap();
    let replay_only = AggregateRepository::<Order>::new(events.clone());

    let mut order = repo.create_new(Uuid::new_v4());
    order.execute(|o| o.create("p")).unwrap();
    for step in steps {
        match step {
            Step::Add(n) => add_items(&mut order, u64::from(n)),
            Step::RemoveFirst => {
                if let Some(first) = order.state().items.first() {
                    order.record(OrderItemRemoved {
                        product_id: first.product_id,
                    });
                }
            }
            Step::Save => repo.save(&mut order).await.unwrap(),
            Step::ManualSnapshot => {
                repo.save(&mut order).await.unwrap();
                repo.create_snapshot(&mut order).await.unwrap();
            }
        }
        // Compare after every step that stored something.
        if !order.has_changes() {
            repo.await_pending_snapshots().await;
            let from_snapshot = repo.load(order.id()).await.unwrap();
            let replayed = replay_only.load(order.id()).await.unwrap();
            assert_eq!(from_snapshot.version(), replayed.version());
            assert_eq!(from_snapshot.state(), replayed.state());
            assert_eq!(from_snapshot.state(), order.state());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_loads_equal_full_replay(
        steps in proptest::collection::vec(step(), 1..40),
        threshold in 1u64..60,
        background in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(steps, threshold, background));
    }
}

#[test]
fn a_snapshot_taken_mid_history_is_used_and_equal() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (events, snapshots) = stores();
        let repo = Order::repository(events.clone(), snapshots.clone());
        let mut order = order_with_events(&repo, 250);
        repo.save(&mut order).await.unwrap();
        let loaded = repo.load(order.id()).await.unwrap();
        assert!(loaded.load_history().loaded_from_snapshot);
        assert_eq!(loaded.state(), order.state());
    });
}
