//! Shared fixtures of the integration tests, and the conformance suite every store runs.
//!
//! The suite is for stores of your own too: build a fixture returning [`Stores::new`]
//! with your event and snapshot stores, and call [`conformance_tests!`] with it in a
//! test file; every rule the built-in backends obey becomes a test of yours.
//!
//! [`conformance`] holds the behaviour every [`EventStore`] and [`SnapshotStore`] must
//! have, written once; [`fixtures`] builds each backend; [`conformance_tests!`] turns the
//! suite into `#[tokio::test]`s for one backend. A PostgreSQL fixture needs
//! `DATABASE_URL` (see [`fixtures::database_url`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use eventsource::{EventMetadata, EventStore, NewEvent, SnapshotStore};
use uuid::Uuid;

pub mod conformance;
pub mod fixtures;
pub mod nats;

/// The current time, truncated to the microsecond precision every durable store keeps.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// An aggregate type no other test (or earlier run on the same database) uses.
pub fn unique_type(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

/// A new event of this type with a fresh id, a small JSON payload and no metadata.
pub fn event(event_type: &str) -> NewEvent {
    let event_id = Uuid::new_v4();
    NewEvent {
        event_id,
        event_type: event_type.to_owned(),
        event_version: 1,
        payload: format!(r#"{{"id":"{event_id}","n":1}}"#),
        metadata: EventMetadata::default(),
        occurred_at: now(),
    }
}

/// `n` new events of type `"Happened"`.
pub fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|_| event("Happened")).collect()
}

/// An event store and a snapshot store of one backend, sharing its database.
pub struct Stores {
    /// The event store.
    pub events: Arc<dyn EventStore>,
    /// The snapshot store.
    pub snapshots: Arc<dyn SnapshotStore>,
    close: Option<Closer>,
    _dir: Option<TempDir>,
}

impl Stores {
    /// Stores of your own, for running the conformance suite against them: a fixture
    /// `async fn my_stores() -> Option<Stores> { Some(Stores::new(events, snapshots)) }`
    /// and `eventsource_tests::conformance_tests!(my_stores);` in a test file.
    pub fn new(events: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>) -> Self {
        Stores {
            events,
            snapshots,
            close: None,
            _dir: None,
        }
    }
}

enum Closer {
    Sqlite(eventsource::SqliteEventStore),
    Postgres(eventsource::PostgresEventStore),
}

impl Stores {
    /// Closes the pool (if any); then the temporary directory (if any) is removed.
    pub async fn close(self) {
        match &self.close {
            Some(Closer::Sqlite(store)) => store.close().await,
            Some(Closer::Postgres(store)) => store.close().await,
            None => {}
        }
    }
}

/// One backend's store as its own type, for the suites that are generic over the store
/// (a [`Subscription`](eventsource::subscription::Subscription) needs the concrete
/// [`SubscriptionStore`](eventsource::subscription::SubscriptionStore)).
pub struct Backend<S> {
    /// The store.
    pub store: S,
    close: Option<Closer>,
    _dir: Option<TempDir>,
}

impl<S> Backend<S> {
    /// A store of your own, for running the subscription suite against it: a fixture
    /// `async fn my_store() -> Option<Backend<MyStore>> { Some(Backend::new(store)) }` and
    /// `eventsource_tests::conformance_tests!(subscriptions my_store);` in a test file.
    pub fn new(store: S) -> Self {
        Backend {
            store,
            close: None,
            _dir: None,
        }
    }

    /// Closes the pool (if any); then the temporary directory (if any) is removed.
    pub async fn close(self) {
        match &self.close {
            Some(Closer::Sqlite(store)) => store.close().await,
            Some(Closer::Postgres(store)) => store.close().await,
            None => {}
        }
    }
}

