//! The global feed: every committed event of a store, in one order that never changes.
//!
//! A consumer reads the feed page by page with
//! [`EventStore::read_feed`](crate::EventStore::read_feed), keeping the
//! [`Checkpoint`] of the last page; read again from that checkpoint, it gets every event
//! committed since, exactly once, and never an event that belongs before the checkpoint.
//! [Subscriptions](crate::subscription) do this for you, durably.
//!
//! # How each backend keeps that promise
//!
//! - **PostgreSQL** hands out positions from a sequence when a row is inserted, so two
//!   appends that overlap can commit out of position order: a reader that stopped at
//!   position 11 while 10 was still in flight would miss 10 for ever. The feed is
//!   therefore ordered by the id of the transaction that wrote each event, then by
//!   position, and a read only shows transactions older than the oldest transaction still
//!   running in the database cluster (`pg_snapshot_xmin` of the reader's snapshot). Every
//!   transaction below that horizon has finished, so nothing can appear behind a
//!   checkpoint. The cost to writers is one `xid8` column filled by a default and one
//!   index; appends take no extra lock and no extra round trip. The cost to readers: a
//!   transaction that has written anything, anywhere in the cluster, and stays open (a
//!   long batch job, a session left `idle in transaction`, even one that never touches
//!   `events`) holds the horizon back, and the feed shows nothing newer until it ends.
//!   Read-only transactions take no transaction id and hold nothing back. The page says so ([`FeedPage::held_back`]); a
//!   subscription logs a warning naming the transaction and counts the stall. It never
//!   skips.
//! - **SQLite** lets one writer in at a time, from `BEGIN IMMEDIATE` to `COMMIT`, so
//!   positions commit in order and the feed is position order.
//! - **Memory**: appends happen under one lock; position order.
//!
//! # Typed events
//!
//! [`Envelope::decode`] turns a [`FeedEvent`] into an event of a [`DomainEvent`] enum,
//! with the envelope (checkpoint, position, aggregate id, version, metadata, time)
//! beside it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eventsource::Result<()> {
//! use eventsource::feed::{Checkpoint, FeedQuery};
//! use eventsource::{EventStore, InMemoryEventStore};
//!
//! let store = InMemoryEventStore::new();
//! let page = store.read_feed(&FeedQuery::after(Checkpoint::START).limit(100)).await?;
//! assert!(page.events.is_empty());
//! // Nothing to read yet: the next read starts where this one ended.
//! let next = page.next;
//! # let _ = next;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{Decoded, DomainEvent, EventMetadata, RecordedEvent};

/// A point in the feed: a reader that has handled everything up to here reads on with
/// [`FeedQuery::after`].
///
/// Checkpoints are ordered as the feed is. On PostgreSQL a checkpoint holds the id of a
/// committing transaction and a position; on SQLite and in memory the transaction part is
/// always 0 and the position alone orders the feed. A checkpoint belongs to the store it
/// came from: PostgreSQL transaction ids start again in another cluster (after a restore
/// with `pg_dump`, say), and a read from a checkpoint ahead of the database is refused
/// with [`Error::InvalidInput`] rather than waiting for ever.
///
/// Its text form, `<transaction>/<position>`, parses back with [`str::parse`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    transaction: u64,
    position: u64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        transaction: 0,
        position: 0,
    };

    /// A checkpoint from its parts, as [`transaction`](Self::transaction) and
    /// [`position`](Self::position) returned them.
    pub const fn new(transaction: u64, position: u64) -> Self {
        Checkpoint {
            transaction,
            position,
        }
    }

    /// The transaction part (0 except on PostgreSQL).
    pub const fn transaction(&self) -> u64 {
        self.transaction
    }

    /// The position part: the position of the last event handled, or 0.
    pub const fn position(&self) -> u64 {
        self.position
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transaction, self.position)
    }
}

impl FromStr for Checkpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "checkpoint",
                format!("`{s}` is not `<transaction>/<position>`"),
            )
        };
        let (t, p) = s.split_once('/').ok_or_else(bad)?;
        Ok(Checkpoint::new(
            t.parse().map_err(|_| bad())?,
            p.parse().map_err(|_| bad())?,
        ))
    }
}

/// What to read from the feed: where to start, how much, and which events.
///
/// Filters are applied by the database; events they leave out still move the page's
/// [`next`](FeedPage::next) checkpoint on, so a narrow reader does not scan the same rows
/// again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedQuery {
    pub(crate) after: Checkpoint,
    pub(crate) limit: usize,
    pub(crate) aggregate_types: Option<Vec<String>>,
    pub(crate) event_types: Option<Vec<String>>,
}

impl FeedQuery {
    /// The default page size.
    pub const DEFAULT_LIMIT: usize = 500;

    /// Events after `checkpoint`, up to [`DEFAULT_LIMIT`](Self::DEFAULT_LIMIT) of them,
    /// of every type.
    pub fn after(checkpoint: Checkpoint) -> Self {
        FeedQuery {
            after: checkpoint,
            limit: Self::DEFAULT_LIMIT,
            aggregate_types: None,
            event_types: None,
        }
    }

    /// At most `limit` events (0 reads nothing and returns the same checkpoint).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Only events of these aggregate types.
    pub fn aggregate_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.aggregate_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only events of these event types (stored names).
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// The checkpoint this query reads after.
    pub fn checkpoint(&self) -> Checkpoint {
        self.after
    }

    /// The page size.
    pub fn page_limit(&self) -> usize {
        self.limit
    }

