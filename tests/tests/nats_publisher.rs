//! The JetStream publisher: every committed event reaches the stream exactly once, each
//! aggregate's events in feed order, from SQLite and PostgreSQL, through server restarts
//! and a publisher process killed mid-batch.
//!
//! The shared server is `NATS_URL` (default `nats://127.0.0.1:4222`); without one the
//! tests skip, or fail when `CI` is set. The restart test runs a `nats-server` of its
//! own on a free loopback port.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsource::feed::Checkpoint;
use eventsource::nats::{JetStreamPublisher, PublishError, subject_token};
use eventsource::subscription::{OnExhausted, RetryPolicy, Subscription, SubscriptionStore};
use eventsource::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, PostgresEventStore, SqliteEventStore,
};
use eventsource_tests::fixtures::FreshDatabase;
use eventsource_tests::nats::{
    NATS_SERVER, NatsServer, check_stream, feed, jetstream, nats_url, read_stream, stream_len,
    unique_stream,
};
use eventsource_tests::{TempDir, now};
use uuid::Uuid;

/// The aggregate types of the tests: one plain, two that are not subject tokens.
const TYPES: [&str; 3] = ["Order", "billing.Invoice", "Order line*>"];

/// An event with a small payload; every third with correlation and causation ids,
/// every fifth with other metadata.
fn event(n: usize) -> NewEvent {
    let mut metadata = EventMetadata::default();
    if n.is_multiple_of(3) {
        metadata.correlation_id = Some(Uuid::new_v4());
        metadata.causation_id = Some(Uuid::new_v4());
    }
    if n.is_multiple_of(5) {
        metadata.extra.insert(
            "tenant".into(),
            serde_json::json!({"id": n, "name": "a \"b\"\nc"}),
        );
    }
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: if n.is_multiple_of(2) {
            "Placed"
        } else {
            "order.paid"
        }
        .to_owned(),
        event_version: 1 + (n % 3) as u32,
        payload: format!(r#"{{"n":{n},"text":"é\n\"x\""}}"#),
        metadata,
        occurred_at: now(),
    }
}

/// Appends `total` events to `aggregates` aggregates (spread over [`TYPES`]), a few at
/// a time in turn, so that the feed interleaves them.
async fn append(store: &dyn EventStore, aggregates: usize, total: usize) -> Vec<(String, Uuid)> {
    let ids: Vec<(String, Uuid)> = (0..aggregates)
        .map(|i| (TYPES[i % TYPES.len()].to_owned(), Uuid::new_v4()))
        .collect();
    let mut n = 0;
    let mut round = 0;
    while n < total {
        for (ty, id) in &ids {
            let k = (1 + (round + n) % 3).min(total - n);
            let batch: Vec<NewEvent> = (n..n + k).map(event).collect();
            store
                .append(ty, *id, ExpectedVersion::Any, &batch)
                .await
                .expect("append");
            n += k;
            if n == total {
                break;
            }
        }
        round += 1;
    }
    ids
}

/// A publisher on `url` with a stream of its own; returns it with the stream's name.
async fn publisher(url: &str, tag: &str, ack_timeout: Duration) -> (JetStreamPublisher, String) {
    let (stream, prefix) = unique_stream(tag);
    let publisher = JetStreamPublisher::new(jetstream(url, ack_timeout).await, prefix)
        .expect("a valid prefix")
        .ack_timeout(ack_timeout);
    publisher
        .ensure_stream(&stream, Duration::from_secs(600))
        .await
        .expect("create the stream");
    (publisher, stream)
}

async fn delete_stream(url: &str, stream: &str) {
    let _ = jetstream(url, Duration::from_secs(5))
        .await
        .delete_stream(stream)
        .await;
}

