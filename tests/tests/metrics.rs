//! The metrics each backend reports, counted with a recording metrics backend: loads,
//! snapshot hits and misses by reason, saves, snapshot writes (sync, manual and
//! background, with sizes and failures), the background queue, and subscriptions.
//!
//! One recorder serves the whole process, so the backends run one after the other in
//! one test, each compared with the counts before it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use eventsource::feed::Envelope;
use eventsource::metrics::{SnapshotMiss, names};
use eventsource::prelude::*;
use eventsource::subscription::{
    OnExhausted, Projection, RetryPolicy, Subscription, SubscriptionStore,
};
use eventsource::{
    Error, NewEvent, PostgresSnapshotStore, Snapshot, SnapshotStore, SqliteSnapshotStore,
};
use eventsource_tests::conformance::faults::{Fault, Faulty};
use eventsource_tests::fixtures;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Counted {
    pub n: u64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum MeterEvent {
    Counted(Counted),
}

fn meter_v2_to_v3(v: Value) -> Result<Value, String> {
    let n = v.get("count").cloned().ok_or("schema 2 has `count`")?;
    Ok(json!({ "total": n }))
}

/// Snapshotted every 2 events, synchronously; schema 2 upcasts, schema 1 cannot.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "MetricsMeter", event = MeterEvent)]
#[snapshot(schema_version = 3, every = 2, upcast(2 => meter_v2_to_v3), timeout = "300ms")]
pub struct Meter {
    pub total: u64,
}

impl Apply<Counted> for Meter {
    fn apply(&mut self, e: &Counted) {
        self.total += e.n;
    }
}

/// The same events, snapshotted after every save in the background.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "MetricsBackgroundMeter", event = MeterEvent)]
#[snapshot(schema_version = 1, every = 1, mode = "background")]
pub struct BackgroundMeter {
    pub total: u64,
}

impl Apply<Counted> for BackgroundMeter {
    fn apply(&mut self, e: &Counted) {
        self.total += e.n;
    }
}

fn snapshotter() -> &'static Snapshotter {
    static RECORDER: OnceLock<Snapshotter> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("install the recording metrics backend");
        snapshotter
    })
}

/// Every metric's value, by name and sorted labels.
type Values = HashMap<(String, Vec<(String, String)>), DebugValue>;

fn values() -> Values {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

/// A counter's increase since `before`.
fn counted(before: &Values, after: &Values, name: &str, pairs: &[(&str, &str)]) -> u64 {
    let key = (name.to_owned(), labels(pairs));
    let get = |v: &Values| match v.get(&key) {
        Some(DebugValue::Counter(n)) => *n,
        _ => 0,
    };
    get(after) - get(before)
}

/// How many samples a histogram gained since `before`, and the newest ones.
fn sampled(before: &Values, after: &Values, name: &str, pairs: &[(&str, &str)]) -> Vec<f64> {
    let key = (name.to_owned(), labels(pairs));
    let get = |v: &Values| match v.get(&key) {
        Some(DebugValue::Histogram(s)) => s.iter().map(|f| f.into_inner()).collect(),
        _ => Vec::new(),
    };
    let (b, a): (Vec<f64>, Vec<f64>) = (get(before), get(after));
    a[b.len().min(a.len())..].to_vec()
}

fn gauge(after: &Values, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    match after.get(&(name.to_owned(), labels(pairs))) {
        Some(DebugValue::Gauge(g)) => Some(g.into_inner()),
        _ => None,
    }
}

fn stored(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Counted".into(),
        event_version: 1,
        payload: json!({ "n": n }).to_string(),
        metadata: Default::default(),
        occurred_at: Utc::now(),
    }
}

fn snapshot_of(id: Uuid, version: u64, schema_version: u32, state: Value) -> Snapshot {
    Snapshot {
        aggregate_id: id,
        aggregate_type: Meter::TYPE.to_owned(),
        version,
        schema_version,
        state: state.to_string(),
        created_at: Utc::now(),
    }
}

/// Counts every event it sees; fails on the event of `n = 13` of aggregate `refuse`.
struct Counter {
    seen: u64,
    refuse: Uuid,
}

