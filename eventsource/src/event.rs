//! Domain events, their envelope and their stored form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An enum of the events of one aggregate, usually derived with
/// [`#[derive(DomainEvent)]`](macro@crate::DomainEvent).
///
/// Each variant has a stable name (the `event_type` column) and a schema version. The
/// payload stored is the variant's inner value as JSON, without the enum's tag.
///
/// Decoding goes through [`decode`](Self::decode): an event stored at an older version
/// is upcast to the current one first, and a name the variant had before (an alias) is
/// decoded as the variant. See the [`upcast`](crate::upcast) module.
pub trait DomainEvent: Clone + Send + Sync + Sized + 'static {
    /// Every event type name this enum writes, in declaration order.
    const EVENT_TYPES: &'static [&'static str];

    /// Earlier names of its variants, still decoded (declared with
    /// `#[event(aliases("..."))]`). A reader that filters by type reads these too.
    const EVENT_ALIASES: &'static [&'static str] = &[];

    /// The stored name of this event's variant.
    fn event_type(&self) -> &'static str;

    /// The schema version of this event's variant.
    fn event_version(&self) -> u32;

    /// The payload as JSON text.
    fn to_payload(&self) -> serde_json::Result<String>;

    /// Decodes a stored payload into exactly one event.
    ///
    /// A stored event that an upcaster turns into none or several is
    /// [`EventDecodeError::NotOne`]: readers of stored events use
    /// [`decode`](Self::decode), which allows both.
    fn from_payload(
        event_type: &str,
        event_version: u32,
        payload: &str,
    ) -> Result<Self, EventDecodeError>;

    /// Decodes a stored event by its type name and version into the events it stands
    /// for today: usually one, none or several where an upcaster says so.
    ///
    /// Errors: a name that is neither a type nor an alias
    /// ([`EventDecodeError::UnknownType`]); a version newer than the variant's
    /// ([`EventDecodeError::NewerVersion`]); an upcaster that fails
    /// ([`EventDecodeError::Upcast`]); a payload that is not the type's JSON.
    fn decode(
        event_type: &str,
        event_version: u32,
        payload: &str,
    ) -> Result<Decoded<Self>, EventDecodeError> {
        Self::from_payload(event_type, event_version, payload).map(Decoded::One)
    }

    /// Every stored name this enum decodes: [`EVENT_TYPES`](Self::EVENT_TYPES), then
    /// [`EVENT_ALIASES`](Self::EVENT_ALIASES).
    fn decodable_types() -> impl Iterator<Item = &'static str> {
        Self::EVENT_TYPES.iter().chain(Self::EVENT_ALIASES).copied()
    }
}

/// The events one stored event decodes to: one, or, after an upcaster that splits or
/// drops events, any number.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded<E> {
    /// The usual case, without an allocation.
    One(E),
    /// None or several.
    Many(Vec<E>),
}

impl<E> Decoded<E> {
    /// How many events.
    pub fn len(&self) -> usize {
        match self {
            Decoded::One(_) => 1,
            Decoded::Many(v) => v.len(),
        }
    }

    /// `true` when the stored event stands for no event today.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each event mapped through `f`.
    pub fn map<T>(self, mut f: impl FnMut(E) -> T) -> Decoded<T> {
        match self {
            Decoded::One(e) => Decoded::One(f(e)),
            Decoded::Many(v) => Decoded::Many(v.into_iter().map(f).collect()),
        }
    }

    /// The one event, or `None` when there are none or several.
    pub fn into_one(self) -> Option<E> {
        match self {
            Decoded::One(e) => Some(e),
            Decoded::Many(mut v) if v.len() == 1 => v.pop(),
            Decoded::Many(_) => None,
        }
    }
}

impl<E> IntoIterator for Decoded<E> {
    type Item = E;
    type IntoIter = DecodedIter<E>;

    fn into_iter(self) -> DecodedIter<E> {
        DecodedIter(match self {
            Decoded::One(e) => Inner::One(Some(e)),
            Decoded::Many(v) => Inner::Many(v.into_iter()),
        })
    }
}

/// The events of a [`Decoded`], in order.
#[derive(Debug)]
pub struct DecodedIter<E>(Inner<E>);

#[derive(Debug)]
enum Inner<E> {
    One(Option<E>),
    Many(std::vec::IntoIter<E>),
}

impl<E> Iterator for DecodedIter<E> {
    type Item = E;

    fn next(&mut self) -> Option<E> {
        match &mut self.0 {
            Inner::One(e) => e.take(),
            Inner::Many(v) => v.next(),
        }
    }
}

/// Why a stored payload did not decode into a [`DomainEvent`].
///
/// Names are boxed `str`s so that the error, and every `Result` carrying it, stays small.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The event type name is not one of [`DomainEvent::EVENT_TYPES`] nor an alias.
    #[error("unknown event type `{event_type}`, expected one of {expected:?}")]
    UnknownType {
        /// The stored name.
        event_type: Box<str>,
        /// The names the enum knows.
        expected: &'static [&'static str],
    },
    /// The event was written by newer code: its version is above the variant's.
    #[error(
        "event `{event_type}` is stored at version {stored}, newer than version {current} that this code knows; deploy the code that wrote it"
    )]
    NewerVersion {
        /// The stored name.
        event_type: Box<str>,
        /// The stored version.
        stored: u32,
        /// The variant's version in this code.
        current: u32,
    },
    /// An upcaster failed, or the stored version has no step in the chain.
    #[error("upcasting event `{event_type}` from version {from_version} failed: {source}")]
    Upcast {
        /// The stored name.
        event_type: Box<str>,
        /// The version of the step that failed.
        from_version: u32,
        /// What the upcaster said.
        source: crate::BoxError,
    },
    /// [`DomainEvent::from_payload`] on an event that upcasts to none or several.
    #[error(
        "event `{event_type}` upcasts to {count} events, not one; decode it with `DomainEvent::decode`"
    )]
    NotOne {
        /// The stored name.
        event_type: Box<str>,
        /// How many events it stands for.
        count: usize,
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
