//! The crate's error type.

use std::error::Error as StdError;
use std::time::Duration;

use uuid::Uuid;

use crate::version::ExpectedVersion;

/// A boxed error from a backend or from serde.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `eventsource`.
///
/// Snapshot problems never appear here when loading or saving an aggregate: a missing,
/// stale, corrupt or mismatched snapshot means a full replay and a log line.
///
/// ```
/// # use eventsource::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Account", event = AccountEvent)]
/// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
/// # pub struct Account { pub cents: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use eventsource::{Error, ExpectedVersion};
///
/// let store = InMemoryEventStore::new();
/// let repo = AggregateRepository::<Account>::new(std::sync::Arc::new(store.clone()));
/// let id = uuid::Uuid::new_v4();
/// match repo.load(id).await {
///     Err(Error::NotFound { aggregate_type, .. }) => assert_eq!(aggregate_type, "Account"),
///     other => panic!("{other:?}"),
/// }
/// let mut account = repo.create_new(id);
/// account.record(Deposited { cents: 1 });
/// let mut rival = repo.create_new(id);
/// rival.record(Deposited { cents: 2 });
/// repo.save(&mut account).await?;
/// // The rival also started from version 0: its save is refused, nothing written.
/// match repo.save(&mut rival).await {
///     Err(Error::Conflict { expected, actual, .. }) => {
///         assert_eq!((expected, actual), (ExpectedVersion::Exact(0), 1));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No event was ever stored for this aggregate.
    #[error("aggregate {aggregate_type}/{aggregate_id} not found")]
    NotFound {
        /// The aggregate type looked up.
        aggregate_type: String,
        /// The aggregate id looked up.
        aggregate_id: Uuid,
    },

    /// Optimistic concurrency: the stream was not at the expected version. Nothing was written.
    #[error("{}", conflict_message(aggregate_type, aggregate_id, expected, *actual))]
    Conflict {
        /// The aggregate type written to.
        aggregate_type: String,
        /// The aggregate id written to.
        aggregate_id: Uuid,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The version the stream was at when the append was refused.
        actual: u64,
    },

    /// An event id that is already stored was appended again. Nothing was written.
    #[error("event id {event_id} is already stored (appending to {aggregate_type}/{aggregate_id})")]
    DuplicateEventId {
        /// The aggregate type written to.
        aggregate_type: String,
        /// The aggregate id written to.
        aggregate_id: Uuid,
        /// The event id that already exists.
        event_id: Uuid,
    },

    /// An event replayed into an aggregate did not carry the next version.
    #[error(
        "event out of order for {aggregate_type}/{aggregate_id}: expected version {expected}, got {actual}"
    )]
    VersionMismatch {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: Uuid,
        /// The version that should have come next.
        expected: u64,
        /// The version that came.
        actual: u64,
    },

    /// A stored event could not be decoded into the aggregate's event type.
    #[error(
        "cannot decode event {event_type} v{event_version} at version {version} of {aggregate_type}/{aggregate_id}: {source}"
    )]
    EventDecode {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: Uuid,
        /// The version of the event in its stream.
        version: u64,
        /// The stored event type name.
        event_type: String,
        /// The stored event schema version.
        event_version: u32,
        /// What went wrong.
        #[source]
        source: crate::event::EventDecodeError,
    },

    /// A value could not be serialized to JSON.
    #[error("cannot serialize {what} of {aggregate_type}: {source}")]
    Encode {
        /// The aggregate type.
        aggregate_type: String,
        /// What was being serialized (an event type name, "state", "metadata").
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A row read from a store could not be decoded.
    #[error("corrupt row in {table} for {}/{}: {message}",
        aggregate_type.as_deref().unwrap_or("?"),
        aggregate_id.map_or_else(|| "?".to_owned(), |id| id.to_string()))]
    CorruptRow {
        /// The table read.
        table: &'static str,
        /// The type of the aggregate the row belongs to, when it could be read.
        aggregate_type: Option<String>,
        /// The id of the aggregate the row belongs to, when it could be read.
        aggregate_id: Option<Uuid>,
        /// What was wrong.
        message: String,
    },

    /// A manual snapshot was requested from a repository without a snapshot store.
    #[error(
        "the {aggregate_type} repository has no snapshot store; build it with a snapshot store to create snapshots"
    )]
    NoSnapshotStore {
        /// The repository's aggregate type.
        aggregate_type: String,
    },

    /// An argument was out of range or malformed. Nothing was written.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// The argument or field at fault (`aggregate_type`, `event_type`, `payload`,
        /// `state`, `threshold`...).
        field: &'static str,
        /// What was wrong and what is accepted.
        message: String,
    },

    /// A value would not come back as it was saved: a payload or state with NaN or an
    /// infinite float (JSON writes them as `null`), or a type whose serialization does
    /// not decode. Nothing was written.
    #[error("{} of {aggregate_type}/{aggregate_id} would not load back as saved: {reason}",
        match (event_type, event_id) {
            (Some(t), Some(id)) => format!("event {t} ({id})"),
            _ => "the snapshot state".to_owned(),
        })]
    NotRoundTrip {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: Uuid,
        /// The refused event's type name; `None` for a snapshot state.
        event_type: Option<String>,
        /// The refused event's id; `None` for a snapshot state.
        event_id: Option<Uuid>,
        /// Why it would not decode back.
        reason: String,
    },

    /// An operation did not finish in the time it was given, and was cancelled.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What was cancelled ("reading the snapshot", "writing the snapshot").
        what: &'static str,
        /// The limit that was reached.
        after: Duration,
    },

    /// A subscription's handler failed on an event after every attempt its
    /// [`RetryPolicy`](crate::subscription::RetryPolicy) allows, and the policy says to
    /// stop rather than park the event. The checkpoint stays before the event.
    #[error(
        "subscription `{subscription}` stopped: its handler failed {attempts} times on event \
         {event_id} (position {position}): {source}"
    )]
    HandlerFailed {
        /// The subscription's name.
        subscription: String,
        /// The event the handler failed on.
        event_id: Uuid,
        /// Its position in the feed.
        position: u64,
        /// How many times it was tried.
        attempts: u32,
        /// The handler's last error.
        #[source]
        source: BoxError,
    },

    /// The storage backend failed (connection, I/O, SQL error).
    #[error("storage backend error: {source}")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

