//! The cases: loads, saves and concurrent writers, for every backend and peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use cqrs_es::EventStore as _;
use eventsource::{AggregateRepository, EventStore, NewEvent, SnapshotMode, SnapshotStore};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use crate::measure::{Case, Key, RunFuture};
use crate::model::{Loaded, Order, event_at, stored};
#[cfg(feature = "esrs")]
use crate::peers::EsrsStore;
use crate::peers::{self, CqrsOrder, CqrsStore, peer_event_at};
use crate::{floor, measure};

/// Backend names, as the report prints them.
pub const MEMORY: &str = "memory";
/// SQLite, a file in WAL mode.
pub const SQLITE: &str = "SQLite";
/// PostgreSQL on loopback.
pub const POSTGRES: &str = "PostgreSQL";
/// PostgreSQL on loopback, sessions with `synchronous_commit = off` (saves only).
pub const POSTGRES_ASYNC: &str = "PostgreSQL, synchronous_commit off";

/// Who is measured.
pub const OURS: &str = "eventsource";
/// Plain sqlx, rows streamed.
pub const FLOOR: &str = "floor";
/// Plain sqlx, reading the store's eight columns.
pub const FLOOR_WIDE: &str = "floor, the store's 8 columns";
/// Plain sqlx running the PostgreSQL store's append statement.
pub const FLOOR_CTE: &str = "floor, the store's append statement";
/// Plain sqlx running the store's append statement with scalar binds (one event).
pub const FLOOR_CTE1: &str = "floor, the append statement with scalar binds";
/// Plain sqlx, snapshot then tail.
pub const FLOOR_2RT: &str = "floor (2 round trips)";
/// Plain sqlx, snapshot and tail in one statement.
pub const FLOOR_1ST: &str = "floor (1 statement)";
/// cqrs-es + postgres-es.
pub const CQRS: &str = "cqrs-es";
/// esrs.
pub const ESRS: &str = "esrs";

/// Everything a backend offers to the cases.
#[derive(Clone)]
pub struct Backend {
    /// `memory`, `SQLite` or `PostgreSQL`.
    pub name: &'static str,
    /// eventsource's stores, when the backend has them.
    pub stores: Option<(Arc<dyn EventStore>, Arc<dyn SnapshotStore>)>,
    /// The raw pool for the floor.
    pub raw: Raw,
}

