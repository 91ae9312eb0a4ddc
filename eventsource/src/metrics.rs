//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: the application
//! installs the recorder (Prometheus, StatsD, OpenTelemetry, ...), the crate reports to
//! it. Without a recorder every report is a no-op.
//!
//! The names and labels below are stable. Durations are in seconds, sizes in bytes.
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `eventsource_loads_total` | counter | `aggregate_type`, `outcome` (`ok`, `not_found`, `error`) | repository loads (`load`, `load_or_create`, `load_at`, `load_as_of`) |
//! | `eventsource_load_duration_seconds` | histogram | `aggregate_type` | time of a load that succeeded |
//! | `eventsource_events_replayed` | histogram | `aggregate_type` | events applied by a load (after the snapshot, if one was used) |
//! | `eventsource_snapshot_hits_total` | counter | `aggregate_type` | loads that started from a snapshot |
//! | `eventsource_snapshot_misses_total` | counter | `aggregate_type`, `reason` ([`SnapshotMiss`]) | loads with a snapshot store that replayed from the first event, by why |
//! | `eventsource_saves_total` | counter | `aggregate_type`, `outcome` (`ok`, `conflict`, `error`) | saves with events to append |
//! | `eventsource_save_duration_seconds` | histogram | `aggregate_type` | time of a save that succeeded, its sync snapshot included |
//! | `eventsource_snapshot_writes_total` | counter | `aggregate_type`, `mode` (`sync`, `background`, `manual`) | snapshots written |
//! | `eventsource_snapshot_write_duration_seconds` | histogram | `aggregate_type` | time of a snapshot write that succeeded |
//! | `eventsource_snapshot_size_bytes` | histogram | `aggregate_type` | size of each snapshot state written (its JSON) |
//! | `eventsource_snapshot_write_failures_total` | counter | `aggregate_type`, `reason` (`store_error`, `store_timeout`, `refused`, `no_runtime`) | snapshots not written; `refused` is a state that cannot round-trip |
//! | `eventsource_snapshot_queue_depth` | gauge | `aggregate_type` | background snapshots queued or being written |
//! | `eventsource_snapshot_writes_coalesced_total` | counter | `aggregate_type` | queued background snapshots replaced by a newer one before they were written |
//! | `eventsource_subscription_events_total` | counter | `subscription` | events handled and committed |
//! | `eventsource_subscription_parked_total` | counter | `subscription` | events parked after their last attempt |
//! | `eventsource_subscription_lag_events` | gauge | `subscription` | events in the feed after its checkpoint (0 once caught up; measured at most every 5 s while catching up) |
//! | `eventsource_subscription_lag_seconds` | gauge | `subscription` | age of the last event handled (0 once caught up) |
//!
//! Spans keep their names (`eventsource.load`, `eventsource.save`,
//! `eventsource.create_snapshot`, `eventsource.background_snapshot`) and carry the
//! aggregate type and id.
//!
//! ```
//! use eventsource::metrics::{SnapshotMiss, names};
//!
//! assert_eq!(names::SNAPSHOT_MISSES, "eventsource_snapshot_misses_total");
//! assert_eq!(SnapshotMiss::SchemaMismatch.as_str(), "schema_mismatch");
//! // Once the application's recorder is installed, give every metric its description:
//! eventsource::metrics::describe();
//! ```

use std::time::Duration;

use ::metrics::{counter, gauge, histogram};