/// The text of [`Error::Conflict`]: a writer that expected a new stream is told the
/// aggregate already exists.
fn conflict_message(
    aggregate_type: &str,
    aggregate_id: &Uuid,
    expected: &ExpectedVersion,
    actual: u64,
) -> String {
    match expected {
        ExpectedVersion::Exact(0) => format!(
            "aggregate {aggregate_type}/{aggregate_id} already exists (at version {actual}): \
             load it instead of creating it"
        ),
        _ => format!(
            "concurrency conflict on {aggregate_type}/{aggregate_id}: expected {expected}, \
             but the stream is at version {actual}"
        ),
    }
}

impl Error {
    /// Wraps a backend error.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        Error::Backend {
            source: source.into(),
        }
    }

    /// An [`Error::Timeout`].
    pub(crate) fn timeout(what: &'static str, after: Duration) -> Self {
        Error::Timeout { what, after }
    }

    /// An [`Error::InvalidInput`] about `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            message: message.into(),
        }
    }

    /// An [`Error::Conflict`] on this stream.
    pub(crate) fn conflict(
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        actual: u64,
    ) -> Self {
        Error::Conflict {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id,
            expected,
            actual,
        }
    }

    /// An [`Error::DuplicateEventId`] on this stream.
    pub(crate) fn duplicate_event(
        aggregate_type: &str,
        aggregate_id: Uuid,
        event_id: Uuid,
    ) -> Self {
        Error::DuplicateEventId {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id,
            event_id,
        }
    }

    /// An [`Error::CorruptRow`] of `table`, for the aggregate when known.
    pub(crate) fn corrupt_row(
        table: &'static str,
        aggregate_type: Option<&str>,
        aggregate_id: Option<Uuid>,
        message: impl Into<String>,
    ) -> Self {
        Error::CorruptRow {
            table,
            aggregate_type: aggregate_type.map(str::to_owned),
            aggregate_id,
            message: message.into(),
        }
    }

    /// An [`Error::CorruptRow`] of the events table of this stream.
    pub(crate) fn corrupt_event(
        aggregate_type: &str,
        aggregate_id: Uuid,
        message: impl Into<String>,
    ) -> Self {
        Self::corrupt_row("events", Some(aggregate_type), Some(aggregate_id), message)
    }

    /// `true` for [`Error::Conflict`]: reload the aggregate and retry the command.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}
#[cfg(test)]
mod size {
    /// `Result<T, Error>` is what every visitor closure returns: past 128 bytes, clippy's
    /// `result_large_err` fires in the users' code.
    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<crate::Error>() < 128);
        assert!(std::mem::size_of::<crate::event::EventDecodeError>() <= 40);
    }
}
