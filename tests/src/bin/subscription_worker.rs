//! Runs a PostgreSQL subscription whose read model lives in the same database, in its own
//! process, so that a test can kill it mid-batch.
//!
//! Used by the subscription process tests. Reads from the environment:
//!
//! - `DATABASE_URL`; `SUB_NAME` (the subscription), `SUB_TYPE` (the aggregate type it
//!   reads), `SUB_TABLE` (the prefix of the read model's tables, which the test creates);
//! - `SUB_MODE`: `follow` (run until stdin closes), `catch-up` (catch up, print `done`,
//!   exit) or `partitioned` (share `SUB_PARTITIONS` partitions with other processes under
//!   the owner `SUB_OWNER`, leases of `SUB_LEASE_MS`, until stdin closes);
//! - `SUB_BATCH` (events per batch) and `SUB_SLEEP_MS` (a pause after each event, so
//!   that a kill lands mid-batch).
//!
//! The `follow` and `catch-up` modes keep `<prefix>_totals`, one row per aggregate with an
//! order-sensitive running total of its events' `n`, the number of its events and the
//! last version applied, and `<prefix>_ids`, one row per event (no key: an effect applied
//! twice shows as two rows). They print `applied <position>` for every event handled and
//! `committed <checkpoint>` for every batch committed. The `partitioned` mode inserts one
//! row per event into `<prefix>_handled` with its partition and owner; the table numbers
//! the rows and stamps them with the server's clock.
//!
//! Prints `ready` once connected.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use eventsource::feed::{Checkpoint, Envelope, FeedEvent};
use eventsource::subscription::{Consumer, Projected, Projection, Subscription};
use eventsource::{BoxError, PostgresEventStore};
use eventsource_tests::conformance::subscriptions::SuiteEvent;
use sqlx::PgConnection;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn number<T: std::str::FromStr>(name: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    var(name)?.parse().map_err(|e| format!("{name}: {e}"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The test reads these lines; a closed pipe only means it stopped listening.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The running totals and the event-id log.
struct Totals {
    table: String,
    sleep: Duration,
}

#[eventsource::async_trait]
impl Projection<PgConnection> for Totals {
    type Event = SuiteEvent;

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        e: Envelope<SuiteEvent>,
    ) -> Result<(), BoxError> {
        let SuiteEvent::Happened(h) = &e.event;
        let t = &self.table;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {t}_totals AS t (aggregate_id, total, events, last_version) \
             VALUES ($1, $2, 1, $3) ON CONFLICT (aggregate_id) DO UPDATE \
             SET total = (t.total * 31 + EXCLUDED.total) % 1000000007, events = t.events + 1, \
             last_version = EXCLUDED.last_version"
        )))
        .bind(e.aggregate_id)
        .bind(h.n)
        .bind(i64::try_from(e.version)?)
        .execute(&mut *conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {t}_ids (event_id, position) VALUES ($1, $2)"
        )))
        .bind(e.event_id)
        .bind(i64::try_from(e.position)?)
        .execute(&mut *conn)
        .await?;
        say(&format!("applied {}", e.position));
        tokio::time::sleep(self.sleep).await;
        Ok(())
    }
}

/// [`Totals`] as a consumer that also says when a batch commits.
struct Reporting(Projected<Totals>);

#[eventsource::async_trait]
impl Consumer<PgConnection> for Reporting {
    fn event_types(&self) -> Option<Vec<String>> {
        Consumer::<PgConnection>::event_types(&self.0)
    }

    async fn consume(
        &mut self,
        conn: &mut PgConnection,
        event: &FeedEvent,
    ) -> Result<(), BoxError> {
        self.0.consume(conn, event).await
    }

    async fn committed(&mut self, checkpoint: Checkpoint) -> Result<(), BoxError> {
        say(&format!("committed {checkpoint}"));
        Ok(())
    }
}

/// One row per event handled, with the partition and owner that handled it.
struct Handled {
    table: String,
    owner: String,
    partition: u32,
    sleep: Duration,
}

#[eventsource::async_trait]
impl Projection<PgConnection> for Handled {
    type Event = SuiteEvent;

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        e: Envelope<SuiteEvent>,
    ) -> Result<(), BoxError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {}_handled (event_id, aggregate_id, version, partition, owner) \
             VALUES ($1, $2, $3, $4, $5)",
            self.table
        )))
        .bind(e.event_id)
        .bind(e.aggregate_id)
        .bind(i64::try_from(e.version)?)
        .bind(i32::try_from(self.partition)?)
        .bind(&self.owner)
        .execute(&mut *conn)
        .await?;
        tokio::time::sleep(self.sleep).await;
        Ok(())
    }
}

/// Completes when stdin closes (or a line arrives).
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

async fn run() -> Result<(), String> {
    let url = var("DATABASE_URL")?;
    let mode = var("SUB_MODE")?;
    let name = var("SUB_NAME")?;
    let aggregate_type = var("SUB_TYPE")?;
    let table = var("SUB_TABLE")?;
    let batch: usize = number("SUB_BATCH")?;
    let sleep = Duration::from_millis(number("SUB_SLEEP_MS")?);
    let store = PostgresEventStore::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let sub = Subscription::new(name, store.clone())
        .aggregate_types([aggregate_type])
        .batch_size(batch)
        .poll_interval(Duration::from_millis(100));
    say("ready");
    let totals = || {
        Reporting(Projected(Totals {
            table: table.clone(),
            sleep,
        }))
    };
    match mode.as_str() {
        "follow" => {
            sub.run_with(totals(), stdin_closed())
                .await
                .map_err(|e| e.to_string())?;
        }
        "catch-up" => {
            sub.catch_up_with(totals())
                .await
                .map_err(|e| e.to_string())?;
            say("done");
        }
        "partitioned" => {
            let owner = var("SUB_OWNER")?;
            let sub = sub
                .partitions(number("SUB_PARTITIONS")?)
                .lease(Duration::from_millis(number("SUB_LEASE_MS")?))
                .owner(owner.clone());
            sub.run_partitioned(
                |partition| {
                    Projected(Handled {
                        table: table.clone(),
                        owner: owner.clone(),
                        partition,
                        sleep,
                    })
                },
                stdin_closed(),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        other => return Err(format!("unknown SUB_MODE {other:?}")),
    }
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("subscription-worker: {message}");
            ExitCode::FAILURE
        }
    }
}
