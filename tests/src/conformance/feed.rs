//! Conformance of the global feed ([`EventStore::read_feed`]): what a consumer that
//! follows it relies on, on every backend.
//!
//! A store may be shared with other tests (the PostgreSQL tests share one database and
//! run at once), so every check reads through a filter on aggregate types of its own, or
//! compares only its own events among everyone else's. On PostgreSQL a transaction of
//! another test that is still running can hold the feed back for a moment: readers here
//! wait (bounded) for the events they expect instead of asserting that a single read
//! shows them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource::feed::{Checkpoint, Envelope, FeedEvent, FeedPage, FeedQuery};
use eventsource::{
    DomainEvent, Error, EventMetadata, EventStore, EventStoreExt, ExpectedVersion, NewEvent,
    RecordedEvent,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::conformance::faults::bounded;
use crate::conformance::hostile::long_name;
use crate::{event, now, unique_type};

/// How long a reader waits for events it expects: long enough for any transaction of
/// another test to end, short enough that a feed which never shows them fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A reader of the feed that checks, page after page, what every consumer relies on:
/// - a page holds at most the query's limit of events, each passing its filters;
/// - every event's checkpoint is beyond the reader's checkpoint (so checkpoints strictly
///   increase along the feed), and its position part is the event's position;
/// - no event comes twice;
/// - each aggregate's versions come in increasing order;
/// - the page's `next` is never behind the reader nor behind the page's last event, and
///   is that event's checkpoint when the page is full;
/// - a page of limit 0 is empty and leaves the checkpoint where it was.
#[derive(Debug)]
pub struct Follower {
    query: FeedQuery,
    /// Where the next read starts.
    pub checkpoint: Checkpoint,
    /// Every event read, in feed order.
    pub seen: Vec<FeedEvent>,
    ids: HashSet<Uuid>,
    versions: HashMap<(String, Uuid), u64>,
    /// How many pages were read.
    pub pages: usize,
}

impl Follower {
    /// A reader of `query` (its filters and limit), starting at its checkpoint.
    pub fn new(query: FeedQuery) -> Self {
        Follower {
            checkpoint: query.checkpoint(),
            query,
            seen: Vec::new(),
            ids: HashSet::new(),
            versions: HashMap::new(),
            pages: 0,
        }
    }

    /// The query of the next read: the filters and limit, from the current checkpoint.
    pub fn next_query(&self) -> FeedQuery {
        let mut q = FeedQuery::after(self.checkpoint).limit(self.query.page_limit());
        if let Some(types) = self.query.aggregate_type_filter() {
            q = q.aggregate_types(types.iter().cloned());
        }
        if let Some(types) = self.query.event_type_filter() {
            q = q.event_types(types.iter().cloned());
        }
        q
    }

    /// Reads one page, checks it, moves the checkpoint to its `next`, and returns it.
    pub async fn read_page(&mut self, store: &dyn EventStore) -> FeedPage {
        let query = self.next_query();
        let page = store
            .read_feed(&query)
            .await
            .unwrap_or_else(|e| panic!("read_feed({query:?}): {e}"));
        self.pages += 1;
        self.check(&query, &page);
        self.checkpoint = page.next;
        page
    }

    fn check(&mut self, query: &FeedQuery, page: &FeedPage) {
        let limit = query.page_limit();
        assert!(
            page.events.len() <= limit,
            "a page holds at most its limit ({limit}) of events, got {}",
            page.events.len()
        );
        if limit == 0 {
            assert_eq!(
                page.next, self.checkpoint,
                "a page of limit 0 leaves the checkpoint where it was"
            );
        }
        let mut at = self.checkpoint;
        for fed in &page.events {
            let e = &fed.event;
            assert!(
                fed.checkpoint > at,
                "checkpoints increase along the feed: {} after {at} (event {} of {}/{} v{})",
                fed.checkpoint,
                e.event_id,
                e.aggregate_type,
                e.aggregate_id,
                e.version
            );
            at = fed.checkpoint;
            assert_eq!(
                fed.checkpoint.position(),
                e.position,
                "an event's checkpoint holds its position"
            );
            assert!(
                query.matches(&e.aggregate_type, &e.event_type),
                "the event {} ({} / {}) passes the filters of {query:?}",
                e.event_id,
                e.aggregate_type,
                e.event_type
            );
            assert!(
                self.ids.insert(e.event_id),
                "event {} ({}/{} v{}) came twice, the second time at {}",
                e.event_id,
                e.aggregate_type,
                e.aggregate_id,
                e.version,
                fed.checkpoint
            );
            let last = self
                .versions
                .entry((e.aggregate_type.clone(), e.aggregate_id))
                .or_insert(0);
            assert!(
                e.version > *last,
                "{}/{}: version {} came after version {last}",
                e.aggregate_type,
                e.aggregate_id,
                e.version
            );
            *last = e.version;
            self.seen.push(fed.clone());
        }
        assert!(
            page.next >= at,
            "next ({}) is not behind the reader or the page's last event ({at})",
            page.next
        );
        if limit > 0 && page.events.len() == limit {
            assert_eq!(
                Some(page.next),
                page.events.last().map(|e| e.checkpoint),
                "a full page's next is its last event's checkpoint"
            );
        }
    }

    /// Reads until `until` says the reader has seen enough, waiting a little whenever a
    /// page reaches the end of what is visible; panics after `bound`.
    pub async fn read_until(
        &mut self,
        store: &dyn EventStore,
        bound: Duration,
        mut until: impl FnMut(&Follower) -> bool,
    ) {
        let started = Instant::now();
        let mut held_back = false;
        while !until(self) {
            assert!(
                started.elapsed() < bound,
                "the feed did not show what was expected within {bound:?}: {} events seen \
                 in {} pages, at {} (last page held back: {held_back})",
                self.seen.len(),
                self.pages,
                self.checkpoint
            );
            let page = self.read_page(store).await;
            held_back = page.held_back;
            if page.at_end(&self.next_query()) && !until(self) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Reads until `count` events have been seen (see [`read_until`](Self::read_until)).
    pub async fn read_count(&mut self, store: &dyn EventStore, count: usize) {
        self.read_until(store, WAIT, |f| f.seen.len() >= count)
            .await;
    }

    /// The ids of the events seen, in feed order.
    pub fn ids(&self) -> Vec<Uuid> {
        self.seen.iter().map(|e| e.event.event_id).collect()
    }
}

/// A query for these aggregate types from the start of the feed.
fn ours<S: AsRef<str>>(types: &[S], limit: usize) -> FeedQuery {
    FeedQuery::after(Checkpoint::START)
        .limit(limit)
        .aggregate_types(types.iter().map(|t| t.as_ref().to_owned()))
}

/// Appends `batch` to a stream with `ExpectedVersion::Any` and returns its ids.
async fn append(store: &dyn EventStore, ty: &str, id: Uuid, batch: &[NewEvent]) -> Vec<Uuid> {
    store
        .append(ty, id, ExpectedVersion::Any, batch)
        .await
        .unwrap_or_else(|e| panic!("append to {ty}/{id}: {e}"));
    batch.iter().map(|e| e.event_id).collect()
}

/// Every event of these streams as `read_stream` gives them, by id.
async fn stored(store: &dyn EventStore, streams: &[(&str, Uuid)]) -> HashMap<Uuid, RecordedEvent> {
    let mut out = HashMap::new();
    for (ty, id) in streams {
        for e in store.load_stream(ty, *id, 1).await.expect("read a stream") {
            out.insert(e.event_id, e);
        }
    }
    out
}

/// Where the feed ends now, as a reader that has read everything would stand: the
/// `next` of a read whose filter matches nothing.
async fn end_of_feed(store: &dyn EventStore) -> Checkpoint {
    let nothing = unique_type("NeverWritten");
    store
        .read_feed(&FeedQuery::after(Checkpoint::START).aggregate_types([nothing]))
        .await
        .expect("read the feed with a filter that matches nothing")
        .next
}

/// Paging through the feed with small pages yields every appended event exactly once, in
/// the order the appends committed, with checkpoints strictly increasing, and each event
/// as `read_stream` and `read_all` give it; a read from the final checkpoint yields
/// nothing. Read without a filter, among everyone else's events, ours come in the same
/// order.
pub async fn feed_pages_through_every_event_once(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let mark = end_of_feed(store).await;
    let (ta, tb) = (unique_type("FeedA"), unique_type("FeedB"));
    let (a1, a2, b1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let batches: [(&str, Uuid, usize); 6] = [
        (&ta, a1, 3),
        (&tb, b1, 2),
        (&ta, a2, 1),
        (&ta, a1, 2),
        (&tb, b1, 4),
        (&ta, a2, 1),
    ];
    let mut order = Vec::new();
    for (ty, id, n) in batches {
        let batch: Vec<NewEvent> = (0..n).map(|i| event(&format!("Step{i}"))).collect();
        order.extend(append(store, ty, id, &batch).await);
    }
    let want = stored(store, &[(&ta, a1), (&ta, a2), (&tb, b1)]).await;
    assert_eq!(want.len(), order.len());

    let mut f = Follower::new(ours(&[&ta, &tb], 3));
    f.read_count(store, order.len()).await;
    assert_eq!(
        f.ids(),
        order,
        "the feed holds every event once, in the order the appends committed"
    );
    for fed in &f.seen {
        let e = &fed.event;
        assert_eq!(
            e, &want[&e.event_id],
            "the feed gives the event as read_stream"
        );
        assert_eq!(
            store.read_all(e.position, 1).await.expect("read_all"),
            vec![e.clone()],
            "the feed gives the event as read_all at its position"
        );
    }
    assert!(f.pages >= order.len().div_ceil(3), "pages of at most 3");

    let again = f.read_page(store).await;
    assert!(
        again.events.is_empty(),
        "a read from the final checkpoint yields nothing: {:?}",
        again.events
    );

    // The largest limit reads them all in one page.
    let whole = store
        .read_feed(&ours(&[&ta, &tb], usize::MAX))
        .await
        .expect("read with the largest limit");
    assert_eq!(
        whole.events, f.seen,
        "one page of limit usize::MAX holds the same events"
    );
    assert!(whole.next >= f.seen[f.seen.len() - 1].checkpoint);

    // Without a filter, from where the feed ended before the appends: ours among the rest.
    let mut all = Follower::new(FeedQuery::after(mark).limit(50));
    let wanted: HashSet<Uuid> = order.iter().copied().collect();
    all.read_until(store, WAIT, |f| {
        f.seen
            .iter()
            .filter(|e| wanted.contains(&e.event.event_id))
            .count()
            == wanted.len()
    })
    .await;
    let mine: Vec<Uuid> = all
        .ids()
        .into_iter()
        .filter(|id| wanted.contains(id))
        .collect();
    assert_eq!(
        mine, order,
        "the unfiltered feed holds ours in the same order"
    );
}

/// A page of limit 0 reads nothing and returns the checkpoint it was given: from the
/// start, from the middle of the feed and from its end, with or without filters.
pub async fn feed_limit_zero_reads_nothing(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let ty = unique_type("FeedZero");
    let id = Uuid::new_v4();
    append(store, &ty, id, &crate::events(4)).await;
    let mut f = Follower::new(ours(&[&ty], 2));
    f.read_count(store, 4).await;
    let middle = f.seen[1].checkpoint;
    let end = f.checkpoint;
    for at in [Checkpoint::START, middle, end] {
        for query in [
            FeedQuery::after(at).limit(0),
            FeedQuery::after(at).limit(0).aggregate_types([ty.as_str()]),
            FeedQuery::after(at)
                .limit(0)
                .aggregate_types([ty.as_str()])
                .event_types(["Happened"]),
        ] {
            let page = store.read_feed(&query).await.expect("read a page of 0");
            assert!(page.events.is_empty(), "limit 0 reads nothing: {query:?}");
            assert_eq!(
                page.next, at,
                "limit 0 returns the same checkpoint: {query:?}"
            );
        }
    }
}

/// Filters keep exactly the events of the given aggregate types, of the given event
/// types, or both, in feed order; a filter naming types that were never written keeps
/// nothing, and so does an empty list.
pub async fn feed_filters_by_aggregate_and_event_type(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let (ta, tb, tc) = (
        unique_type("FilterA"),
        unique_type("FilterB"),
        unique_type("FilterNone"),
    );
    // Event type names of our own too: other tests write "Happened" and the like.
    let (placed, paid, shipped) = (
        unique_type("Placed"),
        unique_type("Paid"),
        unique_type("Shipped"),
    );
    let (x, y, z) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let plan: [(&str, Uuid, Vec<&str>); 5] = [
        (&ta, x, vec![&placed, &paid]),
        (&tb, y, vec![&placed]),
        (&ta, z, vec![&shipped, &placed]),
        (&tb, y, vec![&paid, &shipped]),
        (&ta, x, vec![&shipped]),
    ];
    // (id, aggregate type, event type) in append order.
    let mut order: Vec<(Uuid, String, String)> = Vec::new();
    for (ty, id, types) in &plan {
        let batch: Vec<NewEvent> = types.iter().map(|t| event(t)).collect();
        append(store, ty, *id, &batch).await;
        order.extend(
            batch
                .iter()
                .map(|e| (e.event_id, ty.to_string(), e.event_type.clone())),
        );
    }
    // Wait until all of ours are visible, so that an empty answer below means filtered.
    let mut everything = Follower::new(ours(&[&ta, &tb], 100));
    everything.read_count(store, order.len()).await;
    let last = everything.checkpoint;

    fn s<S: AsRef<str>>(names: &[S]) -> Vec<String> {
        names.iter().map(|n| n.as_ref().to_owned()).collect()
    }
    // (aggregate types, event types), each `None` for no filter.
    type Filters = (Option<Vec<String>>, Option<Vec<String>>);
    let cases: Vec<Filters> = vec![
        (Some(s(&[&ta])), None),
        (Some(s(&[&tb, &ta])), None),
        (Some(s(&[&tb])), None),
        (None, Some(s(&[&placed]))),
        (None, Some(s(&[&placed, &shipped]))),
        (Some(s(&[&ta])), Some(s(&[&placed]))),
        (Some(s(&[&ta, &tb])), Some(s(&[&paid, &shipped]))),
        (Some(s(&[&tb])), Some(s(&[&shipped, &placed]))),
        (Some(s(&[&tc])), None),
        (Some(s(&[&tc])), Some(s(&[&placed]))),
        (Some(s(&[&ta])), Some(s(&["Happened"]))),
        (Some(Vec::new()), None),
        (None, Some(Vec::new())),
    ];
    for (aggregate_types, event_types) in cases {
        let mut query = FeedQuery::after(Checkpoint::START).limit(2);
        if let Some(t) = &aggregate_types {
            query = query.aggregate_types(t.clone());
        }
        if let Some(t) = &event_types {
            query = query.event_types(t.clone());
        }
        let want: Vec<Uuid> = order
            .iter()
            .filter(|(_, a, e)| query.matches(a, e))
            .map(|(id, _, _)| *id)
            .collect();
        let mut f = Follower::new(query.clone());
        f.read_count(store, want.len()).await;
        // Everything of ours is visible: one more read ends the filtered feed.
        let rest = f.read_page(store).await;
        assert!(
            rest.events.is_empty(),
            "nothing more for {query:?}: {:?}",
            rest.events
        );
        assert_eq!(
            f.ids(),
            want,
            "exactly the events {query:?} keeps, in order"
        );
        assert!(
            f.checkpoint >= last,
            "the filtered reader ends past all our events ({} < {last}) for {query:?}",
            f.checkpoint
        );
    }
}

/// A page that reaches the end of what is visible moves `next` past the events its
/// filter left out: a reader with a filter that matches nothing moves on, and a later
/// read from its checkpoint does not return the older events, only newer ones.
pub async fn feed_moves_past_filtered_out_events(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let ty = unique_type("Skipped");
    let id = Uuid::new_v4();
    append(store, &ty, id, &crate::events(5)).await;
    let mut f = Follower::new(ours(&[&ty], 10));
    f.read_count(store, 5).await;
    let last = f.seen[4].checkpoint;

    let nothing = unique_type("NothingMatches");
    let page = store
        .read_feed(
            &FeedQuery::after(Checkpoint::START)
                .limit(10)
                .aggregate_types([nothing.as_str()]),
        )
        .await
        .expect("read with a filter that matches nothing");
    assert!(page.events.is_empty(), "nothing matches: {:?}", page.events);
    assert!(
        page.next > Checkpoint::START && page.next >= last,
        "next ({}) moved past the events the filter left out (ours end at {last})",
        page.next
    );

    // From there, the older events are behind the reader.
    let mut after = Follower::new(
        FeedQuery::after(page.next)
            .limit(10)
            .aggregate_types([ty.as_str()]),
    );
    let old = after.read_page(store).await;
    assert!(
        old.events.is_empty(),
        "a read from the moved checkpoint does not return older events: {:?}",
        old.events
    );
    // A newer one still comes.
    let newer = append(store, &ty, id, &crate::events(1)).await;
    after.read_count(store, 1).await;
    assert_eq!(after.ids(), newer, "only the newer event follows");

    // Same with an event-type filter among events of other types: the narrow reader's
    // checkpoint keeps up with the feed.
    let rare = unique_type("Rare");
    let mut narrow = Follower::new(
        FeedQuery::after(page.next)
            .limit(10)
            .aggregate_types([ty.as_str()])
            .event_types([rare.as_str()]),
    );
    append(store, &ty, id, &crate::events(3)).await;
    let mut all = Follower::new(
        FeedQuery::after(after.checkpoint)
            .limit(10)
            .aggregate_types([ty.as_str()]),
    );
    all.read_count(store, 3).await;
    let third = all.seen[2].checkpoint;
    narrow
        .read_until(store, WAIT, |f| f.checkpoint >= third)
        .await;
    assert!(narrow.seen.is_empty(), "no event of the rare type");
    let rare_event = append(store, &ty, id, &[event(&rare)]).await;
    narrow.read_count(store, 1).await;
    assert_eq!(narrow.ids(), rare_event, "then the rare one");
}

/// An account was opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    /// Its owner.
    pub owner: String,
}

/// Money was paid in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    /// How much, in cents.
    pub cents: i64,
}

/// The account's events, decoded from the feed.
#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum AccountEvent {
    /// See [`Opened`].
    Opened(Opened),
    /// See [`Deposited`].
    #[event(name = "FeedDeposited", version = 2)]
    Deposited(Deposited),
}

/// A stored event of `e`, with this metadata.
fn domain_event<E: DomainEvent>(e: &E, metadata: EventMetadata) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: e.event_type().to_owned(),
        event_version: e.event_version(),
        payload: e.to_payload().expect("serialize an event"),
        metadata,
        occurred_at: now(),
    }
}

