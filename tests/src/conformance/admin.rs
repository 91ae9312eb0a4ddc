//! The operations API on every store: the coverage report, the list of aggregates
//! behind their snapshots, backfill (longest first, resumable), verification against a
//! full replay, and invalidation.
//!
//! These functions are generic over the store's type ([`AdminSuiteStore`]): the
//! [`Admin`] needs a store that implements [`AdminStore`]. Each function uses an
//! aggregate type of its own, and first deletes what an earlier run left of it, so that
//! its counts are exact on a shared database.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventsource::admin::{Admin, AdminStore, Backfill, CoverageOptions, Verify};
use eventsource::prelude::*;
use eventsource::{
    InMemorySnapshotStore, PostgresEventStore, PostgresSnapshotStore, Snapshot, SqliteEventStore,
    SqliteSnapshotStore,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A store the admin suite runs on.
#[async_trait]
pub trait AdminSuiteStore: EventStore + AdminStore + Clone + 'static {
    /// The operations API over this store and a snapshot store beside it.
    fn admin(&self) -> Admin;
    /// Deletes every event and snapshot of `aggregate_type`.
    async fn clear(&self, aggregate_type: &str);
}

#[async_trait]
impl AdminSuiteStore for InMemoryEventStore {
    fn admin(&self) -> Admin {
        Admin::new(
            Arc::new(self.clone()),
            Arc::new(InMemorySnapshotStore::new()),
        )
    }
    async fn clear(&self, _: &str) {}
}

#[async_trait]
impl AdminSuiteStore for SqliteEventStore {
    fn admin(&self) -> Admin {
        let snapshots = SqliteSnapshotStore::new(self.pool().clone());
        Admin::new(Arc::new(self.clone()), Arc::new(snapshots))
    }
    async fn clear(&self, aggregate_type: &str) {
        for table in ["events", "snapshots"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE aggregate_type = ?1"
            )))
            .bind(aggregate_type)
            .execute(self.pool())
            .await
            .expect("clear the suite's aggregate type");
        }
    }
}

#[async_trait]
impl AdminSuiteStore for PostgresEventStore {
    fn admin(&self) -> Admin {
        let snapshots = PostgresSnapshotStore::new(self.pool().clone());
        Admin::new(Arc::new(self.clone()), Arc::new(snapshots))
    }
    async fn clear(&self, aggregate_type: &str) {
        for table in ["events", "snapshots"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE aggregate_type = $1"
            )))
            .bind(aggregate_type)
            .execute(self.pool())
            .await
            .expect("clear the suite's aggregate type");
        }
    }
}

/// Adds `n` to a counter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Added {
    /// The amount.
    pub n: u64,
}

/// The counter's events.
#[derive(DomainEvent, Clone, Debug)]
pub enum CounterEvent {
    /// See [`Added`].
    Added(Added),
}

/// Defines a counter aggregate of its own stored type, so that each suite function
/// counts only its own aggregates.
macro_rules! counter {
    ($name:ident, $ty:tt) => {
        /// A counter: the sum of its events and how many there were.
        #[derive(Aggregate, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[aggregate(name = $ty, event = CounterEvent)]
        #[snapshot(schema_version = 1, mode = "manual")]
        pub struct $name {
            /// The sum.
            pub total: u64,
            /// Events applied.
            pub count: u64,
        }

        impl Apply<Added> for $name {
            fn apply(&mut self, e: &Added) {
                self.total += e.n;
                self.count += 1;
            }
        }
    };
}

counter!(CoverageCounter, "AdminSuiteCoverage");
counter!(BackfillCounter, "AdminSuiteBackfill");
counter!(VerifyCounter, "AdminSuiteVerify");

/// The repository of `A` on the admin's stores (manual snapshots only).
fn repository<A: Aggregate>(admin: &Admin) -> AggregateRepository<A> {
    A::repository(
        Arc::clone(admin.event_store()),
        Arc::clone(admin.snapshot_store()),
    )
}

/// A new aggregate of `A` with `events` events of `Added { n: 1 }`, saved.
async fn aggregate_with<A>(repo: &AggregateRepository<A>, events: u64) -> AggregateRoot<A>
where
    A: Aggregate<Event = CounterEvent>,
{
    let mut root = repo.create_new(Uuid::new_v4());
    append(repo, &mut root, events).await;
    root
}

/// Saves `events` more events to `root`.
async fn append<A>(repo: &AggregateRepository<A>, root: &mut AggregateRoot<A>, events: u64)
where
    A: Aggregate<Event = CounterEvent>,
{
    for _ in 0..events {
        root.record(CounterEvent::Added(Added { n: 1 }));
    }
    repo.save(root).await.expect("save");
}

