//! Conformance of [`SnapshotStore`] implementations.

use std::num::NonZeroU32;
use std::sync::Arc;

use eventsource::{Snapshot, SnapshotBound, SnapshotStore};
use serde_json::json;
use uuid::Uuid;

use crate::{now, unique_type};

/// A snapshot of this aggregate at `version`, with a small state.
pub fn snapshot(
    aggregate_type: &str,
    aggregate_id: Uuid,
    version: u64,
    schema_version: u32,
) -> Snapshot {
    Snapshot {
        aggregate_id,
        aggregate_type: aggregate_type.to_owned(),
        version,
        schema_version,
        state: json!({"version": version, "schema": schema_version}).to_string(),
        created_at: now(),
    }
}

/// Panics unless `got` is `want`. States are compared as JSON values: a store may keep
/// them in a normal form (key order, spacing).
#[track_caller]
pub fn assert_same(got: Option<Snapshot>, want: &Snapshot) {
    let Some(got) = got else {
        panic!(
            "expected the snapshot at version {}, found none",
            want.version
        )
    };
    assert_eq!(
        got.state_json().expect("stored state is JSON"),
        want.state_json().expect("saved state is JSON"),
        "state"
    );
    let strip = |s: &Snapshot| Snapshot {
        state: String::new(),
        ..s.clone()
    };
    assert_eq!(strip(&got), strip(want), "snapshot fields");
}

/// Every field comes back as saved: ids, type, versions, state and time (microseconds).
pub async fn snapshot_round_trip(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Order");
    let id = Uuid::new_v4();
    let mut saved = snapshot(&ty, id, 42, 3);
    saved.state = json!({
        "owner": "O'Brien \"x\" 🦀",
        "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1.5}],
        "closed": false,
        "note": null
    })
    .to_string();
    store.save(&saved).await.expect("save");
    assert_same(store.get(&ty, id).await.expect("get"), &saved);
    assert_eq!(store.get(&ty, Uuid::new_v4()).await.expect("get"), None);
    assert_eq!(
        store.get(&unique_type("Order"), id).await.expect("get"),
        None
    );
}

/// Saving is an upsert that never goes back to a lower version; an equal version is
/// replaced.
pub async fn snapshot_upsert_never_regresses(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Account");
    let id = Uuid::new_v4();
    let v5 = snapshot(&ty, id, 5, 1);
    store.save(&v5).await.expect("save v5");

    store.save(&snapshot(&ty, id, 3, 1)).await.expect("save v3");
    assert_same(store.get(&ty, id).await.expect("get"), &v5);

    let mut v5_again = snapshot(&ty, id, 5, 2);
    v5_again.state = json!({"replaced": true}).to_string();
    store.save(&v5_again).await.expect("save v5 again");
    assert_same(store.get(&ty, id).await.expect("get"), &v5_again);

    let v7 = snapshot(&ty, id, 7, 2);
    store.save(&v7).await.expect("save v7");
    assert_same(store.get(&ty, id).await.expect("get"), &v7);
    store.save(&snapshot(&ty, id, 6, 9)).await.expect("save v6");
    assert_same(store.get(&ty, id).await.expect("get"), &v7);
}

/// `exists` tells whether a snapshot is stored; `delete` removes it and says whether
/// there was one.
pub async fn snapshot_delete_and_exists(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Cart");
    let id = Uuid::new_v4();
    assert!(!store.exists(&ty, id).await.expect("exists"));
    assert!(
        !store.delete(&ty, id).await.expect("delete"),
        "nothing to delete"
    );

    store.save(&snapshot(&ty, id, 1, 1)).await.expect("save");
    let neighbour = Uuid::new_v4();
    let kept = snapshot(&ty, neighbour, 2, 1);
    store.save(&kept).await.expect("save");
    assert!(store.exists(&ty, id).await.expect("exists"));

    assert!(
        store.delete(&ty, id).await.expect("delete"),
        "one was deleted"
    );
    assert!(!store.exists(&ty, id).await.expect("exists"));
    assert_eq!(store.get(&ty, id).await.expect("get"), None);
    assert!(
        !store.delete(&ty, id).await.expect("delete"),
        "already gone"
    );
    assert_same(store.get(&ty, neighbour).await.expect("get"), &kept);
}

