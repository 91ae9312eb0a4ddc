//! A small HTTP bank service on axum: accounts as an event-sourced aggregate, commands
//! through [`AggregateRepository::execute`](eventsource::AggregateRepository::execute)
//! with conflict retries, and balances read from a projection in the same database.
//!
//! ```sh
//! cargo run --example bank                              # SQLite in memory, 127.0.0.1:3000
//! cargo run --example bank -- --database bank.db        # a SQLite file
//! cargo run --example bank -- --database postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//! DATABASE_URL=postgres://... BANK_ADDR=127.0.0.1:0 cargo run --example bank
//! ```
//!
//! The program prints `listening on http://ADDR` once it accepts connections (with port
//! 0 the system picks a free port, and ADDR names it), and stops gracefully on Ctrl-C or
//! SIGTERM. The service itself is this module, [`start`]ed with a [`Config`]; the
//! end-to-end test (`tests/tests/bank_service.rs`) runs it in-process on SQLite and on
//! PostgreSQL.
//!
//! ```sh
//! curl -si localhost:3000/accounts -H 'content-type: application/json' -d '{"owner":"ada"}'
//! curl -si localhost:3000/accounts/$ID/deposit -H 'content-type: application/json' -d '{"amount_cents":500}'
//! curl -si localhost:3000/accounts/$ID/withdraw -H 'content-type: application/json' -d '{"amount_cents":200}'
//! curl -si localhost:3000/accounts/$ID/freeze -X POST
//! curl -si "localhost:3000/accounts/$ID?min_version=3"
//! ```
//!
//! # Routes
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /accounts` | `{"owner": "ada"}` | 201, `Location`, the account |
//! | `POST /accounts/{id}/deposit` | `{"amount_cents": 500}` | 200, the account |
//! | `POST /accounts/{id}/withdraw` | `{"amount_cents": 200}` | 200, the account |
//! | `POST /accounts/{id}/freeze` | none | 200, the account (freezing twice writes nothing) |
//! | `GET /accounts/{id}[?min_version=N]` | | 200, the read model's row |
//! | `GET /health` | | 200, or 503 once the projection has stopped on an error |
//!
//! A write answers `{"id", "owner", "balance_cents", "frozen", "version", "attempts",
//! "already_applied"}`: the account as its own command left it, at the version its
//! events reached (`attempts` is how many times the command ran). A read answers
//! `{"id", "owner", "balance_cents", "version", "frozen"}` from the `balances` table.
//!
//! Errors are JSON, `{"error": code, "message": text}`, plus details for some:
//!
//! | status | when | `error` |
//! |---|---|---|
//! | 400 | a body that is not JSON or not the expected shape; an id that is not a UUID; a bad `Idempotency-Key` or query | `malformed_json`, `invalid_account_id`, `invalid_idempotency_key`, `bad_query` |
//! | 404 | an unknown account (or route) | `account_not_found` (`no_route`) |
//! | 409 | the command still conflicted with other writers after every retry; nothing was written, the client may retry | `conflict` (with `attempts`) |
//! | 415 | a body without `content-type: application/json` | `unsupported_media_type` |
//! | 422 | the account refused: a non-positive amount, insufficient funds, a frozen account, an invalid owner; nothing was written | `non_positive_amount`, `insufficient_funds`, `account_frozen`, `balance_overflow`, `invalid_owner`; `idempotency_key_reused` for a key used on another account |
//! | 503 | the read model did not reach the version asked for within the read wait, the projection has stopped, or the database is down | `projection_behind` (with `projected_version`, `Retry-After`), `projection_failed`, `store_unavailable` |
//!
//! # Consistency
//!
//! Writes are strongly consistent: each command loads the account, decides on its
//! current state and appends with optimistic concurrency; a concurrent writer makes the
//! save conflict, and the command runs again on the fresh state (up to
//! [`Config::conflict_retry`], 10 runs by default). A withdrawal therefore never takes a
//! balance below zero, however many clients write at once.
//!
//! Reads are **eventually consistent**: `GET /accounts/{id}` reads the `balances` table,
//! which the `bank-balances` subscription updates after the events are committed
//! (usually within milliseconds; on PostgreSQL an older open transaction can hold it
//! back). Each batch's row updates commit in one transaction with the subscription's
//! checkpoint, so every event counts exactly once, across crashes and restarts.
//!
//! For **read-your-writes**, a client has two ways:
//! - use the write's own answer: it is the account at the version the write reached,
//!   straight from the command, not from the read model;
//! - pass that version back as `GET /accounts/{id}?min_version=N`: the read waits until
//!   the row reflects version `N` (up to [`Config::read_wait`], 5 s by default, then 503
//!   `projection_behind`). An account that exists but has no row yet (just opened) is
//!   waited for the same way, so a read never answers 404 for an acknowledged account.
//!
//! # Idempotent retries
//!
//! A write may carry an `Idempotency-Key: <uuid>` header. The command's events then get
//! ids derived from the key, so a retry of a request whose answer was lost appends
//! nothing and answers the account as it is, with `"already_applied": true` (and 200
//! rather than 201 for an open, whose account id derives from the key). A refused
//! command wrote nothing, so its key stays unused. A key names one operation: reusing it
//! for another operation on the same account answers the first one's outcome, and on
//! another account is refused (422 `idempotency_key_reused`).
//!
//! # Shutdown
//!
//! [`Running::shutdown`] stops accepting connections, lets the requests in flight finish,
//! then stops the subscription (it finishes the batch in hand and commits its checkpoint)
//! and closes the database pools. A restart resumes the projection at its checkpoint.

mod account;
mod http;
mod read_model;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eventsource::command::ConflictRetry;
use eventsource::subscription::SubscriptionStore;
use eventsource::subscription::{OnExhausted, Projection, RetryPolicy, Subscription};
use eventsource::{
    Aggregate, AggregateRepository, BoxError, EventStore, PostgresEventStore,
    PostgresSnapshotStore, SnapshotStore, SqliteEventStore, SqliteSnapshotStore,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use account::{Account, AccountEvent, Deposited, Frozen, Opened, Refusal, Withdrawn};
pub use read_model::{BalanceRow, Balances, CREATE_TABLE, ReadModel, SUBSCRIPTION};

use http::{AppState, ProjectionHealth};

/// The address the service listens on unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// How long [`Running::shutdown`] waits for the requests in flight.
const HTTP_DRAIN: Duration = Duration::from_secs(30);

/// Where the events and the read model live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (created if missing), or `":memory:"` for a private in-memory
    /// database that ends with the process.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

impl Backend {
    /// `postgres://...` or `postgresql://...` is PostgreSQL; `sqlite::memory:` or
    /// `:memory:` is SQLite in memory; `sqlite://PATH`, `sqlite:PATH` or any other text
    /// is a SQLite file.
    pub fn parse(s: &str) -> Backend {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Backend::Postgres(s.to_owned());
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .unwrap_or(s);
        Backend::Sqlite(PathBuf::from(if path == ":memory:" || path.is_empty() {
            ":memory:"
        } else {
            path
        }))
    }

    /// SQLite in memory.
    pub fn memory() -> Backend {
        Backend::Sqlite(PathBuf::from(":memory:"))
    }

    /// What to print about it (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite(p) if p.as_os_str() == ":memory:" => "SQLite in memory".to_owned(),
            Backend::Sqlite(p) => format!("SQLite file {}", p.display()),
            Backend::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let user = &url[scheme + 3..at];
                    let user = user.split(':').next().unwrap_or_default();
                    format!("PostgreSQL {}{user}{}", &url[..scheme + 3], &url[at..])
                }
                _ => format!("PostgreSQL {url}"),
            },
        }
    }
}