/// Publishes 600 events of 24 aggregates; catches up again (nothing is published);
/// resets the checkpoint and catches up again (everything is a duplicate).
async fn publishes_each_committed_event_once<S>(store: S, url: &str, tag: &str)
where
    S: SubscriptionStore + Send + Sync,
{
    const TOTAL: usize = 600;
    append(&store, 24, TOTAL).await;
    let (publisher, stream) = publisher(url, tag, Duration::from_secs(5)).await;
    let check = jetstream(url, Duration::from_secs(5)).await;
    let subscription = Subscription::new("to-jetstream", store.clone()).batch_size(64);

    let started = Instant::now();
    let publisher = subscription
        .catch_up_with(publisher)
        .await
        .expect("publish the feed");
    let took = started.elapsed();
    let stats = publisher.stats();
    assert_eq!(
        (stats.stored, stats.duplicates),
        (TOTAL as u64, 0),
        "{stats:?}"
    );
    let events = feed(&store).await;
    assert_eq!(events.len(), TOTAL);
    let found = check_stream(&publisher, &events, &read_stream(&check, &stream).await);
    eprintln!(
        "{tag}: {TOTAL} events of {} aggregates published in {took:?}",
        found.aggregates
    );

    // The checkpoint moved: nothing to publish.
    let publisher = subscription
        .catch_up_with(publisher)
        .await
        .expect("catch up");
    assert_eq!(
        publisher.stats(),
        stats,
        "a second catch-up publishes nothing"
    );
    assert_eq!(stream_len(&check, &stream).await, TOTAL as u64);

    // From the start again: JetStream recognises every message id.
    subscription
        .reset(Checkpoint::START)
        .await
        .expect("reset the checkpoint");
    let publisher = subscription
        .catch_up_with(publisher)
        .await
        .expect("republish");
    let again = publisher.stats();
    assert_eq!(
        (again.stored, again.duplicates),
        (TOTAL as u64, TOTAL as u64),
        "republished events are all duplicates: {again:?}"
    );
    check_stream(&publisher, &events, &read_stream(&check, &stream).await);
    delete_stream(url, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_events_are_published_once_each() {
    let Some(url) = nats_url().await else { return };
    let dir = TempDir::new().expect("a temporary directory");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open SQLite");
    publishes_each_committed_event_once(store.clone(), &url, "sqlite").await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_are_published_once_each() {
    let Some(url) = nats_url().await else { return };
    let Some(db) = FreshDatabase::create("es_nats").await else {
        return;
    };
    let store = PostgresEventStore::connect(db.url())
        .await
        .expect("connect to the fresh database");
    publishes_each_committed_event_once(store.clone(), &url, "postgres").await;
    store.close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_header_can_carry_is_refused_and_parked() {
    let Some(url) = nats_url().await else { return };
    let store = SqliteEventStore::open(":memory:")
        .await
        .expect("open SQLite");
    let id = Uuid::new_v4();
    let mut bad = event(1);
    bad.event_type = "Line\nBreak".to_owned();
    let events = [event(0), bad.clone(), event(2)];
    store
        .append("Order", id, ExpectedVersion::Exact(0), &events)
        .await
        .expect("append");
    let (publisher, stream) = publisher(&url, "refused", Duration::from_secs(5)).await;
    let subscription = Subscription::new("to-jetstream", store.clone()).retry(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
        on_exhausted: OnExhausted::Park,
    });
    // A catch-up ends at the end of the page it read even when a failure made it commit
    // only the events before the failing one; catch up until everything is handled.
    let check = jetstream(&url, Duration::from_secs(5)).await;
    let mut publisher = publisher;
    for _ in 0..5 {
        publisher = subscription
            .catch_up_with(publisher)
            .await
            .expect("catch up");
        if stream_len(&check, &stream).await == 2 {
            break;
        }
    }
    let parked = subscription.parked().await.expect("parked events");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_id, bad.event_id);
    assert!(
        parked[0].error.contains("line break"),
        "{}",
        parked[0].error
    );
    let messages = read_stream(&check, &stream).await;
    let published: Vec<String> = messages
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").expect("id").to_string())
        .collect();
    assert_eq!(
        published,
        [
            events[0].event_id.to_string(),
            events[2].event_id.to_string()
        ]
    );
    delete_stream(&url, &stream).await;
}

#[test]
fn prefixes_that_are_not_subject_tokens_are_refused() {
    // No server is needed to refuse a prefix: a client that never connected will do.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("a client that connects later");
        let context = async_nats::jetstream::new(client);
        for bad in ["", "a..b", "a b", "a.*", "x.>", "$JS"] {
            assert!(
                matches!(
                    JetStreamPublisher::new(context.clone(), bad),
                    Err(PublishError::InvalidPrefix { .. })
                ),
                "{bad:?}"
            );
        }
        let publisher = JetStreamPublisher::new(context, "shop.events").expect("valid");
        let id = Uuid::nil();
        assert_eq!(
            publisher.subject("billing.Invoice", id),
            format!("shop.events.billing%2EInvoice.{id}")
        );
        assert_eq!(subject_token("Order line*>"), "Order%20line%2A%3E");
    });
}