/// A directory removed, with its content, when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    pub fn new() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("eventsource-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir harms nobody.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates one `#[tokio::test]` per conformance function, each on a fresh fixture
/// built by `$fixture` (an `async fn() -> Option<Stores>`; `None` skips the test).
///
/// Every function of [`conformance::event_store`] and [`conformance::snapshot_store`]
/// is listed here: a function missing from this list runs on no backend. The `@feed`
/// list holds the functions of [`conformance::feed`] (they take the event store); the
/// `@with` lists name the module of functions that take both stores.
///
/// The subscription suite, [`conformance::subscriptions`], is generic over the store's
/// type: `conformance_tests!(subscriptions $fixture)` runs it on a fixture returning
/// `Option<Backend<S>>` for any [`SubscriptionStore`](eventsource::subscription::SubscriptionStore),
/// and `conformance_tests!(sql_subscriptions $fixture)` adds the tests of read models
/// written in SQL through the batch's transaction, for a store implementing
/// [`SqlSuiteStore`](conformance::subscriptions::SqlSuiteStore).
#[macro_export]
macro_rules! conformance_tests {
    (subscriptions $fixture:path) => {
        $crate::conformance_tests!(@store subscriptions $fixture;
            subscription_catch_up_resumes_at_its_checkpoint,
            subscription_follows_live_appends,
            subscription_retries_a_failing_event,
            subscription_parks_an_exhausted_event_and_goes_on,
            subscription_stops_on_an_exhausted_event,
            subscription_catch_up_goes_on_past_a_failing_event,
            subscription_tries_a_failing_event_as_often_as_its_policy_says,
            subscription_runners_of_one_name_commit_each_batch_once,
            subscription_partitions_are_shared_by_runners,
            subscription_refuses_bad_input,
        );
    };
    (admin $fixture:path) => {
        $crate::conformance_tests!(@admin_store admin $fixture;
            admin_coverage_reports_snapshots_and_staleness,
            admin_backfill_is_longest_first_and_resumable,
            admin_verify_finds_differing_snapshots,
        );
    };
    (sql_subscriptions $fixture:path) => {
        $crate::conformance_tests!(subscriptions $fixture);
        $crate::conformance_tests!(@sql_store subscriptions $fixture;
            subscription_effects_commit_exactly_once,
            subscription_stop_leaves_effects_and_checkpoint_agreeing,
            subscription_retried_parked_event_commits_its_effects,
            subscription_runners_of_one_name_write_each_row_once,
            subscription_partitioned_runners_write_each_row_once,
        );
    };
    ($fixture:path) => {
        $crate::conformance_tests!(@events $fixture;
            append_and_read_round_trip,
            read_from_version,
            expected_version_conflicts,
            empty_batch,
            duplicate_event_ids,
            invalid_payloads,
            large_batch_is_one_transaction,
            concurrent_appends_with_expected_version,
            concurrent_appends_with_any_version,
            read_all_order_and_paging,
            aggregate_types_are_isolated,
            awkward_type_names,
            aggregate_ids_page_in_id_order,
        );
        $crate::conformance_tests!(@snapshots $fixture;
            snapshot_round_trip,
            snapshot_upsert_never_regresses,
            snapshot_delete_and_exists,
            snapshot_delete_by_type,
            snapshot_types_are_isolated,
            snapshot_awkward_type_names,
            snapshot_keep_n_keeps_the_newest,
            snapshot_keep_older_never_evicts_newer,
            snapshot_keep_equal_version_replaces,
            snapshot_get_at_bounds,
            snapshot_delete_removes_every_version,
            snapshot_keep_concurrent_saves_keep_the_newest,
            snapshot_keep_concurrent_equal_versions_never_fail,
            snapshot_compressed_round_trip,
            snapshot_compressed_and_plain_coexist,
        );
        $crate::conformance_tests!(@both $fixture;
            read_aggregate,
        );
        $crate::conformance_tests!(@repository $fixture;
            repository_loads_from_snapshot,
            repository_snapshot_fallbacks,
            repository_loads_compressed_snapshots,
            repository_background_snapshots,
            repository_manual_snapshot,
            repository_concurrent_saves,
        );
        $crate::conformance_tests!(@feed $fixture;
            feed_pages_through_every_event_once,
            feed_limit_zero_reads_nothing,
            feed_filters_by_aggregate_and_event_type,
            feed_moves_past_filtered_out_events,
            feed_decodes_typed_envelopes,
            feed_refuses_a_checkpoint_ahead_of_the_store,
            feed_refuses_bad_filter_names,
            append_signal_changes_after_an_append,
            feed_follows_concurrent_writers,
        );
        $crate::conformance_tests!(@with history $fixture;
            repository_keeps_the_policys_snapshots,
            load_at_rebuilds_past_versions,
            load_at_refuses_versions_the_stream_does_not_have,
            load_at_replays_past_a_bad_snapshot,
            load_at_replays_when_the_snapshot_store_fails_or_hangs,
            load_as_of_loads_the_version_at_a_time,
            bounded_reads_of_a_stream,
            load_at_equals_a_replay_cut_there,
        );
        $crate::conformance_tests!(@with roundtrip $fixture;
            values_round_trip_bitwise,
        );
        $crate::conformance_tests!(@with nonfinite $fixture;
            nonfinite_events_are_refused,
            nonfinite_state_is_never_snapshotted,
        );
        $crate::conformance_tests!(@with upcasting $fixture;
            upcast_events_of_every_version_load_alike,
            failing_event_upcasts_are_typed_errors,
            old_snapshots_are_upcast_or_replayed,
        );
        $crate::conformance_tests!(@with hostile $fixture;
            hostile_names_are_refused,
            hostile_snapshot_states_are_refused,
            hostile_snapshot_names_are_refused,
            odd_names_are_accepted_and_round_trip,
        );
        $crate::conformance_tests!(@with hostile_values $fixture;
            out_of_range_event_values_are_refused,
            out_of_range_snapshot_values_are_refused,
        );
        $crate::conformance_tests!(@with retries $fixture;
            retry_of_new_stream_batch_is_ok,
            retry_with_any_version_is_ok,
            retry_after_existing_events_is_ok,
            retry_after_later_appends_is_ok,
            retry_of_a_prefix_is_ok,
            retry_that_is_not_the_batch_is_refused,
        );
        $crate::conformance_tests!(@with faults $fixture;
            failing_snapshot_store_sync,
            hung_snapshot_store_sync,
            slow_snapshot_store_sync,
            failing_snapshot_store_background,
            hung_snapshot_store_background,
            slow_snapshot_store_background,
            hung_snapshot_store_under_concurrency,
        );
    };
    (@store $module:ident $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(backend) = $fixture().await else { return };
            $crate::conformance::$module::$name(backend.store.clone()).await;
            backend.close().await;
        }
    )*};
    (@admin_store $module:ident $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(backend) = $fixture().await else { return };
            $crate::conformance::$module::$name(backend.store.clone()).await;
            backend.close().await;
        }
    )*};
    (@sql_store $module:ident $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(backend) = $fixture().await else { return };
            $crate::conformance::$module::$name(backend.store.clone()).await;
            backend.close().await;
        }
    )*};
    (@with $module:ident $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(stores) = $fixture().await else { return };
            $crate::conformance::$module::$name(
                stores.events.clone(),
                stores.snapshots.clone(),
            )
            .await;
            stores.close().await;
        }
    )*};
    (@repository $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(stores) = $fixture().await else { return };
            $crate::conformance::repository::$name(
                stores.events.clone(),
                stores.snapshots.clone(),
            )
            .await;
            stores.close().await;
        }
    )*};
    (@events $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(stores) = $fixture().await else { return };
            $crate::conformance::event_store::$name(stores.events.clone()).await;
            stores.close().await;
        }
    )*};
    (@feed $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(stores) = $fixture().await else { return };
            $crate::conformance::feed::$name(stores.events.clone()).await;
            stores.close().await;
        }
    )*};
    (@snapshots $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(stores) = $fixture().await else { return };
            $crate::conformance::snapshot_store::$name(stores.snapshots.clone()).await;
            stores.close().await;
        }
    )*};
    (@both $fixture:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(stores) = $fixture().await else { return };
            $crate::conformance::event_store::$name(
                stores.events.clone(),
                stores.snapshots.clone(),
            )
            .await;
            stores.close().await;
        }
    )*};
}
