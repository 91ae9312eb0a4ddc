//! Snapshot history end to end: the repository keeps the policy's number of snapshots,
//! `load_at` and `load_as_of` rebuild past states from them, the event stores' bounded
//! reads, and a property test of `load_at` against a replay cut at the same version.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventsource::prelude::*;
use eventsource::{Error, EventStoreExt, NewEvent, Snapshot};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use uuid::Uuid;

use super::repository::{Added, Multiplied, Tally, TallyEvent};
use super::snapshot_store::stored_versions;
use crate::{event, unique_type};

/// The property test's number of generated histories.
pub const CASES: u32 = 24;

fn keep(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("keep is at least 1")
}

/// The event at version `version` of the histories these tests write: the order
/// matters (a multiplication every 7th).
fn event_at(version: u64) -> TallyEvent {
    if version.is_multiple_of(7) {
        TallyEvent::Multiplied(Multiplied { by: 3 })
    } else {
        TallyEvent::Added(Added { n: version as i64 })
    }
}

/// The state after the events `events` (the first `events.len()` versions), folded in
/// memory: what a replay cut at that version must give.
fn folded(events: &[TallyEvent]) -> String {
    let mut root = AggregateRoot::<Tally>::new(Uuid::new_v4());
    for e in events {
        root.record(e.clone());
    }
    root.state().to_snapshot().expect("the state encodes")
}

fn repository(
    events: &Arc<dyn EventStore>,
    snapshots: &Arc<dyn SnapshotStore>,
    every: u64,
    mode: SnapshotMode,
    kept: u32,
) -> AggregateRepository<Tally> {
    AggregateRepository::builder(events.clone())
        .snapshot_store(snapshots.clone())
        .threshold(every)
        .mode(mode)
        .snapshot_keep(keep(kept))
        .build()
        .expect("valid repository settings")
}

/// Saves versions `from..=to` of the history in batches of `batch`.
async fn save_history(repo: &AggregateRepository<Tally>, id: Uuid, to: u64, batch: u64) {
    let mut root = repo.load_or_create(id).await.expect("load");
    let mut version = root.version();
    while version < to {
        let end = (version + batch).min(to);
        for v in version + 1..=end {
            root.record(event_at(v));
        }
        repo.save(&mut root).await.expect("save");
        version = end;
    }
}

/// Sync, background and manual snapshots all keep the policy's `keep` newest; `keep`
/// 1 keeps one, as before.
pub async fn repository_keeps_the_policys_snapshots(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let sync = repository(&events, &snapshots, 10, SnapshotMode::Sync, 3);
    let id = Uuid::new_v4();
    save_history(&sync, id, 55, 5).await;
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![50, 40, 30]
    );

    let background = repository(&events, &snapshots, 10, SnapshotMode::Background, 2);
    let id = Uuid::new_v4();
    for to in [10, 20, 30] {
        save_history(&background, id, to, 10).await;
        background
            .await_pending_snapshots_within(Duration::from_secs(30))
            .await
            .expect("background snapshots written");
    }
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![30, 20]
    );

    let manual = repository(&events, &snapshots, 1, SnapshotMode::Manual, 2);
    let one = repository(&events, &snapshots, 1, SnapshotMode::Manual, 1);
    let id = Uuid::new_v4();
    for to in [3, 6, 9] {
        save_history(&manual, id, to, 3).await;
        let mut root = manual.load(id).await.expect("load");
        manual.create_snapshot(&mut root).await.expect("snapshot");
    }
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![9, 6]
    );
    save_history(&one, id, 12, 3).await;
    let mut root = one.load(id).await.expect("load");
    one.create_snapshot(&mut root).await.expect("snapshot");
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![12]
    );
}

