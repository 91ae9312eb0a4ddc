//! Subscriptions: named, checkpointed consumers of the [feed](crate::feed), and the
//! projections they feed.
//!
//! A [`Subscription`] has a name and a durable checkpoint per partition, kept in the
//! store's own database (`subscription_checkpoints`). It catches up in batches, then
//! follows live: PostgreSQL wakes it with `LISTEN`/`NOTIFY`
//! ([`NOTIFY_CHANNEL`](crate::postgres::NOTIFY_CHANNEL)), SQLite and memory with an
//! in-process signal, and every backend also polls, so a lost notification only delays
//! it. Restarted, it resumes at its checkpoint; stopped, it finishes the batch in hand.
//!
//! # Projections and exactly-once effects
//!
//! A [`Projection`] names the event enum it reads and handles each event with a `match`:
//! the compiler then checks that every event has a handler (unless you write a `_` arm)
//! and that every event named exists.
//!
//! Each batch runs in one transaction of the store's database, and the checkpoint moves
//! in that same transaction. The projection's `apply` gets that transaction's connection
//! (`sqlx::PgConnection` on PostgreSQL, `sqlx::SqliteConnection` on SQLite, `()` in
//! memory): writes made through it commit with the checkpoint or not at all, so a read
//! model in the same database sees every event's effect exactly once, even if the process
//! dies mid-batch. The checkpoint moves by compare-and-set, so two processes running the
//! same subscription by mistake cannot both commit a batch.
//!
//! Effects anywhere else (a message broker, an HTTP call, another database) are
//! at-least-once: after a crash the last batch runs again. Use
//! [`Envelope::event_id`](crate::feed::Envelope::event_id) as the idempotency key.
//!
//! # Failures
//!
//! A handler error (or an event that does not decode) rolls the batch back; the events
//! before it are committed again, and the failing event is retried alone with backoff, as
//! the [`RetryPolicy`] says. When its attempts are used up, the policy's
//! [`OnExhausted`] decides: [`Park`](OnExhausted::Park) records it in
//! `subscription_parked` with its error and moves on, to be
//! [retried](Subscription::retry_parked) or [skipped](Subscription::skip_parked) by event
//! id later; [`Stop`](OnExhausted::Stop) stops the subscription with
//! [`Error::HandlerFailed`], its checkpoint before the event. Nothing is dropped
//! silently, and a poison event never blocks silently: it is logged at every attempt.
//! A parked event is out of order by nature: later events of its aggregate are handled
//! before it is retried.
//!
//! # Several processes
//!
//! [`partitions(n)`](Subscription::partitions) splits a subscription into `n` partitions
//! by aggregate id, each with its own checkpoint, so the events of one aggregate stay in
//! order. Processes that run it share the partitions through leases in the database:
//! each takes a fair share, renews its leases, and takes over those of a process that
//! stopped renewing once they expire (within the [lease time](Subscription::lease) and
//! one renewal interval).
//!
//! ```
//! use eventsource::feed::Envelope;
//! use eventsource::prelude::*;
//! use eventsource::subscription::{Projection, Subscription};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Placed { pub total: u64 }
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Cancelled;
//!
//! #[derive(DomainEvent, Clone, Debug)]
//! pub enum OrderEvent { Placed(Placed), Cancelled(Cancelled) }
//!
//! /// Revenue of the orders not cancelled, kept in memory.
//! #[derive(Default)]
//! struct Revenue { total: u64, orders: std::collections::HashMap<uuid::Uuid, u64> }
//!
//! #[async_trait::async_trait]
//! impl<C: Send> Projection<C> for Revenue {
//!     type Event = OrderEvent;
//!
//!     async fn apply(&mut self, _: &mut C, e: Envelope<OrderEvent>) -> Result<(), BoxError> {
//!         match e.event {
//!             OrderEvent::Placed(p) => {
//!                 self.total += p.total;
//!                 self.orders.insert(e.aggregate_id, p.total);
//!             }
//!             OrderEvent::Cancelled(_) => {
//!                 self.total -= self.orders.remove(&e.aggregate_id).unwrap_or(0);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eventsource::Result<()> {
//! let store = InMemoryEventStore::new();
//! let id = uuid::Uuid::new_v4();
//! # use eventsource::{EventStore, ExpectedVersion, NewEvent};
//! # let event = |t: &str, p: &str| NewEvent { event_id: uuid::Uuid::new_v4(), event_type: t.into(),
//! #     event_version: 1, payload: p.into(), metadata: Default::default(), occurred_at: chrono::Utc::now() };
//! store.append("Order", id, ExpectedVersion::Exact(0), &[event("Placed", r#"{"total":30}"#)]).await?;
//!
//! let revenue = Subscription::new("revenue", store.clone())
//!     .aggregate_types(["Order"])
//!     .catch_up(Revenue::default())
//!     .await?;
//! assert_eq!(revenue.total, 30);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::ops::DerefMut;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{BoxError, Error, Result};
use crate::event::DomainEvent;
use crate::feed::{Checkpoint, Envelope, FeedEvent};
use crate::store::EventStore;

