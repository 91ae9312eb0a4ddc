//! NaN and the infinities have no JSON form: an event carrying one is refused before
//! anything is written, and a state holding one is never snapshotted (the events stay
//! the truth and the aggregate keeps loading).
//!
//! The refusal is `Error::NotRoundTrip { aggregate_type, aggregate_id, what, reason }`;
//! it is matched by its debug form so that this file compiles whatever the variants.

use std::sync::Arc;

use eventsource::prelude::*;
use eventsource::{Error, Snapshot};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A value was read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Read {
    /// The value.
    pub value: f64,
    /// Other values read with it.
    pub values: Vec<f64>,
    /// A single-precision reading.
    pub single: f32,
}

/// A ratio was computed by the state: `num / den`, which may be NaN or infinite although
/// both operands are finite.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Divided {
    /// The numerator.
    pub num: f64,
    /// The denominator.
    pub den: f64,
}

/// The gauge's events.
#[derive(DomainEvent, Clone, Debug)]
pub enum GaugeEvent {
    /// See [`Read`].
    Read(Read),
    /// See [`Divided`].
    Divided(Divided),
}

/// A gauge snapshotted after every save.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "ConformanceGauge", event = GaugeEvent)]
#[snapshot(schema_version = 1, every = 1, mode = "sync")]
pub struct Gauge {
    /// The last value read.
    pub value: f64,
    /// The last ratio computed.
    pub ratio: f64,
    /// How many events were applied.
    pub applied: u64,
}

impl Apply<Read> for Gauge {
    fn apply(&mut self, e: &Read) {
        self.value = e.value;
        self.applied += 1;
    }
}

impl Apply<Divided> for Gauge {
    fn apply(&mut self, e: &Divided) {
        self.ratio = e.num / e.den;
        self.applied += 1;
    }
}

fn read(value: f64) -> Read {
    Read {
        value,
        values: vec![],
        single: 1.5,
    }
}

/// `true` for `Error::NotRoundTrip { .. }`.
pub fn is_not_round_trip(error: &Error) -> bool {
    format!("{error:?}").starts_with("NotRoundTrip")
}

fn snapshot_version(found: Option<Snapshot>) -> Option<u64> {
    found.map(|s| s.version)
}

/// An event whose payload holds NaN or an infinity (in any field) is refused with
/// `NotRoundTrip` naming the event type; nothing is written, no snapshot either, and
/// the aggregate loads as before.
pub async fn nonfinite_events_are_refused(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Gauge::repository(events.clone(), snapshots.clone());
    let bad: Vec<(&str, &str, GaugeEvent)> = vec![
        ("NaN", "Read", read(f64::NAN).into()),
        ("+inf", "Read", read(f64::INFINITY).into()),
        ("-inf", "Read", read(f64::NEG_INFINITY).into()),
        (
            "NaN in a list",
            "Read",
            Read {
                value: 1.0,
                values: vec![1.0, f64::NAN],
                single: 1.0,
            }
            .into(),
        ),
        (
            "f32 infinity",
            "Read",
            Read {
                value: 1.0,
                values: vec![],
                single: f32::INFINITY,
            }
            .into(),
        ),
        (
            "an infinite operand",
            "Divided",
            Divided {
                num: 1.0,
                den: f64::NEG_INFINITY,
            }
            .into(),
        ),
    ];

    // A new aggregate: nothing at all is written.
    for (what, event_type, event) in &bad {
        let mut root = repo.create_new(Uuid::new_v4());
        root.record(event.clone());
        match repo.save(&mut root).await {
            Err(e) if is_not_round_trip(&e) => {
                let debug = format!("{e:?}");
                assert!(
                    debug.contains(&format!("{event_type:?}")),
                    "{what}: the error names the event type: {debug}"
                );
                assert!(
                    debug.contains(&root.id().to_string()),
                    "{what}: the error names the aggregate: {debug}"
                );
            }
            other => panic!("{what}: expected Err(NotRoundTrip), got {other:?}"),
        }
        assert_eq!(
            events
                .stream_version(Gauge::TYPE, root.id())
                .await
                .expect("stream_version"),
            None,
            "{what}: nothing written"
        );
        assert!(
            !snapshots
                .exists(Gauge::TYPE, root.id())
                .await
                .expect("exists"),
            "{what}: no snapshot"
        );
    }

    // An aggregate with a history: it stays at its version and keeps loading.
    let mut root = repo.create_new(Uuid::new_v4());
    root.record(read(2.5));
    repo.save(&mut root).await.expect("save a finite reading");
    let id = root.id();
    for (what, _, event) in &bad {
        let mut root = repo.load(id).await.expect("load");
        root.record(read(3.5));
        root.record(event.clone());
        match repo.save(&mut root).await {
            Err(e) if is_not_round_trip(&e) => {}
            other => panic!("{what} after a history: expected Err(NotRoundTrip), got {other:?}"),
        }
        assert_eq!(
            events
                .stream_version(Gauge::TYPE, id)
                .await
                .expect("stream_version"),
            Some(1),
            "{what}: no event of the refused batch was written"
        );
        assert_eq!(
            snapshot_version(snapshots.get(Gauge::TYPE, id).await.expect("get")),
            Some(1),
            "{what}: the snapshot is the one of the last save"
        );
        for attempt in ["first", "second"] {
            let loaded = repo.load(id).await.expect("the aggregate still loads");
            assert_eq!(loaded.version(), 1, "{what}, {attempt} load");
            assert_eq!(loaded.state().value, 2.5, "{what}, {attempt} load");
        }
    }
    // And a finite save goes through afterwards.
    let mut root = repo.load(id).await.expect("load");
    root.record(read(4.5));
    repo.save(&mut root)
        .await
        .expect("a finite save after the refusals");
    assert_eq!(repo.load(id).await.expect("load").state().value, 4.5);
}

