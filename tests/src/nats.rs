//! What the NATS tests share: the server to use, a server of their own to kill, and the
//! check that a stream holds every committed event exactly once, in order.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::StreamMessage};
use chrono::SecondsFormat;
use eventsource::EventStore;
use eventsource::feed::{Checkpoint, FeedEvent, FeedQuery};
use eventsource::nats::{JetStreamPublisher, headers};
use uuid::Uuid;

/// The server the NATS tests use when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Where the test harness finds `nats-server` to start servers of its own.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// `NATS_URL` (or [`DEFAULT_NATS_URL`]) if a server answers there, or `None` after
/// saying so.
///
/// # Panics
///
/// When `CI` is set and no server answers: CI must run the NATS tests, never skip them.
pub async fn nats_url() -> Option<String> {
    let url = std::env::var("NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
    let reached = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(&url)
        .await;
    match reached {
        Ok(client) => {
            drop(client);
            Some(url)
        }
        Err(e) if std::env::var_os("CI").is_some() => panic!(
            "CI is set but no NATS server answers at {url} ({e}): the NATS tests cannot be \
             skipped in CI (start `nats-server -js` or set NATS_URL)"
        ),
        Err(e) => {
            eprintln!(
                "skipping a NATS test: no server at {url} ({e}). To run it: start \
                 `nats-server -js` there, or set NATS_URL"
            );
            None
        }
    }
}

/// A JetStream context on a client that reconnects every 50 ms for ever, with this
/// timeout on API requests and acknowledgements.
///
/// # Panics
///
/// When the first connection fails.
pub async fn jetstream(url: &str, timeout: Duration) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to NATS at {url}: {e}"));
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

/// A stream name and a subject prefix no other test (or earlier run) uses.
pub fn unique_stream(tag: &str) -> (String, String) {
    let id = Uuid::new_v4().simple().to_string();
    (
        format!("ES_TEST_{}_{id}", tag.to_uppercase()),
        format!("es-test.{tag}-{id}"),
    )
}

/// Every message of a stream, in stream order.
///
/// # Panics
///
/// When the stream cannot be read.
pub async fn read_stream(context: &jetstream::Context, name: &str) -> Vec<StreamMessage> {
    let mut stream = context
        .get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("look up stream {name}: {e}"));
    let state = stream.info().await.expect("stream info").state.clone();
    let mut messages = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return messages;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        messages.push(
            stream
                .get_raw_message(sequence)
                .await
                .unwrap_or_else(|e| panic!("read message {sequence} of {name}: {e}")),
        );
    }
    messages
}

/// How many messages a stream holds (0 when it cannot be read, say while the server
/// restarts).
pub async fn stream_len(context: &jetstream::Context, name: &str) -> u64 {
    match context.get_stream(name).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) => info.state.messages,
            Err(_) => 0,
        },
        Err(_) => 0,
    }
}

/// Every event of the store's feed, in feed order.
///
/// # Panics
///
/// When the feed cannot be read.
pub async fn feed(store: &dyn EventStore) -> Vec<FeedEvent> {
    let mut events = Vec::new();
    let mut at = Checkpoint::START;
    loop {
        let query = FeedQuery::after(at).limit(1000);
        let page = store.read_feed(&query).await.expect("read the feed");
        let end = page.at_end(&query);
        events.extend(page.events);
        at = page.next;
        if end {
            return events;
        }
    }
}

/// What [`check_stream`] found.
#[derive(Debug)]
pub struct StreamCheck {
    /// Messages in the stream.
    pub messages: usize,
    /// Aggregates seen.
    pub aggregates: usize,
}

