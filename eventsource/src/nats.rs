//! Publishing the feed to NATS JetStream, with the events table as the outbox.
//!
//! A [`JetStreamPublisher`] is a [`Consumer`] of a [`Subscription`]: it publishes every
//! event of the feed to a JetStream stream, and the subscription's checkpoint, kept in
//! the store's database, records how far it got. There is no outbox table to write in
//! the same transaction as the events: the events table is the outbox.
//!
//! # What is guaranteed
//!
//! - **Nothing uncommitted is published.** The subscription reads only committed events
//!   from the feed.
//! - **Nothing committed is lost.** The checkpoint moves only after JetStream has
//!   acknowledged every message of the batch (that is, stored it: an acknowledgement is
//!   JetStream's word that the message is in the stream). If the process dies before the
//!   batch's checkpoint commits, the batch is published again when the subscription
//!   restarts.
//! - **Each event is stored once.** Every message carries the event id as `Nats-Msg-Id`;
//!   JetStream drops a message whose id it stored within the stream's duplicate window
//!   (2 minutes unless the stream says otherwise; see
//!   [`stream_config`](JetStreamPublisher::stream_config)). A batch published again
//!   within that window therefore stores nothing twice. Republishing older events
//!   (after [`Subscription::reset`], say) stores them again if their window has passed.
//! - **Each aggregate's events are stored in feed order** (which is version order). A
//!   message is sent only after JetStream acknowledged the aggregate's previous message,
//!   and it carries `Nats-Expected-Last-Subject-Sequence` with that message's stream
//!   sequence: JetStream refuses it if anything else was stored on the subject since.
//!   A lost message, a connection that drops and reconnects, or a server restart can
//!   delay an event but never let a later event of its aggregate be stored before it:
//!   the later one is not sent until the earlier one is acknowledged, and a copy of the
//!   earlier one that arrives late (within the duplicate window) is a duplicate.
//!   Messages of different aggregates are in flight together, so the stream interleaves
//!   aggregates in an order of its own.
//!
//! These hold as long as one publisher writes each subject: run one subscription per
//! prefix (its [partitions](crate::subscription::Subscription::partitions) split the
//! aggregates, so they may run in several processes). A message that something else
//! stored on one of its subjects makes the batches that publish there fail, loudly and
//! for as long as it is the subject's last message, rather than interleave. The
//! guarantees also rest on JetStream keeping what it acknowledged: a stream with file
//! storage keeps it across a server restart; only replicas keep it across the loss of a
//! disk.
//!
//! A batch whose acknowledgements do not all arrive within the
//! [ack timeout](JetStreamPublisher::ack_timeout) fails: the subscription rolls it back
//! and runs it again after a backoff, for as long as it takes. An event that cannot be
//! published at all (an event type with a line break, a payload over the server's
//! `max_payload`) fails in [`consume`](Consumer::consume), and the subscription's
//! [`RetryPolicy`](crate::subscription::RetryPolicy) decides: parked, by default, which
//! lets later events of its aggregate go first, or
//! [stopped](crate::subscription::OnExhausted::Stop).
//!
//! [`Subscription`]: crate::subscription::Subscription
//! [`Subscription::reset`]: crate::subscription::Subscription::reset
//!
//! # Messages
//!
//! Each event becomes one message on the subject `<prefix>.<aggregate type>.<aggregate
//! id>`, with the event's JSON payload as its body and these headers:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | the event id |
//! | [`Es-Event-Type`](headers::EVENT_TYPE) | the stored event type name |
//! | [`Es-Event-Version`](headers::EVENT_VERSION) | its schema version |
//! | [`Es-Aggregate-Version`](headers::AGGREGATE_VERSION) | the aggregate's version after the event |
//! | [`Es-Position`](headers::POSITION) | the event's position in the store |
//! | [`Es-Checkpoint`](headers::CHECKPOINT) | the feed checkpoint after it, as `<transaction>/<position>` |
//! | [`Es-Occurred-At`](headers::OCCURRED_AT) | when it happened, RFC 3339 in UTC to the microsecond |
//! | [`Es-Correlation-Id`](headers::CORRELATION_ID) | the correlation id, when there is one |
//! | [`Es-Causation-Id`](headers::CAUSATION_ID) | the causation id, when there is one |
//! | [`Es-Metadata`](headers::METADATA) | the other metadata as a JSON object, when there is any |
//! | `Content-Type` | `application/json` |
//! | `Nats-Expected-Last-Subject-Sequence` | on an aggregate's second and later messages of a batch (see above) |
//!
//! NATS header values cannot hold a line break: an event type with one is refused with
//! [`PublishError::InvalidEvent`]. NATS clients trim spaces around header values.
//!
//! # Aggregate types in subjects
//!
//! An aggregate type is any text, but a subject token cannot hold a dot, a space or a
//! wildcard. Aggregate types are therefore **encoded**, never refused: ASCII letters,
//! digits, `-` and `_` stand for themselves, and every other byte of the name's UTF-8 is
//! written `%XX` (upper-case hex). `Order` stays `Order`; `billing.Invoice` becomes
//! `billing%2EInvoice` and `Order line` becomes `Order%20line`. The encoding is one to
//! one: [`subject_token`] gives the token of a type (for a consumer's filter subject such
//! as `events.Order.>`), and [`decode_subject_token`] gives the type back.
//!
//! The prefix is the caller's and is checked, not encoded: one or more dot-separated
//! tokens without spaces, control characters or wildcards, not starting with `$`.
//! [`JetStreamPublisher::new`] refuses another with [`PublishError::InvalidPrefix`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError as JetStreamPublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, HeaderValue};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::SecondsFormat;
use futures_util::{StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::error::BoxError;
use crate::feed::{Checkpoint, FeedEvent};
use crate::subscription::Consumer;

/// The async-nats this module builds on (0.51), so that the context handed to
/// [`JetStreamPublisher::new`] comes from the same version.
pub use async_nats;

/// The names of the headers each message carries (besides `Nats-Msg-Id`).
pub mod headers {
    /// The stored event type name.
    pub const EVENT_TYPE: &str = "Es-Event-Type";
    /// The event type's schema version.
    pub const EVENT_VERSION: &str = "Es-Event-Version";
    /// The aggregate's version after the event.
    pub const AGGREGATE_VERSION: &str = "Es-Aggregate-Version";
    /// The event's position in the store.
    pub const POSITION: &str = "Es-Position";
    /// The feed checkpoint after the event, `<transaction>/<position>`.
    pub const CHECKPOINT: &str = "Es-Checkpoint";
    /// When the event happened: RFC 3339, UTC, microseconds.
    pub const OCCURRED_AT: &str = "Es-Occurred-At";
    /// The correlation id, when the event has one.
    pub const CORRELATION_ID: &str = "Es-Correlation-Id";
    /// The causation id, when the event has one.
    pub const CAUSATION_ID: &str = "Es-Causation-Id";
    /// The metadata besides correlation and causation, as a JSON object, when there is
    /// any.
    pub const METADATA: &str = "Es-Metadata";
}

/// Why an event was not published, or a stream not set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The subject prefix is not one or more valid subject tokens.
    #[error("invalid subject prefix `{prefix}`: {reason}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The event cannot be carried by a NATS message.
    #[error("event {event_id} cannot be published: {reason}")]
    InvalidEvent {
        /// The event.
        event_id: Uuid,
        /// Why.
        reason: String,
    },

    /// The message could not be handed to the connection.
    #[error("publishing event {event_id} on `{subject}` failed: {source}")]
    Send {
        /// The event.
        event_id: Uuid,
        /// Its subject.
        subject: String,
        /// The client's error.
        #[source]
        source: JetStreamPublishError,
    },

    /// JetStream answered with an error, or the answer was lost.
    #[error("JetStream did not store event {event_id} on `{subject}`: {source}")]
    Ack {
        /// The event.
        event_id: Uuid,
        /// Its subject.
        subject: String,
        /// The client's error (its kind tells a wrong last sequence from a timeout).
        #[source]
        source: JetStreamPublishError,
    },

    /// No acknowledgement came within the ack timeout.
    #[error("no acknowledgement of event {event_id} on `{subject}` within {timeout:?}")]
    AckTimeout {
        /// The event.
        event_id: Uuid,
        /// Its subject.
        subject: String,
        /// The timeout.
        timeout: Duration,
    },

    /// A stream could not be created or looked up, or does not take the prefix's
    /// subjects.
    #[error("stream `{stream}`: {message}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What went wrong.
        message: String,
        /// The client's error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// What a publisher has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherStats {
    /// Messages JetStream stored.
    pub stored: u64,
    /// Messages JetStream acknowledged as duplicates of a message it already had (a
    /// batch published again).
    pub duplicates: u64,
    /// Batches that failed before their checkpoint moved (and were run again).
    pub failed_batches: u64,
}

