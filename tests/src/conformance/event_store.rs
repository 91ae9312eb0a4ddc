//! Conformance of [`EventStore`] implementations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use eventsource::{
    Error, EventMetadata, EventRef, EventStore, EventStoreExt, ExpectedVersion, LoadVisitor,
    NewEvent, RecordedEvent, Result, Snapshot, SnapshotStore, StreamEvent,
};
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::{event, events, now, unique_type};

/// Panics unless `result` is a conflict with these details.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T>,
    aggregate_type: &str,
    aggregate_id: Uuid,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(Error::Conflict {
            aggregate_type: t,
            aggregate_id: id,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(
                (t.as_str(), id, e, a),
                (aggregate_type, aggregate_id, expected, actual),
                "conflict details"
            );
        }
        other => {
            panic!("expected a conflict (expected {expected}, actual {actual}), got {other:?}")
        }
    }
}

/// Panics unless `result` is a duplicate-event-id error for `event_id`.
#[track_caller]
pub fn assert_duplicate<T: std::fmt::Debug>(
    result: Result<T>,
    aggregate_type: &str,
    aggregate_id: Uuid,
    event_id: Uuid,
) {
    match result {
        Err(Error::DuplicateEventId {
            aggregate_type: t,
            aggregate_id: id,
            event_id: e,
        }) => assert_eq!(
            (t.as_str(), id, e),
            (aggregate_type, aggregate_id, event_id),
            "duplicate details"
        ),
        other => panic!("expected a duplicate event id {event_id}, got {other:?}"),
    }
}

/// The event ids of a stream, in version order.
pub async fn stream_ids(store: &dyn EventStore, aggregate_type: &str, id: Uuid) -> Vec<Uuid> {
    store
        .load_stream(aggregate_type, id, 1)
        .await
        .expect("read the stream")
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn expected_record(
    sent: &NewEvent,
    aggregate_type: &str,
    aggregate_id: Uuid,
    version: u64,
    position: u64,
) -> RecordedEvent {
    RecordedEvent {
        position,
        event_id: sent.event_id,
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id,
        version,
        event_type: sent.event_type.clone(),
        event_version: sent.event_version,
        payload: sent.payload.clone(),
        metadata: sent.metadata.clone(),
        occurred_at: sent.occurred_at,
    }
}

/// Every field of the envelope comes back as written: ids, type names, versions, the
/// payload byte for byte, metadata (correlation, causation, nested extra values) and the
/// time to the microsecond; through `read_stream`, `load_stream` and `read_all`.
pub async fn append_and_read_round_trip(store: Arc<dyn EventStore>) {
    let ty = unique_type("Order");
    let id = Uuid::new_v4();
    let mut metadata = EventMetadata {
        correlation_id: Some(Uuid::new_v4()),
        causation_id: Some(Uuid::new_v4()),
        ..EventMetadata::default()
    };
    metadata.extra.insert("user".into(), json!("zoë"));
    metadata.extra.insert(
        "nested".into(),
        json!({"list": [1, 2.5, null, true], "quote": "it's \"x\""}),
    );
    let first = NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "OrderPlaced".into(),
        event_version: 3,
        payload: r#"{"sku":"A-1","qty":2,"note":"naïve \"quoted\" 🦀 'single'"}"#.into(),
        metadata,
        occurred_at: Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("a valid date")
            + Duration::microseconds(123_456),
    };
    let second = NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "OrderShipped".into(),
        event_version: 1,
        payload: "{}".into(),
        metadata: EventMetadata::default(),
        occurred_at: now(),
    };
    let sent = [first, second];

    let version = store
        .append(&ty, id, ExpectedVersion::Exact(0), &sent)
        .await
        .expect("append to a new stream");
    assert_eq!(version, 2, "append returns the new stream version");
    assert_eq!(
        store.stream_version(&ty, id).await.expect("version"),
        Some(2)
    );

    let read = store
        .load_stream(&ty, id, 1)
        .await
        .expect("read the stream");
    assert_eq!(read.len(), 2, "both events are read back");
    assert!(read[0].position >= 1, "positions start at 1");
    assert!(read[0].position < read[1].position, "positions increase");
    for (i, (got, sent)) in read.iter().zip(&sent).enumerate() {
        let want = expected_record(sent, &ty, id, i as u64 + 1, got.position);
        assert_eq!(got, &want, "event {} round trip", i + 1);
    }

    // The borrowed form handed to visitors carries the same fields.
    let mut seen = Vec::new();
    let visited = store
        .read_stream(&ty, id, 1, &mut |e: EventRef<'_>| {
            seen.push(e.to_recorded()?);
            Ok(())
        })
        .await
        .expect("visit the stream");
    assert_eq!(visited, 2, "read_stream returns how many events it visited");
    assert_eq!(seen, read, "read_stream and load_stream agree");

    // The global feed holds the same events at the same positions.
    for want in &read {
        let got = store.read_all(want.position, 1).await.expect("read_all");
        assert_eq!(
            got,
            vec![want.clone()],
            "read_all at position {}",
            want.position
        );
    }

    // Nothing for a stream that was never written.
    let other = Uuid::new_v4();
    assert_eq!(
        store.stream_version(&ty, other).await.expect("version"),
        None
    );
    assert!(
        store
            .load_stream(&ty, other, 1)
            .await
            .expect("read")
            .is_empty()
    );
}

