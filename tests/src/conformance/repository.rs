//! The repository on top of each backend: snapshots used, every fallback, modes and
//! optimistic concurrency, end to end through the real stores.

use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::Utc;
use eventsource::prelude::*;
use eventsource::{Error, Snapshot};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A number was added to the tally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Added {
    /// The number.
    pub n: i64,
}

/// The tally was multiplied (so the order of events matters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Multiplied {
    /// The factor.
    pub by: i64,
}

/// The tally's events.
#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum TallyEvent {
    /// See [`Added`].
    Added(Added),
    /// See [`Multiplied`].
    Multiplied(Multiplied),
}

/// A running tally whose value depends on the order of its events.
#[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "ConformanceTally", event = TallyEvent)]
#[snapshot(schema_version = 1, every = 100)]
pub struct Tally {
    /// The value.
    pub value: i64,
    /// How many events were applied.
    pub applied: u64,
}

impl Apply<Added> for Tally {
    fn apply(&mut self, e: &Added) {
        self.value = self.value.wrapping_add(e.n);
        self.applied += 1;
    }
}

impl Apply<Multiplied> for Tally {
    fn apply(&mut self, e: &Multiplied) {
        self.value = self.value.wrapping_mul(e.by);
        self.applied += 1;
    }
}

fn record(root: &mut AggregateRoot<Tally>, from: u64, count: u64) {
    for i in from..from + count {
        if i % 7 == 0 {
            root.record(Multiplied { by: 3 });
        } else {
            root.record(Added { n: i as i64 });
        }
    }
}

fn repo(
    events: &Arc<dyn EventStore>,
    snapshots: &Arc<dyn SnapshotStore>,
    threshold: u64,
    mode: SnapshotMode,
) -> AggregateRepository<Tally> {
    AggregateRepository::builder(events.clone())
        .snapshot_store(snapshots.clone())
        .threshold(threshold)
        .mode(mode)
        .build()
        .expect("valid repository settings")
}

/// A long history saved in batches loads from its snapshot, replaying only the tail,
/// with the state and version of a full replay.
pub async fn repository_loads_from_snapshot(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Tally::repository(events.clone(), snapshots.clone());
    let replay_only = AggregateRepository::<Tally>::new(events.clone());
    let mut tally = repo.create_new(Uuid::new_v4());
    for batch in 0..5 {
        record(&mut tally, batch * 53, 53);
        repo.save(&mut tally).await.expect("save");
    }
    let snapshot = snapshots
        .get(Tally::TYPE, tally.id())
        .await
        .expect("get snapshot")
        .expect("a snapshot was taken");
    // Saves at 53, 106, 159, 212, 265: the ones crossing 100 and 200 snapshot.
    assert_eq!(
        snapshot.version, 212,
        "the save crossing 200 snapshots where it lands"
    );

    let loaded = repo.load(tally.id()).await.expect("load");
    let replayed = replay_only.load(tally.id()).await.expect("full replay");
    assert_eq!(loaded.version(), 265);
    assert_eq!(loaded.state(), replayed.state());
    assert_eq!(loaded.state(), tally.state());
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().snapshot_version, Some(212));
    assert_eq!(loaded.load_history().events_replayed, 53);
    assert!(!replayed.load_history().loaded_from_snapshot);
    assert_eq!(replayed.load_history().events_replayed, 265);

    let mut more = loaded;
    record(&mut more, 1000, 20);
    repo.save(&mut more).await.expect("save the tail");
    let loaded = repo.load(tally.id()).await.expect("load with a tail");
    assert_eq!(loaded.load_history().events_replayed, 73);
    assert_eq!(loaded.state(), more.state());
}

