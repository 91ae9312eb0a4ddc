//! Idempotent appends: an append whose acknowledgement was lost after it committed, and
//! that the caller retries with the same batch, succeeds without writing again.
//!
//! The rule every store implements: a retried batch is "already appended" when every id
//! of the batch is stored in this stream, at consecutive versions in batch order, the
//! first right after `expected` when it is exact. The answer is the version of the
//! batch's last event, as the first append returned. So a prefix of the batch retried at
//! the same expected version succeeds too; anything else that reuses the batch's ids
//! (another order, another stream, more events, another expected version) is refused,
//! and nothing of it is written.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use eventsource::{
    Error, EventStore, EventStoreExt, ExpectedVersion, NewEvent, Result, SnapshotStore,
};
use uuid::Uuid;

use crate::{events, unique_type};

/// How long one of these tests may take on any backend.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `test`, failing when it takes longer than [`LIMIT`].
async fn bounded(what: &str, test: impl Future<Output = ()>) {
    if tokio::time::timeout(LIMIT, test).await.is_err() {
        panic!("{what} did not finish within {LIMIT:?}");
    }
}

/// `(version, event id)` of every event of the stream, in version order.
async fn stream(store: &dyn EventStore, ty: &str, id: Uuid) -> Vec<(u64, Uuid)> {
    store
        .load_stream(ty, id, 1)
        .await
        .unwrap_or_else(|e| panic!("read {ty}/{id}: {e}"))
        .into_iter()
        .map(|e| (e.version, e.event_id))
        .collect()
}

/// What a stream must hold: these events, at versions 1, 2, 3...
fn numbered(batches: &[&[NewEvent]]) -> Vec<(u64, Uuid)> {
    batches
        .iter()
        .flat_map(|b| b.iter())
        .zip(1..)
        .map(|(e, v)| (v, e.event_id))
        .collect()
}

/// Panics unless no event of `batch` is stored anywhere: each appends to a fresh stream.
async fn nowhere(store: &dyn EventStore, batch: &[NewEvent], what: &str) {
    let ty = unique_type("RetryProbe");
    for e in batch {
        let id = Uuid::new_v4();
        match store
            .append(&ty, id, ExpectedVersion::Exact(0), std::slice::from_ref(e))
            .await
        {
            Ok(1) => {}
            other => panic!(
                "{what}: event {} was written by the refused append \
                 (appending it elsewhere answered {other:?})",
                e.event_id
            ),
        }
    }
}

#[track_caller]
fn assert_refused(result: &Result<u64>, what: &str) {
    assert!(
        matches!(
            result,
            Err(Error::Conflict { .. } | Error::DuplicateEventId { .. })
        ),
        "{what}: expected Conflict or DuplicateEventId, got {result:?}"
    );
}

/// A batch of 1 and of 3 events appended to a new stream with `Exact(0)`, then appended
/// again with `Exact(0)` (twice): `Ok` with the same version, the stream unchanged.
pub async fn retry_of_new_stream_batch_is_ok(
    events_store: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("retry_of_new_stream_batch_is_ok", async {
        let store = &*events_store;
        let ty = unique_type("RetryNew");
        for n in [1usize, 3] {
            let id = Uuid::new_v4();
            let batch = events(n);
            let first = store
                .append(&ty, id, ExpectedVersion::Exact(0), &batch)
                .await
                .expect("first append");
            assert_eq!(first, n as u64);
            for attempt in 1..=2 {
                let retry = store
                    .append(&ty, id, ExpectedVersion::Exact(0), &batch)
                    .await;
                assert!(
                    matches!(retry, Ok(v) if v == first),
                    "retry {attempt} of a batch of {n} with Exact(0): expected Ok({first}), got {retry:?}"
                );
            }
            assert_eq!(stream(store, &ty, id).await, numbered(&[&batch]), "batch of {n}");
            assert_eq!(
                store.stream_version(&ty, id).await.expect("version"),
                Some(n as u64)
            );
        }
    })
    .await;
}

/// The same with `ExpectedVersion::Any`, on a new stream and after earlier events.
pub async fn retry_with_any_version_is_ok(
    events_store: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("retry_with_any_version_is_ok", async {
        let store = &*events_store;
        let ty = unique_type("RetryAny");
        for (before, n) in [(0usize, 1usize), (0, 3), (2, 1), (2, 3)] {
            let id = Uuid::new_v4();
            let earlier = events(before);
            if before > 0 {
                store
                    .append(&ty, id, ExpectedVersion::Exact(0), &earlier)
                    .await
                    .expect("earlier events");
            }
            let batch = events(n);
            let first = store
                .append(&ty, id, ExpectedVersion::Any, &batch)
                .await
                .expect("first append");
            assert_eq!(first, (before + n) as u64);
            for attempt in 1..=2 {
                let retry = store.append(&ty, id, ExpectedVersion::Any, &batch).await;
                assert!(
                    matches!(retry, Ok(v) if v == first),
                    "retry {attempt} with Any of {n} after {before}: expected Ok({first}), got {retry:?}"
                );
            }
            assert_eq!(
                stream(store, &ty, id).await,
                numbered(&[&earlier, &batch]),
                "{n} after {before}"
            );
        }
    })
    .await;
}