/// `read_stream` starts at `from_version` (0 and 1 both mean the whole stream), returns
/// how many events it visited, and stops at the first error of the visitor.
pub async fn read_from_version(store: Arc<dyn EventStore>) {
    let ty = unique_type("Counter");
    let id = Uuid::new_v4();
    let sent = events(5);
    store
        .append(&ty, id, ExpectedVersion::Exact(0), &sent)
        .await
        .expect("append");

    for (from, want) in [
        (0, vec![1, 2, 3, 4, 5]),
        (1, vec![1, 2, 3, 4, 5]),
        (3, vec![3, 4, 5]),
        (5, vec![5]),
        (6, vec![]),
        (u64::MAX, vec![]),
    ] {
        let mut versions = Vec::new();
        let visited = store
            .read_stream(&ty, id, from, &mut |e| {
                versions.push(e.version);
                Ok(())
            })
            .await
            .expect("read_stream");
        assert_eq!(versions, want, "versions read from {from}");
        assert_eq!(visited, want.len() as u64, "count read from {from}");
    }
    let tail = store.load_stream(&ty, id, 4).await.expect("load_stream");
    let tail_ids: Vec<Uuid> = tail.iter().map(|e| e.event_id).collect();
    assert_eq!(tail_ids, [sent[3].event_id, sent[4].event_id]);

    let mut calls = 0;
    let stopped = store
        .read_stream(&ty, id, 1, &mut |_| {
            calls += 1;
            Err(Error::invalid("visitor", "stop here"))
        })
        .await;
    assert!(
        matches!(stopped, Err(Error::InvalidInput { .. })),
        "the visitor's error is returned: {stopped:?}"
    );
    assert_eq!(calls, 1, "the read stops at the visitor's first error");
}

