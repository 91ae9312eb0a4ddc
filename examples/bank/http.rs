//! The HTTP layer: routes, JSON bodies, and the mapping of every outcome to a status
//! code and a JSON error. See the [module docs](super) for the API.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventsource::command::{CommandError, CommandOptions, Executed};
use eventsource::{AggregateRepository, Error};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::account::{Account, Refusal};
use super::read_model::{BalanceRow, ReadModel};

/// The namespace of account ids derived from an `Idempotency-Key` on `POST /accounts`.
const OPEN_NAMESPACE: Uuid = Uuid::from_u128(0x5b1e_1c6a_8d0f_4f5e_9a3b_6c2d_7e8f_9a0b);

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub repo: AggregateRepository<Account>,
    pub read: ReadModel,
    pub projection: ProjectionHealth,
    /// The longest a `GET` waits for the read model to reach the version it asks for.
    pub read_wait: Duration,
}

/// Whether the projection stopped on an error (its retries used up), and which.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProjectionHealth(Arc<OnceLock<String>>);

impl ProjectionHealth {
    pub fn fail(&self, error: String) {
        let _ = self.0.set(error);
    }

    pub fn failure(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/accounts", post(open))
        .route("/accounts/{id}", get(read))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/accounts/{id}/freeze", post(freeze))
        .route("/health", get(health))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .with_state(state)
}

/// `POST /accounts` body.
#[derive(Debug, Deserialize)]
struct OpenAccount {
    owner: String,
}

/// `POST /accounts/{id}/deposit` and `.../withdraw` body.
#[derive(Debug, Deserialize)]
struct Amount {
    amount_cents: i64,
}

/// `GET /accounts/{id}` query.
#[derive(Debug, Deserialize)]
struct ReadQuery {
    min_version: Option<u64>,
}

/// The answer to a write: the account as the command left it, at the version its
/// events reached. Read-your-writes: it comes from the write itself, not the read model.
#[derive(Debug, Serialize)]
struct Written {
    id: Uuid,
    owner: String,
    balance_cents: i64,
    frozen: bool,
    /// The account's version after the command (its event count).
    version: u64,
    /// How many times the command ran: more than 1 when it conflicted with other writers.
    attempts: u32,
    /// The `Idempotency-Key` had run before: this is the account now, nothing was written.
    already_applied: bool,
}

impl From<&Executed<Account>> for Written {
    fn from(done: &Executed<Account>) -> Self {
        let state = done.root.state();
        Written {
            id: done.root.id(),
            owner: state.owner.clone(),
            balance_cents: state.balance_cents,
            frozen: state.frozen,
            version: done.root.version(),
            attempts: done.attempts,
            already_applied: done.already_applied,
        }
    }
}

async fn open(
    State(s): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<OpenAccount>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    // With a key, the account id derives from it, so a retried open finds its account.
    let id = key.map_or_else(Uuid::new_v4, |k| {
        Uuid::new_v5(&OPEN_NAMESPACE, k.as_bytes())
    });
    let owner = body.owner;
    let done = s
        .repo
        .execute_new_with(id, move |a: &Account| a.open(&owner), options(key))
        .await?;
    let status = if done.already_applied {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = HeaderValue::from_str(&format!("/accounts/{id}")).expect("a path is a header");
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(Written::from(&done)),
    )
        .into_response())
}

async fn deposit(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Amount>,
) -> Result<Json<Written>, ApiError> {
    let (id, key) = (account_id(&id)?, idempotency_key(&headers)?);
    let done = s
        .repo
        .execute_with(id, |a: &Account| a.deposit(body.amount_cents), options(key))
        .await?;
    Ok(Json(Written::from(&done)))
}

async fn withdraw(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Amount>,
) -> Result<Json<Written>, ApiError> {
    let (id, key) = (account_id(&id)?, idempotency_key(&headers)?);
    let done = s
        .repo
        .execute_with(
            id,
            |a: &Account| a.withdraw(body.amount_cents),
            options(key),
        )
        .await?;
    Ok(Json(Written::from(&done)))
}