#[eventsource::async_trait]
impl<C: Send + ?Sized> Projection<C> for Counter {
    type Event = MeterEvent;

    async fn apply(&mut self, _: &mut C, e: Envelope<MeterEvent>) -> Result<(), BoxError> {
        let MeterEvent::Counted(c) = e.event;
        if c.n == 13 && e.aggregate_id == self.refuse {
            return Err("13 is refused".into());
        }
        self.seen += 1;
        Ok(())
    }
}

/// How many events of `aggregate_type` the feed holds.
async fn feed_events(events: &dyn EventStore, aggregate_type: &str) -> u64 {
    let mut after = eventsource::feed::Checkpoint::START;
    let mut total = 0;
    loop {
        let query = eventsource::feed::FeedQuery::after(after)
            .limit(500)
            .aggregate_types([aggregate_type]);
        let page = events.read_feed(&query).await.expect("read the feed");
        total += page.events.len() as u64;
        after = page.next;
        if page.at_end(&query) {
            return total;
        }
    }
}

async fn scenario<S>(backend: &str, store: S, snapshots: Arc<dyn SnapshotStore>)
where
    S: EventStore + SubscriptionStore + Clone + 'static,
{
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let t = Meter::TYPE;
    let before = values();

    // Saves (one every second event snapshots) and a load from the snapshot.
    let repo = Meter::repository(events.clone(), snapshots.clone());
    let id = Uuid::new_v4();
    for n in 0..4 {
        repo.execute_or_create(
            id,
            move |_: &Meter| Ok::<_, String>(Counted { n }),
            eventsource::command::CommandOptions::default(),
        )
        .await
        .expect("execute");
    }
    let loaded = repo.load(id).await.expect("load");
    assert!(loaded.load_history().loaded_from_snapshot);

    // A conflict.
    let mut a = repo.load(id).await.expect("load");
    let mut b = repo.load(id).await.expect("load");
    a.record(Counted { n: 1 });
    b.record(Counted { n: 1 });
    repo.save(&mut a).await.expect("first save");
    assert!(matches!(
        repo.save(&mut b).await,
        Err(Error::Conflict { .. })
    ));

    // Misses, one per reason the stores can be brought to.
    let mut misses: Vec<(SnapshotMiss, Uuid)> = Vec::new();
    let cases = [
        (SnapshotMiss::NoneStored, None),
        (
            SnapshotMiss::SchemaMismatch,
            Some((1, 1, json!({"total": 1}))),
        ),
        (SnapshotMiss::UpcastFailed, Some((1, 2, json!({"nope": 1})))),
        (SnapshotMiss::NewerSchema, Some((1, 4, json!({"total": 1})))),
        (
            SnapshotMiss::Undecodable,
            Some((1, 3, json!({"total": "one"}))),
        ),
        (
            SnapshotMiss::AheadOfStream,
            Some((50, 3, json!({"total": 1}))),
        ),
    ];
    for (reason, snapshot) in cases {
        let id = Uuid::new_v4();
        events
            .append(t, id, ExpectedVersion::Exact(0), &[stored(1)])
            .await
            .expect("append");
        if let Some((version, schema, state)) = snapshot {
            snapshots
                .save(&snapshot_of(id, version, schema, state))
                .await
                .expect("save a snapshot");
        }
        misses.push((reason, id));
    }
    for (reason, id) in &misses {
        let root = repo.load(*id).await.expect("a snapshot never fails a load");
        assert_eq!(
            root.load_history().snapshot_miss,
            Some(*reason),
            "{backend}: {reason:?}"
        );
    }
    // An upcast snapshot is a hit.
    let upcast = Uuid::new_v4();
    events
        .append(
            t,
            upcast,
            ExpectedVersion::Exact(0),
            &[stored(1), stored(2)],
        )
        .await
        .expect("append");
    snapshots
        .save(&snapshot_of(upcast, 1, 2, json!({"count": 1})))
        .await
        .expect("save");
    assert!(
        repo.load(upcast)
            .await
            .expect("load")
            .load_history()
            .loaded_from_snapshot
    );

    // The store failing, then hanging.
    for (fault, reason) in [
        (Fault::Fail, SnapshotMiss::StoreError),
        (Fault::Hang, SnapshotMiss::StoreTimeout),
    ] {
        let faulty = Meter::repository(events.clone(), Faulty::new(snapshots.clone(), fault));
        let root = faulty
            .load(id)
            .await
            .expect("a failing snapshot store never fails a load");
        assert_eq!(root.load_history().snapshot_miss, Some(reason), "{backend}");
        // A save whose sync snapshot fails stands.
        let mut root = root;
        root.record(Counted { n: 1 });
        root.record(Counted { n: 1 });
        faulty.save(&mut root).await.expect("the save stands");
    }
    let not_found = repo.load(Uuid::new_v4()).await;
    assert!(matches!(not_found, Err(Error::NotFound { .. })));

    // A manual snapshot.
    let mut root = repo.load(id).await.expect("load");
    let manual = repo
        .create_snapshot(&mut root)
        .await
        .expect("create_snapshot");

    let after = values();
    let c = |name, pairs: &[(&str, &str)]| counted(&before, &after, name, pairs);
    let at = [("aggregate_type", t)];
    // Loads that found events: executes 2 to 4, the explicit one, the conflict's two,
    // the six misses, the upcast one, the two on failing stores, the manual one's.
    let ok = [("aggregate_type", t), ("outcome", "ok")];
    assert_eq!(c(names::LOADS, &ok), 16, "{backend}");
    assert_eq!(
        c(
            names::LOADS,
            &[("aggregate_type", t), ("outcome", "not_found")]
        ),
        2,
        "{backend}: the first execute and the unknown id"
    );
    // Executes 1 to 4, the conflict's first, the two on failing stores.
    assert_eq!(c(names::SAVES, &ok), 7, "{backend}");
    assert_eq!(
        c(
            names::SAVES,
            &[("aggregate_type", t), ("outcome", "conflict")]
        ),
        1,
        "{backend}"
    );
    for (reason, _) in &misses {
        // Execute 2 found no snapshot either.
        let expected = if *reason == SnapshotMiss::NoneStored {
            2
        } else {
            1
        };
        let label = [("aggregate_type", t), ("reason", reason.as_str())];
        assert_eq!(
            c(names::SNAPSHOT_MISSES, &label),
            expected,
            "{backend}: {reason:?}"
        );
    }
    for reason in [SnapshotMiss::StoreError, SnapshotMiss::StoreTimeout] {
        let label = [("aggregate_type", t), ("reason", reason.as_str())];
        assert_eq!(
            c(names::SNAPSHOT_MISSES, &label),
            1,
            "{backend}: {reason:?}"
        );
    }
    // Executes 3 and 4, the explicit load, the conflict's two, the upcast, the manual.
    assert_eq!(c(names::SNAPSHOT_HITS, &at), 7, "{backend}");
    // At versions 2 and 4; the failing stores' writes failed.
    let sync = [("aggregate_type", t), ("mode", "sync")];
    assert_eq!(c(names::SNAPSHOT_WRITES, &sync), 2, "{backend}");
    let manual_mode = [("aggregate_type", t), ("mode", "manual")];
    assert_eq!(c(names::SNAPSHOT_WRITES, &manual_mode), 1, "{backend}");
    for reason in ["store_error", "store_timeout"] {
        let label = [("aggregate_type", t), ("reason", reason)];
        assert_eq!(
            c(names::SNAPSHOT_WRITE_FAILURES, &label),
            1,
            "{backend}: {reason}"
        );
    }
    let sizes = sampled(&before, &after, names::SNAPSHOT_SIZE, &at);
    assert!(
        sizes.contains(&(manual.state.len() as f64)),
        "{backend}: sizes {sizes:?}"
    );
    let replayed = sampled(&before, &after, names::EVENTS_REPLAYED, &at);
    assert_eq!(
        replayed.len(),
        16,
        "{backend}: one sample per load that found events"
    );
    assert_eq!(
        sampled(&before, &after, names::LOAD_DURATION, &at).len(),
        16,
        "{backend}"
    );
    assert_eq!(
        sampled(&before, &after, names::SAVE_DURATION, &at).len(),
        7,
        "{backend}"
    );

    // Background writes, queued behind a slow store: a newer snapshot replaces a queued
    // one, and the queue drains to 0.
    let bt = BackgroundMeter::TYPE;
    let before = values();
    let slow = Faulty::new(snapshots.clone(), Fault::Slow);
    let background = BackgroundMeter::repository(events.clone(), slow.clone());
    let bid = Uuid::new_v4();
    let mut root = background.create_new(bid);
    for n in 0..3 {
        root.record(Counted { n });
        background.save(&mut root).await.expect("save");
    }
    slow.set(false);
    background
        .await_pending_snapshots_within(Duration::from_secs(20))
        .await
        .expect("the queue drains");
    let after = values();
    let bat = [("aggregate_type", bt)];
    let coalesced = counted(&before, &after, names::SNAPSHOT_WRITES_COALESCED, &bat);
    let written = counted(
        &before,
        &after,
        names::SNAPSHOT_WRITES,
        &[("aggregate_type", bt), ("mode", "background")],
    );
    let timed_out = counted(
        &before,
        &after,
        names::SNAPSHOT_WRITE_FAILURES,
        &[("aggregate_type", bt), ("reason", "store_timeout")],
    );
    assert!(
        coalesced >= 1,
        "{backend}: 3 snapshots queued behind a slow write, {coalesced} replaced"
    );
    assert_eq!(
        written + timed_out + coalesced,
        3,
        "{backend}: every queued snapshot is written, fails or is replaced"
    );
    assert_eq!(
        gauge(&after, names::SNAPSHOT_QUEUE_DEPTH, &bat),
        Some(0.0),
        "{backend}"
    );

    // A subscription: events handled, one parked, and no lag once caught up.
    let sub = format!("metrics-{backend}-{}", Uuid::new_v4());
    let before = values();
    let sid = Uuid::new_v4();
    events
        .append(
            t,
            sid,
            ExpectedVersion::Exact(0),
            &[stored(1), stored(13), stored(2)],
        )
        .await
        .expect("append");
    let counter = Subscription::new(sub.clone(), store.clone())
        .aggregate_types([t])
        .retry(RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            on_exhausted: OnExhausted::Park,
        })
        .catch_up(Counter {
            seen: 0,
            refuse: sid,
        })
        .await
        .expect("catch up");
    let after = values();
    let sl = [("subscription", sub.as_str())];
    let handled = counted(&before, &after, names::SUBSCRIPTION_EVENTS, &sl);
    let parked = counted(&before, &after, names::SUBSCRIPTION_PARKED, &sl);
    let total = feed_events(events.as_ref(), t).await;
    assert!(
        counter.seen >= handled,
        "{backend}: effects are at least once"
    );
    assert_eq!(parked, 1, "{backend}");
    assert_eq!(
        handled + parked,
        total,
        "{backend}: every event handled or parked, once"
    );
    assert_eq!(
        gauge(&after, names::SUBSCRIPTION_LAG_EVENTS, &sl),
        Some(0.0),
        "{backend}"
    );
    assert_eq!(
        gauge(&after, names::SUBSCRIPTION_LAG_SECONDS, &sl),
        Some(0.0),
        "{backend}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_backend_reports_its_metrics() {
    eventsource::metrics::describe();
    let memory = fixtures::memory_store().await.expect("memory");
    scenario(
        "memory",
        memory.store.clone(),
        Arc::new(eventsource::InMemorySnapshotStore::new()),
    )
    .await;

    let sqlite = fixtures::sqlite_file_store().await.expect("sqlite");
    let snapshots = Arc::new(SqliteSnapshotStore::new(sqlite.store.pool().clone()));
    scenario("sqlite", sqlite.store.clone(), snapshots).await;
    sqlite.close().await;

    if let Some(pg) = fixtures::postgres_store().await {
        let snapshots = Arc::new(PostgresSnapshotStore::new(pg.store.pool().clone()));
        scenario("postgres", pg.store.clone(), snapshots).await;
        pg.close().await;
    }
}