/// `load_at` gives the state at each version, from the newest snapshot at or below it,
/// and says which; `load` still starts from the newest.
pub async fn load_at_rebuilds_past_versions(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repository(&events, &snapshots, 10, SnapshotMode::Sync, 3);
    let id = Uuid::new_v4();
    save_history(&repo, id, 47, 5).await;
    // Saves land at 5, 10, ..., 45, 47: snapshots at 10, 20, 30, 40; 20, 30, 40 kept.
    assert_eq!(
        stored_versions(&*snapshots, Tally::TYPE, id).await,
        vec![40, 30, 20]
    );
    let history: Vec<TallyEvent> = (1..=47).map(event_at).collect();
    for (version, from_snapshot) in [
        (1, None),
        (9, None),
        (19, None),
        (20, Some(20)),
        (21, Some(20)),
        (29, Some(20)),
        (35, Some(30)),
        (40, Some(40)),
        (47, Some(40)),
    ] {
        let root = repo.load_at(id, version).await.expect("load_at");
        assert_eq!(root.version(), version);
        assert_eq!(
            root.state().to_snapshot().expect("encode"),
            folded(&history[..version as usize]),
            "the state at version {version}"
        );
        let loaded = root.load_history();
        assert_eq!(
            (loaded.loaded_from_snapshot, loaded.snapshot_version),
            (from_snapshot.is_some(), from_snapshot),
            "the snapshot used at version {version}"
        );
        assert_eq!(
            loaded.events_replayed,
            version - from_snapshot.unwrap_or(0),
            "the events replayed at version {version}"
        );
    }
    let now = repo.load(id).await.expect("load");
    assert_eq!(now.load_history().snapshot_version, Some(40));
    assert_eq!(now.version(), 47);
}

/// Version 0 and a version past the stream are invalid input naming `version`; an
/// aggregate without events is not found.
pub async fn load_at_refuses_versions_the_stream_does_not_have(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repository(&events, &snapshots, 10, SnapshotMode::Sync, 3);
    let id = Uuid::new_v4();
    save_history(&repo, id, 12, 12).await;
    match repo.load_at(id, 0).await {
        Err(Error::InvalidInput {
            field: "version", ..
        }) => {}
        other => panic!("version 0: expected invalid input, got {other:?}"),
    }
    match repo.load_at(id, 13).await {
        Err(Error::InvalidInput {
            field: "version",
            message,
        }) => assert!(
            message.contains("at version 12"),
            "the message says where the stream is: {message}"
        ),
        other => panic!("past the stream: expected invalid input, got {other:?}"),
    }
    match repo.load_at(Uuid::new_v4(), 1).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("no events: expected not found, got {other:?}"),
    }
    match repo.load_as_of(Uuid::new_v4(), Utc::now()).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("no events: expected not found, got {other:?}"),
    }
}