/// The raw access for the floor.
#[derive(Clone)]
pub enum Raw {
    /// No SQL (the in-memory store).
    None,
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// The peers, on PostgreSQL.
#[derive(Clone)]
pub struct Peers {
    /// The backend name the peers' figures are filed under.
    pub backend: &'static str,
    /// cqrs-es replaying every event.
    pub cqrs_full: Arc<CqrsStore>,
    /// cqrs-es with its snapshot store (every 100 events).
    pub cqrs_snap: Arc<CqrsStore>,
    /// cqrs-es framework over the snapshot store, for the concurrent writers.
    pub cqrs_framework: Arc<cqrs_es::CqrsFramework<CqrsOrder, CqrsStore>>,
    /// esrs.
    #[cfg(feature = "esrs")]
    pub esrs: Arc<esrs::manager::AggregateManager<EsrsStore>>,
}

fn boxed(f: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static) -> RunFuture {
    Box::pin(f)
}

/// Writes streams of these lengths into an in-memory event store and snapshot store.
pub async fn memory_seed(
    events: &dyn EventStore,
    snapshots: &dyn SnapshotStore,
    streams: &[crate::db::Stream],
) -> anyhow::Result<()> {
    use eventsource::Aggregate as _;
    for s in streams {
        let mut version = 0;
        while version < s.n {
            let upto = (version + 10_000).min(s.n);
            let batch: Vec<NewEvent> = (version + 1..=upto)
                .map(|v| {
                    let (event_type, payload) = stored(&event_at(v));
                    NewEvent {
                        event_id: Uuid::new_v4(),
                        event_type: event_type.to_owned(),
                        event_version: 1,
                        payload,
                        metadata: Default::default(),
                        occurred_at: chrono::Utc::now(),
                    }
                })
                .collect();
            events
                .append(
                    crate::model::AGGREGATE_TYPE,
                    s.id,
                    eventsource::ExpectedVersion::Exact(version),
                    &batch,
                )
                .await?;
            version = upto;
        }
        let at = crate::db::snapshot_version(s.n);
        snapshots
            .save(&eventsource::Snapshot {
                aggregate_id: s.id,
                aggregate_type: crate::model::AGGREGATE_TYPE.to_owned(),
                version: at,
                schema_version: 1,
                state: crate::model::state_at(at).to_snapshot()?,
                created_at: chrono::Utc::now(),
            })
            .await?;
    }
    Ok(())
}

/// The most events a snapshot load may replay (see [`crate::db::snapshot_version`]).
const TAIL: u64 = 99;

fn ours_load(
    repo: AggregateRepository<Order>,
    id: Uuid,
    n: u64,
    snapshot: bool,
) -> impl FnMut() -> RunFuture + Send {
    move || {
        let repo = repo.clone();
        boxed(async move {
            let root = repo.load(id).await?;
            let history = root.load_history();
            let loaded = Loaded {
                version: root.version(),
                replayed: history.events_replayed,
                item_count: root.state().item_count,
            };
            loaded.check(n, if snapshot { TAIL } else { n })?;
            anyhow::ensure!(
                history.loaded_from_snapshot == snapshot,
                "snapshot used: {}",
                history.loaded_from_snapshot
            );
            Ok(())
        })
    }
}

/// The load cases of one history length: eventsource with and without snapshots on
/// every backend, the floor on the SQL backends, the peers on PostgreSQL.
pub fn load_cases(backends: &[Backend], peers: Option<&Peers>, id: Uuid, n: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    for backend in backends {
        let b = backend.name;
        if let Some((events, snapshots)) = &backend.stores {
            let plain = AggregateRepository::<Order>::new(Arc::clone(events));
            let snap = AggregateRepository::<Order>::with_stores(
                Arc::clone(events),
                Some(Arc::clone(snapshots)),
            );
            cases.push(Case::new(
                Key::new("load", b, OURS, n),
                ours_load(plain, id, n, false),
            ));
            cases.push(Case::new(
                Key::new("load-snapshot", b, OURS, n),
                ours_load(snap, id, n, true),
            ));
        }
        match &backend.raw {
            Raw::None => {}
            Raw::Postgres(pool) => {
                let p = pool.clone();
                cases.push(Case::new(Key::new("load", b, FLOOR, n), move || {
                    let p = p.clone();
                    boxed(async move { floor::pg_load_full(&p, id).await?.check(n, n) })
                }));
                let p = pool.clone();
                cases.push(Case::new(Key::new("load", b, FLOOR_WIDE, n), move || {
                    let p = p.clone();
                    boxed(async move { floor::pg_load_full_wide(&p, id).await?.check(n, n) })
                }));
                let p = pool.clone();
                cases.push(Case::new(Key::new("load-snapshot", b, FLOOR_2RT, n), move || {
                    let p = p.clone();
                    boxed(async move { floor::pg_load_snapshot_2rt(&p, id).await?.check(n, TAIL) })
                }));
                let p = pool.clone();
                cases.push(Case::new(Key::new("load-snapshot", b, FLOOR_1ST, n), move || {
                    let p = p.clone();
                    boxed(async move { floor::pg_load_snapshot_1st(&p, id).await?.check(n, TAIL) })
                }));
            }
            Raw::Sqlite(pool) => {
                let p = pool.clone();
                cases.push(Case::new(Key::new("load", b, FLOOR, n), move || {
                    let p = p.clone();
                    boxed(async move { floor::sqlite_load_full(&p, id).await?.check(n, n) })
                }));
                let p = pool.clone();
                cases.push(Case::new(Key::new("load", b, FLOOR_WIDE, n), move || {
                    let p = p.clone();
                    boxed(async move { floor::sqlite_load_full_wide(&p, id).await?.check(n, n) })
                }));
                let p = pool.clone();
                cases.push(Case::new(
                    Key::new("load-snapshot", b, FLOOR_2RT, n),
                    move || {
                        let p = p.clone();
                        boxed(async move {
                            floor::sqlite_load_snapshot_2rt(&p, id)
                                .await?
                                .check(n, TAIL)
                        })
                    },
                ));
                let p = pool.clone();
                cases.push(Case::new(
                    Key::new("load-snapshot", b, FLOOR_1ST, n),
                    move || {
                        let p = p.clone();
                        boxed(async move {
                            floor::sqlite_load_snapshot_1st(&p, id)
                                .await?
                                .check(n, TAIL)
                        })
                    },
                ));
            }
        }
    }
    if let Some(peers) = peers {
        for (what, store, max) in [
            ("load", Arc::clone(&peers.cqrs_full), n),
            ("load-snapshot", Arc::clone(&peers.cqrs_snap), TAIL),
        ] {
            cases.push(Case::new(
                Key::new(what, peers.backend, CQRS, n),
                move || {
                    let store = Arc::clone(&store);
                    boxed(async move {
                        let context = store
                            .load_aggregate(&id.to_string())
                            .await
                            .map_err(|e| anyhow!("cqrs-es load: {e}"))?;
                        Loaded {
                            version: u64::try_from(context.current_sequence)?,
                            replayed: context.aggregate.applied,
                            item_count: context.aggregate.state.item_count,
                        }
                        .check(n, max)
                    })
                },
            ));
        }
        #[cfg(feature = "esrs")]
        {
            let manager = Arc::clone(&peers.esrs);
            cases.push(Case::new(
                Key::new("load", peers.backend, ESRS, n),
                move || {
                    let manager = Arc::clone(&manager);
                    boxed(async move {
                        let state = manager
                            .load(id)
                            .await
                            .map_err(|e| anyhow!("esrs load: {e}"))?
                            .ok_or_else(|| anyhow!("esrs: no events"))?;
                        Loaded {
                            version: u64::try_from(*state.sequence_number())?,
                            replayed: n,
                            item_count: state.inner().item_count,
                        }
                        .check(n, n)
                    })
                },
            ));
        }
    }
    cases
}

/// The save modes compared.
pub const SAVE_MODES: [&str; 3] = [
    "no snapshot store",
    "sync snapshots",
    "background snapshots",
];

/// Repositories for each save mode (snapshot policy: every 100 events).
pub fn save_repos(
    events: &Arc<dyn EventStore>,
    snapshots: &Arc<dyn SnapshotStore>,
) -> anyhow::Result<Vec<(&'static str, AggregateRepository<Order>)>> {
    Ok(vec![
        (
            SAVE_MODES[0],
            AggregateRepository::<Order>::new(Arc::clone(events)),
        ),
        (
            SAVE_MODES[1],
            AggregateRepository::<Order>::builder(Arc::clone(events))
                .snapshot_store(Arc::clone(snapshots))
                .threshold(100)
                .mode(SnapshotMode::Sync)
                .build()?,
        ),
        (
            SAVE_MODES[2],
            AggregateRepository::<Order>::builder(Arc::clone(events))
                .snapshot_store(Arc::clone(snapshots))
                .threshold(100)
                .mode(SnapshotMode::Background)
                .build()?,
        ),
    ])
}

/// Save cases: a new aggregate with `batch` events, saved once, per backend and mode;
/// the floor's plain inserts; the peers' commits.
pub fn save_cases(
    backends: &[Backend],
    peers: Option<&Peers>,
    batch: u64,
) -> anyhow::Result<Vec<Case>> {
    let what = if batch == 1 { "save-1" } else { "save-100" };
    let mut cases = Vec::new();
    for backend in backends {
        let b = backend.name;
        if let Some((events, snapshots)) = &backend.stores {
            for (mode, repo) in save_repos(events, snapshots)? {
                let run_repo = repo.clone();
                let case = Case::new(
                    Key::new(what, b, format!("{OURS}, {mode}"), batch),
                    move || {
                        let repo = run_repo.clone();
                        boxed(async move {
                            let mut root = repo.create_new(Uuid::new_v4());
                            for v in 1..=batch {
                                root.record(event_at(v));
                            }
                            repo.save(&mut root).await?;
                            Ok(())
                        })
                    },
                )
                .settle(move || {
                    let repo = repo.clone();
                    boxed(async move {
                        repo.await_pending_snapshots().await;
                        Ok(())
                    })
                });
                cases.push(case);
            }
        }
        match &backend.raw {
            Raw::None => {}
            Raw::Postgres(pool) => {
                let p = pool.clone();
                cases.push(Case::new(Key::new(what, b, FLOOR, batch), move || {
                    let p = p.clone();
                    boxed(async move { floor::pg_append(&p, Uuid::new_v4(), batch).await })
                }));
                let p = pool.clone();
                cases.push(Case::new(Key::new(what, b, FLOOR_CTE, batch), move || {
                    let p = p.clone();
                    boxed(async move { floor::pg_append_cte(&p, Uuid::new_v4(), batch).await })
                }));
                if batch == 1 {
                    let p = pool.clone();
                    cases.push(Case::new(Key::new(what, b, FLOOR_CTE1, batch), move || {
                        let p = p.clone();
                        boxed(async move { floor::pg_append_cte_scalar(&p, Uuid::new_v4()).await })
                    }));
                }
            }
            Raw::Sqlite(pool) => {
                let p = pool.clone();
                cases.push(Case::new(Key::new(what, b, FLOOR, batch), move || {
                    let p = p.clone();
                    boxed(async move { floor::sqlite_append(&p, Uuid::new_v4(), batch).await })
                }));
            }
        }
    }
    if let Some(peers) = peers {
        for (who, store) in [
            (
                format!("{CQRS}, no snapshot store"),
                Arc::clone(&peers.cqrs_full),
            ),
            (
                format!("{CQRS}, snapshot store"),
                Arc::clone(&peers.cqrs_snap),
            ),
        ] {
            cases.push(Case::new(
                Key::new(what, peers.backend, who, batch),
                move || {
                    let store = Arc::clone(&store);
                    boxed(async move {
                        let id = Uuid::new_v4();
                        let events = (1..=batch).map(peer_event_at).collect();
                        store
                            .commit(events, peers::cqrs_new_context(id), HashMap::new())
                            .await
                            .map_err(|e| anyhow!("cqrs-es commit: {e}"))?;
                        Ok(())
                    })
                },
            ));
        }
        #[cfg(feature = "esrs")]
        {
            let manager = Arc::clone(&peers.esrs);
            cases.push(Case::new(
                Key::new(what, peers.backend, ESRS, batch),
                move || {
                    let manager = Arc::clone(&manager);
                    boxed(async move {
                        let events = (1..=batch).map(peer_event_at).collect();
                        manager
                            .handle_command(esrs::AggregateState::with_id(Uuid::new_v4()), events)
                            .await
                            .map_err(|e| anyhow!("esrs persist: {e}"))?
                            .map_err(|e| anyhow!("esrs refused: {e}"))?;
                        Ok(())
                    })
                },
            ));
        }
    }
    Ok(cases)
}

/// One throughput figure.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Backend.
    pub backend: &'static str,
    /// Who.
    pub who: String,
    /// Events appended per second (median over the repetitions).
    pub events_per_second: f64,
    /// Every repetition's figure.
    pub runs: Vec<f64>,
}

