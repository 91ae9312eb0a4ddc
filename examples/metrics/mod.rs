//! The crate's metrics exposed for Prometheus: the application installs the
//! `metrics-exporter-prometheus` recorder, eventsource reports to it, and an axum route
//! serves the text format at `/metrics`.
//!
//! [`start`] installs the recorder, runs a small workload on SQLite (commands, loads
//! from snapshots, a missed snapshot, a subscription) so that every family has a value,
//! and serves the endpoint; `cargo run --example metrics` runs it as a program.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use eventsource::feed::Envelope;
use eventsource::prelude::*;
use eventsource::subscription::{Projection, Subscription};
use eventsource::{SqliteEventStore, SqliteSnapshotStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum WalletEvent {
    Deposited(Deposited),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "Wallet", event = WalletEvent)]
#[snapshot(schema_version = 1, every = 10, mode = "background")]
pub struct Wallet {
    pub cents: u64,
}

impl Apply<Deposited> for Wallet {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
    }
}

struct Total(u64);

#[eventsource::async_trait]
impl<C: Send + ?Sized> Projection<C> for Total {
    type Event = WalletEvent;

    async fn apply(&mut self, _: &mut C, e: Envelope<WalletEvent>) -> Result<(), BoxError> {
        let WalletEvent::Deposited(d) = e.event;
        self.0 += d.cents;
        Ok(())
    }
}

/// A running metrics endpoint.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The server.
    pub server: tokio::task::JoinHandle<()>,
}

/// Installs the Prometheus recorder (once per process), runs the workload, and serves
/// `/metrics` on `addr` (port 0 for any free port).
pub async fn start(addr: SocketAddr) -> Result<Running, BoxError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    eventsource::metrics::describe();
    workload().await?;
    let app = Router::new().route("/metrics", get(move || render(handle.clone())));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Running { addr, server })
}

async fn render(handle: PrometheusHandle) -> String {
    handle.render()
}

/// Commands on five wallets (snapshots every 10 events, in the background), loads from
/// the snapshots, one load of a wallet without one, and a subscription catching up.
async fn workload() -> Result<(), BoxError> {
    let store = SqliteEventStore::open(":memory:").await?;
    let snapshots = SqliteSnapshotStore::new(store.pool().clone());
    let repo = Wallet::repository(Arc::new(store.clone()), Arc::new(snapshots));
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for round in 0..12 {
        for id in &ids {
            repo.execute_or_create(
                *id,
                move |_: &Wallet| Ok::<_, String>(Deposited { cents: round + 1 }),
                Default::default(),
            )
            .await?;
        }
    }
    repo.await_pending_snapshots().await;
    for id in &ids {
        repo.load(*id).await?;
    }
    let fresh = Uuid::new_v4();
    repo.execute_new(fresh, |_: &Wallet| Ok::<_, String>(Deposited { cents: 1 }))
        .await?;
    repo.load(fresh).await?;
    Subscription::new("wallet-totals", store.clone())
        .aggregate_types([Wallet::TYPE])
        .catch_up(Total(0))
        .await?;
    Ok(())
}
