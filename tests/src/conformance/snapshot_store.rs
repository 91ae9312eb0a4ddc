//! Conformance of [`SnapshotStore`] implementations.

use std::sync::Arc;

use eventsource::{Snapshot, SnapshotStore};
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