/// `delete_by_type` deletes a type's snapshots, or those with a schema version strictly
/// below a bound, and counts them; other types are untouched.
pub async fn snapshot_delete_by_type(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Versioned");
    let other = unique_type("Versioned");
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        let schema = i as u32 + 1;
        store
            .save(&snapshot(&ty, *id, 10, schema))
            .await
            .expect("save");
        store
            .save(&snapshot(&other, *id, 10, schema))
            .await
            .expect("save");
    }

    assert_eq!(
        store.delete_by_type(&ty, Some(1)).await.expect("delete"),
        0,
        "none below 1"
    );
    assert_eq!(
        store.delete_by_type(&ty, Some(2)).await.expect("delete"),
        1,
        "schema 1 only"
    );
    assert!(!store.exists(&ty, ids[0]).await.expect("exists"));
    assert!(
        store.exists(&ty, ids[1]).await.expect("exists"),
        "2 is not below 2"
    );
    assert_eq!(store.delete_by_type(&ty, Some(2)).await.expect("delete"), 0);
    assert_eq!(
        store.delete_by_type(&ty, None).await.expect("delete"),
        2,
        "the rest"
    );
    for id in &ids {
        assert!(!store.exists(&ty, *id).await.expect("exists"));
        assert!(
            store.exists(&other, *id).await.expect("exists"),
            "other types are kept"
        );
    }
    assert_eq!(
        store
            .delete_by_type(&other, Some(u32::MAX))
            .await
            .expect("delete"),
        3,
        "the highest bound deletes every schema version"
    );
    assert_eq!(
        store
            .delete_by_type(&unique_type("None"), None)
            .await
            .expect("delete"),
        0
    );
}

/// Two aggregate types with the same id have separate snapshots.
pub async fn snapshot_types_are_isolated(store: Arc<dyn SnapshotStore>) {
    let (ta, tb) = (unique_type("Order"), unique_type("Invoice"));
    let id = Uuid::new_v4();
    let (a, b) = (snapshot(&ta, id, 5, 1), snapshot(&tb, id, 9, 2));
    store.save(&a).await.expect("save");
    store.save(&b).await.expect("save");
    assert_same(store.get(&ta, id).await.expect("get"), &a);
    assert_same(store.get(&tb, id).await.expect("get"), &b);

    // A lower version under another type is not a regression.
    let a3 = snapshot(&ta, id, 3, 1);
    store.save(&a3).await.expect("save");
    assert_same(store.get(&ta, id).await.expect("get"), &a);
    assert!(store.delete(&ta, id).await.expect("delete"));
    assert_same(store.get(&tb, id).await.expect("get"), &b);
    store.save(&a3).await.expect("save after delete");
    assert_same(store.get(&ta, id).await.expect("get"), &a3);
}

/// Type names with quotes, SQL, wildcards and non-ASCII text are stored and matched
/// exactly, including by `delete_by_type`.
pub async fn snapshot_awkward_type_names(store: Arc<dyn SnapshotStore>) {
    let suffix = Uuid::new_v4().simple().to_string();
    let names = [
        format!("O'Brien \"x\"; DROP TABLE snapshots; -- {suffix}"),
        format!("🦀 Ordre ñ 注文 {suffix}"),
        format!("100%_ {suffix}"),
        format!("100%_ {suffix}x"),
    ];
    let id = Uuid::new_v4();
    for (i, name) in names.iter().enumerate() {
        let saved = snapshot(name, id, i as u64 + 1, 1);
        store.save(&saved).await.expect("save");
        assert_same(store.get(name, id).await.expect("get"), &saved);
    }
    assert_eq!(
        store.delete_by_type(&names[2], None).await.expect("delete"),
        1
    );
    assert!(
        store.exists(&names[3], id).await.expect("exists"),
        "no wildcard matching"
    );
    assert!(store.delete(&names[0], id).await.expect("delete"));
    assert!(store.exists(&names[1], id).await.expect("exists"));
}

/// Panics unless `got` is the snapshot [`snapshot`] builds at this version and schema
/// version (its time aside).
#[track_caller]
fn assert_is(got: Option<Snapshot>, version: u64, schema_version: u32) {
    let got =
        got.unwrap_or_else(|| panic!("expected the snapshot at version {version}, found none"));
    assert_eq!((got.version, got.schema_version), (version, schema_version));
    assert_eq!(
        got.state_json().expect("stored state is JSON"),
        json!({"version": version, "schema": schema_version})
    );
}