/// How to run the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen; port 0 picks a free port ([`Running::addr`] tells which).
    pub addr: SocketAddr,
    /// Where the data lives.
    pub backend: Backend,
    /// How a conflicting command is retried before the request answers 409.
    pub conflict_retry: ConflictRetry,
    /// The longest a `GET ...?min_version=N` waits for the read model.
    pub read_wait: Duration,
}

impl Default for Config {
    /// 127.0.0.1:3000, SQLite in memory, the default retries, a 5 s read wait.
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.parse().expect("a socket address"),
            backend: Backend::memory(),
            conflict_retry: ConflictRetry::default(),
            read_wait: Duration::from_secs(5),
        }
    }
}

/// The stores of one backend, to close at shutdown.
enum Stores {
    Sqlite(SqliteEventStore),
    Postgres(PostgresEventStore),
}

impl Stores {
    async fn close(&self) {
        match self {
            Stores::Sqlite(s) => s.close().await,
            Stores::Postgres(s) => s.close().await,
        }
    }
}

/// A running service. Dropping it stops it too, without waiting; prefer
/// [`shutdown`](Self::shutdown).
pub struct Running {
    addr: SocketAddr,
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    stop_projection: oneshot::Sender<()>,
    projection: JoinHandle<eventsource::Result<Balances>>,
    stores: Stores,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Opens the database (creating the event store's tables and `balances`), starts the
/// `bank-balances` subscription, binds `config.addr` and serves. Returns once the
/// service accepts connections.
pub async fn start(config: Config) -> Result<Running, BoxError> {
    let (events, snapshots, read, stores): (
        Arc<dyn EventStore>,
        Arc<dyn SnapshotStore>,
        ReadModel,
        Stores,
    ) = match &config.backend {
        Backend::Sqlite(path) => {
            let store = SqliteEventStore::open(path).await?;
            (
                Arc::new(store.clone()),
                Arc::new(SqliteSnapshotStore::new(store.pool().clone())),
                ReadModel::Sqlite(store.pool().clone()),
                Stores::Sqlite(store),
            )
        }
        Backend::Postgres(url) => {
            let store = PostgresEventStore::connect(url).await?;
            (
                Arc::new(store.clone()),
                Arc::new(PostgresSnapshotStore::new(store.pool().clone())),
                ReadModel::Postgres(store.pool().clone()),
                Stores::Postgres(store),
            )
        }
    };
    let started = async {
        read.create_table().await?;
        let repo = AggregateRepository::<Account>::builder(events)
            .snapshot_store(snapshots)
            .conflict_retry(config.conflict_retry.clone())
            .build()?;
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        Ok::<_, BoxError>((repo, listener))
    };
    let (repo, listener) = match started.await {
        Ok(started) => started,
        Err(e) => {
            stores.close().await;
            return Err(e);
        }
    };
    let addr = listener.local_addr()?;

    let health = ProjectionHealth::default();
    let (stop_projection, projection) = match &stores {
        Stores::Sqlite(store) => spawn_projection(store.clone(), health.clone()),
        Stores::Postgres(store) => spawn_projection(store.clone(), health.clone()),
    };

    let app = http::router(AppState {
        repo,
        read,
        projection: health,
        read_wait: config.read_wait,
    });
    let (stop_http, stopped) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Running {
        addr,
        stop_http,
        http,
        stop_projection,
        projection,
        stores,
    })
}

/// Runs the `bank-balances` subscription on a task until told to stop. A handler error
/// is retried with backoff; when the retries are used up the subscription stops rather
/// than park the event (a skipped deposit would make every later balance wrong), and
/// `/health` reports it.
fn spawn_projection<S>(
    store: S,
    health: ProjectionHealth,
) -> (
    oneshot::Sender<()>,
    JoinHandle<eventsource::Result<Balances>>,
)
where
    S: SubscriptionStore + Send + Sync,
    Balances: Projection<S::Connection>,
{
    let subscription = Subscription::new(SUBSCRIPTION, store)
        .aggregate_types([Account::TYPE])
        .retry(RetryPolicy {
            max_attempts: 8,
            on_exhausted: OnExhausted::Stop,
            ..RetryPolicy::default()
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let ran = subscription.run(Balances, shutdown).await;
        if let Err(e) = &ran {
            tracing::error!(error = %e, "bank: the balances projection stopped");
            health.fail(e.to_string());
        }
        ran
    });
    (stop, task)
}

impl Running {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops gracefully: no new connections, the requests in flight finish (for at most
    /// 30 s), the subscription finishes its batch, the pools close. Returns the first
    /// error met: the server's, or the one that had stopped the projection.
    pub async fn shutdown(self) -> Result<(), BoxError> {
        let _ = self.stop_http.send(());
        let served = match tokio::time::timeout(HTTP_DRAIN, self.http).await {
            Ok(joined) => joined.map_err(BoxError::from).and_then(|r| Ok(r?)),
            Err(_) => Err(format!("requests still running after {HTTP_DRAIN:?}").into()),
        };
        let _ = self.stop_projection.send(());
        let projected = match self.projection.await {
            Ok(ran) => ran.map(drop).map_err(BoxError::from),
            Err(e) => Err(e.into()),
        };
        self.stores.close().await;
        served.and(projected)
    }
}
