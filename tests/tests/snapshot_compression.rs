//! Compressed snapshot states as the SQL stores keep them: a state over the threshold
//! is a zstd frame in `state_zstd` with `state` `NULL`, one at or below it is plain
//! JSON, and both kinds of row of one aggregate are read back as saved. (The in-memory
//! store does not compress: it keeps every state as its JSON text.)
//!
//! The PostgreSQL half needs `DATABASE_URL`.

use std::num::NonZeroU32;
use std::sync::Arc;

use eventsource::{
    PostgresEventStore, PostgresSnapshotStore, Snapshot, SnapshotBound, SnapshotStore,
    SqliteEventStore, SqliteSnapshotStore,
};
use eventsource_tests::conformance::snapshot_store::realistic_state;
use eventsource_tests::fixtures::database_url;
use eventsource_tests::{TempDir, now, unique_type};
use uuid::Uuid;

/// A snapshot of about `bytes` of realistic JSON.
fn sized(aggregate_type: &str, id: Uuid, version: u64, bytes: usize) -> Snapshot {
    Snapshot {
        aggregate_id: id,
        aggregate_type: aggregate_type.to_owned(),
        version,
        schema_version: 1,
        state: realistic_state(bytes, version),
        created_at: now(),
    }
}

/// How each version of an aggregate is stored: `(version, compressed, stored bytes)`.
type Rows = Vec<(i64, bool, i64)>;

/// Saves, with `compress_over = 16 KiB` and `keep = 4`, states of 100 kB (v1), 1 kB
/// (v2), exactly 16 KiB (v3, not over) and 16 KiB + 1 (v4); `rows` reads how they are
/// stored. Returns the aggregate's rows.
async fn save_mixed<F, Fut>(store: Arc<dyn SnapshotStore>, ty: &str, rows: F) -> Rows
where
    F: Fn(Uuid) -> Fut,
    Fut: Future<Output = Rows>,
{
    let id = Uuid::new_v4();
    let over = 16 * 1024;
    let mut saved = vec![sized(ty, id, 1, 100_000), sized(ty, id, 2, 1_000)];
    for (version, len) in [(3, over), (4, over + 1)] {
        let mut snapshot = sized(ty, id, version, over);
        // Cut to the length, inside the last string, then closed: still JSON.
        snapshot.state = format!(
            "{{\"p\":\"{}\"}}",
            &"abcdefgh".repeat(len / 8 + 1)[..len - 8]
        );
        assert_eq!(snapshot.state.len(), len);
        saved.push(snapshot);
    }
    for snapshot in &saved {
        store
            .save_compressing(snapshot, NonZeroU32::new(4).unwrap(), Some(over))
            .await
            .expect("save_compressing");
    }
    for snapshot in &saved {
        let got = store
            .get_at(ty, id, SnapshotBound::AtOrBelowVersion(snapshot.version))
            .await
            .expect("get_at")
            .expect("a snapshot");
        assert_eq!(got.state, snapshot.state, "version {}", snapshot.version);
    }
    rows(id).await
}