/// `n` as a `keep`.
fn keep(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("keep is at least 1")
}

/// The versions of the aggregate's stored snapshots, newest first, found by walking
/// [`SnapshotStore::get_at`] down from the newest.
pub async fn stored_versions(
    store: &dyn SnapshotStore,
    aggregate_type: &str,
    aggregate_id: Uuid,
) -> Vec<u64> {
    let mut versions = Vec::new();
    let mut bound = u64::MAX;
    while let Some(found) = store
        .get_at(
            aggregate_type,
            aggregate_id,
            SnapshotBound::AtOrBelowVersion(bound),
        )
        .await
        .expect("get_at")
    {
        assert!(
            found.version <= bound,
            "get_at returned a version above its bound"
        );
        versions.push(found.version);
        if found.version == 0 {
            break;
        }
        bound = found.version - 1;
    }
    versions
}

/// `save_keeping` with `keep = N` keeps the N highest versions, whatever order they come
/// in; `get` returns the newest.
pub async fn snapshot_keep_n_keeps_the_newest(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Keep");
    let id = Uuid::new_v4();
    for version in 1..=6 {
        store
            .save_keeping(&snapshot(&ty, id, version, 1), keep(3))
            .await
            .expect("save_keeping");
    }
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![6, 5, 4]);
    assert_is(store.get(&ty, id).await.expect("get"), 6, 1);
    // Out of order: a version between the kept ones evicts the lowest.
    let other = Uuid::new_v4();
    for version in [50, 10, 40, 20, 30, 45] {
        store
            .save_keeping(&snapshot(&ty, other, version, 1), keep(3))
            .await
            .expect("save_keeping");
    }
    assert_eq!(stored_versions(&*store, &ty, other).await, vec![50, 45, 40]);
    // A smaller keep prunes to it; `save` keeps one.
    store
        .save_keeping(&snapshot(&ty, other, 60, 1), keep(2))
        .await
        .expect("save_keeping");
    assert_eq!(stored_versions(&*store, &ty, other).await, vec![60, 50]);
    store
        .save(&snapshot(&ty, other, 70, 1))
        .await
        .expect("save");
    assert_eq!(stored_versions(&*store, &ty, other).await, vec![70]);
    // The first aggregate was not touched.
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![6, 5, 4]);
}

/// An older snapshot never replaces or evicts a newer one: with `keep` newer ones
/// stored it is not kept; with fewer it is kept beside them.
pub async fn snapshot_keep_older_never_evicts_newer(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("KeepOlder");
    let id = Uuid::new_v4();
    for version in [10, 20] {
        store
            .save_keeping(&snapshot(&ty, id, version, 1), keep(2))
            .await
            .expect("save_keeping");
    }
    store
        .save_keeping(&snapshot(&ty, id, 5, 1), keep(2))
        .await
        .expect("save_keeping an older snapshot");
    assert_eq!(
        stored_versions(&*store, &ty, id).await,
        vec![20, 10],
        "a snapshot below the `keep` newest is not kept and evicts nothing"
    );
    store
        .save(&snapshot(&ty, id, 15, 1))
        .await
        .expect("save an older snapshot");
    assert_eq!(
        stored_versions(&*store, &ty, id).await,
        vec![20],
        "keep = 1: the newest stays, the older one is not kept"
    );
    store
        .save_keeping(&snapshot(&ty, id, 15, 1), keep(3))
        .await
        .expect("save_keeping an older snapshot with room for it");
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![20, 15]);
    assert_is(store.get(&ty, id).await.expect("get"), 20, 1);
}

/// A snapshot of a version already stored replaces it (state, schema version, time),
/// and leaves the other versions alone.
pub async fn snapshot_keep_equal_version_replaces(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("KeepEqual");
    let id = Uuid::new_v4();
    for version in [10, 20, 30] {
        store
            .save_keeping(&snapshot(&ty, id, version, 1), keep(3))
            .await
            .expect("save_keeping");
    }
    let mut again = snapshot(&ty, id, 20, 2);
    again.state = json!({"replaced": true}).to_string();
    store
        .save_keeping(&again, keep(3))
        .await
        .expect("replace 20");
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![30, 20, 10]);
    let got = store
        .get_at(&ty, id, SnapshotBound::AtOrBelowVersion(25))
        .await
        .expect("get_at");
    assert_same(got, &again);
    // The newest replaced, with keep = 1: the others go.
    let newest = snapshot(&ty, id, 30, 3);
    store.save(&newest).await.expect("replace 30");
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![30]);
    assert_same(store.get(&ty, id).await.expect("get"), &newest);
}