mod runner;

pub use runner::{Subscription, SubscriptionHandle, SubscriptionStatus};

/// A read model fed by a [`Subscription`]: it handles each event of its enum, in feed
/// order, with the connection of the batch's transaction.
///
/// `C` is the store's [`SubscriptionStore::Connection`]. Implement it for every `C`
/// (`impl<C: Send> Projection<C> for ...`) when the projection keeps its state elsewhere.
#[async_trait]
pub trait Projection<C: Send + ?Sized>: Send {
    /// The events it reads. The subscription reads only their types from the feed.
    type Event: DomainEvent;

    /// Handles one event. An error rolls back the batch's transaction and is retried as
    /// the subscription's [`RetryPolicy`] says.
    async fn apply(&mut self, conn: &mut C, event: Envelope<Self::Event>) -> Result<(), BoxError>;
}

/// What a subscription does with each feed event: a [`Projection`] behind a decoder, or
/// a consumer of raw events such as a publisher.
#[async_trait]
pub trait Consumer<C: Send + ?Sized>: Send {
    /// The event types it reads, pushed into the feed query; `None` for every type.
    fn event_types(&self) -> Option<Vec<String>>;

    /// Handles one event.
    async fn consume(&mut self, conn: &mut C, event: &FeedEvent) -> Result<(), BoxError>;

    /// Called after the batch's last event, before its transaction commits: a consumer
    /// that sends asynchronously waits here for its acknowledgements. An error rolls the
    /// batch back, and the whole batch runs again after a backoff.
    async fn before_commit(&mut self, conn: &mut C) -> Result<(), BoxError> {
        let _ = conn;
        Ok(())
    }

    /// Called after a batch's transaction committed, with the checkpoint it moved to.
    async fn committed(&mut self, checkpoint: Checkpoint) -> Result<(), BoxError> {
        let _ = checkpoint;
        Ok(())
    }
}

/// A [`Projection`] as a [`Consumer`]: decodes each event into its enum first.
#[derive(Debug)]
pub struct Projected<P>(pub P);

#[async_trait]
impl<C, P> Consumer<C> for Projected<P>
where
    C: Send + ?Sized,
    P: Projection<C>,
{
    fn event_types(&self) -> Option<Vec<String>> {
        Some(
            <P::Event as DomainEvent>::decodable_types()
                .map(str::to_owned)
                .collect(),
        )
    }

    async fn consume(&mut self, conn: &mut C, event: &FeedEvent) -> Result<(), BoxError> {
        for envelope in Envelope::<P::Event>::decode_all(event)? {
            self.0.apply(conn, envelope).await?;
        }
        Ok(())
    }
}

/// How a subscription retries an event its handler fails on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles at each attempt after that.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// What happens when the attempts are used up.
    pub on_exhausted: OnExhausted,
}

impl Default for RetryPolicy {
    /// 5 attempts, 100 ms doubling up to 5 s, then park.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            on_exhausted: OnExhausted::Park,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (after `attempt` failures), with up to a
    /// quarter of jitter so that many consumers do not retry in step.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let jitter = u64::from(Uuid::new_v4().as_u128() as u16) * base.as_micros() as u64
            / (4 * u64::from(u16::MAX));
        base.saturating_sub(Duration::from_micros(jitter))
    }
}

/// What a subscription does with an event its handler keeps failing on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExhausted {
    /// Record it in `subscription_parked` with its error, and go on with the next event.
    Park,
    /// Stop the subscription with [`Error::HandlerFailed`]; its checkpoint stays before
    /// the event, so it is tried again when the subscription restarts.
    Stop,
}

/// An event a subscription's handler gave up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEvent {
    /// The subscription.
    pub subscription: String,
    /// The event.
    pub event_id: Uuid,
    /// Its position in the feed.
    pub position: u64,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: Uuid,
    /// The partition that parked it.
    pub partition: u32,
    /// How many times it was tried.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// A store that can keep subscriptions: checkpoints, parked events and leases in its own