/// A wrong expected version is a conflict reporting the actual version, and nothing of
/// the batch is stored; `Any` appends after the head.
pub async fn expected_version_conflicts(store: Arc<dyn EventStore>) {
    let ty = unique_type("Account");
    let id = Uuid::new_v4();
    let first = events(2);
    assert_eq!(
        store
            .append(&ty, id, ExpectedVersion::Exact(0), &first)
            .await
            .expect("append"),
        2
    );

    let refused = events(2);
    for expected in [0, 1, 3, 5] {
        let expected = ExpectedVersion::Exact(expected);
        assert_conflict(
            store.append(&ty, id, expected, &refused).await,
            &ty,
            id,
            expected,
            2,
        );
    }
    assert_eq!(
        store.stream_version(&ty, id).await.expect("version"),
        Some(2)
    );
    assert_eq!(
        stream_ids(store.as_ref(), &ty, id).await,
        first.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "a refused append writes nothing"
    );

    // The refused ids were never stored: they can be appended now.
    assert_eq!(
        store
            .append(&ty, id, ExpectedVersion::Exact(2), &refused)
            .await
            .expect("append at the right version"),
        4
    );
    assert_eq!(
        store
            .append(&ty, id, ExpectedVersion::Any, &events(1))
            .await
            .expect("append at any version"),
        5,
        "Any appends after the head"
    );

    // A stream that does not exist is at version 0.
    let missing = Uuid::new_v4();
    assert_conflict(
        store
            .append(&ty, missing, ExpectedVersion::Exact(1), &events(1))
            .await,
        &ty,
        missing,
        ExpectedVersion::Exact(1),
        0,
    );
    assert_eq!(
        store.stream_version(&ty, missing).await.expect("version"),
        None
    );
    assert_eq!(
        store
            .append(&ty, missing, ExpectedVersion::Any, &events(1))
            .await
            .expect("Any on a new stream"),
        1
    );
}

/// An empty batch writes nothing and returns the current version, after the expected
/// version is checked.
pub async fn empty_batch(store: Arc<dyn EventStore>) {
    let ty = unique_type("Empty");
    let id = Uuid::new_v4();
    assert_eq!(
        store
            .append(&ty, id, ExpectedVersion::Exact(0), &[])
            .await
            .expect("empty batch on a new stream"),
        0
    );
    assert_eq!(
        store
            .append(&ty, id, ExpectedVersion::Any, &[])
            .await
            .expect("empty batch, any version"),
        0
    );
    assert_eq!(
        store.stream_version(&ty, id).await.expect("version"),
        None,
        "an empty batch creates no stream"
    );
    assert_conflict(
        store.append(&ty, id, ExpectedVersion::Exact(3), &[]).await,
        &ty,
        id,
        ExpectedVersion::Exact(3),
        0,
    );

    store
        .append(&ty, id, ExpectedVersion::Exact(0), &events(2))
        .await
        .expect("append");
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(2)] {
        assert_eq!(
            store
                .append(&ty, id, expected, &[])
                .await
                .expect("empty batch"),
            2
        );
    }
    assert_conflict(
        store.append(&ty, id, ExpectedVersion::Exact(1), &[]).await,
        &ty,
        id,
        ExpectedVersion::Exact(1),
        2,
    );
    assert_eq!(
        store.stream_version(&ty, id).await.expect("version"),
        Some(2)
    );
}

/// A batch with a payload that is not JSON is refused as invalid input, naming the
/// event, and nothing of it is written.
pub async fn invalid_payloads(store: Arc<dyn EventStore>) {
    let ty = unique_type("BadPayload");
    let id = Uuid::new_v4();
    let mut batch = events(3);
    batch[1].payload = "{not json".to_owned();
    let bad_id = batch[1].event_id;
    match store
        .append(&ty, id, ExpectedVersion::Exact(0), &batch)
        .await
    {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "payload");
            assert!(
                message.contains(&bad_id.to_string()),
                "names the event: {message}"
            );
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&ty, id).await.expect("stream_version"),
        None,
        "nothing written"
    );
    let good = events(1);
    assert_eq!(
        store
            .append(&ty, id, ExpectedVersion::Exact(0), &good)
            .await
            .expect("a valid batch after the refused one"),
        1
    );
}