/// `get_at` returns the newest snapshot at or below its bound, `None` below the oldest.
pub async fn snapshot_get_at_bounds(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("GetAt");
    let id = Uuid::new_v4();
    for version in [10, 20, 30] {
        store
            .save_keeping(&snapshot(&ty, id, version, 1), keep(5))
            .await
            .expect("save_keeping");
    }
    let at = |bound: u64| {
        let store = store.clone();
        let ty = ty.clone();
        async move {
            store
                .get_at(&ty, id, SnapshotBound::AtOrBelowVersion(bound))
                .await
                .expect("get_at")
                .map(|s| s.version)
        }
    };
    assert_eq!(at(0).await, None);
    assert_eq!(at(9).await, None);
    assert_eq!(at(10).await, Some(10));
    assert_eq!(at(19).await, Some(10));
    assert_eq!(at(20).await, Some(20));
    assert_eq!(at(29).await, Some(20));
    assert_eq!(at(30).await, Some(30));
    assert_eq!(at(u64::MAX).await, Some(30));
    assert_is(
        store
            .get_at(&ty, id, SnapshotBound::AtOrBelowVersion(25))
            .await
            .expect("get_at"),
        20,
        1,
    );
    // Other aggregates and types are not seen.
    assert_eq!(
        store
            .get_at(
                &ty,
                Uuid::new_v4(),
                SnapshotBound::AtOrBelowVersion(u64::MAX)
            )
            .await
            .expect("get_at"),
        None
    );
    assert_eq!(
        store
            .get_at(
                &unique_type("GetAtOther"),
                id,
                SnapshotBound::AtOrBelowVersion(30)
            )
            .await
            .expect("get_at"),
        None
    );
}

/// `delete` removes every version of the aggregate, `exists` sees any, and
/// `delete_by_type` counts every version it deletes.
pub async fn snapshot_delete_removes_every_version(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("DeleteAll");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for id in [a, b] {
        for version in [1, 2, 3] {
            store
                .save_keeping(&snapshot(&ty, id, version, version as u32), keep(3))
                .await
                .expect("save_keeping");
        }
    }
    assert!(store.exists(&ty, a).await.expect("exists"));
    assert!(store.delete(&ty, a).await.expect("delete"));
    assert!(!store.exists(&ty, a).await.expect("exists after delete"));
    assert_eq!(store.get(&ty, a).await.expect("get"), None);
    assert_eq!(stored_versions(&*store, &ty, a).await, Vec::<u64>::new());
    assert!(!store.delete(&ty, a).await.expect("delete again"));
    assert_eq!(stored_versions(&*store, &ty, b).await, vec![3, 2, 1]);
    // Schema versions 1 and 2 of `b` are below 3: two rows.
    assert_eq!(
        store
            .delete_by_type(&ty, Some(3))
            .await
            .expect("delete_by_type"),
        2
    );
    assert_eq!(stored_versions(&*store, &ty, b).await, vec![3]);
    for version in [4, 5] {
        store
            .save_keeping(&snapshot(&ty, b, version, 1), keep(3))
            .await
            .expect("save_keeping");
    }
    assert_eq!(
        store
            .delete_by_type(&ty, None)
            .await
            .expect("delete_by_type"),
        3
    );
    assert!(!store.exists(&ty, b).await.expect("exists"));
}