async fn freeze(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Written>, ApiError> {
    let (id, key) = (account_id(&id)?, idempotency_key(&headers)?);
    let done = s
        .repo
        .execute_with(id, |a: &Account| a.freeze(), options(key))
        .await?;
    Ok(Json(Written::from(&done)))
}

/// Reads the `balances` row. With `?min_version=N`, waits (up to the read wait) until
/// the row reflects version `N`: a client that got version `N` from a write reads its
/// own write. An account whose row is missing but which exists in the event store was
/// opened moments ago: the read waits for its first row as if asked for version 1.
async fn read(
    State(s): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<BalanceRow>, ApiError> {
    let id = account_id(&id)?;
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let mut wanted = query.min_version.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + s.read_wait;
    let mut checked_exists = false;
    let mut pause = Duration::from_millis(1);
    loop {
        let row = s.read.get(id).await.map_err(internal)?;
        let seen = match row {
            Some(row) if row.version >= wanted => return Ok(Json(row)),
            Some(row) => row.version,
            None => {
                if !checked_exists {
                    checked_exists = true;
                    if !s.repo.exists(id).await? {
                        return Err(not_found(id));
                    }
                    wanted = wanted.max(1);
                }
                0
            }
        };
        if let Some(failure) = s.projection.failure() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "projection_failed",
                format!("the balances projection stopped: {failure}"),
            )
            .with("projected_version", seen));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "projection_behind",
                format!(
                    "the read model is at version {seen} of this account, not yet at \
                     {wanted}; retry"
                ),
            )
            .with("projected_version", seen)
            .retry_after(1));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

async fn health(State(s): State<AppState>) -> Response {
    match s.projection.failure() {
        None => Json(json!({ "status": "ok" })).into_response(),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "projection_failed", "error": e })),
        )
            .into_response(),
    }
}

fn account_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_account_id",
            format!("`{raw}` is not an account id (a UUID)"),
        )
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "the Idempotency-Key header must be a UUID",
            )
        })
}

/// A key makes the command's run idempotent: its events' ids derive from the key, so a
/// second request with it finds the first one's events instead of appending again.
fn options(key: Option<Uuid>) -> CommandOptions {
    match key {
        Some(key) => CommandOptions::new().command_id(key),
        None => CommandOptions::new(),
    }
}

/// A JSON object body whose rejections are JSON errors: 415 without a JSON content
/// type, 400 for anything that does not parse into the expected shape. (serde would
/// also read a struct from an array, `[500]`; an object is asked for here.)
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let malformed =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", message);
        let value = match Json::<Value>::from_request(req, state).await {
            Ok(Json(value)) => value,
            Err(JsonRejection::MissingJsonContentType(e)) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    e.body_text(),
                ));
            }
            Err(e) => return Err(malformed(e.body_text())),
        };
        if !value.is_object() {
            return Err(malformed("the body must be a JSON object".into()));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| malformed(format!("the body is not the expected object: {e}")))
    }
}

/// An error answer: `{"error": code, "message": text, ...details}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Map<String, Value>,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        body.extend(self.details);
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "account_not_found",
        format!("no account {id}"),
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "bank: request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the request failed; see the service's log",
    )
}

impl From<CommandError<Refusal>> for ApiError {
    fn from(e: CommandError<Refusal>) -> Self {
        match e {
            CommandError::Rejected(why) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                why.code(),
                why.to_string(),
            ),
            CommandError::Conflict { attempts, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "the account kept changing under the command ({attempts} attempts); \
                     nothing was written, retry"
                ),
            )
            .with("attempts", attempts),
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { aggregate_id, .. } => not_found(aggregate_id),
            // Only `execute_new` on an id that is taken.
            Error::Conflict { aggregate_id, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "account_exists",
                format!("account {aggregate_id} already exists"),
            ),
            // A command id (the `Idempotency-Key`) already used on another account.
            Error::InvalidInput {
                field: "command_id",
                message,
            } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            Error::InvalidInput { message, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            }
            e @ (Error::Backend { .. } | Error::Timeout { .. }) => {
                tracing::warn!(error = %e, "bank: the store is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database did not answer; retry",
                )
                .retry_after(1)
            }
            e => internal(e),
        }
    }
}
