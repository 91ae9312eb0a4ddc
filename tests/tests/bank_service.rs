//! The bank example service (`examples/bank`) end to end, on SQLite and on PostgreSQL:
//! started in-process on an ephemeral 127.0.0.1 port and driven over real HTTP.
//!
//! - The rules, one request at a time: status codes and JSON errors (201, 200, 400, 404,
//!   405, 415, 422), refused commands writing nothing, a frozen account refusing,
//!   idempotency keys, and read-your-writes through `?min_version`.
//! - 16 clients × 50 operations over 3 hot accounts at once: every accepted write got
//!   its own version, the versions of an account are contiguous, and replaying the
//!   accepted amounts in version order gives the balance each answer reported (never
//!   negative); refusals are 422 and take no version; the final balances, read from the
//!   projection once it has caught up (bounded wait), are the sums of the accepted
//!   operations.
//! - A graceful shutdown, then a restart on the same database without conflict
//!   retries: the read model and its checkpoint survived (no event counted twice), and
//!   16 clients on one account now get 409s that wrote nothing.
//!
//! PostgreSQL runs in a database of its own, created for the test from `DATABASE_URL`
//! and dropped after; without `DATABASE_URL` that test is skipped, unless `CI` is set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventsource::command::ConflictRetry;
use eventsource_examples::bank::{self, Backend, Config};
use eventsource_tests::{TempDir, fixtures};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

/// The whole scenario of one backend must end within this.
const LIMIT: Duration = Duration::from_secs(300);
/// How long the projection may take to catch up once the writes are done.
const CATCH_UP: Duration = Duration::from_secs(30);
/// How long the service lets a `GET ?min_version` wait.
const READ_WAIT: Duration = Duration::from_secs(2);
const CLIENTS: u64 = 16;
const OPERATIONS: u64 = 50;
const HOT_ACCOUNTS: usize = 3;
const SEED_CENTS: i64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_service_on_sqlite() {
    let dir = TempDir::new().expect("a temporary directory");
    let backend = Backend::Sqlite(dir.path().join("bank.db"));
    bounded(scenario(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_service_on_postgres() {
    let Some(url) = fixtures::database_url() else {
        return;
    };
    let db = FreshDatabase::create(&url).await;
    let ran = tokio::spawn(bounded(scenario(Backend::Postgres(db.url.clone())))).await;
    db.drop().await;
    if let Err(e) = ran {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the scenario did not finish: {e}"),
        }
    }
}

async fn bounded(scenario: impl Future<Output = ()>) {
    if tokio::time::timeout(LIMIT, scenario).await.is_err() {
        panic!("the bank scenario took longer than {LIMIT:?}");
    }
}

async fn scenario(backend: Backend) {
    let started = Instant::now();
    let what = backend.describe();
    let config = Config {
        addr: "127.0.0.1:0".parse().expect("an address"),
        backend: backend.clone(),
        read_wait: READ_WAIT,
        ..Config::default()
    };

    // First run: default conflict retries.
    let running = bank::start(config.clone())
        .await
        .expect("start the service");
    let addr = running.addr();
    assert!(
        addr.ip().is_loopback() && addr.port() != 0,
        "bound to {addr}"
    );
    let api = Api::new(addr);
    let (status, body) = api.get("/health").await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"status": "ok"})));

    rules(&api).await;
    let rules_done = started.elapsed();

    let hot = concurrent_clients(&api).await;
    let writes_done = started.elapsed();
    for (id, expected) in &hot {
        let seen = projected(&api, *id, expected.version).await;
        assert_eq!(
            (seen.balance_cents, seen.version),
            (expected.balance_cents, expected.version),
            "the projection of account {id}"
        );
        // Read-your-writes: a read at the version a write reached answers at once.
        let (status, body) = api
            .get(&format!("/accounts/{id}?min_version={}", expected.version))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["balance_cents"], expected.balance_cents);
    }
    let projected_done = started.elapsed();

    let stopping = Instant::now();
    running.shutdown().await.expect("a graceful shutdown");
    let shutdown_took = stopping.elapsed();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "{addr} still accepts connections after the shutdown"
    );

    // Second run on the same database, without conflict retries.
    let running = bank::start(Config {
        conflict_retry: ConflictRetry::none(),
        ..config
    })
    .await
    .expect("restart the service");
    let api = Api::new(running.addr());
    for (id, expected) in &hot {
        let seen = projected(&api, *id, expected.version).await;
        assert_eq!(
            (seen.balance_cents, seen.version),
            (expected.balance_cents, expected.version),
            "account {id} after the restart"
        );
    }
    let (&target, before) = hot.iter().next().expect("a hot account");
    let conflicts = conflicts_without_retries(&api, target, before).await;
    running.shutdown().await.expect("a graceful shutdown");

    eprintln!(
        "bank on {what}: rules {:.1?}, {} concurrent operations {:.1?}, projection caught \
         up {:.1?} later, shutdown {shutdown_took:.1?}, {conflicts} conflicts without \
         retries; {:.1?} in all",
        rules_done,
        CLIENTS * OPERATIONS,
        writes_done - rules_done,
        projected_done - writes_done,
        started.elapsed()
    );
}

