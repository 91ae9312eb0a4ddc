//! The peers: the same order, events and fold written for cqrs-es (with postgres-es) and
//! for esrs, on the same PostgreSQL database, in their own tables.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::{Stream, snapshot_version};
use crate::model::{AGGREGATE_TYPE, Order, OrderCreated, OrderItemAdded, event_at, fold, state_at};

/// The peers' event: the same two payload types; serde's externally tagged enum, as
/// both peers store an event (`{"OrderItemAdded": {...}}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerEvent {
    /// See [`OrderCreated`].
    OrderCreated(OrderCreated),
    /// See [`OrderItemAdded`].
    OrderItemAdded(OrderItemAdded),
}

impl From<crate::model::OrderEvent> for PeerEvent {
    fn from(e: crate::model::OrderEvent) -> Self {
        match e {
            crate::model::OrderEvent::OrderCreated(e) => PeerEvent::OrderCreated(e),
            crate::model::OrderEvent::OrderItemAdded(e) => PeerEvent::OrderItemAdded(e),
        }
    }
}

fn fold_peer(state: &mut Order, event: PeerEvent) {
    let event = match event {
        PeerEvent::OrderCreated(e) => crate::model::OrderEvent::OrderCreated(e),
        PeerEvent::OrderItemAdded(e) => crate::model::OrderEvent::OrderItemAdded(e),
    };
    fold(state, &event);
}

/// The event at `version`, as the peers store it.
pub fn peer_event_at(version: u64) -> PeerEvent {
    event_at(version).into()
}

/// A command refused (never happens: the benchmark's commands always succeed).
#[derive(Debug)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

// ---------------------------------------------------------------------------------------
// cqrs-es 0.5 + postgres-es 0.5
// ---------------------------------------------------------------------------------------