/// Feed events decode into a `DomainEvent` enum with their envelope right: checkpoint,
/// position, event id, aggregate type and id, version, metadata (correlation and
/// causation ids), time. An event of a type the enum does not know is an
/// `Error::EventDecode` naming it.
pub async fn feed_decodes_typed_envelopes(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let ty = unique_type("Account");
    let id = Uuid::new_v4();
    let correlation = Uuid::new_v4();
    let sent = [
        AccountEvent::Opened(Opened {
            owner: "zoë".into(),
        }),
        AccountEvent::Deposited(Deposited { cents: 1_250 }),
        AccountEvent::Deposited(Deposited { cents: -5 }),
    ];
    let mut batch = Vec::new();
    for (i, e) in sent.iter().enumerate() {
        let mut metadata = EventMetadata {
            correlation_id: Some(correlation),
            causation_id: Some(Uuid::new_v4()),
            ..EventMetadata::default()
        };
        metadata
            .extra
            .insert("n".into(), serde_json::Value::from(i as u64));
        batch.push(domain_event(e, metadata));
    }
    append(store, &ty, id, &batch[..1]).await;
    append(store, &ty, id, &batch[1..]).await;
    let unknown = event("Closed");
    append(store, &ty, id, std::slice::from_ref(&unknown)).await;
    let records = store
        .load_stream(&ty, id, 1)
        .await
        .expect("read the stream");

    let mut f = Follower::new(ours(&[&ty], 10));
    f.read_count(store, 4).await;
    for (i, fed) in f.seen[..3].iter().enumerate() {
        let got = Envelope::<AccountEvent>::decode(fed).expect("decode a known event");
        let record = &records[i];
        assert_eq!(got.event, sent[i], "the event decodes as it was sent");
        assert_eq!(got.checkpoint, fed.checkpoint, "checkpoint");
        assert_eq!(got.position, record.position, "position");
        assert_eq!(got.event_id, batch[i].event_id, "event id");
        assert_eq!(got.aggregate_type, ty, "aggregate type");
        assert_eq!(got.aggregate_id, id, "aggregate id");
        assert_eq!(got.version, i as u64 + 1, "version");
        assert_eq!(got.metadata, batch[i].metadata, "metadata");
        assert_eq!(
            got.metadata.correlation_id,
            Some(correlation),
            "correlation"
        );
        assert_eq!(got.occurred_at, batch[i].occurred_at, "time");
    }
    match Envelope::<AccountEvent>::decode(&f.seen[3]) {
        Err(Error::EventDecode {
            aggregate_type,
            aggregate_id,
            version,
            event_type,
            event_version,
            ..
        }) => assert_eq!(
            (
                aggregate_type,
                aggregate_id,
                version,
                event_type,
                event_version
            ),
            (ty.clone(), id, 4, "Closed".to_owned(), 1)
        ),
        other => panic!("an unknown event type is EventDecode, got {other:?}"),
    }
}