/// The metric names, as constants.
pub mod names {
    /// Repository loads.
    pub const LOADS: &str = "eventsource_loads_total";
    /// Load time.
    pub const LOAD_DURATION: &str = "eventsource_load_duration_seconds";
    /// Events applied by a load.
    pub const EVENTS_REPLAYED: &str = "eventsource_events_replayed";
    /// Loads from a snapshot.
    pub const SNAPSHOT_HITS: &str = "eventsource_snapshot_hits_total";
    /// Loads that replayed from the first event, by reason.
    pub const SNAPSHOT_MISSES: &str = "eventsource_snapshot_misses_total";
    /// Saves.
    pub const SAVES: &str = "eventsource_saves_total";
    /// Save time.
    pub const SAVE_DURATION: &str = "eventsource_save_duration_seconds";
    /// Snapshots written.
    pub const SNAPSHOT_WRITES: &str = "eventsource_snapshot_writes_total";
    /// Snapshot write time.
    pub const SNAPSHOT_WRITE_DURATION: &str = "eventsource_snapshot_write_duration_seconds";
    /// Snapshot state size.
    pub const SNAPSHOT_SIZE: &str = "eventsource_snapshot_size_bytes";
    /// Snapshots not written, by reason.
    pub const SNAPSHOT_WRITE_FAILURES: &str = "eventsource_snapshot_write_failures_total";
    /// Background snapshots pending.
    pub const SNAPSHOT_QUEUE_DEPTH: &str = "eventsource_snapshot_queue_depth";
    /// Background snapshots replaced while queued.
    pub const SNAPSHOT_WRITES_COALESCED: &str = "eventsource_snapshot_writes_coalesced_total";
    /// Events a subscription handled.
    pub const SUBSCRIPTION_EVENTS: &str = "eventsource_subscription_events_total";
    /// Events a subscription parked.
    pub const SUBSCRIPTION_PARKED: &str = "eventsource_subscription_parked_total";
    /// Events after a subscription's checkpoint.
    pub const SUBSCRIPTION_LAG_EVENTS: &str = "eventsource_subscription_lag_events";
    /// Age of a subscription's last handled event.
    pub const SUBSCRIPTION_LAG_SECONDS: &str = "eventsource_subscription_lag_seconds";
}

/// Why a load with a snapshot store replayed from the first event: the `reason` label
/// of `eventsource_snapshot_misses_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotMiss {
    /// The aggregate has no snapshot.
    NoneStored,
    /// The snapshot has an older schema version and no upcaster covers it.
    SchemaMismatch,
    /// The snapshot's upcast chain failed.
    UpcastFailed,
    /// The snapshot was written by newer code (a higher schema version).
    NewerSchema,
    /// The snapshot store failed.
    StoreError,
    /// The snapshot store took longer than the snapshot timeout.
    StoreTimeout,
    /// The snapshot's state does not decode (or its row is corrupt).
    Undecodable,
    /// The snapshot claims a version the stream does not reach.
    AheadOfStream,
}

impl SnapshotMiss {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMiss::NoneStored => "none_stored",
            SnapshotMiss::SchemaMismatch => "schema_mismatch",
            SnapshotMiss::UpcastFailed => "upcast_failed",
            SnapshotMiss::NewerSchema => "newer_schema",
            SnapshotMiss::StoreError => "store_error",
            SnapshotMiss::StoreTimeout => "store_timeout",
            SnapshotMiss::Undecodable => "undecodable",
            SnapshotMiss::AheadOfStream => "ahead_of_stream",
        }
    }
}

/// Registers the description and unit of every metric with the installed recorder.
/// Optional: exporters show them (Prometheus's `# HELP`).
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::LOADS, "Repository loads, by outcome");
    describe_histogram!(
        names::LOAD_DURATION,
        Unit::Seconds,
        "Time of a successful load"
    );
    describe_histogram!(
        names::EVENTS_REPLAYED,
        Unit::Count,
        "Events applied by a load"
    );
    describe_counter!(names::SNAPSHOT_HITS, "Loads that started from a snapshot");
    describe_counter!(
        names::SNAPSHOT_MISSES,
        "Loads that replayed from the first event, by reason"
    );
    describe_counter!(names::SAVES, "Saves with events, by outcome");
    describe_histogram!(
        names::SAVE_DURATION,
        Unit::Seconds,
        "Time of a successful save"
    );
    describe_counter!(names::SNAPSHOT_WRITES, "Snapshots written, by mode");
    describe_histogram!(
        names::SNAPSHOT_WRITE_DURATION,
        Unit::Seconds,
        "Time of a successful snapshot write"
    );
    describe_histogram!(
        names::SNAPSHOT_SIZE,
        Unit::Bytes,
        "Size of each snapshot state written"
    );
    describe_counter!(
        names::SNAPSHOT_WRITE_FAILURES,
        "Snapshots not written, by reason"
    );
    describe_gauge!(
        names::SNAPSHOT_QUEUE_DEPTH,
        "Background snapshots queued or being written"
    );
    describe_counter!(
        names::SNAPSHOT_WRITES_COALESCED,
        "Queued background snapshots replaced by a newer one"
    );
    describe_counter!(names::SUBSCRIPTION_EVENTS, "Events a subscription handled");
    describe_counter!(names::SUBSCRIPTION_PARKED, "Events a subscription parked");
    describe_gauge!(
        names::SUBSCRIPTION_LAG_EVENTS,
        "Events after a subscription's checkpoint"
    );
    describe_gauge!(
        names::SUBSCRIPTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the last event a subscription handled"
    );
}