/// The coverage report counts aggregates with and without a snapshot, the stale ones,
/// the events since the snapshots, the schema versions and the largest snapshots; the
/// list of aggregates behind is most behind first, a snapshot of another schema version
/// counting as none.
pub async fn admin_coverage_reports_snapshots_and_staleness<S: AdminSuiteStore>(store: S) {
    store.clear(CoverageCounter::TYPE).await;
    let admin = store.admin();
    let repo = repository::<CoverageCounter>(&admin);
    let mut roots = Vec::new();
    for events in [10, 20, 30, 40, 50] {
        roots.push(aggregate_with(&repo, events).await);
    }
    repo.create_snapshot(&mut roots[1])
        .await
        .expect("snapshot at 20");
    repo.create_snapshot(&mut roots[3])
        .await
        .expect("snapshot at 40");
    append(&repo, &mut roots[3], 15).await;
    // A snapshot of another schema version at version 10 of the fifth.
    admin
        .snapshot_store()
        .save(&Snapshot {
            aggregate_id: roots[4].id(),
            aggregate_type: CoverageCounter::TYPE.to_owned(),
            version: 10,
            schema_version: 7,
            state: r#"{"total":10,"count":10,"old":"form"}"#.to_owned(),
            created_at: crate::now(),
        })
        .await
        .expect("save an old-schema snapshot");

    let report = admin
        .coverage(
            CoverageCounter::TYPE,
            &CoverageOptions {
                stale_after: 25,
                largest: 2,
            },
        )
        .await
        .expect("coverage");
    assert_eq!(
        (
            report.aggregates,
            report.with_snapshot,
            report.without_snapshot
        ),
        (5, 3, 2),
        "{report:?}"
    );
    // Behind: 10, 0, 30, 15 and 40 (the old-schema snapshot counts in the report).
    assert_eq!(report.stale, 2, "{report:?}");
    assert_eq!(report.stale_after, 25);
    assert_eq!(report.events_since_snapshots, 95, "{report:?}");
    assert_eq!(report.max_events_since_snapshot, 40, "{report:?}");
    assert_eq!(report.snapshots_ahead, 0, "{report:?}");
    let versions: Vec<(u32, u64)> = report
        .schema_versions
        .iter()
        .map(|v| (v.schema_version, v.snapshots))
        .collect();
    assert_eq!(versions, [(1, 2), (7, 1)], "{report:?}");
    assert_eq!(report.largest.len(), 2, "{report:?}");
    let old_form = &report.largest[0];
    assert_eq!(
        (
            old_form.aggregate_id,
            old_form.version,
            old_form.schema_version
        ),
        (roots[4].id(), 10, 7),
        "the largest state first: {report:?}"
    );
    assert_eq!(old_form.bytes, 36);
    for size in &report.largest {
        let stored = admin
            .snapshot_store()
            .get(CoverageCounter::TYPE, size.aggregate_id)
            .await
            .expect("get")
            .expect("a snapshot");
        assert_eq!(
            size.bytes,
            stored.state.len() as u64,
            "bytes of its JSON text"
        );
    }

    let behind = admin
        .behind::<CoverageCounter>(1, None)
        .await
        .expect("behind");
    let order: Vec<(Uuid, u64)> = behind
        .iter()
        .map(|l| (l.aggregate_id, l.events_behind))
        .collect();
    assert_eq!(
        order,
        [
            (roots[4].id(), 50),
            (roots[2].id(), 30),
            (roots[3].id(), 15),
            (roots[0].id(), 10)
        ],
        "most behind first, the old-schema snapshot counting as none"
    );
    assert_eq!(
        (behind[2].stream_version, behind[2].snapshot_version),
        (55, Some(40))
    );
    assert_eq!(behind[0].snapshot_schema_version, Some(7));
    let top = admin
        .behind::<CoverageCounter>(20, Some(1))
        .await
        .expect("behind");
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].aggregate_id, roots[4].id());

    let types = admin.aggregate_types().await.expect("aggregate types");
    assert!(
        types.iter().any(|t| t == CoverageCounter::TYPE),
        "{types:?}"
    );
    assert!(
        types.windows(2).all(|w| w[0] < w[1]),
        "in name order: {types:?}"
    );
    store.clear(CoverageCounter::TYPE).await;
}