/// A snapshot that does not decode, or one claiming a version the stream does not
/// reach, is never an error for `load_at`: it replays the events.
pub async fn load_at_replays_past_a_bad_snapshot(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repository(&events, &snapshots, 1000, SnapshotMode::Sync, 5);
    let id = Uuid::new_v4();
    save_history(&repo, id, 30, 30).await;
    let bad = |version: u64, state: &str| Snapshot {
        aggregate_id: id,
        aggregate_type: Tally::TYPE.to_owned(),
        version,
        schema_version: 1,
        state: state.to_owned(),
        created_at: crate::now(),
    };
    snapshots
        .save_keeping(&bad(20, r#"{"unexpected": true}"#), keep(5))
        .await
        .expect("save a snapshot that does not decode");
    let history: Vec<TallyEvent> = (1..=30).map(event_at).collect();
    let root = repo.load_at(id, 25).await.expect("load_at");
    assert!(!root.load_history().loaded_from_snapshot);
    assert_eq!(root.state().to_snapshot().unwrap(), folded(&history[..25]));

    // A snapshot beyond the stream (at 40 of a 30-event stream), below the bound.
    let ahead = folded(&(1..=40).map(event_at).collect::<Vec<_>>());
    snapshots
        .save_keeping(&bad(40, &ahead), keep(5))
        .await
        .expect("save a snapshot beyond the stream");
    match repo.load_at(id, 45).await {
        Err(Error::InvalidInput { message, .. }) => assert!(message.contains("at version 30")),
        other => panic!("past the stream: expected invalid input, got {other:?}"),
    }
    let root = repo
        .load_at(id, 30)
        .await
        .expect("load_at the last version");
    assert_eq!(root.state().to_snapshot().unwrap(), folded(&history));
}

/// A snapshot store that fails or hangs never fails or stalls `load_at`: it replays
/// the events within the snapshot timeout; once the store answers again, `load_at`
/// builds on its snapshots.
pub async fn load_at_replays_when_the_snapshot_store_fails_or_hangs(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    use super::faults::{CALL_BOUND, Fault, Faulty, SNAPSHOT_TIMEOUT, bounded};
    for fault in [Fault::Fail, Fault::Hang] {
        let faulty = Faulty::new(snapshots.clone(), fault);
        faulty.set(false);
        let repo = AggregateRepository::<Tally>::builder(events.clone())
            .snapshot_store(faulty.clone())
            .snapshot_timeout(SNAPSHOT_TIMEOUT)
            .threshold(10)
            .snapshot_keep(keep(3))
            .build()
            .expect("valid repository settings");
        let id = Uuid::new_v4();
        save_history(&repo, id, 40, 10).await;
        assert_eq!(
            stored_versions(&*snapshots, Tally::TYPE, id).await,
            vec![40, 30, 20],
            "a wrapping store that passes save_keeping on keeps the history"
        );
        let history: Vec<TallyEvent> = (1..=40).map(event_at).collect();
        faulty.set(true);
        let root = bounded(
            "load_at with a faulty store",
            CALL_BOUND,
            repo.load_at(id, 25),
        )
        .await
        .expect("load_at replays");
        assert!(!root.load_history().loaded_from_snapshot, "{fault:?}");
        assert_eq!(root.state().to_snapshot().unwrap(), folded(&history[..25]));
        faulty.set(false);
        let root = repo.load_at(id, 25).await.expect("load_at");
        assert_eq!(root.load_history().snapshot_version, Some(20), "{fault:?}");
        assert_eq!(root.state().to_snapshot().unwrap(), folded(&history[..25]));
    }
}

/// `load_as_of` loads the version before the first event after the time.
pub async fn load_as_of_loads_the_version_at_a_time(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = repository(&events, &snapshots, 2, SnapshotMode::Sync, 10);
    let id = Uuid::new_v4();
    let pause = || tokio::time::sleep(Duration::from_millis(3));
    let mut times = vec![Utc::now()];
    for to in [2, 5, 6] {
        pause().await;
        save_history(&repo, id, to, 10).await;
        pause().await;
        times.push(Utc::now());
    }
    match repo.load_as_of(id, times[0]).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("before the first event: expected not found, got {other:?}"),
    }
    let history: Vec<TallyEvent> = (1..=6).map(event_at).collect();
    for (time, version) in times[1..].iter().zip([2u64, 5, 6]) {
        let root = repo.load_as_of(id, *time).await.expect("load_as_of");
        assert_eq!(root.version(), version);
        assert_eq!(
            root.state().to_snapshot().unwrap(),
            folded(&history[..version as usize])
        );
    }
}

/// An event at `version`'s place that occurred at `at`.
fn event_occurred(at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        occurred_at: at,
        ..event("Happened")
    }
}

/// `read_stream_range` visits exactly the versions in its range; `version_as_of` is the
/// end of the longest run of events from the first that occurred at or before the time,
/// even when a later event's time goes back.
pub async fn bounded_reads_of_a_stream(
    events: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    let ty = unique_type("Bounded");
    let id = Uuid::new_v4();
    let t = |s: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap();
    // Times 10, 20, 30, 15 (earlier than the third), 50.
    let batch: Vec<NewEvent> = [10, 20, 30, 15, 50]
        .into_iter()
        .map(|s| event_occurred(t(s)))
        .collect();
    events
        .append(&ty, id, ExpectedVersion::Exact(0), &batch)
        .await
        .expect("append");
    for (from, to, want) in [
        (1, 5, vec![1, 2, 3, 4, 5]),
        (2, 4, vec![2, 3, 4]),
        (3, 3, vec![3]),
        (4, 2, vec![]),
        (4, u64::MAX, vec![4, 5]),
        (6, 9, vec![]),
        (0, 1, vec![1]),
    ] {
        let mut seen = Vec::new();
        let visited = events
            .read_stream_range(&ty, id, from, to, &mut |e| {
                seen.push(e.version);
                Ok(())
            })
            .await
            .expect("read_stream_range");
        assert_eq!(seen, want, "versions {from} to {to}");
        assert_eq!(visited, want.len() as u64);
    }
    for (at, want) in [
        (t(9), None),
        (t(10), Some(1)),
        (t(16), Some(1)),
        (t(25), Some(2)),
        (t(30), Some(4)),
        (t(49), Some(4)),
        (t(50), Some(5)),
        (t(99), Some(5)),
    ] {
        assert_eq!(
            events
                .version_as_of(&ty, id, at)
                .await
                .expect("version_as_of"),
            want,
            "as of {at}"
        );
    }
    assert_eq!(
        events
            .version_as_of(&ty, Uuid::new_v4(), t(99))
            .await
            .expect("version_as_of"),
        None
    );
    let all = events.load_stream(&ty, id, 1).await.expect("load");
    assert_eq!(all.len(), 5);
}

