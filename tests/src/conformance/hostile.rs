//! Hostile names and payloads get the same answer on every backend, before anything is
//! written: `Error::InvalidInput`. Odd but storable names are accepted and round-trip.

use std::sync::Arc;

use chrono::Utc;
use eventsource::{Error, EventStore, EventStoreExt, ExpectedVersion, Snapshot, SnapshotStore};
use uuid::Uuid;

use crate::{event, unique_type};

/// A name of exactly `len` bytes that does not compress (pseudo-random printable
/// ASCII, so a database cannot shrink it under an index's size limit), starting with
/// `prefix`.
pub fn long_name(prefix: &str, len: usize) -> String {
    let mut name = prefix.to_owned();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while name.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        name.push(char::from(b'!' + (x % 94) as u8));
    }
    name.truncate(len);
    name
}

/// Names no store may accept, with what they are.
pub fn hostile_names() -> Vec<(&'static str, String)> {
    vec![
        ("a NUL", "a\0b".to_owned()),
        ("a NUL at the end", format!("{}\0", unique_type("Nul"))),
        ("10 000 bytes", long_name(&unique_type("Long"), 10_000)),
        ("empty", String::new()),
    ]
}

/// What broke the rule, collected so that one run reports every input.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    /// Records `message`, cut short (a 10 000-byte name would drown the report).
    fn push(&mut self, message: String) {
        let mut cut = message;
        if cut.len() > 400 {
            let mut end = 400;
            while !cut.is_char_boundary(end) {
                end -= 1;
            }
            cut.truncate(end);
            cut.push_str("...");
        }
        self.0.push(cut);
    }

    /// The result must be `Err(InvalidInput)`.
    fn refused<T: std::fmt::Debug>(&mut self, what: &str, result: eventsource::Result<T>) {
        if !matches!(result, Err(Error::InvalidInput { .. })) {
            self.push(format!("{what}: expected InvalidInput, got {result:?}"));
        }
    }

    /// Nothing stored under `(aggregate_type, id)`: the store says so, or refuses the name.
    async fn no_stream(
        &mut self,
        store: &dyn EventStore,
        aggregate_type: &str,
        id: Uuid,
        what: &str,
    ) {
        match store.stream_version(aggregate_type, id).await {
            Ok(None) | Err(Error::InvalidInput { .. }) => {}
            other => self.push(format!("{what}: expected no stream, got {other:?}")),
        }
    }

    /// Nothing stored under `(aggregate_type, id)`: the store says so, or refuses the name.
    async fn no_snapshot(
        &mut self,
        store: &dyn SnapshotStore,
        aggregate_type: &str,
        id: Uuid,
        what: &str,
    ) {
        match store.get(aggregate_type, id).await {
            Ok(None) | Err(Error::InvalidInput { .. }) => {}
            other => self.push(format!("{what}: expected no snapshot, got {other:?}")),
        }
    }

    fn assert_none(self, rule: &str) {
        assert!(
            self.0.is_empty(),
            "{rule}: {} failures:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// An aggregate type or event type with a NUL, of 10 000 bytes, or (for the aggregate
/// type) empty is refused with `InvalidInput`; nothing is written, under any name.
pub async fn hostile_names_are_refused(
    events: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    // Events appended from here on are looked for in the global feed afterwards.
    let (marker_type, marker_id) = (unique_type("Marker"), Uuid::new_v4());
    events
        .append(
            &marker_type,
            marker_id,
            ExpectedVersion::Exact(0),
            &[event("Marked")],
        )
        .await
        .expect("append a marker");
    let after = events
        .load_stream(&marker_type, marker_id, 1)
        .await
        .expect("read the marker")[0]
        .position;

    let mut failures = Failures::default();
    let mut refused_ids = Vec::new();
    for (what, name) in hostile_names() {
        // As the aggregate type, whatever version is expected.
        let id = Uuid::new_v4();
        refused_ids.push(id);
        for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Any] {
            let what = format!("aggregate type {what}, expecting {expected}");
            let result = events
                .append(&name, id, expected, &[event("Happened")])
                .await;
            failures.refused(&what, result);
            failures.no_stream(&*events, &name, id, &what).await;
        }

        if name.is_empty() {
            continue; // an empty event type is not part of this rule
        }
        // As the event type, alone or after a good event in the same batch.
        let ty = unique_type("HostileEventType");
        let id = Uuid::new_v4();
        for batch in [vec![event(&name)], vec![event("Happened"), event(&name)]] {
            let what = format!("event type {what} in a batch of {}", batch.len());
            let result = events
                .append(&ty, id, ExpectedVersion::Exact(0), &batch)
                .await;
            failures.refused(&what, result);
            failures.no_stream(&*events, &ty, id, &what).await;
        }
        // The stream takes good events afterwards.
        match events
            .append(&ty, id, ExpectedVersion::Exact(0), &[event("Happened")])
            .await
        {
            Ok(1) => {}
            other => failures.push(format!(
                "event type {what}: a good event after the refused ones: expected Ok(1), got {other:?}"
            )),
        }
    }

    let written = events.read_all(after + 1, 100_000).await.expect("read_all");
    let leaked: Vec<_> = written
        .iter()
        .filter(|e| refused_ids.contains(&e.aggregate_id))
        .map(|e| format!("{:?}/{} v{}", e.aggregate_type, e.event_type, e.version))
        .collect();
    if !leaked.is_empty() {
        failures.push(format!("refused appends wrote events: {leaked:?}"));
    }
    failures.assert_none("hostile names");
}

fn snapshot(aggregate_type: &str, id: Uuid, state: &str) -> Snapshot {
    Snapshot {
        aggregate_id: id,
        aggregate_type: aggregate_type.to_owned(),
        version: 1,
        schema_version: 1,
        state: state.to_owned(),
        created_at: crate::now(),
    }
}

/// A snapshot whose state holds `\u0000` (escaped, in a string or a key), is not JSON,
/// or holds a lone surrogate is refused with `InvalidInput`, and nothing is stored (an
/// older snapshot stays as it was).
pub async fn hostile_snapshot_states_are_refused(
    _events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let ty = unique_type("HostileState");
    let states = [
        ("a NUL in a string", r#"{"s":"a\u0000b"}"#),
        ("a NUL in a key", r#"{"a\u0000":1}"#),
        ("not JSON", "{not json"),
        ("empty text", ""),
        ("two JSON values", "{} {}"),
        ("a lone high surrogate", r#"{"s":"\ud800"}"#),
        ("a lone low surrogate", r#"{"s":"x\udc00"}"#),
        ("a reversed surrogate pair", r#"{"s":"\udc00\ud800"}"#),
    ];
    let mut failures = Failures::default();
    for (what, state) in states {
        // On an aggregate without a snapshot.
        let id = Uuid::new_v4();
        let result = snapshots.save(&snapshot(&ty, id, state)).await;
        failures.refused(&format!("state with {what}"), result);
        failures
            .no_snapshot(&*snapshots, &ty, id, &format!("state with {what}"))
            .await;

        // Over an older snapshot: it is kept.
        let id = Uuid::new_v4();
        let kept = snapshot(&ty, id, r#"{"s":"kept"}"#);
        snapshots.save(&kept).await.expect("save a good snapshot");
        let mut newer = snapshot(&ty, id, state);
        newer.version = 2;
        let result = snapshots.save(&newer).await;
        failures.refused(&format!("state with {what} over a snapshot"), result);
        match snapshots.get(&ty, id).await {
            Ok(Some(got))
                if got.version == 1
                    && got.state_json().ok() == Some(serde_json::json!({"s": "kept"})) => {}
            other => failures.push(format!(
                "state with {what} over a snapshot: expected the older snapshot kept, got {other:?}"
            )),
        }
    }
    failures.assert_none("hostile snapshot states");
}

/// A snapshot under an aggregate type with a NUL, of 10 000 bytes or empty is refused
/// with `InvalidInput`, as an append under that type is.
pub async fn hostile_snapshot_names_are_refused(
    _events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let mut failures = Failures::default();
    for (what, name) in hostile_names() {
        let id = Uuid::new_v4();
        let what = format!("snapshot of aggregate type {what}");
        let result = snapshots.save(&snapshot(&name, id, r#"{"n":1}"#)).await;
        failures.refused(&what, result);
        failures.no_snapshot(&*snapshots, &name, id, &what).await;
    }
    failures.assert_none("hostile snapshot names");
}

/// Names with quotes, SQL, emoji, control characters, and of 255 bytes (ASCII or
/// multi-byte) are accepted as aggregate and event types, and come back exactly, in
/// events and in snapshots.
pub async fn odd_names_are_accepted_and_round_trip(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    let suffix = Uuid::new_v4().simple().to_string();
    let mut multibyte = suffix.clone();
    while multibyte.len() + 'é'.len_utf8() <= 255 {
        multibyte.push('é');
    }
    while multibyte.len() < 255 {
        multibyte.push('x');
    }
    let names = [
        format!("O'Brien \"x\"; DROP TABLE events; -- {suffix}"),
        format!("'); DELETE FROM snapshots; -- {suffix}"),
        format!("🦀 Ordre ñ 注文 \u{10FFFF} {suffix}"),
        format!("tab\there\nnewline \u{1} {suffix}"),
        format!("100%_ \\back\\slash $1 ?1 {suffix}"),
        long_name(&suffix, 255),
        multibyte,
    ];
    for name in &names {
        assert!(name.len() <= 255, "{name:?} is at most 255 bytes");
    }
    assert_eq!(names[5].len(), 255);
    assert_eq!(names[6].len(), 255);
    for name in &names {
        let id = Uuid::new_v4();
        let batch = [event(name), event("Happened")];
        let version = events
            .append(name, id, ExpectedVersion::Exact(0), &batch)
            .await
            .unwrap_or_else(|e| panic!("append under {name:?}: {e}"));
        assert_eq!(version, 2, "{name:?}");
        let read = events
            .load_stream(name, id, 1)
            .await
            .unwrap_or_else(|e| panic!("read {name:?}: {e}"));
        assert_eq!(read.len(), 2, "{name:?}");
        for (got, sent) in read.iter().zip(&batch) {
            assert_eq!(got.aggregate_type, *name);
            assert_eq!(got.event_type, sent.event_type);
            assert_eq!(got.event_id, sent.event_id);
            assert_eq!(got.payload, sent.payload);
        }
        assert_eq!(
            events.stream_version(name, id).await.expect("version"),
            Some(2),
            "{name:?}"
        );

        let state = serde_json::json!({ "name": name, "quote": "'\"", "emoji": "🦀" });
        let saved = Snapshot {
            aggregate_id: id,
            aggregate_type: name.clone(),
            version: 2,
            schema_version: 1,
            state: state.to_string(),
            created_at: Utc::now(),
        };
        snapshots
            .save(&saved)
            .await
            .unwrap_or_else(|e| panic!("snapshot under {name:?}: {e}"));
        let got = snapshots
            .get(name, id)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("the snapshot under {name:?} is stored"));
        assert_eq!(got.aggregate_type, *name);
        assert_eq!(got.version, 2);
        assert_eq!(got.state_json().expect("JSON"), state, "{name:?}");
        assert!(snapshots.delete(name, id).await.expect("delete"));
    }
}
