//! The crate's error type.

use std::error::Error as StdError;

use uuid::Uuid;

use crate::store::ExpectedVersion;

/// A boxed error from a backend or from serde.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `eventsource`.
///
/// Snapshot problems never appear here when loading or saving an aggregate: a missing,
/// stale, corrupt or mismatched snapshot means a full replay and a log line.
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
    #[error(
        "concurrency conflict on {aggregate_type}/{aggregate_id}: expected {expected}, but the stream is at version {actual}"
    )]
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
    #[error("corrupt row in {table} for {aggregate}: {message}")]
    CorruptRow {
        /// The table read.
        table: &'static str,
        /// `type/id` of the aggregate the row belongs to, or `?` when unknown.
        aggregate: String,
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

    /// An argument was out of range or malformed.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What was wrong and what is accepted.
        message: String,
    },

    /// The storage backend failed (connection, I/O, SQL error).
    #[error("storage backend error: {source}")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Wraps a backend error.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        Error::Backend {
            source: source.into(),
        }
    }

    /// An [`Error::InvalidInput`] with this message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput {
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

    /// An [`Error::CorruptRow`] of the events table.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn corrupt_event(aggregate: String, message: String) -> Self {
        Error::CorruptRow {
            table: "events",
            aggregate,
            message,
        }
    }

    /// `true` for [`Error::Conflict`]: reload the aggregate and retry the command.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}