/// One generated history: its length, the versions where a snapshot is taken, how many
/// are kept, and the versions loaded.
#[derive(Clone, Debug)]
struct Case {
    events: Vec<TallyEvent>,
    snapshot_at: Vec<u64>,
    keep: u32,
    load_at: Vec<u64>,
}

fn case() -> impl Strategy<Value = Case> {
    let event = prop_oneof![
        3 => (-50i64..50).prop_map(|n| TallyEvent::Added(Added { n })),
        1 => (-3i64..4).prop_map(|by| TallyEvent::Multiplied(Multiplied { by })),
    ];
    (proptest::collection::vec(event, 1..80), 1u32..5).prop_flat_map(|(events, keep)| {
        let len = events.len() as u64;
        (
            Just(events),
            proptest::collection::btree_set(1..=len, 0..8),
            Just(keep),
            proptest::collection::vec(1..=len, 1..6),
        )
            .prop_map(|(events, snapshot_at, keep, load_at)| Case {
                events,
                snapshot_at: snapshot_at.into_iter().collect(),
                keep,
                load_at,
            })
    })
}

fn cases() -> Vec<Case> {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = case();
    (0..CASES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("the strategy generates a case")
                .current()
        })
        .collect()
}

/// Random histories (from a fixed seed) with snapshots taken at random versions and a
/// random `keep`: `load_at(v)` equals a replay cut at `v` for several `v` (and the last
/// version), builds on the newest kept snapshot at or below `v`, and the store holds
/// exactly the `keep` newest snapshots taken.
pub async fn load_at_equals_a_replay_cut_there(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let mut failures = Vec::new();
    for (n, case) in cases().into_iter().enumerate() {
        if let Err(failure) = run_case(&events, &snapshots, &case).await {
            failures.push(format!("case {n} ({case:?}): {failure}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn run_case(
    events: &Arc<dyn EventStore>,
    snapshots: &Arc<dyn SnapshotStore>,
    case: &Case,
) -> Result<(), String> {
    let repo = repository(events, snapshots, 1, SnapshotMode::Manual, case.keep);
    let id = Uuid::new_v4();
    let mut root = repo.create_new(id);
    let last = case.events.len() as u64;
    for (at, e) in (1..).zip(&case.events) {
        root.record(e.clone());
        if case.snapshot_at.contains(&at) || at == last {
            repo.save(&mut root)
                .await
                .map_err(|e| format!("save: {e}"))?;
        }
        if case.snapshot_at.contains(&at) {
            repo.create_snapshot(&mut root)
                .await
                .map_err(|e| format!("snapshot at {at}: {e}"))?;
        }
    }
    let kept: Vec<u64> = case
        .snapshot_at
        .iter()
        .rev()
        .take(case.keep as usize)
        .copied()
        .collect();
    let stored = stored_versions(&**snapshots, Tally::TYPE, id).await;
    if stored != kept {
        return Err(format!("kept snapshots {stored:?}, expected {kept:?}"));
    }
    for &version in case.load_at.iter().chain([&last]) {
        let loaded = repo
            .load_at(id, version)
            .await
            .map_err(|e| format!("load_at({version}): {e}"))?;
        let got = loaded.state().to_snapshot().map_err(|e| e.to_string())?;
        let want = folded(&case.events[..version as usize]);
        if got != want || loaded.version() != version {
            return Err(format!(
                "load_at({version}) gave {got} at version {}, a replay cut there gives {want}",
                loaded.version()
            ));
        }
        let base = kept.iter().copied().find(|&v| v <= version);
        if loaded.load_history().snapshot_version != base {
            return Err(format!(
                "load_at({version}) built on snapshot {:?}, expected {base:?}",
                loaded.load_history().snapshot_version
            ));
        }
    }
    Ok(())
}
