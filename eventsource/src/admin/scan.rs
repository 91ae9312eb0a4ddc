//! The admin queries answered through the store traits alone: for the in-memory store,
//! and for stores of your own.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::SnapshotSize;
use super::{AggregateLag, BehindQuery, Coverage, CoverageOptions, SchemaVersionCount};
use crate::error::Result;
use crate::snapshot::SnapshotStore;
use crate::store::EventStore;

/// How many ids one [`EventStore::aggregate_ids`] page asks for.
const PAGE: usize = 1_000;

/// Every aggregate of a type with its stream's version and its snapshot, read with
/// [`EventStore::aggregate_ids`], [`EventStore::stream_version`] and
/// [`SnapshotStore::get`]: one round trip per aggregate, so meant for the in-memory
/// store and for stores without SQL of their own.
///
/// `schema_version` is the one the code reads: a snapshot of another one counts as
/// none in [`AggregateLag::events_behind`]. Sorted most behind first, then by id.
pub async fn scan_behind(
    events: &dyn EventStore,
    snapshots: &dyn SnapshotStore,
    aggregate_type: &str,
    schema_version: Option<u32>,
) -> Result<Vec<(AggregateLag, Option<u64>)>> {
    let mut out = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let ids = events.aggregate_ids(aggregate_type, after, PAGE).await?;
        for &id in &ids {
            let stream_version = events
                .stream_version(aggregate_type, id)
                .await?
                .unwrap_or(0);
            let snapshot = snapshots.get(aggregate_type, id).await?;
            let usable = snapshot.as_ref().filter(|s| {
                s.version <= stream_version && schema_version.is_none_or(|v| v == s.schema_version)
            });
            let lag = AggregateLag {
                aggregate_id: id,
                stream_version,
                snapshot_version: snapshot.as_ref().map(|s| s.version),
                snapshot_schema_version: snapshot.as_ref().map(|s| s.schema_version),
                events_behind: stream_version - usable.map_or(0, |s| s.version),
            };
            out.push((lag, snapshot.map(|s| s.state.len() as u64)));
        }
        if ids.len() < PAGE {
            break;
        }
        after = ids.last().copied();
    }
    out.sort_by(|(a, _), (b, _)| {
        b.events_behind
            .cmp(&a.events_behind)
            .then(a.aggregate_id.cmp(&b.aggregate_id))
    });
    Ok(out)
}

/// [`AdminStore::behind`](super::AdminStore::behind) through [`scan_behind`].
pub(crate) async fn behind(
    events: &dyn EventStore,
    snapshots: &dyn SnapshotStore,
    query: &BehindQuery,
) -> Result<Vec<AggregateLag>> {
    let all = scan_behind(
        events,
        snapshots,
        &query.aggregate_type,
        Some(query.schema_version),
    )
    .await?;
    let limit = query
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    Ok(all
        .into_iter()
        .map(|(lag, _)| lag)
        .filter(|lag| lag.events_behind >= query.min_events_behind)
        .take(limit)
        .collect())
}

/// [`AdminStore::coverage`](super::AdminStore::coverage) through [`scan_behind`].
/// Snapshots of aggregates without events are not seen (no id lists them).
pub(crate) async fn coverage(
    events: &dyn EventStore,
    snapshots: &dyn SnapshotStore,
    aggregate_type: &str,
    options: &CoverageOptions,
) -> Result<Coverage> {
    let all = scan_behind(events, snapshots, aggregate_type, None).await?;
    let mut report = Coverage {
        aggregate_type: aggregate_type.to_owned(),
        stale_after: options.stale_after,
        ..Coverage::default()
    };
    let mut versions = BTreeMap::<u32, u64>::new();
    let mut sizes = Vec::new();
    for (lag, bytes) in &all {
        report.aggregates += 1;
        if let (Some(version), Some(schema_version), Some(bytes)) =
            (lag.snapshot_version, lag.snapshot_schema_version, bytes)
        {
            report.with_snapshot += 1;
            *versions.entry(schema_version).or_default() += 1;
            if version > lag.stream_version {
                report.snapshots_ahead += 1;
            }
            sizes.push(SnapshotSize {
                aggregate_id: lag.aggregate_id,
                version,
                schema_version,
                bytes: *bytes,
            });
        }
        report.stale += u64::from(lag.events_behind > options.stale_after);
        report.events_since_snapshots += lag.events_behind;
        report.max_events_since_snapshot = report.max_events_since_snapshot.max(lag.events_behind);
    }
    report.without_snapshot = report.aggregates - report.with_snapshot;
    report.schema_versions = versions
        .into_iter()
        .map(|(schema_version, snapshots)| SchemaVersionCount {
            schema_version,
            snapshots,
        })
        .collect();
    sizes.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(a.aggregate_id.cmp(&b.aggregate_id))
    });
    sizes.truncate(usize::try_from(options.largest).unwrap_or(usize::MAX));
    report.largest = sizes;
    Ok(report)
}