/// postgres-es's schema (its `db/init.sql`), under table names of the benchmark's own.
pub const CQRS_SCHEMA: &str = "
CREATE TABLE cqrs_events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        json NOT NULL,
    metadata       json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE cqrs_snapshots (
    aggregate_type   text NOT NULL,
    aggregate_id     text NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
";

impl cqrs_es::DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        match self {
            PeerEvent::OrderCreated(_) => "OrderCreated".to_owned(),
            PeerEvent::OrderItemAdded(_) => "OrderItemAdded".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// The order for cqrs-es: the same state, plus a count of the events applied since it
/// was created or restored, which tells whether a load really started from the snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CqrsOrder {
    /// The same state as eventsource's.
    pub state: Order,
    /// Events applied since this value was created or deserialized (not stored).
    #[serde(skip)]
    pub applied: u64,
}

/// Append these events.
pub struct AddEvents(pub Vec<PeerEvent>);

impl cqrs_es::Aggregate for CqrsOrder {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = AddEvents;
    type Event = PeerEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(
        &mut self,
        command: AddEvents,
        _service: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Refused> {
        for event in command.0 {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PeerEvent) {
        fold_peer(&mut self.state, event);
        self.applied += 1;
    }
}

/// postgres-es's repository over the benchmark's tables.
pub fn cqrs_repo(pool: &sqlx08::PgPool) -> postgres_es::PostgresEventRepository {
    postgres_es::PostgresEventRepository::new(pool.clone())
        .with_tables("cqrs_events", "cqrs_snapshots")
}

/// cqrs-es's store that replays every event.
pub type CqrsStore =
    cqrs_es::persist::PersistedEventStore<postgres_es::PostgresEventRepository, CqrsOrder>;

/// An event-sourced store (no snapshots).
pub fn cqrs_event_store(pool: &sqlx08::PgPool) -> CqrsStore {
    cqrs_es::persist::PersistedEventStore::new_event_store(cqrs_repo(pool))
}

/// A store with snapshots every 100 events.
pub fn cqrs_snapshot_store(pool: &sqlx08::PgPool) -> CqrsStore {
    cqrs_es::persist::PersistedEventStore::new_snapshot_store(cqrs_repo(pool), 100)
}

/// A fresh context for a new aggregate, as `load_aggregate` returns for an unknown id
/// (built here so that a timed commit does not include a load).
pub fn cqrs_new_context(id: Uuid) -> cqrs_es::persist::EventStoreAggregateContext<CqrsOrder> {
    cqrs_es::persist::EventStoreAggregateContext {
        aggregate_id: id.to_string(),
        aggregate: CqrsOrder::default(),
        current_sequence: 0,
        current_snapshot: None,
    }
}

/// Writes these streams into cqrs-es's table, through the sqlx 0.9 pool.
pub async fn cqrs_seed_events(pool: &PgPool, streams: &[Stream]) -> anyhow::Result<()> {
    let all: Vec<(Uuid, u64)> = streams
        .iter()
        .flat_map(|s| (1..=s.n).map(move |v| (s.id, v)))
        .collect();
    for chunk in all.chunks(10_000) {
        let mut aggregates = Vec::with_capacity(chunk.len());
        let mut sequences = Vec::with_capacity(chunk.len());
        let mut types = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        for &(id, version) in chunk {
            let event = peer_event_at(version);
            aggregates.push(id.to_string());
            sequences.push(i64::try_from(version)?);
            types.push(cqrs_es::DomainEvent::event_type(&event));
            payloads.push(serde_json::to_string(&event)?);
        }
        sqlx::query(
            "INSERT INTO cqrs_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT $1, a, s, t, '1.0', p::json, '{}'::json \
             FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[]) AS u(a, s, t, p)",
        )
        .bind(AGGREGATE_TYPE)
        .bind(&aggregates)
        .bind(&sequences)
        .bind(&types)
        .bind(&payloads)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Stores cqrs-es's snapshot of each stream at [`snapshot_version`], in its own format.
pub async fn cqrs_seed_snapshots(pool: &PgPool, streams: &[Stream]) -> anyhow::Result<()> {
    for s in streams {
        let version = snapshot_version(s.n);
        let payload = serde_json::to_string(&CqrsOrder {
            state: state_at(version),
            applied: 0,
        })?;
        sqlx::query(
            "INSERT INTO cqrs_snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
             VALUES ($1, $2, $3, $4, $5::json)",
        )
        .bind(AGGREGATE_TYPE)
        .bind(s.id.to_string())
        .bind(i64::try_from(version)?)
        .bind(i64::try_from(version / 100 + 1)?)
        .bind(payload)
        .execute(pool)
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// esrs 0.18
// ---------------------------------------------------------------------------------------

#[cfg(feature = "esrs")]
pub use esrs_peer::*;

/// esrs needs OpenSSL (its sqlx uses native-tls), so it is built only with the `esrs`
/// feature.
#[cfg(feature = "esrs")]
mod esrs_peer {
    use super::*;
    use chrono::Utc;

    /// The order for esrs.
    pub struct EsrsOrder;

    impl esrs::Aggregate for EsrsOrder {
        const NAME: &'static str = "bench_order";
        type State = Order;
        type Command = Vec<PeerEvent>;
        type Event = PeerEvent;
        type Error = Refused;

        fn handle_command(
            _state: &Order,
            command: Vec<PeerEvent>,
        ) -> Result<Vec<PeerEvent>, Refused> {
            Ok(command)
        }

        fn apply_event(mut state: Order, payload: PeerEvent) -> Order {
            fold_peer(&mut state, payload);
            state
        }
    }

    /// esrs's store (its builder creates its table `bench_order_events`).
    pub type EsrsStore = esrs::store::postgres::PgStore<EsrsOrder>;

    /// Builds esrs's store, creating its table.
    pub async fn esrs_store(pool: &sqlx08::PgPool) -> anyhow::Result<EsrsStore> {
        Ok(
            esrs::store::postgres::PgStoreBuilder::<EsrsOrder>::new(pool.clone())
                .try_build()
                .await?,
        )
    }

    /// Writes these streams into esrs's table, through the sqlx 0.9 pool.
    pub async fn esrs_seed_events(pool: &PgPool, streams: &[Stream]) -> anyhow::Result<()> {
        let now = Utc::now();
        let all: Vec<(Uuid, u64)> = streams
            .iter()
            .flat_map(|s| (1..=s.n).map(move |v| (s.id, v)))
            .collect();
        for chunk in all.chunks(10_000) {
            let mut ids = Vec::with_capacity(chunk.len());
            let mut aggregates = Vec::with_capacity(chunk.len());
            let mut sequences = Vec::with_capacity(chunk.len());
            let mut payloads = Vec::with_capacity(chunk.len());
            for &(id, version) in chunk {
                ids.push(Uuid::new_v4());
                aggregates.push(id);
                sequences.push(i32::try_from(version)?);
                payloads.push(serde_json::to_string(&peer_event_at(version))?);
            }
            sqlx::query(
            "INSERT INTO bench_order_events (id, aggregate_id, payload, occurred_on, sequence_number, version) \
             SELECT i, a, p::jsonb, $1, s, NULL \
             FROM UNNEST($2::uuid[], $3::uuid[], $4::int[], $5::text[]) AS u(i, a, s, p)",
        )
        .bind(now)
        .bind(&ids)
        .bind(&aggregates)
        .bind(&sequences)
        .bind(&payloads)
        .execute(pool)
        .await?;
        }
        Ok(())
    }
}