/// 8 tasks saving interleaved versions of one aggregate at once, with a small `keep`:
/// the newest is never deleted, every version kept is one that was saved, and the next
/// save prunes to exactly `keep`.
pub async fn snapshot_keep_concurrent_saves_keep_the_newest(store: Arc<dyn SnapshotStore>) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 12;
    let ty = unique_type("KeepConcurrent");
    for round_keep in [1, 2, 4] {
        let id = Uuid::new_v4();
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (store, ty) = (store.clone(), ty.clone());
            tasks.push(tokio::spawn(async move {
                // Task t saves t+1, t+1+8, ...: each task's versions rise, the tasks'
                // interleave. Odd tasks go downwards, so old ones race new ones too.
                let mut versions: Vec<u64> = (0..PER_TASK).map(|i| task + 1 + i * TASKS).collect();
                if task % 2 == 1 {
                    versions.reverse();
                }
                for version in versions {
                    store
                        .save_keeping(&snapshot(&ty, id, version, 1), keep(round_keep))
                        .await
                        .expect("concurrent save_keeping");
                }
            }));
        }
        for task in tasks {
            task.await.expect("a saving task");
        }
        // A save deletes a snapshot only when `keep` higher ones are stored or coming:
        // the `keep` highest saved are never deleted, whatever the interleaving.
        let newest = TASKS * PER_TASK;
        let top = |highest: u64| -> Vec<u64> {
            (0..u64::from(round_keep)).map(|i| highest - i).collect()
        };
        let kept = stored_versions(&*store, &ty, id).await;
        assert_eq!(
            kept.get(..round_keep as usize),
            Some(&top(newest)[..]),
            "keep = {round_keep}: the newest snapshots survive concurrent saves (kept {kept:?})"
        );
        // Concurrent saves may leave more than `keep`; the next save prunes to it.
        store
            .save_keeping(&snapshot(&ty, id, newest + 1, 1), keep(round_keep))
            .await
            .expect("save_keeping after the race");
        assert_eq!(
            stored_versions(&*store, &ty, id).await,
            top(newest + 1),
            "keep = {round_keep}: the next save keeps exactly the newest {round_keep}"
        );
    }
}