/// An event id stored anywhere, or twice in one batch, refuses the whole batch; the
/// version is checked before the ids.
pub async fn duplicate_event_ids(store: Arc<dyn EventStore>) {
    let ty = unique_type("Ledger");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let stored = events(1);
    store
        .append(&ty, a, ExpectedVersion::Exact(0), &stored)
        .await
        .expect("append");
    let taken = stored[0].event_id;

    // Already stored in another stream, last in the batch.
    let mut batch = events(3);
    batch[2].event_id = taken;
    assert_duplicate(
        store
            .append(&ty, b, ExpectedVersion::Exact(0), &batch)
            .await,
        &ty,
        b,
        taken,
    );
    assert_eq!(
        store.stream_version(&ty, b).await.expect("version"),
        None,
        "nothing of the batch is written"
    );

    // Already stored in the same stream.
    assert_duplicate(
        store
            .append(&ty, a, ExpectedVersion::Exact(1), &stored)
            .await,
        &ty,
        a,
        taken,
    );

    // Twice in one batch.
    let twice = event("Happened");
    let batch_twice = [twice.clone(), event("Happened"), twice.clone()];
    assert_duplicate(
        store
            .append(&ty, a, ExpectedVersion::Exact(1), &batch_twice)
            .await,
        &ty,
        a,
        twice.event_id,
    );
    assert_eq!(stream_ids(store.as_ref(), &ty, a).await, vec![taken]);

    // The version is checked first: a batch of stored ids at the wrong place conflicts.
    let mut moved = events(1);
    moved.push(stored[0].clone());
    assert_conflict(
        store
            .append(&ty, a, ExpectedVersion::Exact(0), &moved)
            .await,
        &ty,
        a,
        ExpectedVersion::Exact(0),
        1,
    );

    // The refused batches left their other ids free.
    assert_eq!(
        store
            .append(&ty, b, ExpectedVersion::Exact(0), &batch[..2])
            .await
            .expect("append the ids that were refused with the duplicate"),
        2
    );
    assert_eq!(
        store
            .append(&ty, a, ExpectedVersion::Exact(1), &[twice])
            .await
            .expect("append the id that was twice in a batch"),
        2
    );
}

/// A batch of thousands of events is appended, and refused, as one: a duplicate id at
/// its very end leaves nothing of it behind.
pub async fn large_batch_is_one_transaction(store: Arc<dyn EventStore>) {
    const N: usize = 5_000;
    let ty = unique_type("Big");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let stored = events(1);
    store
        .append(&ty, a, ExpectedVersion::Exact(0), &stored)
        .await
        .expect("append");

    let mut batch = events(N);
    batch[N - 1].event_id = stored[0].event_id;
    assert_duplicate(
        store
            .append(&ty, b, ExpectedVersion::Exact(0), &batch)
            .await,
        &ty,
        b,
        stored[0].event_id,
    );
    assert_eq!(
        store.stream_version(&ty, b).await.expect("version"),
        None,
        "nothing of a refused large batch is written"
    );

    batch[N - 1] = event("Happened");
    assert_eq!(
        store
            .append(&ty, b, ExpectedVersion::Exact(0), &batch)
            .await
            .expect("append a large batch"),
        N as u64
    );
    let mut next = 1;
    let visited = store
        .read_stream(&ty, b, 1, &mut |e| {
            assert_eq!(e.version, next, "versions have no gaps");
            assert_eq!(e.event_id, batch[next as usize - 1].event_id, "order kept");
            next += 1;
            Ok(())
        })
        .await
        .expect("read the stream");
    assert_eq!(visited, N as u64);
}