/// The rules, one request at a time, on one account.
async fn rules(api: &Api) {
    let (status, body) = api.post("/accounts", json!({"owner": "  "})).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_owner")
    );

    let (status, location, body) = api.open("ada").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = account_id(&body);
    assert_eq!(
        location.as_deref(),
        Some(format!("/accounts/{id}").as_str())
    );
    assert_written(&body, 1, 0);
    assert_eq!(body["owner"], "ada");
    assert_eq!(body["frozen"], false);

    let (status, body) = api.amount(id, "deposit", 1_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_written(&body, 2, 1_000);

    // Refused commands: 422 with the reason, nothing written.
    for (op, cents, code) in [
        ("deposit", 0, "non_positive_amount"),
        ("deposit", -5, "non_positive_amount"),
        ("withdraw", 0, "non_positive_amount"),
        ("withdraw", -1, "non_positive_amount"),
        ("withdraw", 1_001, "insufficient_funds"),
        ("deposit", i64::MAX, "balance_overflow"),
    ] {
        let (status, body) = api.amount(id, op, cents).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{op} {cents}: {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = api.amount(id, "withdraw", 400).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_written(&body, 3, 600);

    // Malformed requests: 400 (415 without a JSON content type), as JSON errors.
    for raw in [
        r#"{"amount_cents":"#,
        "not json",
        r#"{"amount_cents":"ten"}"#,
        r#"{"amount_cents":1.5}"#,
        r#"{"cents":10}"#,
        "[10]",
        "",
    ] {
        let (status, body) = api
            .raw(
                &format!("/accounts/{id}/deposit"),
                raw,
                Some("application/json"),
            )
            .await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::BAD_REQUEST, "malformed_json"),
            "body {raw:?}: {body}"
        );
    }
    let (status, body) = api
        .raw(
            &format!("/accounts/{id}/deposit"),
            r#"{"amount_cents":1}"#,
            None,
        )
        .await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let (status, body) = api.get("/accounts/not-a-uuid").await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::BAD_REQUEST, "invalid_account_id")
    );
    let (status, body) = api.get(&format!("/accounts/{id}?min_version=soon")).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::BAD_REQUEST, "bad_query")
    );

    // Unknown accounts: 404 for every route.
    let unknown = Uuid::new_v4();
    for (status, body) in [
        api.amount(unknown, "deposit", 10).await,
        api.amount(unknown, "withdraw", 10).await,
        api.post(&format!("/accounts/{unknown}/freeze"), Value::Null)
            .await,
        api.get(&format!("/accounts/{unknown}")).await,
        api.get(&format!("/accounts/{unknown}?min_version=3")).await,
    ] {
        assert_eq!(
            (status, error(&body)),
            (StatusCode::NOT_FOUND, "account_not_found"),
            "{body}"
        );
    }
    let (status, body) = api.get("/no/such/route").await;
    assert_eq!((status, error(&body)), (StatusCode::NOT_FOUND, "no_route"));
    let response = api
        .http
        .delete(api.url(&format!("/accounts/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    // An idempotency key: the retry appends nothing and says so.
    let key = Uuid::new_v4();
    for already_applied in [false, true] {
        let (status, body) = api.keyed(id, "deposit", 50, key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_written(&body, 4, 650);
        assert_eq!(body["already_applied"], already_applied);
    }
    // The same key on another account is refused; a key that is no UUID is a bad request.
    let (_, _, other) = api.open("bob").await;
    let (status, body) = api.keyed(account_id(&other), "deposit", 50, key).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
        "{body}"
    );
    let response = api
        .http
        .post(api.url("/accounts"))
        .header("idempotency-key", "twice")
        .json(&json!({"owner": "carol"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // An open with a key: the retry finds the same account, 200 instead of 201.
    let key = Uuid::new_v4();
    let mut opened = Vec::new();
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let response = api
            .http
            .post(api.url("/accounts"))
            .header("idempotency-key", key.to_string())
            .json(&json!({"owner": "dan"}))
            .send()
            .await
            .expect("POST /accounts");
        let (status, body) = decode(response).await;
        assert_eq!(status, expected, "{body}");
        opened.push(account_id(&body));
    }
    assert_eq!(opened[0], opened[1]);

    // Freezing: once writes an event, twice writes nothing; a frozen account refuses.
    let (status, body) = api
        .post(&format!("/accounts/{id}/freeze"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_written(&body, 5, 650);
    assert_eq!(body["frozen"], true);
    for (op, cents) in [("deposit", 10), ("withdraw", 10), ("deposit", -3)] {
        let (status, body) = api.amount(id, op, cents).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "account_frozen"),
            "{op} {cents} on a frozen account: {body}"
        );
    }
    // Freezing again loads the account afresh: still version 5, so none of the refused
    // commands above wrote anything.
    let (status, body) = api
        .post(&format!("/accounts/{id}/freeze"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_written(&body, 5, 650);

    // The read model, read at the version the last write reached.
    let (status, body) = api.get(&format!("/accounts/{id}?min_version=5")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"id": id, "owner": "ada", "balance_cents": 650, "version": 5, "frozen": true})
    );
    // A version the account has not reached: 503 once the read wait is over.
    let waiting = Instant::now();
    let response = api
        .http
        .get(api.url(&format!("/accounts/{id}?min_version=6")))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let (status, body) = decode(response).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "projection_behind")
    );
    assert_eq!(body["projected_version"], 5);
    assert!(
        waiting.elapsed() >= READ_WAIT,
        "answered before the read wait"
    );
}

/// What a hot account should end at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    balance_cents: i64,
    version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
    /// A deposit or withdrawal of zero or less: always refused.
    Invalid(&'static str, i64),
}

/// One answered request of the concurrent phase.
#[derive(Debug)]
struct Outcome {
    account: usize,
    op: Op,
    status: StatusCode,
    body: Value,
}

/// SplitMix64: a deterministic sequence per client, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 16 clients, each with its own connection pool, × 50 operations over 3 accounts.
async fn concurrent_clients(api: &Api) -> BTreeMap<Uuid, Expected> {
    let mut accounts = Vec::new();
    for i in 0..HOT_ACCOUNTS {
        let (status, _, body) = api.open(&format!("hot-{i}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = account_id(&body);
        let (status, body) = api.amount(id, "deposit", SEED_CENTS).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_written(&body, 2, SEED_CENTS);
        accounts.push(id);
    }

    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let api = Api::new(api.addr);
        let accounts = accounts.clone();
        clients.spawn(async move {
            let mut rng = Rng(client + 1);
            let mut outcomes = Vec::new();
            for _ in 0..OPERATIONS {
                let account = rng.below(accounts.len() as u64) as usize;
                let op = match rng.below(10) {
                    0..=4 => Op::Deposit(1 + rng.below(200) as i64),
                    5..=8 => Op::Withdraw(1 + rng.below(300) as i64),
                    _ => {
                        let route = if rng.below(2) == 0 {
                            "deposit"
                        } else {
                            "withdraw"
                        };
                        Op::Invalid(route, -(rng.below(3) as i64))
                    }
                };
                let (route, cents) = match op {
                    Op::Deposit(c) => ("deposit", c),
                    Op::Withdraw(c) => ("withdraw", c),
                    Op::Invalid(route, c) => (route, c),
                };
                let (status, body) = api.amount(accounts[account], route, cents).await;
                outcomes.push(Outcome {
                    account,
                    op,
                    status,
                    body,
                });
            }
            outcomes
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = clients.join_next().await {
        outcomes.extend(done.expect("a client task"));
    }
    assert_eq!(outcomes.len() as u64, CLIENTS * OPERATIONS);

    let mut expected = BTreeMap::new();
    let (mut retried, mut conflicts, mut refused) = (0, 0, 0);
    for (index, id) in accounts.iter().enumerate() {
        // The accepted writes of this account, by the version each reached.
        let mut accepted = BTreeMap::new();
        for o in outcomes.iter().filter(|o| o.account == index) {
            match (o.op, o.status) {
                (Op::Deposit(c), StatusCode::OK) | (Op::Withdraw(c), StatusCode::OK) => {
                    let version = o.body["version"].as_u64().expect("a version");
                    let attempts = o.body["attempts"].as_u64().expect("attempts");
                    assert!(attempts >= 1, "{}", o.body);
                    if attempts > 1 {
                        retried += 1;
                    }
                    let delta = if matches!(o.op, Op::Deposit(_)) {
                        c
                    } else {
                        -c
                    };
                    let balance = o.body["balance_cents"].as_i64().expect("a balance");
                    let earlier = accepted.insert(version, (delta, balance));
                    assert!(earlier.is_none(), "two writes answered version {version}");
                }
                (Op::Withdraw(c), StatusCode::UNPROCESSABLE_ENTITY) => {
                    assert_eq!(error(&o.body), "insufficient_funds", "withdraw {c}");
                    refused += 1;
                }
                (Op::Invalid(..), StatusCode::UNPROCESSABLE_ENTITY) => {
                    assert_eq!(error(&o.body), "non_positive_amount", "{:?}", o.op);
                    refused += 1;
                }
                (Op::Deposit(_) | Op::Withdraw(_), StatusCode::CONFLICT) => {
                    assert_eq!(error(&o.body), "conflict", "{}", o.body);
                    conflicts += 1;
                }
                _ => panic!("{:?} answered {}: {}", o.op, o.status, o.body),
            }
        }
        // Versions 3, 4, ... each taken by exactly one accepted write, and replaying them
        // in that order gives the balance each answer reported.
        let mut balance = SEED_CENTS;
        for (n, (version, (delta, reported))) in accepted.iter().enumerate() {
            assert_eq!(
                *version,
                3 + n as u64,
                "account {id}: the versions have a gap"
            );
            balance += delta;
            assert!(
                balance >= 0,
                "account {id} went below zero at version {version}"
            );
            assert_eq!(*reported, balance, "account {id} at version {version}");
        }
        expected.insert(
            *id,
            Expected {
                balance_cents: balance,
                version: 2 + accepted.len() as u64,
            },
        );
    }
    eprintln!(
        "{} operations: {} accepted ({retried} after a conflict), {refused} refused, \
         {conflicts} conflicts past the retries",
        outcomes.len(),
        outcomes.len() - refused - conflicts,
    );
    assert!(
        retried > 0,
        "no write conflicted: the clients did not race (each answer reports its attempts)"
    );
    expected
}

/// Without conflict retries, 16 clients depositing on one account: some get 409, which
/// wrote nothing; the others' deposits add up.
async fn conflicts_without_retries(api: &Api, id: Uuid, before: &Expected) -> usize {
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let api = Api::new(api.addr);
        clients.spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..20 {
                let cents = 1 + ((client + i) % 9) as i64;
                let (status, body) = api.amount(id, "deposit", cents).await;
                outcomes.push((cents, status, body));
            }
            outcomes
        });
    }
    let (mut accepted, mut sum, mut conflicts) = (0, 0, 0);
    while let Some(done) = clients.join_next().await {
        for (cents, status, body) in done.expect("a client task") {
            match status {
                StatusCode::OK => {
                    assert_eq!(body["attempts"], 1, "{body}");
                    accepted += 1;
                    sum += cents;
                }
                StatusCode::CONFLICT => {
                    assert_eq!(error(&body), "conflict");
                    assert_eq!(body["attempts"], 1, "{body}");
                    conflicts += 1;
                }
                _ => panic!("a deposit answered {status}: {body}"),
            }
        }
    }
    assert!(
        conflicts > 0,
        "16 clients without retries on one account never conflicted"
    );
    let version = before.version + accepted;
    let seen = projected(api, id, version).await;
    assert_eq!(
        (seen.balance_cents, seen.version),
        (before.balance_cents + sum, version),
        "{accepted} deposits accepted, {conflicts} conflicts"
    );
    conflicts
}

/// Polls `GET /accounts/{id}` (no `min_version`: the eventually consistent read) until
/// the projection reaches `version`, for at most [`CATCH_UP`].
async fn projected(api: &Api, id: Uuid, version: u64) -> Expected {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let (status, body) = api.get(&format!("/accounts/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let seen = Expected {
            balance_cents: body["balance_cents"].as_i64().expect("a balance"),
            version: body["version"].as_u64().expect("a version"),
        };
        assert!(seen.version <= version, "the projection is ahead: {body}");
        if seen.version == version {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the projection of {id} is at {} after {CATCH_UP:?}, not {version}",
            seen.version
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn account_id(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no account id in {body}"))
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("<no error field>")
}

fn assert_written(body: &Value, version: u64, balance_cents: i64) {
    assert_eq!(
        (body["version"].as_u64(), body["balance_cents"].as_i64()),
        (Some(version), Some(balance_cents)),
        "{body}"
    );
}

/// A client of one service: its own connection pool.
struct Api {
    http: Client,
    addr: SocketAddr,
}

impl Api {
    fn new(addr: SocketAddr) -> Self {
        let http = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Api { http, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        decode(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// A POST with a JSON body (none for `Value::Null`).
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = self.http.post(self.url(path));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        decode(request.send().await.expect("POST")).await
    }

    async fn raw(&self, path: &str, body: &str, content_type: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url(path)).body(body.to_owned());
        if let Some(t) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, t);
        }
        decode(request.send().await.expect("POST")).await
    }

    async fn open(&self, owner: &str) -> (StatusCode, Option<String>, Value) {
        let response = self
            .http
            .post(self.url("/accounts"))
            .json(&json!({ "owner": owner }))
            .send()
            .await
            .expect("POST /accounts");
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let (status, body) = decode(response).await;
        (status, location, body)
    }

    async fn amount(&self, id: Uuid, route: &str, cents: i64) -> (StatusCode, Value) {
        self.post(
            &format!("/accounts/{id}/{route}"),
            json!({ "amount_cents": cents }),
        )
        .await
    }

    async fn keyed(&self, id: Uuid, route: &str, cents: i64, key: Uuid) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(&format!("/accounts/{id}/{route}")))
            .header("idempotency-key", key.to_string())
            .json(&json!({ "amount_cents": cents }))
            .send()
            .await
            .expect("POST");
        decode(response).await
    }
}

/// The status and the JSON body, which every answer of the service has (errors too),
/// except 405 answers.
async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let text = response.text().await.expect("a response body");
    assert!(json, "{status} without a JSON content type: {text:?}");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} with a body that is not JSON ({e}): {text:?}"));
    (status, body)
}

/// A PostgreSQL database of the test's own, next to the one `DATABASE_URL` names.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(admin_url: &str) -> Self {
        let name = format!("bank_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
        // The name is ours: letters, digits and underscores.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        FreshDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// Drops it, even with connections still open (PostgreSQL 13 or newer).
    async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.admin_url));
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        {
            eprintln!(
                "warning: could not drop the test database {}: {e}",
                self.name
            );
        }
        let _ = admin.close().await;
    }
}

/// `url` with its database name replaced by `name`, its query kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[test]
fn database_names_are_replaced() {
    assert_eq!(
        with_database(
            "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
            "b"
        ),
        "postgres://postgres@127.0.0.1:5432/b?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db", "b"),
        "postgres://u:p@h/b"
    );
    assert_eq!(with_database("postgres://h:1", "b"), "postgres://h:1/b");
}