/// A [`Consumer`] that publishes each event to JetStream; see the [module docs](self)
/// for what it guarantees and what the messages look like.
///
/// Run it as a [`Subscription`](crate::subscription::Subscription), one per prefix:
///
/// ```
/// use std::time::Duration;
/// use eventsource::nats::{JetStreamPublisher, async_nats};
/// use eventsource::subscription::{Subscription, SubscriptionStore};
///
/// /// Publishes the events of `store` (a `SqliteEventStore` or a `PostgresEventStore`:
/// /// its events table is the outbox) to the stream `EVENTS`, on the subjects
/// /// `events.<aggregate type>.<aggregate id>`, until `shutdown` completes.
/// async fn publish<S: SubscriptionStore + Send + Sync>(
///     store: S,
///     shutdown: impl Future<Output = ()> + Send,
/// ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let client = async_nats::connect("nats://127.0.0.1:4222").await?;
///     let publisher = JetStreamPublisher::new(async_nats::jetstream::new(client), "events")?
///         .ack_timeout(Duration::from_secs(5));
///     // A stream taking `events.>` that recognises message ids for 10 minutes.
///     publisher.ensure_stream("EVENTS", Duration::from_secs(600)).await?;
///
///     let publisher = Subscription::new("jetstream", store)
///         .run_with(publisher, shutdown)
///         .await?;
///     println!("{:?}", publisher.stats());
///     Ok(())
/// }
/// ```
pub struct JetStreamPublisher {
    link: Link,
    max_in_flight: usize,
    batch: Batch,
    stats: PublisherStats,
}