/// Checks that `messages` hold each of `events` exactly once, with its subject,
/// headers and payload, and each aggregate's events in feed order.
///
/// # Panics
///
/// At the first difference.
pub fn check_stream(
    publisher: &JetStreamPublisher,
    events: &[FeedEvent],
    messages: &[StreamMessage],
) -> StreamCheck {
    let mut by_id: HashMap<Uuid, &StreamMessage> = HashMap::new();
    for m in messages {
        let id = header(m, "Nats-Msg-Id");
        let id = Uuid::parse_str(&id).unwrap_or_else(|e| panic!("Nats-Msg-Id {id}: {e}"));
        if let Some(other) = by_id.insert(id, m) {
            panic!(
                "event {id} is in the stream twice, at sequences {} and {}",
                other.sequence, m.sequence
            );
        }
    }
    let ids: HashSet<Uuid> = events.iter().map(|e| e.event.event_id).collect();
    let extra: Vec<&Uuid> = by_id.keys().filter(|id| !ids.contains(id)).collect();
    assert!(
        extra.is_empty(),
        "messages of no committed event: {extra:?}"
    );
    let mut last_sequence: HashMap<(String, Uuid), (u64, u64)> = HashMap::new();
    for fed in events {
        let e = &fed.event;
        let m = by_id
            .get(&e.event_id)
            .unwrap_or_else(|| panic!("event {} (position {}) is missing", e.event_id, e.position));
        assert_eq!(
            m.subject.as_str(),
            publisher.subject(&e.aggregate_type, e.aggregate_id),
            "subject of {}",
            e.event_id
        );
        assert_eq!(header(m, headers::EVENT_TYPE), e.event_type.trim());
        assert_eq!(
            header(m, headers::EVENT_VERSION),
            e.event_version.to_string()
        );
        assert_eq!(header(m, headers::AGGREGATE_VERSION), e.version.to_string());
        assert_eq!(header(m, headers::POSITION), e.position.to_string());
        assert_eq!(header(m, headers::CHECKPOINT), fed.checkpoint.to_string());
        assert_eq!(
            header(m, headers::OCCURRED_AT),
            e.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        assert_eq!(
            m.headers
                .get(headers::CORRELATION_ID)
                .map(|v| v.as_str().to_owned()),
            e.metadata.correlation_id.map(|id| id.to_string())
        );
        assert_eq!(
            m.headers
                .get(headers::CAUSATION_ID)
                .map(|v| v.as_str().to_owned()),
            e.metadata.causation_id.map(|id| id.to_string())
        );
        let extra = m
            .headers
            .get(headers::METADATA)
            .map(|v| serde_json::from_str::<serde_json::Map<_, _>>(v.as_str()).expect("json"))
            .unwrap_or_default();
        assert_eq!(extra, e.metadata.extra, "metadata of {}", e.event_id);
        assert_eq!(header(m, "Content-Type"), "application/json");
        assert_eq!(
            std::str::from_utf8(&m.payload).expect("utf-8 payload"),
            e.payload,
            "payload of {}",
            e.event_id
        );
        let key = (e.aggregate_type.clone(), e.aggregate_id);
        if let Some((sequence, version)) = last_sequence.get(&key) {
            assert!(
                *sequence < m.sequence,
                "{}/{}: version {} is at stream sequence {}, before version {version} at {sequence}",
                e.aggregate_type,
                e.aggregate_id,
                e.version,
                m.sequence
            );
        }
        last_sequence.insert(key, (m.sequence, e.version));
    }
    assert_eq!(messages.len(), events.len(), "one message per event");
    StreamCheck {
        messages: messages.len(),
        aggregates: last_sequence.len(),
    }
}

fn header(m: &StreamMessage, name: &str) -> String {
    m.headers
        .get(name)
        .unwrap_or_else(|| panic!("message {} has no {name} header", m.sequence))
        .as_str()
        .to_owned()
}

/// A `nats-server` of the test's own, on a port and a store directory that survive its
/// restarts; killed when dropped.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port, storing in `dir`; waits
    /// until it takes connections.
    ///
    /// # Panics
    ///
    /// When it cannot be started or does not listen within 10 s.
    pub fn start(dir: PathBuf) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = NatsServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL (no shutdown of its own) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again (killing it first if it runs), same port and store directory.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {NATS_SERVER}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server does not listen on port {} after 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