/// A batch appended with `Exact(v)` to a stream at `v` and retried with `Exact(v)`.
pub async fn retry_after_existing_events_is_ok(
    events_store: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("retry_after_existing_events_is_ok", async {
        let store = &*events_store;
        let ty = unique_type("RetryExact");
        for n in [1usize, 3] {
            let id = Uuid::new_v4();
            let earlier = events(4);
            store
                .append(&ty, id, ExpectedVersion::Exact(0), &earlier)
                .await
                .expect("earlier events");
            let batch = events(n);
            let first = store
                .append(&ty, id, ExpectedVersion::Exact(4), &batch)
                .await
                .expect("first append");
            assert_eq!(first, 4 + n as u64);
            let retry = store
                .append(&ty, id, ExpectedVersion::Exact(4), &batch)
                .await;
            assert!(
                matches!(retry, Ok(v) if v == first),
                "retry with Exact(4) of {n}: expected Ok({first}), got {retry:?}"
            );
            assert_eq!(stream(store, &ty, id).await, numbered(&[&earlier, &batch]));
        }
    })
    .await;
}

/// A retry that comes after another writer appended more events after the batch still
/// answers the version of the batch's last event, with `Exact` and with `Any`.
pub async fn retry_after_later_appends_is_ok(
    events_store: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("retry_after_later_appends_is_ok", async {
        let store = &*events_store;
        let ty = unique_type("RetryLater");
        for (before, n) in [(0usize, 1usize), (0, 3), (2, 3)] {
            let id = Uuid::new_v4();
            let earlier = events(before);
            if before > 0 {
                store
                    .append(&ty, id, ExpectedVersion::Exact(0), &earlier)
                    .await
                    .expect("earlier events");
            }
            let batch = events(n);
            let at = before as u64;
            let first = store
                .append(&ty, id, ExpectedVersion::Exact(at), &batch)
                .await
                .expect("first append");
            let later = events(2);
            store
                .append(&ty, id, ExpectedVersion::Exact(first), &later)
                .await
                .expect("another writer's events");
            for expected in [ExpectedVersion::Exact(at), ExpectedVersion::Any] {
                let retry = store.append(&ty, id, expected, &batch).await;
                assert!(
                    matches!(retry, Ok(v) if v == first),
                    "retry with {expected} of {n} after {before}, under 2 later events: \
                     expected Ok({first}), got {retry:?}"
                );
            }
            assert_eq!(
                stream(store, &ty, id).await,
                numbered(&[&earlier, &batch, &later])
            );
        }
    })
    .await;
}

/// A prefix of the batch, retried at the batch's expected version, is the part of the
/// batch already stored: `Ok` with the version of its last event, nothing written.
pub async fn retry_of_a_prefix_is_ok(
    events_store: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("retry_of_a_prefix_is_ok", async {
        let store = &*events_store;
        let ty = unique_type("RetryPrefix");
        let id = Uuid::new_v4();
        let batch = events(3);
        store
            .append(&ty, id, ExpectedVersion::Exact(0), &batch)
            .await
            .expect("first append");
        for (expected, prefix) in [
            (ExpectedVersion::Exact(0), 1usize),
            (ExpectedVersion::Exact(0), 2),
            (ExpectedVersion::Any, 1),
            (ExpectedVersion::Any, 2),
        ] {
            let retry = store.append(&ty, id, expected, &batch[..prefix]).await;
            assert!(
                matches!(retry, Ok(v) if v == prefix as u64),
                "the first {prefix} of the batch with {expected}: expected Ok({prefix}), got {retry:?}"
            );
        }
        assert_eq!(stream(store, &ty, id).await, numbered(&[&batch]));
    })
    .await;
}