/// `result` is `Err(InvalidInput)` naming `field`, or the panic says what it was.
#[track_caller]
fn assert_invalid(result: eventsource::Result<FeedPage>, field: &str, what: &str) {
    match result {
        Err(Error::InvalidInput { field: f, .. }) if f == field => {}
        other => panic!("{what}: expected InvalidInput on `{field}`, got {other:?}"),
    }
}

/// A checkpoint ahead of the store (from another store, or made up) is refused with
/// `InvalidInput` on `checkpoint`, whatever the filters and limit, instead of waiting
/// for ever; and the store reads on as before. On the backends ordered by position alone
/// (transaction part 0), a position beyond the last event is ahead too.
pub async fn feed_refuses_a_checkpoint_ahead_of_the_store(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let ty = unique_type("Ahead");
    append(store, &ty, Uuid::new_v4(), &crate::events(2)).await;
    let mut ahead = vec![
        Checkpoint::new(u64::MAX / 4, 0),
        Checkpoint::new(u64::MAX / 4, u64::MAX / 4),
        Checkpoint::new(i64::MAX as u64, 1),
        Checkpoint::new(u64::MAX, u64::MAX),
        Checkpoint::new(u64::MAX, 0),
    ];
    let end = end_of_feed(store).await;
    if end.transaction() == 0 {
        ahead.push(Checkpoint::new(0, end.position() + 1_000));
        ahead.push(Checkpoint::new(0, u64::MAX));
    }
    for at in ahead {
        for query in [
            FeedQuery::after(at),
            FeedQuery::after(at).limit(1),
            FeedQuery::after(at).limit(0),
            FeedQuery::after(at).aggregate_types([ty.as_str()]),
            FeedQuery::after(at)
                .aggregate_types([ty.as_str()])
                .event_types(["Happened"]),
        ] {
            assert_invalid(
                store.read_feed(&query).await,
                "checkpoint",
                &format!("a checkpoint ahead of the store: {query:?}"),
            );
        }
    }
    // The end itself is fine, and so is the start.
    for at in [end, Checkpoint::START] {
        store
            .read_feed(&FeedQuery::after(at).aggregate_types([ty.as_str()]))
            .await
            .unwrap_or_else(|e| panic!("a read from {at}: {e}"));
    }
    let mut f = Follower::new(ours(&[&ty], 10));
    f.read_count(store, 2).await;
}