/// `nats-server` to start servers of the test's own, or `None` after saying it is not
/// there.
///
/// # Panics
///
/// When `CI` is set and it is not there.
fn own_server_available() -> bool {
    if std::path::Path::new(NATS_SERVER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {NATS_SERVER} is missing: install nats-server"
    );
    eprintln!("skipping a NATS restart test: {NATS_SERVER} is missing");
    false
}

/// Kills (SIGKILL) and restarts the server seven times while 5000 events are appended
/// and published: the stream ends with every committed event exactly once, each
/// aggregate's in feed order.
///
/// A publisher that sends a whole batch at once and sends it again after a failure
/// fails this now and then (an aggregate's later event stored before an earlier one
/// lost with the connection); this one sends an aggregate's next event only after the
/// previous one's acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_restarts_mid_stream_lose_and_reorder_nothing() {
    const TOTAL: usize = 5000;
    const AGGREGATES: usize = 50;
    if !own_server_available() {
        return;
    }
    let dir = TempDir::new().expect("a temporary directory");
    let mut server = NatsServer::start(dir.path().join("nats"));
    let url = server.url();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open SQLite");
    // Acknowledgements wait 400 ms: the second kill keeps the server down longer, so
    // that batches fail and run again.
    let (publisher, stream) = publisher(&url, "restart", Duration::from_millis(400)).await;

    // Appends spread over a second or two, while the publisher follows.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let ids: Vec<(String, Uuid)> = (0..AGGREGATES)
                .map(|i| (TYPES[i % TYPES.len()].to_owned(), Uuid::new_v4()))
                .collect();
            let (mut n, mut i, mut busy) = (0, 0, 0);
            while n < TOTAL {
                let (ty, id) = &ids[(i * 7) % AGGREGATES];
                let k = (1 + i % 19).min(TOTAL - n);
                let batch: Vec<NewEvent> = (n..n + k).map(event).collect();
                // The subscription's transactions share the SQLite file, which now and
                // then refuses a write as locked; appending the same batch again is
                // safe (the same event ids are recognised, never stored twice).
                let mut attempts = 0;
                loop {
                    match store.append(ty, *id, ExpectedVersion::Any, &batch).await {
                        Ok(_) => break,
                        Err(eventsource::Error::Backend { .. }) if attempts < 5 => {
                            attempts += 1;
                            busy += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("append: {e}"),
                    }
                }
                n += k;
                i += 1;
                if i.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            busy
        })
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let subscription = Subscription::new("to-jetstream", store.clone())
            .batch_size(500)
            .poll_interval(Duration::from_millis(50));
        tokio::spawn(async move {
            subscription
                .run_with(publisher, async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    // Short outages while the stream fills, then one longer than the ack timeout.
    let check = jetstream(&url, Duration::from_secs(5)).await;
    let mut at_kills = Vec::new();
    for (up, down) in [
        (120, 150),
        (120, 150),
        (120, 150),
        (120, 150),
        (120, 150),
        (120, 150),
        (300, 1500),
    ] {
        tokio::time::sleep(Duration::from_millis(up)).await;
        at_kills.push(stream_len(&check, &stream).await);
        tokio::task::block_in_place(|| server.kill());
        tokio::time::sleep(Duration::from_millis(down)).await;
        tokio::task::block_in_place(|| server.restart());
    }
    let busy = writer.await.expect("the writer");
    assert!(
        at_kills.iter().all(|&n| n < TOTAL as u64),
        "each kill came mid-stream: {at_kills:?} of {TOTAL} in the stream"
    );

    let started = Instant::now();
    while stream_len(&check, &stream).await < TOTAL as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stream holds {} of {TOTAL} events after 60 s",
            stream_len(&check, &stream).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = started.elapsed();
    let _ = stop.send(());
    let publisher = running
        .await
        .expect("the subscription task")
        .expect("the subscription");
    let stats = publisher.stats();
    assert!(
        stats.failed_batches > 0,
        "the restarts failed at least one batch: {stats:?}"
    );
    let events = feed(&store).await;
    assert_eq!(events.len(), TOTAL);
    let found = check_stream(&publisher, &events, &read_stream(&check, &stream).await);
    eprintln!(
        "restarts: kills with {at_kills:?} events in the stream; {} events of {} aggregates \
         in the stream {recovered:?} after the last append; {stats:?}; {busy} appends \
         refused as locked and made again",
        found.messages, found.aggregates
    );
    store.close().await;
}

/// Kills the publisher process (SIGKILL) mid-batch, again and again, and starts it once
/// more to finish: the stream ends with every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_mid_batch_loses_and_duplicates_nothing() {
    const TOTAL: usize = 6000;
    let Some(url) = nats_url().await else { return };
    let dir = TempDir::new().expect("a temporary directory");
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.expect("open SQLite");
    append(&store, 40, TOTAL).await;
    let events = feed(&store).await;
    let (publisher, stream) = publisher(&url, "killed", Duration::from_secs(5)).await;
    let check = jetstream(&url, Duration::from_secs(5)).await;
    let subscription = Subscription::new("to-jetstream", store.clone());

    let worker = || {
        Command::new(env!("CARGO_BIN_EXE_nats-publish-worker"))
            .env("EVENTS_DB", &path)
            .env("NATS_URL", &url)
            .env("NATS_PREFIX", publisher.prefix())
            .env("SUBSCRIPTION", subscription.name())
            .env("BATCH_SIZE", "250")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the publish worker")
    };
    // Kill it mid-batch: after two batches, wait an eighth of the time between them
    // (then three eighths, five, seven, and round again), until a kill has left
    // published events behind the checkpoint (at most eight kills).
    let mut kills = Vec::new();
    for kill in 0..8u32 {
        let mut child = worker();
        let mut out = BufReader::new(child.stdout.take().expect("worker stdout"));
        tokio::task::block_in_place(|| {
            let mut line = String::new();
            let mut committed_at = Vec::new();
            while committed_at.len() < 2 {
                line.clear();
                out.read_line(&mut line).expect("a line of the worker");
                assert!(line.starts_with("committed "), "{line:?}");
                committed_at.push(Instant::now());
            }
            let batch = committed_at[1] - committed_at[0];
            std::thread::sleep(batch * (1 + 2 * (kill % 4)) / 8);
            child.kill().expect("kill the worker");
            child.wait().expect("wait for the worker");
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let checkpoint = subscription.checkpoints().await.expect("checkpoint")[0];
        let committed = events.iter().filter(|e| e.checkpoint <= checkpoint).count();
        let in_stream = stream_len(&check, &stream).await as usize;
        assert!(
            in_stream >= committed,
            "committed {committed}, published {in_stream}"
        );
        kills.push((committed, in_stream));
        if in_stream > committed || committed == TOTAL {
            break;
        }
    }
    let (committed, in_stream) = *kills.last().expect("a kill");
    assert!(
        in_stream > committed,
        "no kill left a published batch uncommitted: {kills:?}"
    );

    let mut child = worker();
    let out = BufReader::new(child.stdout.take().expect("worker stdout"));
    let done = tokio::task::block_in_place(|| {
        let last = out
            .lines()
            .map(|l| l.expect("worker output"))
            .last()
            .expect("a last line");
        assert!(
            child.wait().expect("wait").success(),
            "the last worker failed"
        );
        last
    });
    let counts: Vec<u64> = done
        .strip_prefix("done ")
        .unwrap_or_else(|| panic!("{done:?}"))
        .split(' ')
        .map(|n| n.parse().expect("a count"))
        .collect();
    assert_eq!(
        counts,
        [(TOTAL - in_stream) as u64, (in_stream - committed) as u64],
        "the restarted worker stores what was missing and recognises the rest"
    );
    let found = check_stream(&publisher, &events, &read_stream(&check, &stream).await);
    eprintln!(
        "killed publisher: kills at (committed, in stream) {kills:?}; {} events of {} \
         aggregates in the stream",
        found.messages, found.aggregates
    );
    store.close().await;
    delete_stream(&url, &stream).await;
}