    /// The aggregate types it keeps, if it filters them.
    pub fn aggregate_type_filter(&self) -> Option<&[String]> {
        self.aggregate_types.as_deref()
    }

    /// The event types it keeps, if it filters them.
    pub fn event_type_filter(&self) -> Option<&[String]> {
        self.event_types.as_deref()
    }

    /// Whether an event passes the filters.
    pub fn matches(&self, aggregate_type: &str, event_type: &str) -> bool {
        self.aggregate_types
            .as_ref()
            .is_none_or(|t| t.iter().any(|t| t == aggregate_type))
            && self
                .event_types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == event_type))
    }

    /// Checks the filters' names as the stores check names.
    pub(crate) fn check(&self) -> Result<()> {
        for t in self.aggregate_types.iter().flatten() {
            crate::store::checks::name("aggregate_types", t)?;
        }
        for t in self.event_types.iter().flatten() {
            crate::store::checks::name("event_types", t)?;
        }
        Ok(())
    }
}

/// One event of the feed, with the checkpoint that follows it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    /// Where a reader that has handled this event (and all before it) stands.
    pub checkpoint: Checkpoint,
    /// The event.
    pub event: RecordedEvent,
}

/// A page of the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedPage {
    /// The events, in feed order.
    pub events: Vec<FeedEvent>,
    /// Where the next read starts: after the last event of the page or, when the page
    /// reached the end of what is visible, after everything scanned.
    pub next: Checkpoint,
    /// Committed events exist beyond `next` that the feed cannot show yet, because an
    /// older transaction is still running (PostgreSQL only; always `false` elsewhere).
    /// They are shown once it ends. A reader seeing this for long is stalled by that
    /// transaction.
    pub held_back: bool,
}

impl FeedPage {
    /// `true` when the page reached the end of what is visible now.
    pub fn at_end(&self, query: &FeedQuery) -> bool {
        self.events.len() < query.limit
    }
}

/// An event of a [`DomainEvent`] enum with its envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<E> {
    /// Where a reader that has handled this event stands.
    pub checkpoint: Checkpoint,
    /// Position in the store's global feed.
    pub position: u64,
    /// Unique id of the event: the idempotency key of an at-least-once consumer.
    pub event_id: Uuid,
    /// Type of the aggregate.
    pub aggregate_type: String,
    /// Id of the aggregate.
    pub aggregate_id: Uuid,
    /// Version of the aggregate after this event.
    pub version: u64,
    /// Correlation, causation and free metadata.
    pub metadata: EventMetadata,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
    /// The event.
    pub event: E,
}

impl<E: DomainEvent> Envelope<E> {
    /// Decodes a feed event into exactly one `E`, upcast from an older version where
    /// `E` declares how. A type `E` does not know, a payload that does not decode, or an
    /// event that upcasts to none or several is [`Error::EventDecode`]: readers that
    /// allow those use [`decode_all`](Self::decode_all).
    pub fn decode(fed: &FeedEvent) -> Result<Self> {
        let e = &fed.event;
        let event = E::decode(&e.event_type, e.event_version, &e.payload)
            .and_then(|decoded| crate::__private::exactly_one(&e.event_type, decoded))
            .map_err(|source| decode_error(e, source))?;
        Ok(Self::wrap(fed, event))
    }

    /// Decodes a feed event into the events it stands for today: one, or none or
    /// several where an upcaster says so, each with the stored event's envelope.
    pub fn decode_all(fed: &FeedEvent) -> Result<Decoded<Self>> {
        let e = &fed.event;
        let decoded = E::decode(&e.event_type, e.event_version, &e.payload)
            .map_err(|source| decode_error(e, source))?;
        Ok(decoded.map(|event| Self::wrap(fed, event)))
    }

    fn wrap(fed: &FeedEvent, event: E) -> Self {
        let e = &fed.event;
        Envelope {
            checkpoint: fed.checkpoint,
            position: e.position,
            event_id: e.event_id,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id,
            version: e.version,
            metadata: e.metadata.clone(),
            occurred_at: e.occurred_at,
            event,
        }
    }
}

fn decode_error(e: &RecordedEvent, source: crate::event::EventDecodeError) -> Error {
    Error::EventDecode {
        aggregate_type: e.aggregate_type.clone(),
        aggregate_id: e.aggregate_id,
        version: e.version,
        event_type: e.event_type.clone(),
        event_version: e.event_version,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_order_by_transaction_then_position_and_round_trip_as_text() {
        let a = Checkpoint::new(5, 100);
        let b = Checkpoint::new(6, 1);
        assert!(Checkpoint::START < a && a < b);
        assert_eq!("6/1".parse::<Checkpoint>().unwrap(), b);
        assert_eq!(b.to_string().parse::<Checkpoint>().unwrap(), b);
        for bad in ["", "6", "6/", "/1", "x/1", "6/-1"] {
            assert!(
                matches!(
                    bad.parse::<Checkpoint>(),
                    Err(Error::InvalidInput {
                        field: "checkpoint",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn filters_match_as_stated() {
        let q = FeedQuery::after(Checkpoint::START)
            .aggregate_types(["Order"])
            .event_types(["Placed", "Paid"]);
        assert!(q.matches("Order", "Paid"));
        assert!(!q.matches("Cart", "Paid"));
        assert!(!q.matches("Order", "Shipped"));
        assert!(FeedQuery::after(Checkpoint::START).matches("Any", "Thing"));
    }
}