/// A filter name no store could hold (empty, with a NUL, longer than 255 bytes) is
/// refused with `InvalidInput` naming the filter (`aggregate_types` or `event_types`),
/// alone or among good names, whatever the limit; a name of exactly 255 bytes and odd
/// but storable names are accepted.
pub async fn feed_refuses_bad_filter_names(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let good = unique_type("GoodName");
    let bad = [
        String::new(),
        "a\0b".to_owned(),
        format!("{good}\0"),
        long_name(&unique_type("Long"), 256),
        long_name(&unique_type("Long"), 10_000),
    ];
    for name in &bad {
        let shown: String = name.chars().take(40).collect();
        for limit in [0, 1, FeedQuery::DEFAULT_LIMIT] {
            let base = FeedQuery::after(Checkpoint::START).limit(limit);
            assert_invalid(
                store
                    .read_feed(&base.clone().aggregate_types([name.as_str()]))
                    .await,
                "aggregate_types",
                &format!("aggregate type {shown:?}"),
            );
            assert_invalid(
                store
                    .read_feed(&base.clone().aggregate_types([good.as_str(), name.as_str()]))
                    .await,
                "aggregate_types",
                &format!("aggregate type {shown:?} after a good one"),
            );
            assert_invalid(
                store
                    .read_feed(&base.clone().event_types([name.as_str()]))
                    .await,
                "event_types",
                &format!("event type {shown:?}"),
            );
            assert_invalid(
                store
                    .read_feed(
                        &base
                            .clone()
                            .aggregate_types([good.as_str()])
                            .event_types([good.as_str(), name.as_str()]),
                    )
                    .await,
                "event_types",
                &format!("event type {shown:?} after a good one, with a good aggregate type"),
            );
            match store
                .read_feed(
                    &base
                        .clone()
                        .aggregate_types([name.as_str()])
                        .event_types([name.as_str()]),
                )
                .await
            {
                Err(Error::InvalidInput {
                    field: "aggregate_types" | "event_types",
                    ..
                }) => {}
                other => panic!("both filters bad ({shown:?}): got {other:?}"),
            }
        }
    }
    for name in [
        long_name(&unique_type("Max"), eventsource::store::MAX_NAME_LEN),
        format!("{good} with spaces/ü'\"%_"),
    ] {
        let page = store
            .read_feed(
                &FeedQuery::after(Checkpoint::START)
                    .aggregate_types([name.as_str()])
                    .event_types([name.as_str()]),
            )
            .await
            .unwrap_or_else(|e| panic!("a storable name is accepted as a filter: {e}"));
        assert!(page.events.is_empty());
    }
}