/// A state holding NaN or an infinity, from finite events, is never snapshotted: the
/// save succeeds (automatic snapshots on) and stores no snapshot, `create_snapshot`
/// fails with `NotRoundTrip`, and loads replay the events. Once the state is finite
/// again, snapshots are taken as before.
pub async fn nonfinite_state_is_never_snapshotted(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let repo = Gauge::repository(events.clone(), snapshots.clone());
    let replay_only = AggregateRepository::<Gauge>::new(events.clone());

    // No snapshot ever: the first state is already NaN.
    let mut root = repo.create_new(Uuid::new_v4());
    let id = root.id();
    root.record(Divided { num: 0.0, den: 0.0 });
    repo.save(&mut root)
        .await
        .expect("finite events save, whatever the state computes");
    assert!(root.state().ratio.is_nan());
    for (what, event) in [
        ("NaN", None),
        ("+inf", Some(Divided { num: 1.0, den: 0.0 })),
        (
            "-inf",
            Some(Divided {
                num: -1.0,
                den: 0.0,
            }),
        ),
    ] {
        if let Some(event) = event {
            root.record(event);
            repo.save(&mut root).await.expect("save");
        }
        assert_eq!(
            snapshot_version(snapshots.get(Gauge::TYPE, id).await.expect("get")),
            None,
            "{what}: no automatic snapshot of a state that cannot round-trip"
        );
        match repo.create_snapshot(&mut root).await {
            Err(e) if is_not_round_trip(&e) => {}
            other => panic!("{what}: create_snapshot: expected Err(NotRoundTrip), got {other:?}"),
        }
        assert_eq!(
            snapshot_version(snapshots.get(Gauge::TYPE, id).await.expect("get")),
            None,
            "{what}: no manual snapshot either"
        );
        for attempt in ["first", "second"] {
            let loaded = repo.load(id).await.expect("loads keep working");
            let replayed = replay_only.load(id).await.expect("full replay");
            assert_eq!(loaded.version(), root.version(), "{what}, {attempt} load");
            assert!(
                !loaded.load_history().loaded_from_snapshot,
                "{what}, {attempt} load"
            );
            assert_eq!(
                loaded.state().ratio.to_bits(),
                replayed.state().ratio.to_bits(),
                "{what}, {attempt} load"
            );
            assert_eq!(
                loaded.state().ratio.to_bits(),
                root.state().ratio.to_bits(),
                "{what}, {attempt} load"
            );
        }
    }

    // Finite again: the next save snapshots.
    root.record(Divided { num: 3.0, den: 2.0 });
    repo.save(&mut root).await.expect("save");
    assert_eq!(
        snapshot_version(snapshots.get(Gauge::TYPE, id).await.expect("get")),
        Some(4),
        "a finite state is snapshotted"
    );
    let loaded = repo.load(id).await.expect("load");
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.state().ratio, 1.5);

    // A good snapshot, then a NaN state: the good one stays and is used.
    root.record(Divided { num: 0.0, den: 0.0 });
    repo.save(&mut root).await.expect("save");
    assert_eq!(
        snapshot_version(snapshots.get(Gauge::TYPE, id).await.expect("get")),
        Some(4),
        "the NaN state did not replace the last good snapshot"
    );
    match repo.create_snapshot(&mut root).await {
        Err(e) if is_not_round_trip(&e) => {}
        other => {
            panic!("create_snapshot of a NaN state: expected Err(NotRoundTrip), got {other:?}")
        }
    }
    let loaded = repo.load(id).await.expect("load");
    assert_eq!(loaded.version(), 5);
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.load_history().snapshot_version, Some(4));
    assert!(loaded.state().ratio.is_nan());
}