/// 8 tasks saving the same versions of one aggregate at once (each version written by
/// every task, as writers racing to snapshot the same state do), with `keep` 1 and 2:
/// no write fails (no lock cycle between the replaced and the pruned rows, no unique
/// violation when two writers store one version), and the newest are kept.
pub async fn snapshot_keep_concurrent_equal_versions_never_fail(store: Arc<dyn SnapshotStore>) {
    const TASKS: u64 = 8;
    let ty = unique_type("KeepEqualRace");
    for round_keep in [1u32, 2] {
        let id = Uuid::new_v4();
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (store, ty) = (store.clone(), ty.clone());
            tasks.push(tokio::spawn(async move {
                for version in 1..=24u64 {
                    // Half the tasks also rewrite the version below, so that rows being
                    // replaced are also being pruned by the others.
                    let versions = if task % 2 == 0 {
                        vec![version]
                    } else {
                        vec![version, version.saturating_sub(1).max(1)]
                    };
                    for v in versions {
                        store
                            .save_keeping(&snapshot(&ty, id, v, 1), keep(round_keep))
                            .await
                            .unwrap_or_else(|e| {
                                panic!("keep = {round_keep}: concurrent save_keeping of {v}: {e}")
                            });
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("a saving task");
        }
        let kept = stored_versions(&*store, &ty, id).await;
        let newest: Vec<u64> = (0..u64::from(round_keep)).map(|i| 24 - i).collect();
        assert_eq!(
            kept.get(..newest.len()),
            Some(&newest[..]),
            "keep = {round_keep}: kept {kept:?}"
        );
    }
}

/// A state of realistic JSON of about `bytes` bytes: records of varied strings and
/// numbers (not a repeated pattern), so that it compresses as real states do.
pub fn realistic_state(bytes: usize, seed: u64) -> String {
    const WORDS: [&str; 16] = [
        "invoice",
        "pending",
        "shipped",
        "Zürich",
        "warehouse",
        "refund",
        "priority",
        "customer",
        "O'Brien",
        "discount",
        "backorder",
        "express",
        "Łódź",
        "returned",
        "gift",
        "note",
    ];
    let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        rng >> 33
    };
    let mut lines = Vec::new();
    let mut len = 0;
    while len < bytes {
        let line = json!({
            "sku": format!("{}-{:05}", WORDS[(next() % 16) as usize], next() % 100_000),
            "qty": next() % 40,
            "price": (next() % 1_000_000) as f64 / 100.0,
            "status": WORDS[(next() % 16) as usize],
            "tags": [WORDS[(next() % 16) as usize], WORDS[(next() % 16) as usize]],
            "at": 1_764_000_000 + next() % 10_000_000,
        });
        len += line.to_string().len() + 1;
        lines.push(line);
    }
    json!({"owner": format!("customer-{seed}"), "lines": lines}).to_string()
}

/// A snapshot of this aggregate at `version` with a realistic state of about `bytes`.
fn sized(aggregate_type: &str, aggregate_id: Uuid, version: u64, bytes: usize) -> Snapshot {
    Snapshot {
        state: realistic_state(bytes, version),
        ..snapshot(aggregate_type, aggregate_id, version, 1)
    }
}

/// A state stored with a compression threshold comes back exactly as saved, above the
/// threshold (compressed by a store that compresses) and below it (stored plain), by
/// `get` and by `get_at`; `compress_over = None` never compresses.
pub async fn snapshot_compressed_round_trip(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Compressed");
    for (bytes, compress_over) in [
        (100_000, Some(64 * 1024)),
        (1_000, Some(64 * 1024)),
        (20_000, Some(0)),
        (20_000, None),
        (2, Some(0)),
    ] {
        let id = Uuid::new_v4();
        let mut saved = sized(&ty, id, 7, bytes);
        if bytes == 2 {
            saved.state = "{}".to_owned();
        }
        store
            .save_compressing(&saved, NonZeroU32::MIN, compress_over)
            .await
            .expect("save_compressing");
        let got = store.get(&ty, id).await.expect("get").expect("a snapshot");
        assert_eq!(
            got.state, saved.state,
            "{bytes} bytes over {compress_over:?}"
        );
        assert_same(Some(got), &saved);
        let at = store
            .get_at(&ty, id, SnapshotBound::AtOrBelowVersion(7))
            .await
            .expect("get_at");
        assert_same(at, &saved);
    }
}

/// Compressed and plain snapshots of one aggregate live side by side in its history:
/// each version reads back as saved, pruning keeps the newest whatever their encoding,
/// and replacing a version (`keep = 1` rewrites the newest in place) switches its
/// encoding both ways.
pub async fn snapshot_compressed_and_plain_coexist(store: Arc<dyn SnapshotStore>) {
    let ty = unique_type("Mixed");
    let id = Uuid::new_v4();
    let over = Some(16 * 1024);
    // Odd versions large (compressed), even ones small (plain).
    let saved: Vec<Snapshot> = (1..=5)
        .map(|version| {
            let bytes = if version % 2 == 1 { 50_000 } else { 500 };
            sized(&ty, id, version, bytes)
        })
        .collect();
    let at = |version: u64| &saved[version as usize - 1];
    for snapshot in &saved {
        store
            .save_compressing(snapshot, keep(4), over)
            .await
            .expect("save_compressing");
    }
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![5, 4, 3, 2]);
    for version in 2..=5 {
        let got = store
            .get_at(&ty, id, SnapshotBound::AtOrBelowVersion(version))
            .await
            .expect("get_at");
        assert_same(got, at(version));
    }
    // An equal version replaced by one of the other encoding, both ways.
    let small_five = sized(&ty, id, 5, 500);
    store
        .save_compressing(&small_five, keep(4), over)
        .await
        .expect("replace 5 with a plain state");
    assert_same(store.get(&ty, id).await.expect("get"), &small_five);
    let large_four = sized(&ty, id, 4, 40_000);
    store
        .save_compressing(&large_four, keep(4), over)
        .await
        .expect("replace 4 with a compressed state");
    let got = store
        .get_at(&ty, id, SnapshotBound::AtOrBelowVersion(4))
        .await
        .expect("get_at");
    assert_same(got, &large_four);
    // keep = 1: the newest row rewritten in place, compressed, then plain again.
    let large_six = sized(&ty, id, 6, 60_000);
    store
        .save_compressing(&large_six, keep(1), over)
        .await
        .expect("keep one, compressed");
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![6]);
    assert_same(store.get(&ty, id).await.expect("get"), &large_six);
    let small_seven = sized(&ty, id, 7, 300);
    store
        .save_compressing(&small_seven, keep(1), over)
        .await
        .expect("keep one, plain");
    assert_eq!(stored_versions(&*store, &ty, id).await, vec![7]);
    assert_same(store.get(&ty, id).await.expect("get"), &small_seven);
}