/// database, and a transaction that a batch's effects and its checkpoint share.
///
/// Implemented by the three stores of this crate; each backend's conformance tests check
/// the same behaviour.
#[async_trait]
pub trait SubscriptionStore: EventStore + Clone + 'static {
    /// What a projection writes through: the connection of the batch's transaction.
    type Connection: Send + ?Sized;
    /// An open transaction.
    type Transaction: DerefMut<Target = Self::Connection> + Send;

    /// Begins a transaction.
    async fn begin(&self) -> Result<Self::Transaction>;

    /// The partition's checkpoint ([`Checkpoint::START`] the first time; the row is
    /// created).
    async fn checkpoint(&self, subscription: &str, partition: u32) -> Result<Checkpoint>;

    /// Moves the partition's checkpoint from `from` to `to` in `tx`, records `park` there
    /// if given, and commits. `Ok(false)`, with everything rolled back, when the stored
    /// checkpoint was not `from` (another process moved it).
    async fn commit(
        &self,
        tx: Self::Transaction,
        subscription: &str,
        partition: u32,
        from: Checkpoint,
        to: Checkpoint,
        park: Option<&ParkedEvent>,
    ) -> Result<bool>;

    /// Sets a partition's checkpoint, whatever it was (an operator's reset).
    async fn set_checkpoint(
        &self,
        subscription: &str,
        partition: u32,
        checkpoint: Checkpoint,
    ) -> Result<()>;

    /// The subscription's parked events, in feed position order.
    async fn parked(&self, subscription: &str) -> Result<Vec<ParkedEvent>>;

    /// A parked event and the event itself, read from the log.
    async fn parked_event(
        &self,
        subscription: &str,
        event_id: Uuid,
    ) -> Result<Option<(ParkedEvent, FeedEvent)>>;

    /// Removes a parked event in `tx` and commits. `Ok(false)` when it was not parked.
    async fn unpark(
        &self,
        tx: Self::Transaction,
        subscription: &str,
        event_id: Uuid,
    ) -> Result<bool>;

    /// Records `owner` as a live member for `ttl` and renews its leases; returns the
    /// partitions it holds and how many members are live (itself included).
    async fn heartbeat(
        &self,
        subscription: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Vec<u32>, usize)>;

    /// Takes `partition` for `owner` if it is free or its lease expired; `true` if taken.
    async fn claim(
        &self,
        subscription: &str,
        owner: &str,
        partition: u32,
        ttl: Duration,
    ) -> Result<bool>;

    /// Gives up `owner`'s lease on `partition` (and with `partition` `None`, its
    /// membership and every lease).
    async fn release(&self, subscription: &str, owner: &str, partition: Option<u32>) -> Result<()>;

    /// Something to wait on for new events; see [`Wakeup`].
    async fn wakeup(&self) -> Wakeup {
        Wakeup::new(self.append_signal(), None)
    }

    /// How many committed events follow `checkpoint` in the feed, for the
    /// `eventsource_subscription_lag_events` metric; `None` (the default) when the store
    /// cannot tell cheaply.
    async fn events_after(&self, checkpoint: Checkpoint) -> Option<u64> {
        let _ = checkpoint;
        None
    }

    /// What holds the feed back, for the stall warning (PostgreSQL names the oldest
    /// running transaction).
    async fn describe_horizon(&self) -> Option<String> {
        None
    }
}

/// A source of new-event wake-ups: the store's in-process signal and, on PostgreSQL, a
/// `LISTEN` connection. Either may be missing; waiting is always bounded.
pub struct Wakeup {
    signal: Option<tokio::sync::watch::Receiver<u64>>,
    #[cfg(feature = "postgres")]
    listener: Option<sqlx::postgres::PgListener>,
}

impl fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wakeup")
            .field("signal", &self.signal.is_some())
            .finish_non_exhaustive()
    }
}

impl Wakeup {
    /// A wake-up on the store's signal and, on PostgreSQL, a listener.
    pub fn new(
        signal: Option<tokio::sync::watch::Receiver<u64>>,
        #[cfg(feature = "postgres")] listener: Option<sqlx::postgres::PgListener>,
        #[cfg(not(feature = "postgres"))] _listener: Option<std::convert::Infallible>,
    ) -> Self {
        let mut signal = signal;
        if let Some(s) = signal.as_mut() {
            s.mark_unchanged();
        }
        Wakeup {
            signal,
            #[cfg(feature = "postgres")]
            listener,
        }
    }

    /// Waits until something may have been appended, or `limit` passes.
    pub async fn wait(&mut self, limit: Duration) {
        let signal = async {
            match self.signal.as_mut() {
                Some(s) => {
                    if s.changed().await.is_err() {
                        std::future::pending::<()>().await
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(feature = "postgres")]
        let listen = async {
            match self.listener.as_mut() {
                Some(l) => {
                    if let Err(e) = l.recv().await {
                        tracing::debug!(error = %e, "eventsource: LISTEN connection failed; polling");
                        tokio::time::sleep(limit).await;
                    }
                    // Drain what else arrived: one read serves them all.
                    while l.next_buffered().is_some() {}
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(feature = "postgres"))]
        let listen = std::future::pending::<()>();
        let _ = crate::time::within(limit, async {
            tokio::select! {
                () = signal => {}
                () = listen => {}
            }
        })
        .await;
    }
}

/// The partition an aggregate id falls in, out of `partitions`.
pub fn partition_of(aggregate_id: Uuid, partitions: u32) -> u32 {
    (aggregate_id.as_u128() % u128::from(partitions.max(1))) as u32
}

/// Checks a subscription name as the stores check names.
pub(crate) fn check_name(name: &str) -> Result<()> {
    crate::store::checks::name("subscription", name)
}

/// Keeps the lint quiet where `Error` is only used by some features.
#[allow(dead_code)]
fn _uses(_: Error) {}