/// Many tasks append batches of two to one stream, each at the version it last read:
/// exactly one writer wins each version, batches never interleave, nothing is lost.
pub async fn concurrent_appends_with_expected_version(store: Arc<dyn EventStore>) {
    const TASKS: usize = 8;
    const BATCHES: usize = 4;
    let ty = unique_type("Contended");
    let id = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, ty, barrier) = (store.clone(), ty.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut won = Vec::new();
            let mut attempts = 0;
            while won.len() < BATCHES {
                attempts += 1;
                assert!(attempts < 100_000, "no progress after {attempts} attempts");
                let head = store.stream_version(&ty, id).await.expect("version");
                let head = head.unwrap_or(0);
                let batch = events(2);
                match store
                    .append(&ty, id, ExpectedVersion::Exact(head), &batch)
                    .await
                {
                    Ok(version) => {
                        assert_eq!(version, head + 2, "a batch of two moves the head by two");
                        won.push((version, [batch[0].event_id, batch[1].event_id]));
                    }
                    Err(Error::Conflict { actual, .. }) => {
                        assert_ne!(actual, head, "a conflict reports a different head")
                    }
                    Err(other) => panic!("unexpected error under contention: {other}"),
                }
            }
            won
        }));
    }
    let mut winners: BTreeMap<u64, [Uuid; 2]> = BTreeMap::new();
    for task in tasks {
        for (version, ids) in task.await.expect("task") {
            assert!(
                winners.insert(version, ids).is_none(),
                "version {version} was won twice"
            );
        }
    }
    let total = (TASKS * BATCHES * 2) as u64;
    let versions: Vec<u64> = winners.keys().copied().collect();
    let want: Vec<u64> = (1..=total / 2).map(|i| i * 2).collect();
    assert_eq!(versions, want, "every version won exactly once");

    let stored = stream_ids(store.as_ref(), &ty, id).await;
    assert_eq!(stored.len() as u64, total, "no event lost, no gap");
    for (version, ids) in winners {
        let i = version as usize;
        assert_eq!(
            [stored[i - 2], stored[i - 1]],
            ids,
            "the batch ending at {version} is stored whole, in order"
        );
    }
}

/// Many tasks append to one stream with `ExpectedVersion::Any`, retrying on conflict:
/// every event is stored exactly once, at the version its append returned.
pub async fn concurrent_appends_with_any_version(store: Arc<dyn EventStore>) {
    const TASKS: usize = 8;
    const EACH: usize = 5;
    let ty = unique_type("AnyWriter");
    let id = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, ty, barrier) = (store.clone(), ty.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut won = Vec::new();
            let mut attempts = 0;
            while won.len() < EACH {
                attempts += 1;
                assert!(attempts < 100_000, "no progress after {attempts} attempts");
                let e = event("Happened");
                match store
                    .append(&ty, id, ExpectedVersion::Any, std::slice::from_ref(&e))
                    .await
                {
                    Ok(version) => won.push((version, e.event_id)),
                    Err(Error::Conflict { .. }) => {}
                    Err(other) => panic!("unexpected error under contention: {other}"),
                }
            }
            won
        }));
    }
    let mut winners = HashMap::new();
    for task in tasks {
        for (version, event_id) in task.await.expect("task") {
            assert!(
                winners.insert(version, event_id).is_none(),
                "version {version} returned twice"
            );
        }
    }
    let stored = stream_ids(store.as_ref(), &ty, id).await;
    assert_eq!(stored.len(), TASKS * EACH, "no event lost");
    for (i, event_id) in stored.iter().enumerate() {
        assert_eq!(
            winners.get(&(i as u64 + 1)),
            Some(event_id),
            "version {} holds the event whose append returned it",
            i + 1
        );
    }
}

