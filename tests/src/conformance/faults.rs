//! Snapshots are an optimisation: a snapshot store that fails, hangs or answers too late
//! never makes a load fail, hang or return a wrong state, and never fails or stalls a
//! save beyond the snapshot timeout.
//!
//! Each backend's snapshot store is wrapped in a [`Faulty`] double that delegates to it
//! until its fault is switched on. The double does not pass on the inner store's
//! `as_any`, so every read goes through it (a PostgreSQL event store would otherwise read
//! the snapshot itself, in one statement with the events).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eventsource::prelude::*;
use eventsource::{Error, Snapshot, SnapshotBound};
use uuid::Uuid;

use super::repository::{Added, Multiplied, Tally};

/// The snapshot timeout of every repository here.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a slow store takes to answer: well past the timeout.
pub const SLOW_ANSWER: Duration = Duration::from_secs(6);

/// The most any one call may take here: far above the snapshot timeout, and below a
/// slow store's delay (a call waiting for the slow store fails the test).
pub const CALL_BOUND: Duration = Duration::from_secs(4);

/// What the double does while its fault is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every call returns `Err(Error::backend(..))`.
    Fail,
    /// No call ever answers.
    Hang,
    /// Every call answers (from the inner store) after [`SLOW_ANSWER`].
    Slow,
}

/// The message of [`Fault::Fail`]'s errors.
pub const FAILURE: &str = "injected snapshot store failure";

/// A snapshot store that delegates to `inner`, except while its fault is on.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn SnapshotStore>,
    fault: Fault,
    on: AtomicBool,
}

impl Faulty {
    /// A double of `inner` with `fault`, switched on.
    pub fn new(inner: Arc<dyn SnapshotStore>, fault: Fault) -> Arc<Self> {
        Arc::new(Faulty {
            inner,
            fault,
            on: AtomicBool::new(true),
        })
    }

