//! Values no backend can store are refused alike, before anything is written, with
//! `Error::InvalidInput` naming the field: an event type over 255 bytes, a time outside
//! the years 1 to 9999, an event version above `i32::MAX`, an expected version above
//! `i64::MAX`, a snapshot version above `i64::MAX`, a snapshot time outside the years
//! 1 to 9999.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use eventsource::{
    Error, EventStore, EventStoreExt, ExpectedVersion, NewEvent, Result, Snapshot, SnapshotStore,
};
use uuid::Uuid;

use super::hostile::long_name;
use crate::{event, unique_type};

/// How long one of these tests may take on any backend.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `test`, failing when it takes longer than [`LIMIT`].
async fn bounded(what: &str, test: impl Future<Output = ()>) {
    if tokio::time::timeout(LIMIT, test).await.is_err() {
        panic!("{what} did not finish within {LIMIT:?}");
    }
}

fn at(year: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("year {year} is a chrono date"))
}

/// Panics unless `result` is `InvalidInput` about `field`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, field: &str, what: &str) {
    match result {
        Err(Error::InvalidInput { field: got, .. }) if got == field => {}
        other => panic!("{what}: expected InvalidInput about {field:?}, got {other:?}"),
    }
}

/// Events that no store may accept, with the field each must be refused for.
fn bad_events() -> Vec<(&'static str, &'static str, NewEvent)> {
    let mut long_type = event("x");
    long_type.event_type = long_name(&unique_type("T"), 256);
    let mut year_10000 = event("Happened");
    year_10000.occurred_at = at(10000);
    let mut year_0 = event("Happened");
    year_0.occurred_at = at(0);
    let mut year_minus_1 = event("Happened");
    year_minus_1.occurred_at = at(-1);
    let mut chrono_max = event("Happened");
    chrono_max.occurred_at = DateTime::<Utc>::MAX_UTC;
    let mut chrono_min = event("Happened");
    chrono_min.occurred_at = DateTime::<Utc>::MIN_UTC;
    let mut big_version = event("Happened");
    big_version.event_version = i32::MAX as u32 + 1;
    let mut max_version = event("Happened");
    max_version.event_version = u32::MAX;
    vec![
        ("an event type of 256 bytes", "event_type", long_type),
        ("occurred_at in year 10000", "occurred_at", year_10000),
        ("occurred_at in year 0", "occurred_at", year_0),
        ("occurred_at in year -1", "occurred_at", year_minus_1),
        ("occurred_at at chrono's maximum", "occurred_at", chrono_max),
        ("occurred_at at chrono's minimum", "occurred_at", chrono_min),
        ("event_version i32::MAX + 1", "event_version", big_version),
        ("event_version u32::MAX", "event_version", max_version),
    ]
}