/// `read_all` returns events in append order across streams, pages by position
/// (`from_position` inclusive, at most `limit` events), and is empty past the end.
pub async fn read_all_order_and_paging(store: Arc<dyn EventStore>) {
    let ty = unique_type("Feed");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let batches = [(a, events(3)), (b, events(2)), (a, events(2))];
    let mut order = Vec::new();
    for (id, batch) in &batches {
        store
            .append(&ty, *id, ExpectedVersion::Any, batch)
            .await
            .expect("append");
        order.extend(batch.iter().map(|e| e.event_id));
    }
    let mut ours: HashMap<Uuid, RecordedEvent> = HashMap::new();
    for id in [a, b] {
        for e in store.load_stream(&ty, id, 1).await.expect("read") {
            ours.insert(e.event_id, e);
        }
    }
    let positions: Vec<u64> = order.iter().map(|id| ours[id].position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions follow the append order: {positions:?}"
    );

    // Page through the feed from our first event, two at a time. Other tests may write
    // to the same store meanwhile: their events are skipped.
    let mut from = positions[0];
    let mut found = Vec::new();
    let mut pages = 0;
    while found.len() < order.len() {
        pages += 1;
        assert!(pages < 1_000_000, "paging does not end");
        let page = store.read_all(from, 2).await.expect("read_all");
        assert!(
            !page.is_empty(),
            "the feed ended before all our events were read"
        );
        assert!(page.len() <= 2, "a page holds at most `limit` events");
        assert!(page[0].position >= from, "a page starts at from_position");
        assert!(
            page.windows(2).all(|w| w[0].position < w[1].position),
            "a page is in position order"
        );
        from = page[page.len() - 1].position + 1;
        for e in page {
            if let Some(want) = ours.get(&e.event_id) {
                assert_eq!(&e, want, "read_all returns the event as read_stream does");
                found.push(e.event_id);
            }
        }
    }
    assert_eq!(found, order, "the feed holds our events in append order");

    assert!(
        store
            .read_all(positions[0], 0)
            .await
            .expect("limit 0")
            .is_empty()
    );
    assert!(
        store
            .read_all(u64::MAX, 10)
            .await
            .expect("past the end")
            .is_empty()
    );
    let all_from_zero = store.read_all(0, 1).await.expect("from position 0");
    assert_eq!(all_from_zero.len(), 1, "position 0 reads from the start");
    assert!(all_from_zero[0].position >= 1, "positions start at 1");
}

