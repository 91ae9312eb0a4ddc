//! The `balances` read model: one row per account, in the event store's own database,
//! kept by the [`Balances`] projection.
//!
//! Each subscription batch writes its rows through the batch's transaction, which also
//! moves the subscription's checkpoint: every event counts exactly once, even if the
//! process dies mid-batch. The rows lag the event store by one batch at most (usually a
//! few milliseconds): the read model is eventually consistent.

use eventsource::feed::Envelope;
use eventsource::sqlx::{self, PgPool, Row, SqlitePool};
use eventsource::subscription::Projection;
use eventsource::{BoxError, async_trait};
use serde::Serialize;
use uuid::Uuid;

use super::account::AccountEvent;

/// The table, created at start if missing. `version` is the version of the account's
/// last event the row reflects.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS balances (
    account_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    balance_cents BIGINT NOT NULL,
    version BIGINT NOT NULL,
    frozen BOOLEAN NOT NULL)";

/// The name of the subscription that feeds the table: its checkpoint is kept under it.
pub const SUBSCRIPTION: &str = "bank-balances";

/// The projection that keeps `balances`.
#[derive(Debug, Default)]
pub struct Balances;

// One SQL text serves both databases (`$n` parameters work on SQLite too). Every update
// also checks `version < $3`: the subscription hands each event over once, and this
// keeps a row right even if the checkpoint is ever reset behind it.
macro_rules! balances_projection {
    ($conn:ty) => {
        #[async_trait]
        impl Projection<$conn> for Balances {
            type Event = AccountEvent;

            async fn apply(
                &mut self,
                conn: &mut $conn,
                e: Envelope<AccountEvent>,
            ) -> Result<(), BoxError> {
                let id = e.aggregate_id.to_string();
                let version = i64::try_from(e.version)?;
                // An exhaustive match: a new account event does not compile until the
                // read model handles it.
                let query = match e.event {
                    AccountEvent::Opened(o) => sqlx::query(
                        "INSERT INTO balances (account_id, owner, balance_cents, version, frozen) \
                         VALUES ($1, $2, 0, $3, FALSE) ON CONFLICT (account_id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(o.owner)
                    .bind(version),
                    AccountEvent::Deposited(d) => sqlx::query(
                        "UPDATE balances SET balance_cents = balance_cents + $2, version = $3 \
                         WHERE account_id = $1 AND version < $3",
                    )
                    .bind(id)
                    .bind(d.amount_cents)
                    .bind(version),
                    AccountEvent::Withdrawn(w) => sqlx::query(
                        "UPDATE balances SET balance_cents = balance_cents - $2, version = $3 \
                         WHERE account_id = $1 AND version < $3",
                    )
                    .bind(id)
                    .bind(w.amount_cents)
                    .bind(version),
                    AccountEvent::Frozen(_) => sqlx::query(
                        "UPDATE balances SET frozen = TRUE, version = $2 \
                         WHERE account_id = $1 AND version < $2",
                    )
                    .bind(id)
                    .bind(version),
                };
                query.execute(&mut *conn).await?;
                Ok(())
            }
        }
    };
}
balances_projection!(sqlx::SqliteConnection);
balances_projection!(sqlx::PgConnection);

/// One row of `balances`: an account as the read model last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalanceRow {
    /// The account.
    pub id: Uuid,
    /// Who holds it.
    pub owner: String,
    /// Its balance, in cents.
    pub balance_cents: i64,
    /// The version of the account's last event the row reflects.
    pub version: u64,
    /// Whether it is frozen.
    pub frozen: bool,
}

/// Reads `balances` in whichever database the service runs on.
#[derive(Clone, Debug)]
pub enum ReadModel {
    /// A SQLite database.
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

const SELECT: &str = "SELECT owner, balance_cents, version, frozen FROM balances \
                      WHERE account_id = $1";

impl ReadModel {
    /// Creates the table if it is missing.
    pub async fn create_table(&self) -> Result<(), sqlx::Error> {
        match self {
            ReadModel::Sqlite(pool) => {
                sqlx::raw_sql(CREATE_TABLE).execute(pool).await?;
            }
            ReadModel::Postgres(pool) => {
                sqlx::raw_sql(CREATE_TABLE).execute(pool).await?;
            }
        }
        Ok(())
    }

    /// The account's row, or `None` if the projection has not seen it (yet).
    pub async fn get(&self, id: Uuid) -> Result<Option<BalanceRow>, BoxError> {
        let key = id.to_string();
        let row = match self {
            ReadModel::Sqlite(pool) => sqlx::query(SELECT)
                .bind(&key)
                .fetch_optional(pool)
                .await?
                .map(|r| decode(id, &r))
                .transpose()?,
            ReadModel::Postgres(pool) => sqlx::query(SELECT)
                .bind(&key)
                .fetch_optional(pool)
                .await?
                .map(|r| decode(id, &r))
                .transpose()?,
        };
        Ok(row)
    }
}

fn decode<R>(id: Uuid, row: &R) -> Result<BalanceRow, BoxError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(BalanceRow {
        id,
        owner: row.try_get(0)?,
        balance_cents: row.try_get(1)?,
        version: u64::try_from(row.try_get::<i64, _>(2)?)?,
        frozen: row.try_get(3)?,
    })
}