/// `writers` tasks, each on its own new aggregate, each running `cycles` commands of
/// load + record one event + save; the wall time of the whole gives events per second.
async fn writers_run<F, Fut>(writers: usize, cycles: u64, cycle: F) -> anyhow::Result<f64>
where
    F: Fn(Uuid, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let cycle = Arc::new(cycle);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let cycle = Arc::clone(&cycle);
        tasks.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            for i in 0..cycles {
                cycle(id, i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    Ok((writers as f64 * cycles as f64) / elapsed.as_secs_f64())
}

/// Concurrent writers on every backend and peer, `repeat` times each, interleaved.
pub async fn throughput(
    backends: &[Backend],
    peers: Option<&Peers>,
    writers: usize,
    cycles: u64,
    repeat: usize,
) -> anyhow::Result<Vec<Throughput>> {
    let mut results: Vec<Throughput> = Vec::new();
    let mut push = |backend: &'static str, who: &str, value: f64| match results
        .iter_mut()
        .find(|t| t.backend == backend && t.who == who)
    {
        Some(t) => t.runs.push(value),
        None => results.push(Throughput {
            backend,
            who: who.to_owned(),
            events_per_second: 0.0,
            runs: vec![value],
        }),
    };
    for _ in 0..repeat {
        for backend in backends {
            let Some((events, snapshots)) = &backend.stores else {
                continue;
            };
            let repo = AggregateRepository::<Order>::builder(Arc::clone(events))
                .snapshot_store(Arc::clone(snapshots))
                .threshold(100)
                .mode(SnapshotMode::Sync)
                .build()?;
            let value = writers_run(writers, cycles, move |id, _| {
                let repo = repo.clone();
                async move {
                    let mut root = repo.load_or_create(id).await?;
                    let next = root.version() + 1;
                    root.record(event_at(next));
                    repo.save(&mut root).await?;
                    Ok(())
                }
            })
            .await?;
            push(
                backend.name,
                &format!("{OURS}, sync snapshots every 100"),
                value,
            );
        }
        if let Some(peers) = peers {
            let framework = Arc::clone(&peers.cqrs_framework);
            let value = writers_run(writers, cycles, move |id, i| {
                let framework = Arc::clone(&framework);
                async move {
                    framework
                        .execute(
                            &id.to_string(),
                            peers::AddEvents(vec![peer_event_at(i + 1)]),
                        )
                        .await
                        .map_err(|e| anyhow!("cqrs-es execute: {e}"))
                }
            })
            .await?;
            push(
                peers.backend,
                &format!("{CQRS}, snapshot store every 100"),
                value,
            );
            #[cfg(feature = "esrs")]
            {
                let manager = Arc::clone(&peers.esrs);
                let value = writers_run(writers, cycles, move |id, i| {
                    let manager = Arc::clone(&manager);
                    async move {
                        let state = manager
                            .load(id)
                            .await
                            .map_err(|e| anyhow!("esrs load: {e}"))?
                            .unwrap_or_else(|| esrs::AggregateState::with_id(id));
                        manager
                            .handle_command(state, vec![peer_event_at(i + 1)])
                            .await
                            .map_err(|e| anyhow!("esrs persist: {e}"))?
                            .map_err(|e| anyhow!("esrs refused: {e}"))?;
                        Ok(())
                    }
                })
                .await?;
                push(peers.backend, ESRS, value);
            }
        }
    }
    for t in &mut results {
        let mut sorted = t.runs.clone();
        sorted.sort_by(f64::total_cmp);
        t.events_per_second = sorted[sorted.len() / 2];
    }
    Ok(results)
}

/// Re-exported for main: the interleaved runner.
pub use measure::interleaved;