/// Every built-in store has an append signal, and it changes after an append (a single
/// event or a batch), so a reader can wait on it; a reader woken by it finds the events.
pub async fn append_signal_changes_after_an_append(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let mut signal = store
        .append_signal()
        .expect("the store has an append signal");
    let ty = unique_type("Signal");
    let id = Uuid::new_v4();
    for n in [1, 3] {
        signal.borrow_and_update();
        let before = *signal.borrow();
        let ids = append(store, &ty, id, &crate::events(n)).await;
        bounded(
            "the append signal changing after an append",
            Duration::from_secs(5),
            signal.changed(),
        )
        .await
        .expect("the signal's sender is alive");
        assert_ne!(*signal.borrow_and_update(), before, "the value changed");
        let mut f = Follower::new(ours(&[&ty], 10));
        f.read_until(store, WAIT, |f| {
            ids.iter()
                .all(|id| f.seen.iter().any(|e| e.event.event_id == *id))
        })
        .await;
    }
    // A receiver taken later sees later appends too.
    let mut late = store
        .append_signal()
        .expect("the store has an append signal");
    late.borrow_and_update();
    append(store, &ty, id, &crate::events(1)).await;
    bounded(
        "a later receiver's signal changing after an append",
        Duration::from_secs(5),
        late.changed(),
    )
    .await
    .expect("the signal's sender is alive");
}