/// Each bad event, alone or after a good one, on a new stream and after earlier events,
/// with every kind of expected version: `InvalidInput` about its field, nothing written.
/// An expected version of `u64::MAX` (or `i64::MAX + 1`) is `InvalidInput` too, even for
/// an empty batch. Values at the limits are accepted.
pub async fn out_of_range_event_values_are_refused(
    events: Arc<dyn EventStore>,
    _snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("out_of_range_event_values_are_refused", async {
        let store = &*events;
        let ty = unique_type("HostileValues");
        for (what, field, bad) in bad_events() {
            // A new stream, and a stream of one event.
            for earlier in [0u64, 1] {
                let id = Uuid::new_v4();
                let first = event("Happened");
                if earlier == 1 {
                    store
                        .append(
                            &ty,
                            id,
                            ExpectedVersion::Exact(0),
                            std::slice::from_ref(&first),
                        )
                        .await
                        .expect("an earlier event");
                }
                let good = event("Happened");
                for batch in [vec![bad.clone()], vec![good.clone(), bad.clone()]] {
                    for expected in [ExpectedVersion::Exact(earlier), ExpectedVersion::Any] {
                        let what = format!(
                            "{what}, batch of {}, {expected}, after {earlier}",
                            batch.len()
                        );
                        let result = store.append(&ty, id, expected, &batch).await;
                        assert_invalid(result, field, &what);
                        let stored = store.load_stream(&ty, id, 1).await.expect("read");
                        let ids: Vec<Uuid> = stored.iter().map(|e| e.event_id).collect();
                        let want: Vec<Uuid> = if earlier == 1 {
                            vec![first.event_id]
                        } else {
                            vec![]
                        };
                        assert_eq!(ids, want, "{what}: nothing written");
                    }
                }
                // The good event was not written by the refused batches: it appends now.
                let version = store
                    .append(
                        &ty,
                        id,
                        ExpectedVersion::Exact(earlier),
                        std::slice::from_ref(&good),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{what}: a good event afterwards: {e}"));
                assert_eq!(version, earlier + 1, "{what}");
            }
        }

        // Expected versions no column holds.
        for v in [u64::MAX, i64::MAX as u64 + 1] {
            let id = Uuid::new_v4();
            for batch in [
                vec![],
                vec![event("Happened")],
                vec![event("Happened"), event("Happened")],
            ] {
                let result = store
                    .append(&ty, id, ExpectedVersion::Exact(v), &batch)
                    .await;
                assert_invalid(
                    result,
                    "expected_version",
                    &format!("Exact({v}) with a batch of {}", batch.len()),
                );
            }
            assert_eq!(
                store.stream_version(&ty, id).await.expect("version"),
                None,
                "Exact({v}): nothing written"
            );
        }

        // The limits themselves are accepted.
        let id = Uuid::new_v4();
        let mut limits = vec![event(&long_name(&unique_type("T"), 255))];
        for year in [1, 9999] {
            let mut e = event("Happened");
            e.occurred_at = at(year);
            limits.push(e);
        }
        let mut last_second = event("Happened");
        last_second.occurred_at = Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .single()
            .expect("a date");
        limits.push(last_second);
        let mut top_version = event("Happened");
        top_version.event_version = i32::MAX as u32;
        limits.push(top_version);
        let version = store
            .append(&ty, id, ExpectedVersion::Exact(0), &limits)
            .await
            .expect("values at the limits are accepted");
        assert_eq!(version, limits.len() as u64);
        let read = store
            .load_stream(&ty, id, 1)
            .await
            .expect("read the limits");
        for (got, sent) in read.iter().zip(&limits) {
            assert_eq!(got.event_type, sent.event_type);
            assert_eq!(got.event_version, sent.event_version);
            assert_eq!(got.occurred_at, sent.occurred_at, "{}", sent.event_type);
        }
    })
    .await;
}

fn snapshot(ty: &str, id: Uuid, version: u64, created_at: DateTime<Utc>) -> Snapshot {
    Snapshot {
        aggregate_id: id,
        aggregate_type: ty.to_owned(),
        version,
        schema_version: 1,
        state: r#"{"n":1}"#.to_owned(),
        created_at,
    }
}

/// A snapshot with a version above `i64::MAX`, or taken in year 10000 or year 0, or a
/// schema version above `i32::MAX`, is `InvalidInput` about its field; nothing is stored,
/// and an older snapshot stays as it was.
pub async fn out_of_range_snapshot_values_are_refused(
    _events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
) {
    bounded("out_of_range_snapshot_values_are_refused", async {
        let store = &*snapshots;
        let ty = unique_type("HostileSnapshotValues");
        let now = crate::now();
        let mut big_schema = snapshot(&ty, Uuid::nil(), 2, now);
        big_schema.schema_version = i32::MAX as u32 + 1;
        let cases = [
            (
                "version u64::MAX",
                "version",
                snapshot(&ty, Uuid::nil(), u64::MAX, now),
            ),
            (
                "version i64::MAX + 1",
                "version",
                snapshot(&ty, Uuid::nil(), i64::MAX as u64 + 1, now),
            ),
            (
                "created_at in year 10000",
                "created_at",
                snapshot(&ty, Uuid::nil(), 2, at(10000)),
            ),
            (
                "created_at in year 0",
                "created_at",
                snapshot(&ty, Uuid::nil(), 2, at(0)),
            ),
            ("schema_version i32::MAX + 1", "schema_version", big_schema),
        ];
        for (what, field, bad) in cases {
            // Without a snapshot.
            let id = Uuid::new_v4();
            let mut bad = bad;
            bad.aggregate_id = id;
            assert_invalid(store.save(&bad).await, field, what);
            assert!(
                store.get(&ty, id).await.expect("get").is_none(),
                "{what}: nothing stored"
            );
            // Over an older snapshot.
            let id = Uuid::new_v4();
            let kept = snapshot(&ty, id, 1, now);
            store.save(&kept).await.expect("a good snapshot");
            bad.aggregate_id = id;
            assert_invalid(
                store.save(&bad).await,
                field,
                &format!("{what} over a snapshot"),
            );
            let got = store.get(&ty, id).await.expect("get").expect("kept");
            assert_eq!(
                (got.version, got.created_at),
                (1, now),
                "{what}: the older snapshot is kept"
            );
        }
        // The limits themselves are accepted.
        let id = Uuid::new_v4();
        let top = snapshot(&ty, id, i64::MAX as u64, at(9999));
        store
            .save(&top)
            .await
            .expect("version i64::MAX in year 9999");
        let got = store.get(&ty, id).await.expect("get").expect("stored");
        assert_eq!((got.version, got.created_at), (i64::MAX as u64, at(9999)));
    })
    .await;
}
