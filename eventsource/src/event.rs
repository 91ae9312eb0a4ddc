//! Domain events, their envelope and their stored form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An enum of the events of one aggregate, usually derived with
/// [`#[derive(DomainEvent)]`](macro@crate::DomainEvent).
///
/// Each variant has a stable name (the `event_type` column) and a schema version. The
/// payload stored is the variant's inner value as JSON, without the enum's tag.
pub trait DomainEvent: Clone + Send + Sync + Sized + 'static {
    /// Every event type name this enum can decode, in declaration order.
    const EVENT_TYPES: &'static [&'static str];

    /// The stored name of this event's variant.
    fn event_type(&self) -> &'static str;

    /// The schema version of this event's variant.
    fn event_version(&self) -> u32;

    /// The payload as JSON text.
    fn to_payload(&self) -> serde_json::Result<String>;

    /// Decodes a stored payload by its event type name.
    fn from_payload(
        event_type: &str,
        event_version: u32,
        payload: &str,
    ) -> Result<Self, EventDecodeError>;
}

/// Why a stored payload did not decode into a [`DomainEvent`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The event type name is not one of [`DomainEvent::EVENT_TYPES`].
    #[error("unknown event type `{event_type}`, expected one of {expected:?}")]
    UnknownType {
        /// The stored name.
        event_type: String,
        /// The names the enum knows.
        expected: &'static [&'static str],
    },
    /// The payload is not valid JSON for the variant.
    #[error("invalid payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// Correlation, causation and free-form metadata carried by every stored event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Groups the events caused by one request or process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The message (command or event) that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Anything else (user id, tenant, request path...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl EventMetadata {
    /// `true` when there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.extra.is_empty()
    }

    /// The metadata as JSON text (`{}` when empty).
    pub fn to_json(&self) -> String {
        // A struct of options and a map of JSON values always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// An event ready to be appended: the store assigns its version and global position.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Unique id of the event (idempotency key).
    pub event_id: Uuid,
    /// Stored name of the event type.
    pub event_type: String,
    /// Schema version of the event type.
    pub event_version: u32,
    /// The payload as JSON text.
    pub payload: String,
    /// Correlation, causation and free metadata.
    pub metadata: EventMetadata,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
}

/// A stored event, as read from [`EventStore::read_all`](crate::EventStore::read_all).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// Position in the store's global feed (starts at 1, strictly increasing).
    pub position: u64,
    /// Unique id of the event.
    pub event_id: Uuid,
    /// Type of the aggregate the event belongs to.
    pub aggregate_type: String,
    /// Id of the aggregate the event belongs to.
    pub aggregate_id: Uuid,
    /// Version of the aggregate after this event (the first event is version 1).
    pub version: u64,
    /// Stored name of the event type.
    pub event_type: String,
    /// Schema version of the event type.
    pub event_version: u32,
    /// The payload as JSON text.
    pub payload: String,
    /// Correlation, causation and free metadata.
    pub metadata: EventMetadata,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
}

/// A stored event borrowed from a store's buffer while a stream is read.
///
/// Stores hand these to the visitor of
/// [`EventStore::read_stream`](crate::EventStore::read_stream) so that a replay decodes
/// each payload straight from the row, without copying it.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    /// Position in the store's global feed.
    pub position: u64,
    /// Unique id of the event.
    pub event_id: Uuid,
    /// Type of the aggregate.
    pub aggregate_type: &'a str,
    /// Id of the aggregate.
    pub aggregate_id: Uuid,
    /// Version of the aggregate after this event.
    pub version: u64,
    /// Stored name of the event type.
    pub event_type: &'a str,
    /// Schema version of the event type.
    pub event_version: u32,
    /// The payload as JSON text.
    pub payload: &'a str,
    /// The metadata as JSON text.
    pub metadata: &'a str,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
}

/// The part of a stored event that rebuilding an aggregate needs, borrowed from the
/// store's buffer.
///
/// Loads read only these columns: the envelope (ids, position, metadata, time) stays in
/// the store, which keeps a long replay close to the cost of decoding the payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEvent<'a> {
    /// Version of the aggregate after this event.
    pub version: u64,
    /// Stored name of the event type.
    pub event_type: &'a str,
    /// Schema version of the event type.
    pub event_version: u32,
    /// The payload as JSON text.
    pub payload: &'a str,
}

impl EventRef<'_> {
    /// The part of the event a load needs.
    pub fn stream_event(&self) -> StreamEvent<'_> {
        StreamEvent {
            version: self.version,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
        }
    }

    /// Copies the event out of the store's buffer, parsing its metadata.
    pub fn to_recorded(&self) -> crate::Result<RecordedEvent> {
        let metadata = parse_metadata(self.metadata).map_err(|e| {
            crate::Error::corrupt_event(
                self.aggregate_type,
                self.aggregate_id,
                format!("metadata of version {} is not valid: {e}", self.version),
            )
        })?;
        Ok(RecordedEvent {
            position: self.position,
            event_id: self.event_id,
            aggregate_type: self.aggregate_type.to_owned(),
            aggregate_id: self.aggregate_id,
            version: self.version,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version,
            payload: self.payload.to_owned(),
            metadata,
            occurred_at: self.occurred_at,
        })
    }
}

/// Parses stored metadata JSON; an empty string means no metadata.
pub(crate) fn parse_metadata(text: &str) -> serde_json::Result<EventMetadata> {
    if text.is_empty() {
        Ok(EventMetadata::default())
    } else {
        serde_json::from_str(text)
    }
}