/// A snapshot of another schema version, with state that does not decode, or ahead of
/// the stream is ignored: the load replays everything and is right.
pub async fn repository_snapshot_fallbacks(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Tally::repository(events.clone(), snapshots.clone());
    let mut tally = repo.create_new(Uuid::new_v4());
    record(&mut tally, 0, 30);
    repo.save(&mut tally).await.expect("save");
    let id = tally.id();
    let wrong = |version, schema_version, state: &str| Snapshot {
        aggregate_id: id,
        aggregate_type: Tally::TYPE.to_owned(),
        version,
        schema_version,
        state: state.to_owned(),
        created_at: Utc::now(),
    };
    let cases = [
        (
            "another schema version",
            wrong(20, 9, r#"{"value":-1,"applied":20}"#),
        ),
        (
            "state of the wrong shape",
            wrong(20, 1, r#"{"value":"not a number"}"#),
        ),
        (
            "ahead of the stream",
            wrong(500, 1, r#"{"value":-1,"applied":500}"#),
        ),
    ];
    for (what, snapshot) in cases {
        snapshots.delete(Tally::TYPE, id).await.expect("delete");
        snapshots.save(&snapshot).await.expect("save the snapshot");
        let loaded = repo.load(id).await.expect(what);
        assert_eq!(loaded.state(), tally.state(), "{what}");
        assert_eq!(loaded.version(), 30, "{what}");
        assert!(!loaded.load_history().loaded_from_snapshot, "{what}");
        assert_eq!(loaded.load_history().events_replayed, 30, "{what}");
    }

    // A usable snapshot of its own making is used: its state shows.
    snapshots.delete(Tally::TYPE, id).await.expect("delete");
    snapshots
        .save(&wrong(29, 1, r#"{"value":1000000,"applied":29}"#))
        .await
        .expect("save a marked snapshot");
    let loaded = repo.load(id).await.expect("load from the marked snapshot");
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().events_replayed, 1);
    assert_eq!(loaded.state().applied, 30);
    assert_ne!(
        loaded.state().value,
        tally.state().value,
        "the marked state was used"
    );
}

/// A snapshot stored compressed is used by `load` and `load_at` as a plain one is, and
/// a repository with a compression threshold writes snapshots that its loads use.
pub async fn repository_loads_compressed_snapshots(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = AggregateRepository::<Tally>::builder(events.clone())
        .snapshot_store(snapshots.clone())
        .threshold(10)
        .snapshot_compress_over(Some(0))
        .build()
        .expect("repository");
    assert_eq!(repo.snapshot_policy().compress_over, Some(0));
    let mut tally = repo.create_new(Uuid::new_v4());
    record(&mut tally, 0, 30);
    repo.save(&mut tally).await.expect("save");
    let id = tally.id();
    let loaded = repo.load(id).await.expect("load");
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.state(), tally.state());

    // A marked state, large enough to be stored compressed: its mark shows in the loads.
    let pad = crate::conformance::snapshot_store::realistic_state(50_000, 1);
    let marked = |version: u64, value: i64| Snapshot {
        aggregate_id: id,
        aggregate_type: Tally::TYPE.to_owned(),
        version,
        schema_version: 1,
        state: format!(r#"{{"value":{value},"applied":{version},"pad":{pad}}}"#),
        created_at: Utc::now(),
    };
    snapshots.delete(Tally::TYPE, id).await.expect("delete");
    for (version, value) in [(20, 2_000_000), (29, 1_000_000)] {
        snapshots
            .save_compressing(&marked(version, value), NonZeroU32::MAX, Some(1024))
            .await
            .expect("save a compressed snapshot");
    }
    let loaded = repo
        .load(id)
        .await
        .expect("load from the compressed snapshot");
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().events_replayed, 1);
    assert_eq!(loaded.state().applied, 30);
    assert_ne!(
        loaded.state().value,
        tally.state().value,
        "the marked state was used"
    );
    let at = repo.load_at(id, 25).await.expect("load_at");
    assert!(at.load_history().loaded_from_snapshot);
    assert_eq!(at.load_history().events_replayed, 5);
    assert_eq!(at.state().applied, 25);
}

/// Background snapshots are written after `save` returns and are then used.
pub async fn repository_background_snapshots(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repo(&events, &snapshots, 10, SnapshotMode::Background);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut tally = repo.create_new(Uuid::new_v4());
        record(&mut tally, 0, 25);
        repo.save(&mut tally).await.expect("save");
        ids.push((tally.id(), tally.state().clone()));
    }
    repo.await_pending_snapshots().await;
    assert_eq!(repo.pending_snapshot_count(), 0);
    for (id, state) in ids {
        let snapshot = snapshots.get(Tally::TYPE, id).await.expect("get");
        assert_eq!(snapshot.map(|s| s.version), Some(25));
        let loaded = repo.load(id).await.expect("load");
        assert!(loaded.load_history().loaded_from_snapshot);
        assert_eq!(loaded.state(), &state);
    }
}

/// A manual snapshot is written at once and used by the next load.
pub async fn repository_manual_snapshot(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repo(&events, &snapshots, 1, SnapshotMode::Manual);
    let mut tally = repo.create_new(Uuid::new_v4());
    record(&mut tally, 0, 12);
    repo.save(&mut tally).await.expect("save");
    assert!(
        !snapshots
            .exists(Tally::TYPE, tally.id())
            .await
            .expect("exists")
    );
    let snapshot = repo.create_snapshot(&mut tally).await.expect("snapshot");
    assert_eq!(snapshot.version, 12);
    let loaded = repo.load(tally.id()).await.expect("load");
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.state(), tally.state());
}

/// Many tasks saving the same loaded version: exactly one wins, the others get a
/// conflict with the winner's version, and nothing of theirs is stored.
pub async fn repository_concurrent_saves(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repo(&events, &snapshots, 3, SnapshotMode::Sync);
    let mut tally = repo.create_new(Uuid::new_v4());
    record(&mut tally, 0, 2);
    repo.save(&mut tally).await.expect("save");
    let id = tally.id();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (repo, barrier) = (repo.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut tally = repo.load(id).await.expect("load");
                record(&mut tally, 100 + i, 2);
                barrier.wait().await; // every task has loaded version 2
                repo.save(&mut tally).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => wins += 1,
            Err(Error::Conflict {
                expected, actual, ..
            }) => {
                assert_eq!(expected, ExpectedVersion::Exact(2));
                assert_eq!(actual, 4);
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1);
    let loaded = repo.load(id).await.expect("load");
    assert_eq!(loaded.version(), 4);
    assert_eq!(loaded.state().applied, 4);
}