/// What sending needs, borrowed by the batch's concurrent chains.
struct Link {
    context: jetstream::Context,
    prefix: String,
    ack_timeout: Duration,
}

/// The batch in hand: one chain of messages per aggregate, in feed order.
#[derive(Default)]
struct Batch {
    /// The checkpoint of the last event consumed: an event at or before it starts a new
    /// attempt at the batch.
    last: Option<Checkpoint>,
    chains: Vec<Chain>,
    by_subject: HashMap<String, usize>,
    /// Chains whose first message is already sent.
    in_flight: usize,
}

struct Chain {
    /// The acknowledgement of `messages[0]`, when it was sent while consuming.
    first: Option<PublishAckFuture>,
    messages: Vec<Outgoing>,
}

struct Outgoing {
    event_id: Uuid,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

impl fmt::Debug for JetStreamPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamPublisher")
            .field("prefix", &self.link.prefix)
            .field("ack_timeout", &self.link.ack_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl JetStreamPublisher {
    /// The default [ack timeout](Self::ack_timeout).
    pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default [number of aggregates in flight](Self::max_in_flight).
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
    /// The duplicate window JetStream gives a stream that sets none.
    pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

    /// A publisher to the subjects `<prefix>.>` through `context`; the prefix is checked
    /// as the [module docs](self#aggregate-types-in-subjects) say.
    pub fn new(
        context: jetstream::Context,
        prefix: impl Into<String>,
    ) -> Result<Self, PublishError> {
        let prefix = prefix.into();
        check_prefix(&prefix)?;
        Ok(JetStreamPublisher {
            link: Link {
                context,
                prefix,
                ack_timeout: Self::DEFAULT_ACK_TIMEOUT,
            },
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            batch: Batch::default(),
            stats: PublisherStats::default(),
        })
    }

    /// How long to wait for each acknowledgement (and for the connection to take each
    /// message) before the batch fails; 5 s by default. An aggregate with `n` events in
    /// a batch waits for `n` acknowledgements in turn. The context's own timeout (5 s
    /// unless set) bounds the wait too.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.link.ack_timeout = timeout;
        self
    }

    /// How many aggregates have a message in flight at once (at least 1; 1000 by
    /// default). Keep it at or below the context's `max_ack_inflight` (5000 unless set).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The subject prefix.
    pub fn prefix(&self) -> &str {
        &self.link.prefix
    }

    /// What it has done so far.
    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// The subject of an aggregate's events: `<prefix>.<token>.<id>`, with the token of
    /// [`subject_token`].
    pub fn subject(&self, aggregate_type: &str, aggregate_id: Uuid) -> String {
        self.link.subject(aggregate_type, aggregate_id)
    }

    /// A stream configuration taking `<prefix>.>` into file storage, with `name` and
    /// this duplicate window (the time within which a message id is recognised; a
    /// publisher that may be down longer than [`DEFAULT_DUPLICATE_WINDOW`] with a batch
    /// in hand wants a longer one). Adjust it before creating the stream if need be.
    ///
    /// [`DEFAULT_DUPLICATE_WINDOW`]: Self::DEFAULT_DUPLICATE_WINDOW
    pub fn stream_config(
        &self,
        name: impl Into<String>,
        duplicate_window: Duration,
    ) -> stream::Config {
        stream::Config {
            name: name.into(),
            subjects: vec![self.link.wildcard()],
            storage: stream::StorageType::File,
            duplicate_window,
            ..Default::default()
        }
    }

    /// Creates the stream of [`stream_config`](Self::stream_config) unless a stream of
    /// that name exists; an existing one must take `<prefix>.>` (its other settings,
    /// the duplicate window included, are left as they are).
    pub async fn ensure_stream(
        &self,
        name: &str,
        duplicate_window: Duration,
    ) -> Result<stream::Info, PublishError> {
        let failed = |message: &str, e: BoxError| PublishError::Stream {
            stream: name.to_owned(),
            message: message.to_owned(),
            source: Some(e),
        };
        let stream = self
            .link
            .context
            .get_or_create_stream(self.stream_config(name, duplicate_window))
            .await
            .map_err(|e| failed("cannot be created or looked up", e.into()))?;
        let info = stream.cached_info().clone();
        let wanted = self.link.wildcard();
        if !info.config.subjects.contains(&wanted) {
            return Err(PublishError::Stream {
                stream: name.to_owned(),
                message: format!(
                    "exists with subjects {:?}, which do not include `{wanted}`",
                    info.config.subjects
                ),
                source: None,
            });
        }
        Ok(info)
    }

    /// Builds an event's message.
    fn message(&self, fed: &FeedEvent) -> Result<Outgoing, PublishError> {
        let e = &fed.event;
        let invalid = |reason: String| PublishError::InvalidEvent {
            event_id: e.event_id,
            reason,
        };
        if e.aggregate_type.is_empty() {
            return Err(invalid("its aggregate type is empty".to_owned()));
        }
        let text = |name: &str, value: &str| {
            HeaderValue::from_str(value).map_err(|_| {
                invalid(format!(
                    "its {name} `{}` holds a line break, which no NATS header can carry",
                    value.escape_debug()
                ))
            })
        };
        let mut map = HeaderMap::new();
        map.insert(
            async_nats::header::NATS_MESSAGE_ID,
            HeaderValue::from(e.event_id.to_string()),
        );
        map.insert(headers::EVENT_TYPE, text("event type", &e.event_type)?);
        map.insert(headers::EVENT_VERSION, HeaderValue::from(e.event_version));
        map.insert(headers::AGGREGATE_VERSION, HeaderValue::from(e.version));
        map.insert(headers::POSITION, HeaderValue::from(e.position));
        map.insert(
            headers::CHECKPOINT,
            HeaderValue::from(fed.checkpoint.to_string()),
        );
        map.insert(
            headers::OCCURRED_AT,
            HeaderValue::from(e.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        if let Some(id) = e.metadata.correlation_id {
            map.insert(headers::CORRELATION_ID, HeaderValue::from(id.to_string()));
        }
        if let Some(id) = e.metadata.causation_id {
            map.insert(headers::CAUSATION_ID, HeaderValue::from(id.to_string()));
        }
        if !e.metadata.extra.is_empty() {
            // Compact JSON escapes line breaks inside strings and writes none between
            // tokens, so the header always takes it.
            let json = serde_json::to_string(&e.metadata.extra)
                .map_err(|err| invalid(format!("its metadata does not serialize: {err}")))?;
            map.insert(headers::METADATA, text("metadata", &json)?);
        }
        map.insert("Content-Type", HeaderValue::from("application/json"));
        Ok(Outgoing {
            event_id: e.event_id,
            subject: self.link.subject(&e.aggregate_type, e.aggregate_id),
            headers: map,
            payload: Bytes::from(e.payload.clone()),
        })
    }
}

impl Link {
    fn subject(&self, aggregate_type: &str, aggregate_id: Uuid) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            subject_token(aggregate_type),
            aggregate_id
        )
    }

    fn wildcard(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// Hands a message to the connection; `expect` is the stream sequence the subject's
    /// last message must have.
    async fn send(
        &self,
        out: &Outgoing,
        expect: Option<u64>,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut message = PublishMessage::build()
            .payload(out.payload.clone())
            .headers(out.headers.clone());
        if let Some(sequence) = expect {
            message = message.expected_last_subject_sequence(sequence);
        }
        match crate::time::within(
            self.ack_timeout,
            self.context.send_publish(out.subject.clone(), message),
        )
        .await
        {
            Some(Ok(ack)) => Ok(ack),
            Some(Err(source)) => Err(PublishError::Send {
                event_id: out.event_id,
                subject: out.subject.clone(),
                source,
            }),
            None => Err(PublishError::AckTimeout {
                event_id: out.event_id,
                subject: out.subject.clone(),
                timeout: self.ack_timeout,
            }),
        }
    }

    /// Waits for a message's acknowledgement.
    async fn ack(&self, out: &Outgoing, ack: PublishAckFuture) -> Result<PublishAck, PublishError> {
        match crate::time::within(self.ack_timeout, ack.into_future()).await {
            Some(Ok(ack)) => Ok(ack),
            Some(Err(source)) => Err(PublishError::Ack {
                event_id: out.event_id,
                subject: out.subject.clone(),
                source,
            }),
            None => Err(PublishError::AckTimeout {
                event_id: out.event_id,
                subject: out.subject.clone(),
                timeout: self.ack_timeout,
            }),
        }
    }

    /// Publishes one aggregate's messages in order, each after the previous one's
    /// acknowledgement; returns how many were stored and how many were duplicates.
    async fn run(&self, chain: Chain) -> Result<(u64, u64), PublishError> {
        let (mut stored, mut duplicates) = (0, 0);
        let mut first = chain.first;
        let mut last_sequence = None;
        for out in &chain.messages {
            let pending = match first.take() {
                Some(pending) => pending,
                None => self.send(out, last_sequence).await?,
            };
            let ack = self.ack(out, pending).await?;
            if ack.duplicate {
                duplicates += 1;
            } else {
                stored += 1;
            }
            last_sequence = Some(ack.sequence);
        }
        Ok((stored, duplicates))
    }
}

#[async_trait]
impl<C: Send + ?Sized> Consumer<C> for JetStreamPublisher {
    fn event_types(&self) -> Option<Vec<String>> {
        None
    }

    /// Builds the event's message; if it is the first of its aggregate in the batch,
    /// sends it (the acknowledgement is awaited in `before_commit`).
    async fn consume(&mut self, _conn: &mut C, event: &FeedEvent) -> Result<(), BoxError> {
        if self.batch.last.is_some_and(|last| event.checkpoint <= last) {
            // The subscription runs the batch (or a part of it) again: what was sent
            // is sent again, and JetStream drops the copies it has.
            self.batch = Batch::default();
        }
        self.batch.last = Some(event.checkpoint);
        let out = self.message(event)?;
        if let Some(&i) = self.batch.by_subject.get(&out.subject) {
            self.batch.chains[i].messages.push(out);
            return Ok(());
        }
        let first = if self.batch.in_flight < self.max_in_flight {
            let pending = self.link.send(&out, None).await?;
            self.batch.in_flight += 1;
            Some(pending)
        } else {
            None
        };
        self.batch
            .by_subject
            .insert(out.subject.clone(), self.batch.chains.len());
        self.batch.chains.push(Chain {
            first,
            messages: vec![out],
        });
        Ok(())
    }

    /// Publishes the rest of the batch and waits until JetStream acknowledged every
    /// message; any failure fails the batch.
    async fn before_commit(&mut self, _conn: &mut C) -> Result<(), BoxError> {
        let batch = std::mem::take(&mut self.batch);
        let link = &self.link;
        // The chains already in flight come first, so they are all among the ones run.
        let outcome = futures_util::stream::iter(batch.chains)
            .map(|chain| link.run(chain))
            .buffer_unordered(self.max_in_flight)
            .try_fold((0, 0), |(s, d), (stored, duplicates)| async move {
                Ok((s + stored, d + duplicates))
            })
            .await;
        match outcome {
            Ok((stored, duplicates)) => {
                self.stats.stored += stored;
                self.stats.duplicates += duplicates;
                Ok(())
            }
            Err(e) => {
                self.stats.failed_batches += 1;
                Err(e.into())
            }
        }
    }
}

/// The subject token of an aggregate type: ASCII letters, digits, `-` and `_` as they
/// are, every other byte as `%XX`. See the [module docs](self#aggregate-types-in-subjects).
///
/// ```
/// use eventsource::nats::{decode_subject_token, subject_token};
///
/// assert_eq!(subject_token("Order"), "Order");
/// assert_eq!(subject_token("billing.Invoice"), "billing%2EInvoice");
/// assert_eq!(subject_token("a b*>"), "a%20b%2A%3E");
/// assert_eq!(decode_subject_token("billing%2EInvoice").as_deref(), Some("billing.Invoice"));
/// ```
pub fn subject_token(aggregate_type: &str) -> Cow<'_, str> {
    if aggregate_type.bytes().all(plain) {
        return Cow::Borrowed(aggregate_type);
    }
    let mut token = String::with_capacity(aggregate_type.len() + 8);
    for b in aggregate_type.bytes() {
        if plain(b) {
            token.push(char::from(b));
        } else {
            token.push('%');
            token.push(char::from(HEX[usize::from(b >> 4)]));
            token.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    Cow::Owned(token)
}

/// The aggregate type a [`subject_token`] stands for; `None` if `token` is not one.
pub fn decode_subject_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| HEX.iter().position(|&h| h == b);
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                let b = (hi << 4 | lo) as u8;
                if plain(b) {
                    // Not what `subject_token` writes: one type, one token.
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn check_prefix(prefix: &str) -> Result<(), PublishError> {
    let refuse = |reason| {
        Err(PublishError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return refuse("it is empty");
    }
    if prefix.starts_with('$') {
        return refuse("subjects starting with `$` belong to the server");
    }
    if prefix.split('.').any(str::is_empty) {
        return refuse("it has an empty token (a leading, trailing or doubled dot)");
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("it holds a space or a control character");
    }
    if prefix.contains(['*', '>']) {
        return refuse("it holds a wildcard (`*` or `>`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_encode_one_to_one_and_decode_back() {
        for t in [
            "Order",
            "billing.Invoice",
            "Order line",
            "a*b",
            ">",
            "50%",
            "Zähler",
            "tab\there",
            "_-",
            "%2E",
        ] {
            let token = subject_token(t);
            assert!(token.bytes().all(|b| plain(b) || b == b'%'), "{token}");
            assert_eq!(decode_subject_token(&token).as_deref(), Some(t), "{t:?}");
        }
        assert_eq!(subject_token("50%"), "50%25");
        assert_eq!(subject_token("%2E"), "%252E");
        for bad in ["", "a.b", "a b", "%2", "%zz", "%41", "%FF"] {
            assert_eq!(decode_subject_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prefixes_are_checked() {
        for good in ["events", "shop.events", "a-b_c.d1"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a\tb", "a.*", "a.>", "a*", "$JS.x", "a\nb",
        ] {
            assert!(
                matches!(check_prefix(bad), Err(PublishError::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
    }
}