    /// Switches the fault on or off.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    /// Before each call: the fault's error, a wait forever, or a delay.
    async fn strike(&self) -> eventsource::Result<()> {
        if !self.on.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.fault {
            Fault::Fail => Err(Error::backend(FAILURE)),
            Fault::Hang => std::future::pending().await,
            Fault::Slow => {
                tokio::time::sleep(SLOW_ANSWER).await;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl SnapshotStore for Faulty {
    async fn save(&self, snapshot: &Snapshot) -> eventsource::Result<()> {
        self.strike().await?;
        self.inner.save(snapshot).await
    }

    async fn save_keeping(&self, snapshot: &Snapshot, keep: NonZeroU32) -> eventsource::Result<()> {
        self.strike().await?;
        self.inner.save_keeping(snapshot, keep).await
    }

    async fn get(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> eventsource::Result<Option<Snapshot>> {
        self.strike().await?;
        self.inner.get(aggregate_type, aggregate_id).await
    }

    async fn get_at(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        bound: SnapshotBound,
    ) -> eventsource::Result<Option<Snapshot>> {
        self.strike().await?;
        self.inner.get_at(aggregate_type, aggregate_id, bound).await
    }

    async fn delete(&self, aggregate_type: &str, aggregate_id: Uuid) -> eventsource::Result<bool> {
        self.strike().await?;
        self.inner.delete(aggregate_type, aggregate_id).await
    }

    async fn exists(&self, aggregate_type: &str, aggregate_id: Uuid) -> eventsource::Result<bool> {
        self.strike().await?;
        self.inner.exists(aggregate_type, aggregate_id).await
    }

    async fn delete_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> eventsource::Result<u64> {
        self.strike().await?;
        self.inner
            .delete_by_type(aggregate_type, schema_version_below)
            .await
    }
}

/// `future`'s output, or a panic naming `what` if it takes longer than `bound`.
pub async fn bounded<F: std::future::Future>(what: &str, bound: Duration, future: F) -> F::Output {
    let started = Instant::now();
    match tokio::time::timeout(bound, future).await {
        Ok(output) => output,
        Err(_) => panic!(
            "{what} did not finish within {bound:?}; gave up after {:?}",
            started.elapsed()
        ),
    }
}

/// Records `count` events from `from` on; their order matters to the state.
pub fn record(root: &mut AggregateRoot<Tally>, from: u64, count: u64) {
    for i in from..from + count {
        if i % 5 == 0 {
            root.record(Multiplied { by: -2 });
        } else {
            root.record(Added { n: i as i64 });
        }
    }
}

/// A repository snapshotting after every save through `snapshots`, in `mode`.
pub fn faulty_repo(
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

/// Loads `id` through `repo` within [`CALL_BOUND`], and checks it against a full replay
/// without a snapshot store: same state and version, and no snapshot used.
async fn load_replays(
    what: &str,
    repo: &AggregateRepository<Tally>,
    events: &Arc<dyn EventStore>,
    id: Uuid,
) -> AggregateRoot<Tally> {
    let replay_only = AggregateRepository::<Tally>::new(events.clone());
    let expected = bounded("a load without snapshots", CALL_BOUND, replay_only.load(id))
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
    assert_eq!(
        loaded.load_history().events_replayed,
        expected.version(),
        "{what}: every event replayed"
    );
    loaded
}

/// A saved aggregate of 30 events with a good snapshot at 30 in `inner`, and the fault
/// of `faulty` switched on.
async fn saved_with_snapshot(
    events: &Arc<dyn EventStore>,
    faulty: &Arc<Faulty>,
) -> AggregateRoot<Tally> {
    faulty.set(false);
    let healthy = faulty_repo(events, faulty.clone(), SnapshotMode::Sync);
    let mut tally = healthy.create_new(Uuid::new_v4());
    record(&mut tally, 0, 30);
    bounded(
        "a save to a healthy store",
        CALL_BOUND,
        healthy.save(&mut tally),
    )
    .await
    .expect("save to a healthy store");
    let loaded = bounded(
        "a load from a healthy store",
        CALL_BOUND,
        healthy.load(tally.id()),
    )
    .await
    .expect("load from a healthy store");
    assert!(
        loaded.load_history().loaded_from_snapshot,
        "the healthy store's snapshot is used"
    );
    faulty.set(true);
    loaded
}

/// The synchronous half of every fault: loads replay, saves stand, `create_snapshot`
/// reports the fault, and once the fault is lifted snapshots are written and used again.
async fn sync_mode(events: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>, fault: Fault) {
    let faulty = Faulty::new(snapshots.clone(), fault);
    let mut tally = saved_with_snapshot(&events, &faulty).await;
    let id = tally.id();
    let repo = faulty_repo(&events, faulty.clone(), SnapshotMode::Sync);

    load_replays(&format!("{fault:?}: a load"), &repo, &events, id).await;

    record(&mut tally, 30, 12);
    bounded(
        &format!("{fault:?}: a sync save"),
        CALL_BOUND,
        repo.save(&mut tally),
    )
    .await
    .unwrap_or_else(|e| panic!("{fault:?}: a sync save failed: {e}"));
    assert!(!tally.has_changes(), "{fault:?}: the events are committed");
    assert_eq!(
        events
            .stream_version(Tally::TYPE, id)
            .await
            .expect("stream version"),
        Some(42),
        "{fault:?}: the events are stored"
    );
    let stale = snapshots
        .get(Tally::TYPE, id)
        .await
        .expect("get")
        .map(|s| s.version);
    assert_eq!(
        stale,
        Some(30),
        "{fault:?}: no snapshot got through the fault"
    );
    let loaded = load_replays(
        &format!("{fault:?}: a load after a save"),
        &repo,
        &events,
        id,
    )
    .await;
    assert_eq!(
        loaded.state(),
        tally.state(),
        "{fault:?}: the saved state loads"
    );

    let mut loaded = loaded;
    let created = bounded(
        &format!("{fault:?}: create_snapshot"),
        CALL_BOUND,
        repo.create_snapshot(&mut loaded),
    )
    .await;
    match (fault, &created) {
        (Fault::Fail, Err(Error::Backend { source })) => {
            assert!(
                source.to_string().contains(FAILURE),
                "the store's own error: {source}"
            );
        }
        (Fault::Hang | Fault::Slow, Err(Error::Timeout { after, .. })) => {
            assert_eq!(
                *after, SNAPSHOT_TIMEOUT,
                "{fault:?}: the repository's timeout"
            );
        }
        _ => panic!("{fault:?}: create_snapshot returned {created:?}"),
    }

    // The fault is lifted: the next save snapshots, the next load uses it.
    faulty.set(false);
    record(&mut tally, 42, 3);
    bounded("a save after the fault", CALL_BOUND, repo.save(&mut tally))
        .await
        .expect("a save after the fault");
    let snapshot = snapshots.get(Tally::TYPE, id).await.expect("get");
    assert_eq!(
        snapshot.map(|s| s.version),
        Some(45),
        "{fault:?}: snapshots are written again"
    );
    let loaded = bounded("a load after the fault", CALL_BOUND, repo.load(id))
        .await
        .expect("a load after the fault");
    assert!(
        loaded.load_history().loaded_from_snapshot,
        "{fault:?}: loads use snapshots again"
    );
    assert_eq!(loaded.load_history().snapshot_version, Some(45));
    assert_eq!(
        loaded.state(),
        tally.state(),
        "{fault:?}: from the snapshot"
    );
}

/// The background half of every fault: saves return at once, the queue drains within
/// the snapshot timeout per write, a short wait on a hung store times out, and once the
/// fault is lifted background snapshots are written and used again.
async fn background_mode(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
    fault: Fault,
) {
    let faulty = Faulty::new(snapshots.clone(), fault);
    let mut tally = saved_with_snapshot(&events, &faulty).await;
    let id = tally.id();
    let repo = faulty_repo(&events, faulty.clone(), SnapshotMode::Background);

    load_replays(
        &format!("{fault:?}: a background-mode load"),
        &repo,
        &events,
        id,
    )
    .await;

    record(&mut tally, 30, 12);
    bounded(
        &format!("{fault:?}: a background-mode save"),
        CALL_BOUND,
        repo.save(&mut tally),
    )
    .await
    .unwrap_or_else(|e| panic!("{fault:?}: a background-mode save failed: {e}"));
    assert_eq!(
        events
            .stream_version(Tally::TYPE, id)
            .await
            .expect("stream version"),
        Some(42),
        "{fault:?}: the events are stored"
    );
    if fault != Fault::Fail {
        // The write waits on the store for the snapshot timeout: 1 ms is too short.
        let waited = repo
            .await_pending_snapshots_within(Duration::from_millis(1))
            .await;
        assert!(
            matches!(waited, Err(Error::Timeout { .. })),
            "{fault:?}: a 1 ms wait on a write to a stalled store times out, got {waited:?}"
        );
    }
    bounded(
        &format!("{fault:?}: await_pending_snapshots"),
        Duration::from_secs(10),
        repo.await_pending_snapshots(),
    )
    .await;
    assert_eq!(
        repo.pending_snapshot_count(),
        0,
        "{fault:?}: the queue drained"
    );
    let stale = snapshots
        .get(Tally::TYPE, id)
        .await
        .expect("get")
        .map(|s| s.version);
    assert_eq!(
        stale,
        Some(30),
        "{fault:?}: no snapshot got through the fault"
    );
    load_replays(
        &format!("{fault:?}: a background-mode load after a save"),
        &repo,
        &events,
        id,
    )
    .await;

    // The fault is lifted: the next save's background snapshot is written and used.
    faulty.set(false);
    record(&mut tally, 42, 3);
    bounded("a save after the fault", CALL_BOUND, repo.save(&mut tally))
        .await
        .expect("a save after the fault");
    repo.await_pending_snapshots_within(Duration::from_secs(10))
        .await
        .expect("the background snapshot is written");
    let snapshot = snapshots.get(Tally::TYPE, id).await.expect("get");
    assert_eq!(
        snapshot.map(|s| s.version),
        Some(45),
        "{fault:?}: background snapshots are written again"
    );
    let loaded = bounded("a load after the fault", CALL_BOUND, repo.load(id))
        .await
        .expect("a load after the fault");
    assert!(
        loaded.load_history().loaded_from_snapshot,
        "{fault:?}: loads use snapshots again"
    );
    assert_eq!(
        loaded.state(),
        tally.state(),
        "{fault:?}: from the snapshot"
    );
}

/// A snapshot store whose every call fails: loads replay, sync saves stand,
/// `create_snapshot` returns the store's error; all work again once it heals.
pub async fn failing_snapshot_store_sync(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    sync_mode(events, snapshots, Fault::Fail).await;
}

/// A snapshot store that never answers: loads replay after the timeout, sync saves
/// stand after it, `create_snapshot` returns `Timeout`; all work again once it answers.
pub async fn hung_snapshot_store_sync(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    sync_mode(events, snapshots, Fault::Hang).await;
}

/// A snapshot store that answers after the timeout: treated as a hung one.
pub async fn slow_snapshot_store_sync(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    sync_mode(events, snapshots, Fault::Slow).await;
}

/// Background snapshots to a failing store: saves stand, the queue drains.
pub async fn failing_snapshot_store_background(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    background_mode(events, snapshots, Fault::Fail).await;
}

/// Background snapshots to a store that never answers: saves stand, the queue drains
/// after the timeout, a shorter wait times out.
pub async fn hung_snapshot_store_background(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    background_mode(events, snapshots, Fault::Hang).await;
}

/// Background snapshots to a store that answers too late: as for a hung one.
pub async fn slow_snapshot_store_background(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    background_mode(events, snapshots, Fault::Slow).await;
}

/// Many loads and saves at once on a hung store: each is bounded by the timeout on its
/// own (they do not queue behind one another), and every state is right.
pub async fn hung_snapshot_store_under_concurrency(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let faulty = Faulty::new(snapshots, Fault::Hang);
    let repo = faulty_repo(&events, faulty.clone(), SnapshotMode::Sync);
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let mut tally = repo.create_new(Uuid::new_v4());
                record(&mut tally, i, 5);
                repo.save(&mut tally).await.expect("save");
                let loaded = repo.load(tally.id()).await.expect("load");
                assert_eq!(loaded.state(), tally.state());
                assert!(!loaded.load_history().loaded_from_snapshot);
            })
        })
        .collect();
    // 16 saves and loads, each waiting 200 ms on the store: well under 5 s even if they
    // ran one after another, and far under the bound when they run at once.
    bounded(
        "16 concurrent saves and loads on a hung store",
        Duration::from_secs(20),
        async {
            for task in tasks {
                task.await.expect("task");
            }
        },
    )
    .await;
}