fn check(rows: &Rows) {
    let encodings: Vec<(i64, bool)> = rows.iter().map(|&(v, c, _)| (v, c)).collect();
    assert_eq!(
        encodings,
        vec![(1, true), (2, false), (3, false), (4, true)],
        "over the threshold compressed, at or below it plain"
    );
    let (_, _, stored) = rows[0];
    assert!(
        stored < 100_000 / 2,
        "100 kB of JSON stored in {stored} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_large_states_compressed_beside_plain_ones() {
    let Some(url) = database_url() else { return };
    let events = PostgresEventStore::connect(&url).await.expect("connect");
    let pool = events.pool().clone();
    let store = Arc::new(PostgresSnapshotStore::new(pool.clone()));
    let ty = unique_type("PgCompressed");
    let rows = save_mixed(store, &ty, |id| {
        let pool = pool.clone();
        let ty = ty.clone();
        async move {
            sqlx::query_as(
                "SELECT version, state_zstd IS NOT NULL AND state IS NULL, \
                 COALESCE(octet_length(state_zstd), octet_length(state::text))::bigint \
                 FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2 ORDER BY version",
            )
            .bind(id)
            .bind(ty)
            .fetch_all(&pool)
            .await
            .expect("read the rows")
        }
    })
    .await;
    check(&rows);
    events.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_large_states_compressed_beside_plain_ones() {
    let dir = TempDir::new().expect("a temporary directory");
    let events = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open");
    let pool = events.pool().clone();
    let store = Arc::new(SqliteSnapshotStore::new(pool.clone()));
    let ty = unique_type("SqliteCompressed");
    let rows = save_mixed(store, &ty, |id| {
        let pool = pool.clone();
        let ty = ty.clone();
        async move {
            sqlx::query_as(
                "SELECT version, state_zstd IS NOT NULL AND state IS NULL, \
                 COALESCE(length(state_zstd), length(CAST(state AS BLOB))) \
                 FROM snapshots WHERE aggregate_id = ?1 AND aggregate_type = ?2 ORDER BY version",
            )
            .bind(id.to_string())
            .bind(ty)
            .fetch_all(&pool)
            .await
            .expect("read the rows")
        }
    })
    .await;
    check(&rows);
    events.close().await;
}

/// A store of a third party that knows nothing of compression (no `save_compressing`),
/// recording the thresholds the repository passes through the default method.
#[derive(Debug, Default)]
struct Recording {
    inner: eventsource::InMemorySnapshotStore,
    saves: std::sync::Mutex<usize>,
}

#[async_trait::async_trait]
impl SnapshotStore for Recording {
    async fn save(&self, snapshot: &Snapshot) -> eventsource::Result<()> {
        *self.saves.lock().unwrap() += 1;
        self.inner.save(snapshot).await
    }

    async fn get(&self, ty: &str, id: Uuid) -> eventsource::Result<Option<Snapshot>> {
        self.inner.get(ty, id).await
    }

    async fn delete(&self, ty: &str, id: Uuid) -> eventsource::Result<bool> {
        self.inner.delete(ty, id).await
    }

    async fn exists(&self, ty: &str, id: Uuid) -> eventsource::Result<bool> {
        self.inner.exists(ty, id).await
    }

    async fn delete_by_type(&self, ty: &str, below: Option<u32>) -> eventsource::Result<u64> {
        self.inner.delete_by_type(ty, below).await
    }
}

/// Wraps a store, recording the `compress_over` of every write.
#[derive(Debug)]
struct Thresholds {
    inner: Arc<dyn SnapshotStore>,
    seen: std::sync::Mutex<Vec<Option<usize>>>,
}

#[async_trait::async_trait]
impl SnapshotStore for Thresholds {
    async fn save(&self, snapshot: &Snapshot) -> eventsource::Result<()> {
        self.save_compressing(snapshot, NonZeroU32::MIN, None).await
    }

    async fn save_compressing(
        &self,
        snapshot: &Snapshot,
        keep: NonZeroU32,
        compress_over: Option<usize>,
    ) -> eventsource::Result<()> {
        self.seen.lock().unwrap().push(compress_over);
        self.inner
            .save_compressing(snapshot, keep, compress_over)
            .await
    }

    async fn get(&self, ty: &str, id: Uuid) -> eventsource::Result<Option<Snapshot>> {
        self.inner.get(ty, id).await
    }

    async fn delete(&self, ty: &str, id: Uuid) -> eventsource::Result<bool> {
        self.inner.delete(ty, id).await
    }

    async fn exists(&self, ty: &str, id: Uuid) -> eventsource::Result<bool> {
        self.inner.exists(ty, id).await
    }

    async fn delete_by_type(&self, ty: &str, below: Option<u32>) -> eventsource::Result<u64> {
        self.inner.delete_by_type(ty, below).await
    }
}

/// The repository passes its threshold to the store on every write path (a sync write
/// after a save, the background writer, `create_snapshot`); a store without
/// `save_compressing` gets its writes through `save`, uncompressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_passes_the_threshold_and_plain_stores_still_work() {
    use eventsource::prelude::*;
    use eventsource_tests::conformance::repository::{Added, Tally};

    let events: Arc<dyn EventStore> = Arc::new(eventsource::InMemoryEventStore::new());
    let plain = Arc::new(Recording::default());
    for mode in [
        SnapshotMode::Sync,
        SnapshotMode::Background,
        SnapshotMode::Manual,
    ] {
        let store = Arc::new(Thresholds {
            inner: plain.clone(),
            seen: Default::default(),
        });
        let repo = AggregateRepository::<Tally>::builder(events.clone())
            .snapshot_store(store.clone())
            .threshold(2)
            .mode(mode)
            .snapshot_compress_over(Some(123))
            .build()
            .expect("repository");
        let mut root = repo.create_new(Uuid::new_v4());
        for n in 0..3 {
            root.record(Added { n });
        }
        repo.save(&mut root).await.expect("save");
        repo.await_pending_snapshots().await;
        if mode == SnapshotMode::Manual {
            repo.create_snapshot(&mut root)
                .await
                .expect("create_snapshot");
        }
        assert_eq!(*store.seen.lock().unwrap(), vec![Some(123)], "{mode}");
        let loaded = repo.load(root.id()).await.expect("load");
        assert!(loaded.load_history().loaded_from_snapshot, "{mode}");
        assert_eq!(loaded.state(), root.state(), "{mode}");
    }
    assert_eq!(
        *plain.saves.lock().unwrap(),
        3,
        "through the default, into save"
    );
}