/// Two aggregate types with the same id are two streams.
pub async fn aggregate_types_are_isolated(store: Arc<dyn EventStore>) {
    let (ta, tb) = (unique_type("Order"), unique_type("Invoice"));
    let id = Uuid::new_v4();
    let (ea, eb) = (events(2), events(3));
    store
        .append(&ta, id, ExpectedVersion::Exact(0), &ea)
        .await
        .expect("append to the first type");
    store
        .append(&tb, id, ExpectedVersion::Exact(0), &eb)
        .await
        .expect("the same id under another type is a new stream");
    assert_eq!(
        store.stream_version(&ta, id).await.expect("version"),
        Some(2)
    );
    assert_eq!(
        store.stream_version(&tb, id).await.expect("version"),
        Some(3)
    );
    assert_eq!(
        stream_ids(store.as_ref(), &ta, id).await,
        ea.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_eq!(
        stream_ids(store.as_ref(), &tb, id).await,
        eb.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_conflict(
        store
            .append(&ta, id, ExpectedVersion::Exact(3), &events(1))
            .await,
        &ta,
        id,
        ExpectedVersion::Exact(3),
        2,
    );
    let all = store.load_stream(&tb, id, 1).await.expect("read");
    assert!(
        all.iter()
            .all(|e| e.aggregate_type == tb && e.aggregate_id == id)
    );
}

/// Type names with quotes, SQL, wildcards, backslashes and non-ASCII text are stored and
/// matched exactly.
pub async fn awkward_type_names(store: Arc<dyn EventStore>) {
    let suffix = Uuid::new_v4().simple().to_string();
    let names = [
        format!("O'Brien \"x\"; DROP TABLE events; -- {suffix}"),
        format!("🦀 Ordre ñ 注文 {suffix}"),
        format!("100%_ \\back\\slash {suffix}"),
        format!("100%_ \\back\\slash {suffix}x"),
    ];
    let id = Uuid::new_v4();
    let mut seen = HashSet::new();
    for (i, name) in names.iter().enumerate() {
        let mut e = event("Événement 'quoted' \"type\" 🎉");
        e.payload = r#"{"text":"'); DELETE FROM events; --","emoji":"🦀"}"#.into();
        let batch = vec![e; i + 1]
            .into_iter()
            .map(|mut e| {
                e.event_id = Uuid::new_v4();
                e
            })
            .collect::<Vec<_>>();
        store
            .append(name, id, ExpectedVersion::Exact(0), &batch)
            .await
            .expect("append under an awkward type name");
        let read = store.load_stream(name, id, 1).await.expect("read");
        assert_eq!(read.len(), i + 1, "{name:?} holds only its own events");
        for (got, sent) in read.iter().zip(&batch) {
            assert_eq!(got.aggregate_type, *name);
            assert_eq!(got.event_type, sent.event_type);
            assert_eq!(got.payload, sent.payload);
            assert!(seen.insert(got.event_id));
        }
        assert_eq!(
            store.stream_version(name, id).await.expect("version"),
            Some(i as u64 + 1)
        );
        let fed = store.read_all(read[0].position, 1).await.expect("read_all");
        assert_eq!(fed[0].aggregate_type, *name);
    }
}

/// [`EventStore::read_aggregate`] hands the visitor the snapshot lookup, then the
/// events from the version the visitor chose.
pub async fn read_aggregate(events_store: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>) {
    /// Where the visitor starts the stream when a snapshot is found.
    #[derive(Clone, Copy)]
    enum Start {
        /// After the snapshot's version.
        After,
        /// At the snapshot's version (to check the stream reaches it).
        At,
        /// At 1, ignoring the snapshot.
        Beginning,
    }
    struct Visitor {
        start: Start,
        found: Option<Result<Option<Snapshot>>>,
        versions: Vec<u64>,
        /// (event type, event version, payload) of each event visited.
        contents: Vec<(String, u32, serde_json::Value)>,
    }
    impl LoadVisitor for Visitor {
        fn snapshot(&mut self, found: Result<Option<Snapshot>>) -> u64 {
            let from = match (&found, self.start) {
                (Ok(Some(s)), Start::After) => s.version + 1,
                (Ok(Some(s)), Start::At) => s.version,
                _ => 1,
            };
            self.found = Some(found);
            from
        }
        fn event(&mut self, event: StreamEvent<'_>) -> Result<ControlFlow<()>> {
            self.versions.push(event.version);
            let payload = serde_json::from_str(event.payload).expect("payload is JSON");
            self.contents
                .push((event.event_type.to_owned(), event.event_version, payload));
            Ok(ControlFlow::Continue(()))
        }
    }
    let visitor = |start| Visitor {
        start,
        found: None,
        versions: Vec::new(),
        contents: Vec::new(),
    };

    let ty = unique_type("Snapshotted");
    let id = Uuid::new_v4();
    let appended = events(5);
    events_store
        .append(&ty, id, ExpectedVersion::Exact(0), &appended)
        .await
        .expect("append");
    let contents: Vec<(String, u32, serde_json::Value)> = appended
        .iter()
        .map(|e| {
            let payload = serde_json::from_str(&e.payload).expect("payload is JSON");
            (e.event_type.clone(), e.event_version, payload)
        })
        .collect();

    let mut v = visitor(Start::After);
    let n = events_store
        .read_aggregate(Some(snapshots.as_ref()), &ty, id, &mut v)
        .await
        .expect("read without a snapshot");
    assert!(
        matches!(v.found, Some(Ok(None))),
        "no snapshot yet: {:?}",
        v.found
    );
    assert_eq!((n, v.versions), (5, vec![1, 2, 3, 4, 5]));
    assert_eq!(
        v.contents, contents,
        "type, version and payload of every event"
    );

    let snapshot = Snapshot {
        aggregate_id: id,
        aggregate_type: ty.clone(),
        version: 3,
        schema_version: 1,
        state: r#"{"count":3}"#.into(),
        created_at: now(),
    };
    snapshots.save(&snapshot).await.expect("save a snapshot");

    let mut v = visitor(Start::After);
    let n = events_store
        .read_aggregate(Some(snapshots.as_ref()), &ty, id, &mut v)
        .await
        .expect("read from the snapshot");
    match &v.found {
        Some(Ok(Some(found))) => {
            assert_eq!((found.version, found.aggregate_id), (3, id));
            assert_eq!(found.state_json().expect("state JSON"), json!({"count": 3}));
        }
        other => panic!("the snapshot is handed to the visitor, got {other:?}"),
    }
    assert_eq!(
        (n, v.versions),
        (2, vec![4, 5]),
        "the tail after the snapshot"
    );

    let mut v = visitor(Start::Beginning);
    let n = events_store
        .read_aggregate(Some(snapshots.as_ref()), &ty, id, &mut v)
        .await
        .expect("read ignoring the snapshot");
    assert_eq!(
        (n, v.versions),
        (5, vec![1, 2, 3, 4, 5]),
        "a full replay on request"
    );

    let mut v = visitor(Start::At);
    let n = events_store
        .read_aggregate(Some(snapshots.as_ref()), &ty, id, &mut v)
        .await
        .expect("read from the snapshot's own version");
    assert_eq!((n, v.versions), (3, vec![3, 4, 5]));

    // A snapshot ahead of the events: nothing after it.
    snapshots
        .save(&Snapshot {
            version: 9,
            ..snapshot.clone()
        })
        .await
        .expect("save a snapshot ahead of the stream");
    let mut v = visitor(Start::After);
    let n = events_store
        .read_aggregate(Some(snapshots.as_ref()), &ty, id, &mut v)
        .await
        .expect("read past the end");
    assert!(matches!(&v.found, Some(Ok(Some(s))) if s.version == 9));
    assert_eq!((n, v.versions), (0, vec![]));

    // No snapshot store: a full replay, and the visitor is not asked about a snapshot.
    let mut v = visitor(Start::After);
    let n = events_store
        .read_aggregate(None, &ty, id, &mut v)
        .await
        .expect("read without a snapshot store");
    assert!(v.found.is_none(), "no snapshot lookup without a store");
    assert_eq!((n, v.versions), (5, vec![1, 2, 3, 4, 5]));

    // No events and no snapshot.
    let mut v = visitor(Start::After);
    let n = events_store
        .read_aggregate(Some(snapshots.as_ref()), &ty, Uuid::new_v4(), &mut v)
        .await
        .expect("read an unknown aggregate");
    assert!(matches!(v.found, Some(Ok(None))));
    assert_eq!((n, v.versions), (0, vec![]));
}

/// `aggregate_ids` lists each stream of a type once, in id order, paged after an id;
/// other types never show; bad names are refused; `stream_version` reads a stream's
/// version without loading it.
pub async fn aggregate_ids_page_in_id_order(store: Arc<dyn EventStore>) {
    let ty = unique_type("Listed");
    let other = unique_type("Unlisted");
    let mut ids: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        store
            .append(&ty, *id, ExpectedVersion::Exact(0), &events(1 + i % 3))
            .await
            .expect("append");
    }
    store
        .append(&other, ids[0], ExpectedVersion::Any, &events(2))
        .await
        .expect("append another type");
    ids.sort();

    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .aggregate_ids(&ty, after, 3)
            .await
            .expect("aggregate_ids");
        assert!(page.len() <= 3, "a page holds at most its limit");
        let Some(last) = page.last() else { break };
        after = Some(*last);
        listed.extend(page);
    }
    assert_eq!(listed, ids, "every aggregate once, in id order");
    assert_eq!(
        store.aggregate_ids(&ty, None, 0).await.expect("limit 0"),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        store
            .aggregate_ids(&ty, Some(ids[6]), 10)
            .await
            .expect("after the last"),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        store
            .aggregate_ids(&unique_type("Empty"), None, 10)
            .await
            .expect("unknown type"),
        Vec::<Uuid>::new()
    );
    for bad in ["", "a\0b"] {
        assert!(
            matches!(
                store.aggregate_ids(bad, None, 10).await,
                Err(Error::InvalidInput {
                    field: "aggregate_type",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    for id in &ids {
        let version = store.stream_version(&ty, *id).await.expect("version");
        assert!(matches!(version, Some(1..=3)), "{version:?}");
    }
    assert_eq!(
        store
            .stream_version(&ty, Uuid::new_v4())
            .await
            .expect("no stream"),
        None
    );
}