// What the crate reports, one function per event.

pub(crate) fn load(aggregate_type: &'static str, outcome: &'static str) {
    counter!(names::LOADS, "aggregate_type" => aggregate_type, "outcome" => outcome).increment(1);
}

pub(crate) fn loaded(
    aggregate_type: &'static str,
    took: Duration,
    replayed: u64,
    from_snapshot: bool,
) {
    load(aggregate_type, "ok");
    histogram!(names::LOAD_DURATION, "aggregate_type" => aggregate_type).record(took);
    histogram!(names::EVENTS_REPLAYED, "aggregate_type" => aggregate_type).record(replayed as f64);
    if from_snapshot {
        counter!(names::SNAPSHOT_HITS, "aggregate_type" => aggregate_type).increment(1);
    }
}

pub(crate) fn snapshot_miss(aggregate_type: &'static str, reason: SnapshotMiss) {
    counter!(names::SNAPSHOT_MISSES, "aggregate_type" => aggregate_type, "reason" => reason.as_str())
        .increment(1);
}

pub(crate) fn save(aggregate_type: &'static str, outcome: &'static str, took: Option<Duration>) {
    counter!(names::SAVES, "aggregate_type" => aggregate_type, "outcome" => outcome).increment(1);
    if let Some(took) = took {
        histogram!(names::SAVE_DURATION, "aggregate_type" => aggregate_type).record(took);
    }
}

pub(crate) fn snapshot_written(
    aggregate_type: &str,
    mode: &'static str,
    took: Duration,
    bytes: usize,
) {
    let t = aggregate_type.to_owned();
    counter!(names::SNAPSHOT_WRITES, "aggregate_type" => t.clone(), "mode" => mode).increment(1);
    histogram!(names::SNAPSHOT_WRITE_DURATION, "aggregate_type" => t.clone()).record(took);
    histogram!(names::SNAPSHOT_SIZE, "aggregate_type" => t).record(bytes as f64);
}

pub(crate) fn snapshot_write_failed(aggregate_type: &str, error: &crate::Error) {
    let reason = match error {
        crate::Error::Timeout { .. } => "store_timeout",
        crate::Error::NotRoundTrip { .. }
        | crate::Error::Encode { .. }
        | crate::Error::InvalidInput { .. } => "refused",
        _ => "store_error",
    };
    snapshot_write_failed_because(aggregate_type, reason);
}

pub(crate) fn snapshot_write_failed_because(aggregate_type: &str, reason: &'static str) {
    counter!(names::SNAPSHOT_WRITE_FAILURES, "aggregate_type" => aggregate_type.to_owned(), "reason" => reason)
        .increment(1);
}

pub(crate) fn snapshot_queue(aggregate_type: &str, depth: usize) {
    gauge!(names::SNAPSHOT_QUEUE_DEPTH, "aggregate_type" => aggregate_type.to_owned())
        .set(depth as f64);
}

pub(crate) fn snapshot_coalesced(aggregate_type: &str) {
    counter!(names::SNAPSHOT_WRITES_COALESCED, "aggregate_type" => aggregate_type.to_owned())
        .increment(1);
}

pub(crate) fn subscription_handled(subscription: &str, events: u64) {
    counter!(names::SUBSCRIPTION_EVENTS, "subscription" => subscription.to_owned())
        .increment(events);
}

pub(crate) fn subscription_parked(subscription: &str) {
    counter!(names::SUBSCRIPTION_PARKED, "subscription" => subscription.to_owned()).increment(1);
}

pub(crate) fn subscription_lag_seconds(subscription: &str, seconds: f64) {
    gauge!(names::SUBSCRIPTION_LAG_SECONDS, "subscription" => subscription.to_owned())
        .set(seconds.max(0.0));
}

pub(crate) fn subscription_lag_events(subscription: &str, events: u64) {
    gauge!(names::SUBSCRIPTION_LAG_EVENTS, "subscription" => subscription.to_owned())
        .set(events as f64);
}