/// Eight writers append a hundred times each (some batches of several events, some to a
/// stream they share) while a reader follows the feed: it gets exactly the committed
/// events, once each, its checkpoint never going back, each aggregate's versions in
/// order (1, 2, 3... with nothing missing), each stream as `read_stream` gives it.
pub async fn feed_follows_concurrent_writers(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 100;
    let ty = unique_type("Busy");
    let shared = Uuid::new_v4();
    // How many committed events the reader must see; unknown until the writers end.
    let expected = Arc::new(AtomicUsize::new(usize::MAX));

    let reader = {
        let (store, ty, expected) = (store.clone(), ty.clone(), expected.clone());
        tokio::spawn(async move {
            let mut signal = store.append_signal();
            let mut f = Follower::new(ours(&[&ty], 64));
            let started = Instant::now();
            let mut writers_done: Option<Instant> = None;
            while f.seen.len() < expected.load(Ordering::SeqCst) {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "the reader did not see every event: {} seen, at {}",
                    f.seen.len(),
                    f.checkpoint
                );
                if expected.load(Ordering::SeqCst) != usize::MAX {
                    let done = *writers_done.get_or_insert_with(Instant::now);
                    assert!(
                        done.elapsed() < WAIT,
                        "{WAIT:?} after the writers ended the reader has seen {} of the {} \
                         committed events, at {}",
                        f.seen.len(),
                        expected.load(Ordering::SeqCst),
                        f.checkpoint
                    );
                }
                let page = f.read_page(store.as_ref()).await;
                if page.at_end(&f.next_query()) {
                    // Wait for the next append, or a little (a held-back feed, or a
                    // notification that came before this read).
                    let pause = Duration::from_millis(20);
                    match &mut signal {
                        Some(s) => {
                            let _ = tokio::time::timeout(pause, s.changed()).await;
                        }
                        None => tokio::time::sleep(pause).await,
                    }
                }
            }
            f
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, ty) = (store.clone(), ty.clone());
        writers.push(tokio::spawn(async move {
            let own = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
            let mut committed = Vec::new();
            for i in 0..APPENDS {
                let n = match (w + i) % 10 {
                    0 => 5,
                    3 | 7 => 2,
                    _ => 1,
                };
                let id = if i % 6 == 0 { shared } else { own[i % 3] };
                let batch = crate::events(n);
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    assert!(attempts < 10_000, "no progress appending to {id}");
                    match store.append(&ty, id, ExpectedVersion::Any, &batch).await {
                        Ok(_) => break,
                        // A concurrent append to the shared stream won the version:
                        // nothing was written, the same batch goes again.
                        Err(Error::Conflict { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("append under concurrency: {e}"),
                    }
                }
                committed.extend(batch.iter().map(|e| (id, e.event_id)));
            }
            (own, committed)
        }));
    }
    let mut committed: HashMap<Uuid, Uuid> = HashMap::new();
    let mut streams = vec![shared];
    for writer in writers {
        let (own, events) = writer.await.expect("a writer");
        streams.extend(own);
        for (id, event_id) in events {
            assert!(committed.insert(event_id, id).is_none());
        }
    }
    expected.store(committed.len(), Ordering::SeqCst);
    let f = bounded("the reader", Duration::from_secs(150), reader)
        .await
        .expect("the reader");

    let seen: HashSet<Uuid> = f.ids().into_iter().collect();
    let want: HashSet<Uuid> = committed.keys().copied().collect();
    assert_eq!(seen.len(), f.seen.len(), "each event once");
    assert_eq!(seen, want, "exactly the committed events");
    // Each stream, in feed order, is the stream as read_stream gives it.
    let mut by_stream: BTreeMap<Uuid, Vec<&RecordedEvent>> = BTreeMap::new();
    for fed in &f.seen {
        by_stream
            .entry(fed.event.aggregate_id)
            .or_default()
            .push(&fed.event);
    }
    for id in streams {
        let stream = store.load_stream(&ty, id, 1).await.expect("read a stream");
        let fed = by_stream.remove(&id).unwrap_or_default();
        let versions: Vec<u64> = fed.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=stream.len() as u64).collect::<Vec<_>>(),
            "stream {id}: versions in order, none missing"
        );
        assert!(
            fed.into_iter().eq(stream.iter()),
            "stream {id}: the feed gives it as read_stream"
        );
    }
    assert!(by_stream.is_empty(), "no stream of another writer");
}