/// A backfill snapshots the aggregates at least N events behind, most behind first,
/// reports its progress, and a second run does only what is still behind.
pub async fn admin_backfill_is_longest_first_and_resumable<S: AdminSuiteStore>(store: S) {
    store.clear(BackfillCounter::TYPE).await;
    let admin = store.admin();
    let repo = repository::<BackfillCounter>(&admin);
    let mut roots = Vec::new();
    for events in [5, 10, 15, 20, 25, 30] {
        roots.push(aggregate_with(&repo, events).await);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::clone(&seen);
    let first = admin
        .backfill::<BackfillCounter>(
            &Backfill::new(15)
                .concurrency(4)
                .limit(2)
                .on_progress(move |p| progress.lock().unwrap().push(*p)),
        )
        .await
        .expect("backfill");
    assert_eq!((first.total, first.snapshotted, first.skipped), (2, 2, 0));
    assert!(first.failures.is_empty(), "{first:?}");
    let ids: Vec<Uuid> = roots.iter().map(AggregateRoot::id).collect();
    let stored = |i: usize| {
        let (snapshots, id) = (Arc::clone(admin.snapshot_store()), ids[i]);
        async move {
            snapshots
                .get(BackfillCounter::TYPE, id)
                .await
                .expect("get")
                .map(|s| s.version)
        }
    };
    assert_eq!(
        (stored(5).await, stored(4).await, stored(3).await),
        (Some(30), Some(25), None),
        "the two most behind went first"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(|p| (p.done, p.total)), Some((0, 2)));
    assert_eq!(
        seen.last()
            .map(|p| (p.done, p.total, p.snapshotted, p.errors)),
        Some((2, 2, 2, 0))
    );

    let second = admin
        .backfill::<BackfillCounter>(&Backfill::new(15).concurrency(16))
        .await
        .expect("backfill again");
    assert_eq!(
        (second.total, second.snapshotted),
        (2, 2),
        "only what is still behind: {second:?}"
    );
    assert_eq!((stored(3).await, stored(2).await), (Some(20), Some(15)));
    assert_eq!((stored(1).await, stored(0).await), (None, None));
    let third = admin
        .backfill::<BackfillCounter>(&Backfill::new(15))
        .await
        .expect("backfill once more");
    assert_eq!(third.total, 0, "nothing left: {third:?}");

    // More events: the aggregate is behind again, and its snapshot moves forward.
    append(&repo, &mut roots[5], 20).await;
    let fourth = admin
        .backfill::<BackfillCounter>(&Backfill::new(15))
        .await
        .expect("backfill after writes");
    assert_eq!((fourth.total, fourth.snapshotted), (1, 1));
    assert_eq!(stored(5).await, Some(50));
    let loaded = repo.load(roots[5].id()).await.expect("load");
    assert!(loaded.load_history().loaded_from_snapshot);
    assert_eq!(loaded.state().total, 50);

    let report = admin
        .coverage(BackfillCounter::TYPE, &CoverageOptions::default())
        .await
        .expect("coverage");
    assert_eq!((report.aggregates, report.with_snapshot), (6, 4));
    store.clear(BackfillCounter::TYPE).await;
}

/// Verification replays each snapshotted aggregate and lists the snapshots whose state
/// differs (a decodable state that is not what the events give) and those a load would
/// not use; invalidation deletes below a schema version, then all.
pub async fn admin_verify_finds_differing_snapshots<S: AdminSuiteStore>(store: S) {
    store.clear(VerifyCounter::TYPE).await;
    let admin = store.admin();
    let repo = repository::<VerifyCounter>(&admin);
    let mut roots = Vec::new();
    for _ in 0..5 {
        let mut root = aggregate_with(&repo, 10).await;
        repo.create_snapshot(&mut root).await.expect("snapshot");
        roots.push(root);
    }
    // The fifth gets 5 events past its snapshot: the replay stops at the snapshot.
    append(&repo, &mut roots[4], 5).await;
    let overwrite = |i: usize, schema_version: u32, state: &str| Snapshot {
        aggregate_id: roots[i].id(),
        aggregate_type: VerifyCounter::TYPE.to_owned(),
        version: 10,
        schema_version,
        state: state.to_owned(),
        created_at: crate::now(),
    };
    let snapshots = Arc::clone(admin.snapshot_store());
    for snapshot in [
        overwrite(0, 1, r#"{"total":11,"count":10}"#),
        overwrite(1, 1, r#""not a counter""#),
        overwrite(2, 2, r#"{"total":10,"count":10}"#),
    ] {
        snapshots
            .save(&snapshot)
            .await
            .expect("overwrite a snapshot");
    }

    let report = admin
        .verify::<VerifyCounter>(&Verify::all().concurrency(3))
        .await
        .expect("verify");
    assert_eq!((report.with_snapshot, report.checked), (5, 5), "{report:?}");
    assert_eq!(report.matching, 2, "{report:?}");
    assert!(!report.is_clean());
    assert_eq!(report.differing.len(), 1, "{report:?}");
    let wrong = &report.differing[0];
    assert_eq!(
        (wrong.aggregate_id, wrong.version, wrong.path.as_str()),
        (roots[0].id(), 10, "/total")
    );
    assert_eq!(
        (wrong.snapshot.clone(), wrong.replayed.clone()),
        (11.into(), 10.into())
    );
    let mut unusable: Vec<Uuid> = report.unusable.iter().map(|u| u.aggregate_id).collect();
    unusable.sort();
    let mut expected = vec![roots[1].id(), roots[2].id()];
    expected.sort();
    assert_eq!(unusable, expected, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");

    let sample = admin
        .verify::<VerifyCounter>(&Verify::sample(2))
        .await
        .expect("verify a sample");
    assert_eq!((sample.with_snapshot, sample.checked), (5, 2), "{sample:?}");

    let below = admin
        .invalidate(VerifyCounter::TYPE, Some(2))
        .await
        .expect("invalidate below 2");
    assert_eq!(below, 4);
    assert_eq!(
        admin
            .invalidate(VerifyCounter::TYPE, None)
            .await
            .expect("invalidate all"),
        1
    );
    let clean = admin
        .verify::<VerifyCounter>(&Verify::all())
        .await
        .expect("verify with no snapshots");
    assert_eq!((clean.checked, clean.is_clean()), (0, true));
    store.clear(VerifyCounter::TYPE).await;
}