/// What reuses the batch's ids without being the batch is refused, and nothing of it is
/// written: the ids in another order, the batch plus a new event, the batch under
/// another stream, the batch at an expected version it was not appended at.
pub async fn retry_that_is_not_the_batch_is_refused(
    events_store: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("retry_that_is_not_the_batch_is_refused", async {
        let store = &*events_store;
        let ty = unique_type("RetryNot");
        let id = Uuid::new_v4();
        let batch = events(3);
        store
            .append(&ty, id, ExpectedVersion::Exact(0), &batch)
            .await
            .expect("first append");
        let expected_stream = numbered(&[&batch]);

        // Another order.
        let mut reversed = batch.clone();
        reversed.reverse();
        let mut rotated = batch.clone();
        rotated.rotate_left(1);
        for (what, shuffled) in [("reversed", &reversed), ("rotated", &rotated)] {
            for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Any] {
                let result = store.append(&ty, id, expected, shuffled).await;
                assert_refused(&result, &format!("the batch {what}, with {expected}"));
                assert_eq!(stream(store, &ty, id).await, expected_stream, "{what}");
            }
        }

        // The batch plus a new event (after it, or before it).
        for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Any] {
            let mut more = batch.clone();
            let extra = events(1);
            more.extend(extra.iter().cloned());
            let result = store.append(&ty, id, expected, &more).await;
            assert_refused(&result, &format!("the batch plus a new event, with {expected}"));
            assert_eq!(stream(store, &ty, id).await, expected_stream);
            nowhere(store, &extra, "the batch plus a new event").await;

            let mut before = events(1);
            let extra = before.clone();
            before.extend(batch.iter().cloned());
            let result = store.append(&ty, id, expected, &before).await;
            assert_refused(&result, &format!("a new event then the batch, with {expected}"));
            assert_eq!(stream(store, &ty, id).await, expected_stream);
            nowhere(store, &extra, "a new event then the batch").await;
        }

        // The batch (or its first event) under another stream: its ids are taken.
        let other = Uuid::new_v4();
        for (what, ids) in [("the batch", &batch[..]), ("its first event", &batch[..1])] {
            for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Any] {
                let result = store.append(&ty, other, expected, ids).await;
                assert!(
                    matches!(
                        &result,
                        Err(Error::DuplicateEventId { aggregate_id, event_id, .. })
                            if *aggregate_id == other && *event_id == ids[0].event_id
                    ),
                    "{what} under another stream with {expected}: \
                     expected DuplicateEventId of its first id, got {result:?}"
                );
            }
            let other_type = unique_type("RetryOtherType");
            let result = store
                .append(&other_type, id, ExpectedVersion::Exact(0), ids)
                .await;
            assert!(
                matches!(result, Err(Error::DuplicateEventId { .. })),
                "{what} under another aggregate type with the same id: \
                 expected DuplicateEventId, got {result:?}"
            );
            assert_eq!(
                store
                    .stream_version(&other_type, id)
                    .await
                    .expect("version"),
                None
            );
        }
        assert_eq!(
            store.stream_version(&ty, other).await.expect("version"),
            None,
            "nothing written to the other stream"
        );

        // At an expected version it was not appended at.
        for v in [1u64, 2, 5] {
            let result = store
                .append(&ty, id, ExpectedVersion::Exact(v), &batch)
                .await;
            assert!(
                matches!(result, Err(Error::Conflict { actual: 3, .. })),
                "the batch at Exact({v}) on a stream of 3 that it starts: \
                 expected Conflict (actual 3), got {result:?}"
            );
        }
        // At the stream's head: the version matches, the ids are taken.
        let result = store
            .append(&ty, id, ExpectedVersion::Exact(3), &batch)
            .await;
        assert!(
            matches!(&result, Err(Error::DuplicateEventId { event_id, .. }) if *event_id == batch[0].event_id),
            "the batch at Exact(3) on the stream of 3 that it is: \
             expected DuplicateEventId of its first id, got {result:?}"
        );
        // The batch's tail at the version of its start.
        let result = store
            .append(&ty, id, ExpectedVersion::Exact(0), &batch[1..])
            .await;
        assert!(
            matches!(result, Err(Error::Conflict { actual: 3, .. })),
            "the batch's last two events at Exact(0): expected Conflict, got {result:?}"
        );
        // ... but at the version right before them, they are the stored events.
        let result = store
            .append(&ty, id, ExpectedVersion::Exact(1), &batch[1..])
            .await;
        assert!(
            matches!(result, Ok(3)),
            "the batch's last two events at Exact(1): expected Ok(3), got {result:?}"
        );
        assert_eq!(stream(store, &ty, id).await, expected_stream);

        // A stream of 3 other events, then the batch at Exact(5) (past the head).
        let id2 = Uuid::new_v4();
        let others = events(3);
        store
            .append(&ty, id2, ExpectedVersion::Exact(0), &others)
            .await
            .expect("another stream of 3");
        let fresh = events(2);
        let result = store
            .append(&ty, id2, ExpectedVersion::Exact(5), &fresh)
            .await;
        assert!(
            matches!(result, Err(Error::Conflict { actual: 3, .. })),
            "new events at Exact(5) on a stream of 3: expected Conflict, got {result:?}"
        );
        assert_eq!(stream(store, &ty, id2).await, numbered(&[&others]));
        nowhere(store, &fresh, "new events at Exact(5)").await;
    })
    .await;
}
